#!/usr/bin/env bash
# Packs the GPU-relevant binaries of build/ and the shared libraries they need (those a stock
# Ubuntu + CUDA machine lacks: Abseil, gRPC, Protobuf, yaml-cpp, ...) into bundle/bundle.tar.xz,
# for a GPU machine without Debian's packages:
#   tar -xJf bundle/bundle.tar.xz && LD_LIBRARY_PATH=$PWD/bundle bundle/<binary>
# libmoed_cuda.so sits next to the binaries, where the CUDA loader looks first.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf bundle && mkdir -p bundle
bins=(kernels/cuda/cuda_gemv_test kernels/cuda/cuda_ops_test kernels/cuda/cuda_layer_ops_test
      kernels/cuda/cuda_loader_test kernels/cuda/cuda_mma_test workers/cuda_engine_test workers/nccl_stage_test bench/cuda_gemv_bench
      bench/cuda_moe_bench
      tests/daemon_test tools/moed-model tools/moed-bench tools/moectl daemon/moed workers/moed-worker)
for b in "${bins[@]}"; do
  [[ -f build/$b ]] && cp "build/$b" bundle/
done
cp build/kernels/cuda/libmoed_cuda.so bundle/
# Every non-libc dependency, resolved on this machine.
for f in bundle/*; do
  ldd "$f" 2>/dev/null | awk '/=> \//{print $3}'
done | sort -u | grep -vE '/(libc|libm|libstdc\+\+|libgcc_s|ld-linux-x86-64|libpthread|libdl|librt)\.so' |
  while read -r lib; do cp -L "$lib" bundle/; done
strip --strip-debug bundle/* 2>/dev/null || true
cp scripts/gpu-serve.sh bundle/
tar -cJf /tmp/moed-bundle.tar.xz bundle && rm -rf bundle/* && mv /tmp/moed-bundle.tar.xz bundle/bundle.tar.xz
du -sh bundle/bundle.tar.xz

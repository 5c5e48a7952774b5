// Matrix products of many tokens (prefill) through cuBLAS's GemmEx with float32 accumulation and
// output: on tensor cores with the weights dequantized to F16 rows (bit-exact decoders of
// quants.cuh, then one rounding to F16) and the activations rounded to F16, or in float32
// throughout (weights dequantized to float32: the engine's exact mode, for reproducibility). cuBLAS is loaded at run time
// (libcublas.so.13, dlopen), so libmoed_cuda.so still loads, and decode still runs, where it is
// missing: gemm_available() then answers 0 and callers keep the GEMV path. CPU twin:
// cpu::MatMulReference (the test bounds the F16 roundings); test: cuda_layer_ops_test.cc.
//
// Also here: the MoE prefill combine (each token's k expert outputs, weighted, added to the
// residual stream in slot order: deterministic, no atomics).
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <type_traits>

#include "kernels/cuda/ops.h"
#include "kernels/cuda/quants.cuh"

namespace moed::cuda {
namespace {

constexpr int kThreads = 256;

// The few cuBLAS entry points moed uses, resolved from the library once per process.
struct Cublas {
  cublasStatus_t (*create)(cublasHandle_t*) = nullptr;
  cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t) = nullptr;
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                            const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                            cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
  std::string error;  // why it is not available
};

const Cublas& GetCublas() {
  static const Cublas* cublas = [] {
    auto* c = new Cublas;
    void* lib = nullptr;
    for (const char* name : {"libcublas.so.13", "libcublas.so"}) {
      if ((lib = dlopen(name, RTLD_NOW | RTLD_LOCAL)) != nullptr) break;
    }
    if (lib == nullptr) {
      c->error = std::string("cuBLAS not found: ") + dlerror();
      return c;
    }
    c->create = reinterpret_cast<decltype(c->create)>(dlsym(lib, "cublasCreate_v2"));
    c->set_stream = reinterpret_cast<decltype(c->set_stream)>(dlsym(lib, "cublasSetStream_v2"));
    c->gemm_ex = reinterpret_cast<decltype(c->gemm_ex)>(dlsym(lib, "cublasGemmEx"));
    if (c->create == nullptr || c->set_stream == nullptr || c->gemm_ex == nullptr) {
      c->error = "cuBLAS lacks cublasCreate_v2, cublasSetStream_v2 or cublasGemmEx";
      c->create = nullptr;
    }
    return c;
  }();
  return *cublas;
}

// One handle per thread and device (a handle must not be used by two threads at once).
int Handle(cublasHandle_t* handle) {
  thread_local cublasHandle_t handles[64] = {};
  int device = 0;
  if (const int err = FailCuda(cudaGetDevice(&device), "cudaGetDevice")) return err;
  if (device < 0 || device >= 64) return Fail(MOED_CUDA_EINVAL, "gemm: device ordinal above 63");
  if (handles[device] == nullptr) {
    const cublasStatus_t st = GetCublas().create(&handles[device]);
    if (st != CUBLAS_STATUS_SUCCESS) return Fail(MOED_CUDA_EINVAL, "cublasCreate failed: " + std::to_string(st));
  }
  *handle = handles[device];
  return 0;
}

// One thread per 32-weight unit; Out is __half or float.
template <class Q, class Out>
__global__ void __launch_bounds__(kThreads) DequantizeKernel(const uint8_t* w, uint64_t row_bytes, int n_units,
                                                             int64_t n_rows, Out* out) {
  const int64_t unit = blockIdx.x * int64_t{kThreads} + threadIdx.x;
  if (unit >= n_rows * n_units) return;
  const int64_t row = unit / n_units;
  const int u = static_cast<int>(unit % n_units);
  float v[32];
  Q::Decode32(w + row * row_bytes, u, v);
  if constexpr (sizeof(Out) == 2) {
    __half2* o = reinterpret_cast<__half2*>(out + unit * 32);
#pragma unroll
    for (int k = 0; k < 16; ++k) o[k] = __floats2half2_rn(v[2 * k], v[2 * k + 1]);
  } else {
    float4* o = reinterpret_cast<float4*>(out + unit * 32);
#pragma unroll
    for (int k = 0; k < 8; ++k) o[k] = make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
  }
}

__global__ void ToF16Kernel(const float* x, int64_t n, __half* out) {
  for (int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x; i < n; i += int64_t{gridDim.x} * kThreads) {
    out[i] = __float2half_rn(x[i]);
  }
}

__global__ void MoeCombineKernel(float* x, const float* rows, const int32_t* row_of, const float* weights, int top_k,
                                 int64_t n) {
  const int t = blockIdx.y;
  const int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x;
  if (i >= n) return;
  float acc = 0.0f;
  for (int s = 0; s < top_k; ++s) {
    const int32_t r = row_of[t * top_k + s];
    if (r >= 0) acc = fmaf(weights[t * top_k + s], rows[static_cast<int64_t>(r) * n + i], acc);
  }
  x[static_cast<int64_t>(t) * n + i] += acc;
}

unsigned Blocks(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 16 ? 65535 * 16 : b));
}

}  // namespace

int GemmAvailable() { return GetCublas().create != nullptr ? 1 : 0; }

namespace {

// Dequantizes n_rows rows into out (F16 when f16, else float32).
int Dequantize(uint32_t type, const void* w, uint64_t row_bytes, int64_t n_in, int64_t n_rows, void* out, bool f16,
               void* stream) {
  if (w == nullptr || out == nullptr || n_in <= 0 || n_in % 32 != 0 || n_rows < 0 ||
      reinterpret_cast<uintptr_t>(out) % 16 != 0) {
    return Fail(MOED_CUDA_EINVAL, "dequantize_f16: bad sizes or pointers (rows a multiple of 32 weights)");
  }
  if (n_rows == 0) return 0;
  const int n_units = static_cast<int>(n_in / 32);
  const unsigned grid = static_cast<unsigned>((n_rows * n_units + kThreads - 1) / kThreads);
  const auto s = static_cast<cudaStream_t>(stream);
  const auto* wb = static_cast<const uint8_t*>(w);
  return WithBlockType("dequantize_f16", type, [&](auto q) {
    using Q = decltype(q);
    if constexpr (std::is_same_v<Q, BlockIq3Xxs>) {
      if (const int err = EnsureIq3XxsGrid()) return err;
    }
    if (row_bytes != static_cast<uint64_t>(n_in / Q::kWeights * Q::kBytes) || n_in % Q::kWeights != 0 ||
        reinterpret_cast<uintptr_t>(w) % Q::kAlign != 0 || row_bytes % Q::kAlign != 0) {
      return Fail(MOED_CUDA_EINVAL, "dequantize_f16: row_bytes or alignment do not fit the type");
    }
    if (f16) {
      DequantizeKernel<Q, __half><<<grid, kThreads, 0, s>>>(wb, row_bytes, n_units, n_rows, static_cast<__half*>(out));
    } else {
      DequantizeKernel<Q, float><<<grid, kThreads, 0, s>>>(wb, row_bytes, n_units, n_rows, static_cast<float*>(out));
    }
    return FailCuda(cudaGetLastError(), "dequantize launch");
  });
}

}  // namespace

int DequantizeF16Launch(uint32_t type, const void* w, uint64_t row_bytes, int64_t n_in, int64_t n_rows, void* out,
                        void* stream) {
  return Dequantize(type, w, row_bytes, n_in, n_rows, out, /*f16=*/true, stream);
}

int GemmLaunch(const MoedCudaGemmArgs& a, void* stream) {
  const Cublas& cublas = GetCublas();
  if (cublas.create == nullptr) return Fail(MOED_CUDA_EINVAL, "gemm: " + cublas.error);
  if (a.n_in <= 0 || a.n_in % 32 != 0 || a.n_out <= 0 || a.n_tokens < 0 || a.n_in > (1 << 30) ||
      a.n_out > (1 << 30) || a.n_tokens > (1 << 30) || a.x == nullptr || a.y == nullptr || a.scratch == nullptr ||
      (a.w == nullptr && a.w_f16 == nullptr) || (a.precision != MOED_CUDA_GEMM_F16 && a.precision != MOED_CUDA_GEMM_F32) ||
      (a.precision == MOED_CUDA_GEMM_F32 && a.w_f16 != nullptr)) {
    return Fail(MOED_CUDA_EINVAL, "gemm: bad sizes, precision or null pointers (rows a multiple of 32 weights)");
  }
  if (a.n_tokens == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  cublasHandle_t handle;
  if (const int err = Handle(&handle)) return err;
  if (cublas.set_stream(handle, s) != CUBLAS_STATUS_SUCCESS) return Fail(MOED_CUDA_EINVAL, "cublasSetStream failed");
  // Row-major Y[t][o] is column-major (n_out x n_tokens); W row-major [n_out][n_in] is column-major
  // (n_in x n_out), so Y = op_T(W) * X with k = n_in.
  const float alpha = 1.0f, beta = 0.0f;
  const int m = static_cast<int>(a.n_out), n = static_cast<int>(a.n_tokens), k = static_cast<int>(a.n_in);
  if (a.precision == MOED_CUDA_GEMM_F32) {
    if (a.scratch_bytes < 4 * a.n_out * a.n_in) {
      return Fail(MOED_CUDA_EINVAL, "gemm: scratch of " + std::to_string(a.scratch_bytes) + " bytes, " +
                                        std::to_string(4 * a.n_out * a.n_in) + " needed");
    }
    if (const int err = Dequantize(a.ggml_type, a.w, a.row_bytes, a.n_in, a.n_out, a.scratch, false, stream)) return err;
    const cublasStatus_t st = cublas.gemm_ex(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, a.scratch, CUDA_R_32F, k,
                                             a.x, CUDA_R_32F, k, &beta, a.y, CUDA_R_32F, m, CUBLAS_COMPUTE_32F,
                                             CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS) return Fail(MOED_CUDA_EINVAL, "cublasGemmEx failed: " + std::to_string(st));
    return 0;
  }
  const int64_t w_halves = a.w_f16 != nullptr ? 0 : a.n_out * a.n_in;
  const int64_t need = 2 * (w_halves + a.n_tokens * a.n_in) + 256;
  if (a.scratch_bytes < need) {
    return Fail(MOED_CUDA_EINVAL, "gemm: scratch of " + std::to_string(a.scratch_bytes) + " bytes, " +
                                      std::to_string(need) + " needed");
  }
  auto* w16 = static_cast<__half*>(a.scratch);
  auto* x16 = reinterpret_cast<__half*>((reinterpret_cast<uintptr_t>(w16 + w_halves) + 255) / 256 * 256);
  const void* w = a.w_f16;
  if (w == nullptr) {
    if (const int err = DequantizeF16Launch(a.ggml_type, a.w, a.row_bytes, a.n_in, a.n_out, w16, stream)) return err;
    w = w16;
  }
  ToF16Kernel<<<Blocks(a.n_tokens * a.n_in), kThreads, 0, s>>>(a.x, a.n_tokens * a.n_in, x16);
  if (const int err = FailCuda(cudaGetLastError(), "gemm: to_f16 launch")) return err;
  const cublasStatus_t st = cublas.gemm_ex(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, w, CUDA_R_16F, k, x16,
                                           CUDA_R_16F, k, &beta, a.y, CUDA_R_32F, m, CUBLAS_COMPUTE_32F,
                                           CUBLAS_GEMM_DEFAULT);
  if (st != CUBLAS_STATUS_SUCCESS) return Fail(MOED_CUDA_EINVAL, "cublasGemmEx failed: " + std::to_string(st));
  return 0;
}

int MoeCombineLaunch(float* x, const float* rows, const int32_t* row_of, const float* weights, int64_t n_tokens,
                     int32_t top_k, int64_t n, void* stream) {
  if (x == nullptr || rows == nullptr || row_of == nullptr || weights == nullptr || n_tokens < 0 ||
      n_tokens > 65535 || top_k < 1 || n < 0) {
    return Fail(MOED_CUDA_EINVAL, "moe_combine: bad sizes or null pointers");
  }
  if (n_tokens == 0 || n == 0) return 0;
  const dim3 grid(static_cast<unsigned>((n + kThreads - 1) / kThreads), static_cast<unsigned>(n_tokens));
  MoeCombineKernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, rows, row_of, weights, top_k, n);
  return FailCuda(cudaGetLastError(), "moe_combine launch");
}

}  // namespace moed::cuda

// Quantized GEMV for decode: y[t][o] = sum_i W[o][i] * x[t][i] for a few tokens (1..8), the
// weights in their GGUF block format in device memory, x and y float32. CPU twin: MatMul /
// MatMulReference (kernels/cpu/matmul.h); test: cuda_gemv_test.cc; numbers: NOTES.md.
//
// Design. One warp computes R adjacent output rows (R = 2 for 1-2 tokens, 4 for 4-8) for every
// token. Lane l handles the 32-weight units l, l + 32, ... of the row: it loads the unit's x
// values of up to 4 tokens into registers once, then for each of its R rows decodes the unit
// into registers (quants.cuh: bit-exact with the CPU dequantizers) and accumulates the dot
// products in float32; a butterfly of shuffles sums the lanes. Consecutive lanes read
// consecutive units, so a warp's loads cover a contiguous span of each row (coalesced).
// x costs 4 * T / R bytes of L1 traffic per weight,
// which at 8 tokens is the limit of this kernel: quantizing x to Q8 (dp4a) or staging it in
// shared memory in persistent CTAs is the next step (NOTES.md).
// n_matrices > 1 runs a strided batch of matrices (e.g. selected experts) in one launch
// (blockIdx.y), which is how small expert matrices avoid paying one launch each.
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <type_traits>

#include "kernels/cuda/ops.h"
#include "kernels/cuda/quants.cuh"

namespace moed::cuda {
namespace {

constexpr int kWarps = 4;  // warps per CTA
constexpr int kThreads = 32 * kWarps;

struct GemvParams {
  const uint8_t* w;
  uint64_t row_bytes;
  int n_units;  // 32-weight units per row
  int n_out;
  int64_t n_in;
  const float* x;
  float* y;
  int n_tokens;
  uint64_t w_matrix_stride;
  int64_t x_matrix_stride;
  int64_t y_matrix_stride;
};

// T: tokens rounded up to 1, 2, 4, 8; R: rows per warp. Each lane holds the x values of its
// unit for up to 4 tokens in registers (G) and reuses them for all R rows, so x costs
// 4 * T / R bytes of L1 traffic per weight instead of 4 * T.
template <class Q, int T, int R>
__global__ void __launch_bounds__(kThreads) GemvKernel(GemvParams p) {
  constexpr int G = T < 4 ? T : 4;  // tokens per register group
  const int m = blockIdx.y;
  const uint8_t* w = p.w + m * p.w_matrix_stride;
  const float* x = p.x + m * p.x_matrix_stride;
  float* y = p.y + m * p.y_matrix_stride;
  const int lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * R;
  if (row0 >= p.n_out) return;  // whole warps only; no block-level synchronisation below

  const uint8_t* rows[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    // Rows past the end decode the last row again; their sums are never written.
    rows[r] = w + static_cast<uint64_t>(min(row0 + r, p.n_out - 1)) * p.row_bytes;
  }
  float acc[R][T];
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int t = 0; t < T; ++t) acc[r][t] = 0.0f;
  }

  for (int u = lane; u < p.n_units; u += 32) {
#pragma unroll
    for (int tg = 0; tg < T; tg += G) {
      if (tg < p.n_tokens) {
        float xv[G][32];
#pragma unroll
        for (int g = 0; g < G; ++g) {
          const float4* xp = reinterpret_cast<const float4*>(x + (tg + g) * p.n_in) + 8 * u;
#pragma unroll
          for (int k = 0; k < 8; ++k) {
            const float4 v = tg + g < p.n_tokens ? __ldg(xp + k) : make_float4(0, 0, 0, 0);
            xv[g][4 * k] = v.x, xv[g][4 * k + 1] = v.y, xv[g][4 * k + 2] = v.z,
                    xv[g][4 * k + 3] = v.w;
          }
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float wv[32];
          Q::Decode32(rows[r], u, wv);
#pragma unroll
          for (int g = 0; g < G; ++g) {
            float a = acc[r][tg + g];
#pragma unroll
            for (int k = 0; k < 32; ++k) a = fmaf(wv[k], xv[g][k], a);
            acc[r][tg + g] = a;
          }
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int t = 0; t < T; ++t) {
      float v = acc[r][t];
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
      if (lane == 0 && row0 + r < p.n_out && t < p.n_tokens) {
        y[static_cast<int64_t>(t) * p.n_out + row0 + r] = v;
      }
    }
  }
}

// Rows of a plain float type whose length is not a multiple of 32 (small test models): one warp
// per output row, lanes strided over the row. Correct everywhere, fast nowhere.
__global__ void __launch_bounds__(kThreads) GemvPlainKernel(uint32_t type, GemvParams p) {
  const int m = blockIdx.y;
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (row >= p.n_out) return;
  const uint8_t* w = p.w + m * p.w_matrix_stride + static_cast<uint64_t>(row) * p.row_bytes;
  const float* x = p.x + m * p.x_matrix_stride;
  float acc[MOED_CUDA_MAX_GEMV_TOKENS] = {};
  for (int64_t i = lane; i < p.n_in; i += 32) {
    const float wv = LoadPlain(type, w, i);
#pragma unroll
    for (int t = 0; t < MOED_CUDA_MAX_GEMV_TOKENS; ++t) {
      if (t < p.n_tokens) acc[t] = fmaf(wv, x[t * p.n_in + i], acc[t]);
    }
  }
#pragma unroll
  for (int t = 0; t < MOED_CUDA_MAX_GEMV_TOKENS; ++t) {
    float v = acc[t];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0 && t < p.n_tokens) p.y[m * p.y_matrix_stride + static_cast<int64_t>(t) * p.n_out + row] = v;
  }
}

template <class Q, int T, int R>
int LaunchTiled(const GemvParams& p, int64_t n_out, int n_matrices, void* stream) {
  const int64_t rows_per_cta = kWarps * R;
  const dim3 grid(static_cast<unsigned>((n_out + rows_per_cta - 1) / rows_per_cta),
                  static_cast<unsigned>(n_matrices));
  GemvKernel<Q, T, R><<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(p);
  return FailCuda(cudaGetLastError(), "gemv launch");
}

GemvParams ParamsOf(const MoedCudaGemvArgs& a) {
  GemvParams p;
  p.w = static_cast<const uint8_t*>(a.w);
  p.row_bytes = a.row_bytes;
  p.n_units = static_cast<int>(a.n_in / 32);
  p.n_out = static_cast<int>(a.n_out);
  p.n_in = a.n_in;
  p.x = a.x;
  p.y = a.y;
  p.n_tokens = a.n_tokens;
  p.w_matrix_stride = a.w_matrix_stride_bytes;
  p.x_matrix_stride = a.x_matrix_stride;
  p.y_matrix_stride = a.y_matrix_stride;
  return p;
}

int LaunchPlain(const MoedCudaGemvArgs& a, void* stream) {
  const int64_t bytes = PlainBytes(a.ggml_type);
  if (a.row_bytes != static_cast<uint64_t>(a.n_in * bytes) ||
      reinterpret_cast<uintptr_t>(a.w) % bytes != 0 || a.w_matrix_stride_bytes % bytes != 0) {
    return Fail(MOED_CUDA_EINVAL, "gemv: n_in=" + std::to_string(a.n_in) + " row_bytes=" +
                                      std::to_string(a.row_bytes) + " do not fit the type");
  }
  const dim3 grid(static_cast<unsigned>((a.n_out + kWarps - 1) / kWarps), static_cast<unsigned>(a.n_matrices));
  GemvPlainKernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a.ggml_type, ParamsOf(a));
  return FailCuda(cudaGetLastError(), "gemv launch");
}

template <class Q>
int Launch(const MoedCudaGemvArgs& a, void* stream) {
  const int64_t n_blocks = a.n_in / Q::kWeights;
  if (a.n_in % 32 != 0 || a.n_in % Q::kWeights != 0 ||
      a.row_bytes != static_cast<uint64_t>(n_blocks * Q::kBytes)) {
    return Fail(MOED_CUDA_EINVAL, "gemv: n_in=" + std::to_string(a.n_in) + " row_bytes=" +
                                      std::to_string(a.row_bytes) + " do not fit the type");
  }
  const auto w_addr = reinterpret_cast<uintptr_t>(a.w);
  if (w_addr % Q::kAlign != 0 || a.row_bytes % Q::kAlign != 0 ||
      (a.n_matrices > 1 && a.w_matrix_stride_bytes % Q::kAlign != 0)) {
    return Fail(MOED_CUDA_EINVAL,
                "gemv: weights not aligned to " + std::to_string(Q::kAlign) + " bytes");
  }
  if (reinterpret_cast<uintptr_t>(a.x) % 16 != 0 || a.x_matrix_stride % 4 != 0) {
    return Fail(MOED_CUDA_EINVAL, "gemv: x must be 16-byte aligned");
  }
  const GemvParams p = ParamsOf(a);
  // Rows per warp: 2 for 1-2 tokens (more warps in flight, measured faster than 8), 4 for 4-8
  // (more reuse of the x registers).
  if (a.n_tokens <= 1) return LaunchTiled<Q, 1, 2>(p, a.n_out, a.n_matrices, stream);
  if (a.n_tokens <= 2) return LaunchTiled<Q, 2, 2>(p, a.n_out, a.n_matrices, stream);
  if (a.n_tokens <= 4) return LaunchTiled<Q, 4, 4>(p, a.n_out, a.n_matrices, stream);
  return LaunchTiled<Q, 8, 4>(p, a.n_out, a.n_matrices, stream);
}

}  // namespace

bool GemvSupportsType(uint32_t ggml_type) {
  switch (ggml_type) {
    case kF32: case kF16: case kBf16: case kQ8_0: case kQ3_K: case kQ4_K: case kQ5_K: case kQ6_K:
    case kIq3Xxs: case kIq4Xs: case kMxfp4: case kNvfp4: case kIq3A770:
      return true;
    default:
      return false;
  }
}

// The one dispatch point of the GEMV family.
int GemvLaunch(const MoedCudaGemvArgs& a, void* stream) {
  if (a.n_tokens < 1 || a.n_tokens > MOED_CUDA_MAX_GEMV_TOKENS) {
    return Fail(MOED_CUDA_EINVAL, "gemv: n_tokens must be 1.." +
                                      std::to_string(MOED_CUDA_MAX_GEMV_TOKENS) + ", got " +
                                      std::to_string(a.n_tokens));
  }
  if (a.n_in <= 0 || a.n_out < 0 || a.n_out > (int64_t{1} << 30) || a.n_in > (int64_t{1} << 30) ||
      a.n_matrices < 1 || a.n_matrices > 65535 || a.w == nullptr || a.x == nullptr ||
      a.y == nullptr) {
    return Fail(MOED_CUDA_EINVAL, "gemv: bad sizes or null pointers");
  }
  if (a.n_out == 0) return 0;
  const bool aligned = reinterpret_cast<uintptr_t>(a.x) % 16 == 0 && a.x_matrix_stride % 4 == 0 &&
                       reinterpret_cast<uintptr_t>(a.w) % 16 == 0 && a.row_bytes % 16 == 0 &&
                       a.w_matrix_stride_bytes % 16 == 0;
  if (IsPlainType(a.ggml_type) && (a.n_in % 32 != 0 || !aligned)) return LaunchPlain(a, stream);
  return WithBlockType("gemv", a.ggml_type, [&](auto q) {
    using Q = decltype(q);
    if constexpr (std::is_same_v<Q, BlockIq3Xxs>) {
      if (const int err = EnsureIq3XxsGrid()) return err;
    }
    return Launch<Q>(a, stream);
  });
}

}  // namespace moed::cuda

// RMSNorm: y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, one CTA per row. CPU twin: moed::cpu::RmsNorm
// (kernels/cpu/norm.h), which sums the squares in double; here the sum is float32 over
// 256 strided partial sums and a shuffle tree, relative error ~1e-6 for rows of a few thousand.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/ops.h"

namespace moed::cuda {
namespace {

constexpr int kThreads = 256;

// z != nullptr: y = rmsnorm(x) * w * silu(z) (the gated norm of the DeltaNet output, §3.4 step 8).
__global__ void __launch_bounds__(kThreads)
    RmsNormKernel(const float* x, const float* w, const float* z, int64_t n, float eps, float* y) {
  const float* xr = x + blockIdx.x * n;
  float* yr = y + blockIdx.x * n;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) sum = fmaf(xr[i], xr[i], sum);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  __shared__ float partial[kThreads / 32];
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = sum;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int k = 0; k < kThreads / 32; ++k) total += partial[k];
  const float scale = 1.0f / sqrtf(total / static_cast<float>(n) + eps);
  // Every thread has read partial[] before any y is written, so y may alias x.
  const float* zr = z != nullptr ? z + blockIdx.x * n : nullptr;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    float v = w != nullptr ? xr[i] * scale * w[i] : xr[i] * scale;
    if (zr != nullptr) v *= zr[i] / (1.0f + expf(-zr[i]));
    yr[i] = v;
  }
}

}  // namespace

int RmsNormGatedLaunch(const float* x, const float* w, const float* z, int64_t n, int64_t n_rows, float eps,
                       float* y, void* stream) {
  if (n <= 0 || n_rows < 0 || n_rows > 0x7fffffff || x == nullptr || y == nullptr) {
    return Fail(MOED_CUDA_EINVAL, "rms_norm: bad sizes or null pointers");
  }
  if (n_rows == 0) return 0;
  RmsNormKernel<<<static_cast<unsigned>(n_rows), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      x, w, z, n, eps, y);
  return FailCuda(cudaGetLastError(), "rms_norm launch");
}

int RmsNormLaunch(const float* x, const float* w, int64_t n, int64_t n_rows, float eps, float* y,
                  void* stream) {
  return RmsNormGatedLaunch(x, w, nullptr, n, n_rows, eps, y, stream);
}

}  // namespace moed::cuda

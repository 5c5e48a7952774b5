// The small per-token ops between the matrix products of a qwen35moe layer: MoE routing (softmax,
// top-k, renormalise; qwen35moe.md §3.6), the Gated DeltaNet input split (§3.4 steps 3-6), SiLU
// gating, residual adds and row gathers. Each is memory- or latency-bound and tiny next to the
// weights; they exist so that a step never leaves the GPU. CPU twins: cpu::RouteTopK,
// cpu::L2Normalize and the loops of CpuStageEngine; test: cuda_ops_test.cc.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "kernels/cuda/ops.h"

namespace moed::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Block-wide reductions over kThreads threads (every thread gets the result).
__device__ float BlockMax(float v, float* scratch) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  float r = scratch[0];
  for (int w = 1; w < kThreads / 32; ++w) r = fmaxf(r, scratch[w]);
  return r;
}
__device__ float BlockSum(float v, float* scratch) {
  v = WarpSum(v);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  float r = 0.0f;
  for (int w = 0; w < kThreads / 32; ++w) r += scratch[w];
  return r;
}
// The largest (value, lower index on ties) over the block.
__device__ void BlockArgMax(float* v, int* i, float* sv, int* si) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, *v, off);
    const int oi = __shfl_xor_sync(0xffffffffu, *i, off);
    if (ov > *v || (ov == *v && oi < *i)) *v = ov, *i = oi;
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) sv[threadIdx.x >> 5] = *v, si[threadIdx.x >> 5] = *i;
  __syncthreads();
  *v = sv[0], *i = si[0];
  for (int w = 1; w < kThreads / 32; ++w) {
    if (sv[w] > *v || (sv[w] == *v && si[w] < *i)) *v = sv[w], *i = si[w];
  }
}

// grid (n_tokens); the token's probabilities live in dynamic shared memory.
__global__ void __launch_bounds__(kThreads)
    RouteTopKKernel(const float* logits, int n_expert, int k, int32_t* ids, float* weights) {
  extern __shared__ float p[];
  __shared__ float sv[kThreads / 32];
  __shared__ int si[kThreads / 32];
  const int t = blockIdx.x;
  const float* lt = logits + static_cast<int64_t>(t) * n_expert;
  float mx = -INFINITY;
  for (int e = threadIdx.x; e < n_expert; e += kThreads) mx = fmaxf(mx, lt[e]);
  mx = BlockMax(mx, sv);
  float sum = 0.0f;
  for (int e = threadIdx.x; e < n_expert; e += kThreads) {
    p[e] = expf(lt[e] - mx);
    sum += p[e];
  }
  const float inv = 1.0f / BlockSum(sum, sv);
  for (int e = threadIdx.x; e < n_expert; e += kThreads) p[e] = isnan(p[e]) ? -INFINITY : p[e] * inv;
  float selected = 0.0f;
  for (int r = 0; r < k; ++r) {
    float v = -INFINITY;
    int i = n_expert;
    for (int e = threadIdx.x; e < n_expert; e += kThreads) {
      if (p[e] > v || (p[e] == v && e < i)) v = p[e], i = e;
    }
    BlockArgMax(&v, &i, sv, si);
    if (i >= n_expert) i = r;  // every remaining p is -inf: take any unused id (never happens with finite logits)
    if (threadIdx.x == 0) {
      ids[t * k + r] = i;
      weights[t * k + r] = v;
    }
    selected += v > 0.0f ? v : 0.0f;
    __syncthreads();
    if (threadIdx.x == 0) p[i] = -INFINITY;
    __syncthreads();
  }
  // 2^-14: llama.cpp's floor on the renormalising sum (as cpu::RouteTopK).
  const float denom = fmaxf(selected, 6.103515625e-5f);
  if (threadIdx.x < k) weights[t * k + threadIdx.x] /= denom;
}

// grid (n_tokens): split the conv output into q, k, v, L2-normalise q (then scale) and k per
// head, and compute the decay g and the write strength beta per value head.
__global__ void __launch_bounds__(kThreads) DeltaNetPrepKernel(MoedCudaDeltaNetPrepArgs a) {
  const int t = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t key_dim = a.n_k_heads * a.dk, inner = a.n_v_heads * a.dv;
  const float* c = a.conv_out + static_cast<int64_t>(t) * (2 * key_dim + inner);
  for (int64_t h = warp; h < 2 * a.n_k_heads; h += kThreads / 32) {
    const bool is_q = h < a.n_k_heads;
    const int64_t hh = is_q ? h : h - a.n_k_heads;
    const float* src = c + (is_q ? 0 : key_dim) + hh * a.dk;
    float ss = 0.0f;
    for (int64_t d = lane; d < a.dk; d += 32) ss = fmaf(src[d], src[d], ss);
    const float scale = 1.0f / fmaxf(sqrtf(WarpSum(ss)), a.eps);
    float* dst = (is_q ? a.q : a.k) + static_cast<int64_t>(t) * key_dim + hh * a.dk;
    // As the CPU twin: normalise, then (q only) multiply by q_scale, rounding after each.
    for (int64_t d = lane; d < a.dk; d += 32) dst[d] = is_q ? (src[d] * scale) * a.q_scale : src[d] * scale;
  }
  for (int64_t i = threadIdx.x; i < inner; i += kThreads) a.v[static_cast<int64_t>(t) * inner + i] = c[2 * key_dim + i];
  for (int64_t j = threadIdx.x; j < a.n_v_heads; j += kThreads) {
    const int64_t gi = static_cast<int64_t>(t) * a.n_v_heads + j;
    const float x = a.alpha[gi] + a.dt_bias[j];
    const float softplus = x > 20.0f ? x : log1pf(expf(x));
    a.g[gi] = a.ssm_a[j] * softplus;
    a.beta[gi] = 1.0f / (1.0f + expf(-a.beta_logit[gi]));
  }
}

__global__ void SiluMulKernel(const float* gate, const float* up, int64_t n, float* y) {
  for (int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x; i < n; i += int64_t{gridDim.x} * kThreads) {
    const float g = gate[i];
    y[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void AddRowsKernel(float* x, const float* d, const float* gate_logits, int64_t n, int64_t n_rows) {
  const int64_t total = n * n_rows;
  for (int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x; i < total; i += int64_t{gridDim.x} * kThreads) {
    const float f = gate_logits != nullptr ? 1.0f / (1.0f + expf(-gate_logits[i / n])) : 1.0f;
    x[i] = fmaf(f, d[i], x[i]);
  }
}

__global__ void GatherRowsKernel(const float* src, const int32_t* rows, int64_t n, float* dst) {
  const float* s = src + static_cast<int64_t>(rows[blockIdx.x]) * n;
  float* o = dst + static_cast<int64_t>(blockIdx.x) * n;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) o[i] = s[i];
}

unsigned GridFor(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 4096 ? (blocks < 1 ? 1 : blocks) : 4096);
}

}  // namespace

int RouteTopKLaunch(const float* logits, int64_t n_tokens, int64_t n_expert, int32_t k, int32_t* ids,
                    float* weights, void* stream) {
  if (n_tokens < 0 || n_tokens > 65535 || n_expert < 1 || n_expert > 8192 || k < 1 || k > n_expert ||
      k > kThreads || logits == nullptr || ids == nullptr || weights == nullptr) {
    return Fail(MOED_CUDA_EINVAL, "route_topk: bad sizes or null pointers (n_expert 1..8192, k 1..min(n_expert, 256))");
  }
  if (n_tokens == 0) return 0;
  RouteTopKKernel<<<static_cast<unsigned>(n_tokens), kThreads, n_expert * sizeof(float),
                    static_cast<cudaStream_t>(stream)>>>(logits, static_cast<int>(n_expert), k, ids, weights);
  return FailCuda(cudaGetLastError(), "route_topk launch");
}

int DeltaNetPrepLaunch(const MoedCudaDeltaNetPrepArgs& a, void* stream) {
  if (a.n_tokens < 0 || a.n_k_heads < 1 || a.n_v_heads < 1 || a.dk < 1 || a.dv < 1 ||
      a.conv_out == nullptr || a.alpha == nullptr || a.beta_logit == nullptr || a.ssm_a == nullptr ||
      a.dt_bias == nullptr || a.q == nullptr || a.k == nullptr || a.v == nullptr || a.g == nullptr ||
      a.beta == nullptr) {
    return Fail(MOED_CUDA_EINVAL, "deltanet_prep: bad sizes or null pointers");
  }
  if (a.n_tokens == 0) return 0;
  DeltaNetPrepKernel<<<static_cast<unsigned>(a.n_tokens), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a);
  return FailCuda(cudaGetLastError(), "deltanet_prep launch");
}

int SiluMulLaunch(const float* gate, const float* up, int64_t n, float* y, void* stream) {
  if (n < 0 || gate == nullptr || up == nullptr || y == nullptr) {
    return Fail(MOED_CUDA_EINVAL, "silu_mul: bad size or null pointers");
  }
  if (n == 0) return 0;
  SiluMulKernel<<<GridFor(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(gate, up, n, y);
  return FailCuda(cudaGetLastError(), "silu_mul launch");
}

int AddRowsLaunch(float* x, const float* d, const float* gate_logits, int64_t n, int64_t n_rows, void* stream) {
  if (n < 0 || n_rows < 0 || x == nullptr || d == nullptr) {
    return Fail(MOED_CUDA_EINVAL, "add_rows: bad sizes or null pointers");
  }
  if (n * n_rows == 0) return 0;
  AddRowsKernel<<<GridFor(n * n_rows), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, d, gate_logits, n, n_rows);
  return FailCuda(cudaGetLastError(), "add_rows launch");
}

int GatherRowsLaunch(const float* src, const int32_t* rows, int64_t n_rows, int64_t n, float* dst, void* stream) {
  if (n_rows < 0 || n_rows > 0x7fffffff || n < 0 || src == nullptr || rows == nullptr || dst == nullptr) {
    return Fail(MOED_CUDA_EINVAL, "gather_rows: bad sizes or null pointers");
  }
  if (n_rows == 0 || n == 0) return 0;
  GatherRowsKernel<<<static_cast<unsigned>(n_rows), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(src, rows, n, dst);
  return FailCuda(cudaGetLastError(), "gather_rows launch");
}

}  // namespace moed::cuda

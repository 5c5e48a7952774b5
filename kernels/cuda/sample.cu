// logits_top: the summary of each logits row that greedy sampling and log-probabilities need (the
// best top_n logits with their ids, and log Σ exp), so that a decode step sends a few bytes per
// sequence to the host instead of its whole row (248,320 floats for Qwen3.5). CPU twin:
// moed::cpu::TopOfLogits (kernels/cpu/sampling.h), which sums in double; here each thread keeps
// an online (max, Σ exp) pair in float32, relative error ~1e-6. Test: cuda_layer_ops_test.cc.
//
// One CTA per row. Each thread scans its strided share (float4 loads when rows are 16-byte
// aligned), keeping its T best in registers as a sorted list; the CTA then merges the lists in
// top_n rounds, each taking the best head of any list. NaN counts as -inf and ties go to the
// lower id, as on the CPU.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/ops.h"

namespace moed::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kMaxTop = 20;  // sampling::kMaxTopLogprobs

struct Entry {
  float v;
  int32_t id;
};
__device__ __forceinline__ bool Better(float av, int32_t ai, float bv, int32_t bi) {
  return av > bv || (av == bv && ai < bi);
}

// A thread's T best, sorted, in registers (every index is static after unrolling).
template <int T>
struct TopList {
  Entry e[T];
  __device__ void Init() {
#pragma unroll
    for (int j = 0; j < T; ++j) e[j] = {-INFINITY, INT32_MAX};
  }
  __device__ __forceinline__ void Offer(float v, int32_t id) {
    if (!Better(v, id, e[T - 1].v, e[T - 1].id)) return;
    e[T - 1] = {v, id};
#pragma unroll
    for (int j = T - 1; j > 0; --j) {
      if (Better(e[j].v, e[j].id, e[j - 1].v, e[j - 1].id)) {
        const Entry t = e[j];
        e[j] = e[j - 1];
        e[j - 1] = t;
      }
    }
  }
  __device__ void Pop() {
#pragma unroll
    for (int j = 0; j < T - 1; ++j) e[j] = e[j + 1];
    e[T - 1] = {-INFINITY, INT32_MAX};
  }
};

// Online log-sum-exp: m the largest value seen, s = Σ exp(v - m). -inf values add nothing.
struct Lse {
  float m = -INFINITY, s = 0.0f;
  __device__ __forceinline__ void Add(float v) {
    if (v == -INFINITY) return;
    if (v > m) {
      s = (m == -INFINITY ? 0.0f : s * __expf(m - v)) + 1.0f;
      m = v;
    } else {
      s += v == m ? 1.0f : __expf(v - m);  // v == m == +inf would give exp(NaN)
    }
  }
  __device__ __forceinline__ void Merge(float om, float os) {
    if (os == 0.0f) return;
    if (s == 0.0f) {
      m = om, s = os;
    } else if (om > m) {
      s = s * __expf(m - om) + os, m = om;
    } else {
      s += om == m ? os : os * __expf(om - m);
    }
  }
};

template <int T>
__global__ void __launch_bounds__(kThreads)
    LogitsTopKernel(const float* logits, int64_t n_vocab, int top_n, int32_t* ids, float* values, float* lse) {
  const float* row = logits + blockIdx.x * n_vocab;
  TopList<T> top;
  top.Init();
  Lse acc;
  auto take = [&](float v, int32_t id) {
    if (isnan(v)) v = -INFINITY;
    acc.Add(v);
    top.Offer(v, id);
  };
  int64_t tail = 0;
  if (n_vocab % 4 == 0 && reinterpret_cast<uintptr_t>(logits) % 16 == 0) {
    const float4* row4 = reinterpret_cast<const float4*>(row);
    for (int64_t i = threadIdx.x; i < n_vocab / 4; i += kThreads) {
      const float4 q = __ldg(row4 + i);
      const auto id = static_cast<int32_t>(4 * i);
      take(q.x, id), take(q.y, id + 1), take(q.z, id + 2), take(q.w, id + 3);
    }
    tail = n_vocab;
  }
  for (int64_t i = tail + threadIdx.x; i < n_vocab; i += kThreads) take(__ldg(row + i), static_cast<int32_t>(i));

  __shared__ float s_m[kThreads / 32], s_s[kThreads / 32];
  __shared__ float s_v[kThreads / 32];
  __shared__ int32_t s_id[kThreads / 32], s_lane[kThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  // Log-sum-exp: shuffle tree, then across warps.
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const float om = __shfl_xor_sync(0xffffffffu, acc.m, off), os = __shfl_xor_sync(0xffffffffu, acc.s, off);
    acc.Merge(om, os);
  }
  if (lane == 0) s_m[warp] = acc.m, s_s[warp] = acc.s;
  __syncthreads();
  if (threadIdx.x == 0) {
    Lse all;
    for (int w = 0; w < kThreads / 32; ++w) all.Merge(s_m[w], s_s[w]);
    // No finite maximum (all -inf, or +inf present): no distribution, as cpu::TopOfLogits says.
    lse[blockIdx.x] = isfinite(all.m) ? all.m + logf(all.s) : -INFINITY;
  }

  // top_n rounds: the best head of all lists wins and its thread pops it.
  for (int r = 0; r < top_n; ++r) {
    float v = top.e[0].v;
    int32_t id = top.e[0].id, who = threadIdx.x;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, v, off);
      const int32_t oid = __shfl_xor_sync(0xffffffffu, id, off), owho = __shfl_xor_sync(0xffffffffu, who, off);
      if (Better(ov, oid, v, id)) v = ov, id = oid, who = owho;
    }
    __syncthreads();  // the previous round's readers are done with s_v / s_id / s_lane
    if (lane == 0) s_v[warp] = v, s_id[warp] = id, s_lane[warp] = who;
    __syncthreads();
    v = s_v[0], id = s_id[0], who = s_lane[0];
    for (int w = 1; w < kThreads / 32; ++w) {
      if (Better(s_v[w], s_id[w], v, id)) v = s_v[w], id = s_id[w], who = s_lane[w];
    }
    if (threadIdx.x == 0) {
      ids[blockIdx.x * top_n + r] = id;
      values[blockIdx.x * top_n + r] = v;
    }
    if (threadIdx.x == who) top.Pop();
  }
}

}  // namespace

int LogitsTopLaunch(const float* logits, int64_t n_rows, int64_t n_vocab, int32_t top_n, int32_t* ids,
                    float* values, float* log_sum_exp, void* stream) {
  if (logits == nullptr || ids == nullptr || values == nullptr || log_sum_exp == nullptr) {
    return Fail(MOED_CUDA_EINVAL, "logits_top: null pointers");
  }
  if (n_rows < 0 || n_rows > 0x7fffffff || n_vocab <= 0 || n_vocab > INT32_MAX || top_n < 1 || top_n > kMaxTop ||
      top_n > n_vocab) {
    return Fail(MOED_CUDA_EINVAL, "logits_top: bad sizes (top_n must be in [1, min(20, n_vocab)])");
  }
  if (n_rows == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  const auto grid = static_cast<unsigned>(n_rows);
  if (top_n == 1) {
    LogitsTopKernel<1><<<grid, kThreads, 0, s>>>(logits, n_vocab, top_n, ids, values, log_sum_exp);
  } else {
    LogitsTopKernel<kMaxTop><<<grid, kThreads, 0, s>>>(logits, n_vocab, top_n, ids, values, log_sum_exp);
  }
  return FailCuda(cudaGetLastError(), "logits_top launch");
}

}  // namespace moed::cuda

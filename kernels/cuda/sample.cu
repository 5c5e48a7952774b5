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
//
// logits_draw: cpu::DrawFromRow on the device, bit for bit (sampling.h says why it can be): the
// same rounded double operations in the same order for each weight (the _rn intrinsics forbid
// FMA contraction), integer sums, and the same first crossing. One CTA per row: the row's maximum;
// then the row cut into at most 1,024 chunks of 32 J elements, each summed by one warp (coalesced
// loads); warp 0 finds the chunk where the cumulative sum crosses the target and scans it 32
// elements at a time.
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

constexpr int kDrawThreads = 512;
constexpr int kDrawChunks = 1024;  // at most this many chunks per row
constexpr int64_t kMaxDrawVocab = int64_t{1} << 23;  // cpu::kMaxDrawVocab

// cpu::DrawWeight's operations, one by one (rint here, an add and subtract of 1.5 * 2^52 there:
// both round to nearest even, so n is the same).
__device__ __forceinline__ uint64_t DrawWeight(float x) {
  constexpr double kLog2e = 1.4426950408889634;
  constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  if (!(x > -27.7f)) return 0;
  const double xd = x;
  const double n = rint(__dmul_rn(xd, kLog2e));
  const double r = __dsub_rn(__dsub_rn(xd, __dmul_rn(n, kLn2Hi)), __dmul_rn(n, kLn2Lo));
  double p = 1.0 / 5040;
  p = __dadd_rn(__dmul_rn(p, r), 1.0 / 720);
  p = __dadd_rn(__dmul_rn(p, r), 1.0 / 120);
  p = __dadd_rn(__dmul_rn(p, r), 1.0 / 24);
  p = __dadd_rn(__dmul_rn(p, r), 1.0 / 6);
  p = __dadd_rn(__dmul_rn(p, r), 0.5);
  p = __dadd_rn(__dmul_rn(p, r), 1.0);
  p = __dadd_rn(__dmul_rn(p, r), 1.0);
  const double scale = __longlong_as_double(static_cast<long long>(static_cast<int>(n) + 40 + 1023) << 52);
  return __double2ull_rz(__dmul_rn(p, scale));
}

__device__ __forceinline__ float DrawValue(const float* row, int64_t i) {
  const float v = __ldg(row + i);
  return isnan(v) ? -INFINITY : v;
}

__device__ __forceinline__ uint64_t WarpInclusiveSum(uint64_t v, int lane) {
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const uint64_t o = __shfl_up_sync(0xffffffffu, v, off);
    if (lane >= off) v += o;
  }
  return v;
}

__global__ void __launch_bounds__(kDrawThreads)
    LogitsDrawKernel(const float* logits, int64_t n_vocab, const MoedCudaRowDraw* draws, int32_t* ids, float* values) {
  const MoedCudaRowDraw d = draws[blockIdx.x];
  if (d.skip != 0) return;
  const float* row = logits + blockIdx.x * n_vocab;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __shared__ float s_v[kDrawThreads / 32];
  __shared__ int32_t s_id[kDrawThreads / 32];
  __shared__ uint64_t s_chunk[kDrawChunks];
  __shared__ int64_t s_found;
  __shared__ uint64_t s_target;

  // The argmax, NaN as -inf, ties to the lower id.
  float v = -INFINITY;
  int32_t id = INT32_MAX;
  for (int64_t i = threadIdx.x; i < n_vocab; i += kDrawThreads) {
    const float x = DrawValue(row, i);
    if (Better(x, static_cast<int32_t>(i), v, id)) v = x, id = static_cast<int32_t>(i);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, off);
    const int32_t oid = __shfl_xor_sync(0xffffffffu, id, off);
    if (Better(ov, oid, v, id)) v = ov, id = oid;
  }
  if (lane == 0) s_v[warp] = v, s_id[warp] = id;
  __syncthreads();
  v = s_v[0], id = s_id[0];
  for (int w = 1; w < kDrawThreads / 32; ++w) {
    if (Better(s_v[w], s_id[w], v, id)) v = s_v[w], id = s_id[w];
  }
  const float max_logit = v;
  const int32_t best = id;
  if (!isfinite(max_logit)) {
    if (threadIdx.x == 0) ids[blockIdx.x] = best, values[blockIdx.x] = max_logit;
    return;
  }
  const float min_logit = __fadd_rn(max_logit, d.log_min_p);
  auto weight = [&](int64_t i) -> uint64_t {
    const float l = DrawValue(row, i);
    return l >= min_logit ? DrawWeight(__fmul_rn(__fsub_rn(l, max_logit), d.inv_temperature)) : 0;
  };

  // Chunk sums: chunk c is [32 J c, 32 J (c + 1)), one warp each.
  const int64_t per_lane = (n_vocab + 32 * kDrawChunks - 1) / (32 * kDrawChunks);  // J
  const int64_t chunk = 32 * per_lane;
  const int n_chunks = static_cast<int>((n_vocab + chunk - 1) / chunk);
  for (int c = warp; c < n_chunks; c += kDrawThreads / 32) {
    uint64_t sum = 0;
    for (int64_t i = c * chunk + lane; i < min(n_vocab, (c + 1) * chunk); i += 32) sum += weight(i);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0) s_chunk[c] = sum;
  }
  __syncthreads();
  if (warp != 0) return;

  // Lane l owns chunks [P l, P l + P): their total, the lanes' prefix sums, the grand total.
  const int per = (n_chunks + 31) / 32;
  const int c0 = min(n_chunks, per * lane), c1 = min(n_chunks, c0 + per);
  uint64_t mine = 0;
  for (int c = c0; c < c1; ++c) mine += s_chunk[c];
  const uint64_t inclusive = WarpInclusiveSum(mine, lane);
  const uint64_t total = __shfl_sync(0xffffffffu, inclusive, 31);
  if (total == 0) {
    if (lane == 0) ids[blockIdx.x] = best, values[blockIdx.x] = max_logit;
    return;
  }
  // Past the last boundary (u times the rounded total): the last token with weight.
  const uint64_t target =
      min(static_cast<uint64_t>(__double2ull_rz(__dmul_rn(d.u, __ull2double_rn(total)))), total - 1);
  const uint64_t before = inclusive - mine;
  if (before <= target && target < inclusive) {
    uint64_t at = before;
    for (int c = c0; c < c1; ++c) {
      if (target < at + s_chunk[c]) {
        s_found = c, s_target = target - at;
        break;
      }
      at += s_chunk[c];
    }
  }
  __syncwarp();
  const int64_t c = s_found;
  const uint64_t rest = s_target;
  uint64_t at = 0;
  for (int64_t base = c * chunk; base < min(n_vocab, (c + 1) * chunk); base += 32) {
    const int64_t i = base + lane;
    const uint64_t w = i < n_vocab ? weight(i) : 0;
    const uint64_t cum = at + WarpInclusiveSum(w, lane);
    const unsigned crossed = __ballot_sync(0xffffffffu, rest < cum);
    if (crossed != 0) {
      if (lane == __ffs(crossed) - 1) ids[blockIdx.x] = static_cast<int32_t>(i), values[blockIdx.x] = DrawValue(row, i);
      return;
    }
    at = __shfl_sync(0xffffffffu, cum, 31);
  }
}

}  // namespace

int LogitsDrawLaunch(const float* logits, int64_t n_rows, int64_t n_vocab, const MoedCudaRowDraw* draws,
                     int32_t* ids, float* values, void* stream) {
  if (logits == nullptr || draws == nullptr || ids == nullptr || values == nullptr) {
    return Fail(MOED_CUDA_EINVAL, "logits_draw: null pointers");
  }
  if (n_rows < 0 || n_rows > 0x7fffffff || n_vocab <= 0 || n_vocab > kMaxDrawVocab) {
    return Fail(MOED_CUDA_EINVAL, "logits_draw: bad sizes (n_vocab must be in [1, 2^23])");
  }
  if (n_rows == 0) return 0;
  LogitsDrawKernel<<<static_cast<unsigned>(n_rows), kDrawThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      logits, n_vocab, draws, ids, values);
  return FailCuda(cudaGetLastError(), "logits_draw launch");
}

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

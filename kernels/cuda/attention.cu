// Gated softmax attention of qwen35moe (qwen35moe.md §3.3) on the paged KV cache: the input
// preparation (per-head RMSNorm of q and k, RoPE, K/V written to their cache rows) and the
// attention itself with the output gate. CPU twins: cpu::RmsNorm + cpu::RopeMultiNeox and
// cpu::AttentionPaged followed by o *= sigmoid(gate); test: cuda_layer_ops_test.cc.
//
// Attention: a CTA per (token, kv head, key range) serves all the query heads of the kv head, so
// K and V rows are read once per group; long contexts with few tokens split the keys across CTAs
// (split-K) and a second launch merges the splits. Prefill and decode use the same kernel: each
// token attends to its own causal prefix, which the prep launch has already written to the cache.
// Details at AttentionKernel.
//
// The K/V pools hold float32 or binary16 elements (MOED_CUDA_KV_*): both kernels are templates on
// the element type, and only the loads and stores of cache rows differ (LoadKv, ToFloat, StoreKv).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/cuda/ops.h"

namespace moed::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kMaxHeadDim = 512;         // attention_prep
constexpr int kMaxHeadDimGrouped = 256;  // attention: per-lane registers for kGroup heads
constexpr int kPerLane = kMaxHeadDimGrouped / 32;
constexpr int kGroup = 8;                // query heads per CTA (those of one kv head)
constexpr int kKeysPerSplit = 256;

// Cache elements in and out; the arithmetic is float32 whatever the pools hold. Loads return the
// raw element, widened by ToFloat once all of a row's loads are issued. F16 rounds to nearest even
// (as moed::Fp32ToFp16 on the host, so both sides of a snapshot agree).
__device__ __forceinline__ float LoadKv(const float* p) { return __ldg(p); }
__device__ __forceinline__ __half LoadKv(const __half* p) { return __ldg(p); }
__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }
__device__ __forceinline__ void StoreKv(float* p, float v) { *p = v; }
__device__ __forceinline__ void StoreKv(__half* p, float v) { *p = __float2half_rn(v); }

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// grid (n_tokens); each warp normalises and rotates whole heads (query heads, then kv heads).
// KvT: the pools' element type (float or __half).
constexpr int kPrepWarps = 8;
template <class KvT>
__global__ void __launch_bounds__(32 * kPrepWarps) AttentionPrepKernel(MoedCudaAttentionPrepArgs a) {
  __shared__ float head[kPrepWarps][kMaxHeadDim];
  const int t = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int hd = static_cast<int>(a.head_dim), rot_half = static_cast<int>(a.n_rot / 2);
  const float pos = static_cast<float>(a.positions[t]);
  const int64_t kv_row = a.kv_rows[t];
  KvT* const k_cache = reinterpret_cast<KvT*>(a.k_cache);
  KvT* const v_cache = reinterpret_cast<KvT*>(a.v_cache);
  float* sh = head[warp];
  for (int h = warp; h < a.n_heads + a.n_kv_heads; h += kPrepWarps) {
    const bool is_q = h < a.n_heads;
    const int hh = is_q ? h : h - static_cast<int>(a.n_heads);
    const float* src = is_q ? a.qg + (static_cast<int64_t>(t) * a.n_heads + hh) * 2 * hd
                            : a.k + (static_cast<int64_t>(t) * a.n_kv_heads + hh) * hd;
    const float* w = is_q ? a.q_norm : a.k_norm;
    float ss = 0.0f;
    for (int d = lane; d < hd; d += 32) {
      const float x = src[d];
      sh[d] = x;
      ss = fmaf(x, x, ss);
    }
    const float scale = 1.0f / sqrtf(WarpSum(ss) / static_cast<float>(hd) + a.eps);
    __syncwarp();
    for (int d = lane; d < hd; d += 32) sh[d] = sh[d] * scale * w[d];
    __syncwarp();
    float* const q_dst = is_q ? a.q + (static_cast<int64_t>(t) * a.n_heads + hh) * hd : nullptr;
    KvT* const k_dst = is_q ? nullptr : k_cache + kv_row * a.n_kv_heads * hd + static_cast<int64_t>(hh) * hd;
    for (int d = lane; d < hd; d += 32) {
      float out = sh[d];
      if (d < 2 * rot_half) {
        // theta_i = pos * theta_scale^i, built by repeated multiplication as ggml and the CPU twin do.
        const int i = d < rot_half ? d : d - rot_half;
        float theta = pos;
        for (int j = 0; j < i; ++j) theta *= a.theta_scale;
        const float c = cosf(theta), s = sinf(theta);
        out = d < rot_half ? sh[d] * c - sh[d + rot_half] * s : sh[d - rot_half] * s + sh[d] * c;
      }
      if (is_q) {
        q_dst[d] = out;
      } else {
        StoreKv(k_dst + d, out);
      }
    }
    if (is_q) {
      float* gate = a.gate + (static_cast<int64_t>(t) * a.n_heads + hh) * hd;
      for (int d = lane; d < hd; d += 32) gate[d] = src[hd + d];
    }
    __syncwarp();
  }
  const int64_t v_elems = a.n_kv_heads * a.head_dim_v;
  for (int64_t i = threadIdx.x; i < v_elems; i += blockDim.x) {
    StoreKv(v_cache + kv_row * v_elems + i, a.v[static_cast<int64_t>(t) * v_elems + i]);
  }
}

// grid (n_kv_heads * head chunks, n_tokens, n_splits). A CTA serves the query heads of one kv
// head (up to kGroup of them, so each K and V row is read once for all of them) for one token and
// one range of keys. Its warps take the range's keys round-robin; per key a warp forms the kGroup
// dot products (lanes strided over the head, kGroup interleaved shuffle reductions) and updates an
// online softmax per head; the warps' partial results are merged in shared memory. With one split
// the CTA writes the gated output; with several, each writes (max, sum, unnormalised output) to
// `partials` and AttentionCombineKernel merges the splits. KvT: the pools' element type.
template <class KvT>
__global__ void __launch_bounds__(kThreads) AttentionKernel(MoedCudaAttentionArgs a, int n_splits, int keys_per_split) {
  __shared__ float part_m[kWarps][kGroup], part_l[kWarps][kGroup];
  __shared__ float part_o[kWarps][kGroup][kMaxHeadDimGrouped];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, t = blockIdx.y, split = blockIdx.z;
  const int hd = static_cast<int>(a.head_dim), hdv = static_cast<int>(a.head_dim_v);
  const int group = static_cast<int>(a.n_heads / a.n_kv_heads);
  const int chunks = (group + kGroup - 1) / kGroup;
  const int kvh = blockIdx.x / chunks, h0 = kvh * group + (blockIdx.x % chunks) * kGroup;
  const int gn = min(kGroup, kvh * group + group - h0);  // heads of this CTA
  const int pos = a.positions[t];
  const int k_begin = split * keys_per_split, k_end = min(pos + 1, k_begin + keys_per_split);
  const int32_t* table = a.block_tables + static_cast<int64_t>(a.token_slots[t]) * a.block_table_stride;
  const int64_t k_row_elems = a.n_kv_heads * a.head_dim, v_row_elems = a.n_kv_heads * a.head_dim_v;
  const KvT* const k_cache = reinterpret_cast<const KvT*>(a.k_cache);
  const KvT* const v_cache = reinterpret_cast<const KvT*>(a.v_cache);

  float q[kGroup][kPerLane], o[kGroup][kPerLane], m[kGroup], l[kGroup];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    const float* qh = a.q + (static_cast<int64_t>(t) * a.n_heads + h0 + min(g, gn - 1)) * hd;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      q[g][i] = d < hd ? qh[d] * a.scale : 0.0f;
      o[g][i] = 0.0f;
    }
    m[g] = -INFINITY, l[g] = 0.0f;
  }
  for (int j = k_begin + warp; j < k_end; j += kWarps) {
    const int64_t row = static_cast<int64_t>(table[j / a.block_size]) * a.block_size + j % a.block_size;
    const KvT* kr = k_cache + row * k_row_elems + static_cast<int64_t>(kvh) * hd;
    const KvT* vr = v_cache + row * v_row_elems + static_cast<int64_t>(kvh) * hdv;
    KvT k_raw[kPerLane] = {}, v_raw[kPerLane] = {};  // zero past the head's end
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < hd) k_raw[i] = LoadKv(kr + d);
      if (d < hdv) v_raw[i] = LoadKv(vr + d);
    }
    // Widened only now: a conversion next to its load made each F16 load wait for the data of the
    // one before (measured 3x slower than float32 pools).
    float kv[kPerLane], vv[kPerLane];
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) kv[i] = ToFloat(k_raw[i]), vv[i] = ToFloat(v_raw[i]);
    float s[kGroup];
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      s[g] = 0.0f;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) s[g] = fmaf(q[g][i], kv[i], s[g]);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
#pragma unroll
      for (int g = 0; g < kGroup; ++g) s[g] += __shfl_xor_sync(0xffffffffu, s[g], off);
    }
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      const float m_new = fmaxf(m[g], s[g]);
      const float corr = __expf(m[g] - m_new), p = __expf(s[g] - m_new);
      l[g] = fmaf(l[g], corr, p);
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) o[g][i] = fmaf(p, vv[i], o[g][i] * corr);
      m[g] = m_new;
    }
  }
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    if (lane == 0) part_m[warp][g] = m[g], part_l[warp][g] = l[g];
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < hdv) part_o[warp][g][d] = o[g][i];
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < gn * hdv; idx += kThreads) {
    const int g = idx / hdv, d = idx % hdv;
    float m_all = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, part_m[w][g]);
    float l_all = 0.0f, v = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = part_m[w][g] == -INFINITY ? 0.0f : __expf(part_m[w][g] - m_all);  // no keys: adds 0
      l_all = fmaf(part_l[w][g], f, l_all);
      v = fmaf(part_o[w][g][d], f, v);
    }
    const int h = h0 + g;
    if (n_splits == 1) {
      const int64_t out = (static_cast<int64_t>(t) * a.n_heads + h) * hdv + d;
      v /= l_all;
      if (a.gate != nullptr) v *= 1.0f / (1.0f + __expf(-a.gate[out]));
      a.out[out] = v;
    } else {
      // partials[t][h][split]: m, l, then hdv unnormalised outputs.
      float* p = a.partials + ((static_cast<int64_t>(t) * a.n_heads + h) * n_splits + split) * (hdv + 2);
      if (d == 0) p[0] = m_all, p[1] = l_all;
      p[2 + d] = v;
    }
  }
}

// grid (n_heads, n_tokens): merges the splits of AttentionKernel.
__global__ void __launch_bounds__(kThreads) AttentionCombineKernel(MoedCudaAttentionArgs a, int n_splits) {
  const int h = blockIdx.x, t = blockIdx.y, hdv = static_cast<int>(a.head_dim_v);
  const float* p = a.partials + (static_cast<int64_t>(t) * a.n_heads + h) * n_splits * (hdv + 2);
  float m_all = -INFINITY;
  for (int s = 0; s < n_splits; ++s) m_all = fmaxf(m_all, p[s * (hdv + 2)]);
  const int64_t out = (static_cast<int64_t>(t) * a.n_heads + h) * hdv;
  for (int d = threadIdx.x; d < hdv; d += kThreads) {
    float l_all = 0.0f, v = 0.0f;
    for (int s = 0; s < n_splits; ++s) {
      const float* ps = p + s * (hdv + 2);
      const float f = ps[0] == -INFINITY ? 0.0f : __expf(ps[0] - m_all);
      l_all = fmaf(ps[1], f, l_all);
      v = fmaf(ps[2 + d], f, v);
    }
    v /= l_all;
    if (a.gate != nullptr) v *= 1.0f / (1.0f + __expf(-a.gate[out + d]));
    a.out[out + d] = v;
  }
}

// The pools' element types the kernels are instantiated for.
bool KnownKvType(int32_t kv_type) { return kv_type == MOED_CUDA_KV_F32 || kv_type == MOED_CUDA_KV_F16; }

}  // namespace

int AttentionPrepLaunch(const MoedCudaAttentionPrepArgs& a, int32_t kv_type, void* stream) {
  if (!KnownKvType(kv_type)) {
    return Fail(MOED_CUDA_EINVAL, "attention_prep: unknown kv_type " + std::to_string(kv_type));
  }
  if (a.n_tokens < 0 || a.n_heads < 1 || a.n_kv_heads < 1 || a.head_dim < 1 ||
      a.head_dim > kMaxHeadDim || a.head_dim_v < 1 || a.n_rot < 0 || a.n_rot > a.head_dim ||
      a.n_rot % 2 != 0 || a.qg == nullptr || a.k == nullptr || a.v == nullptr ||
      a.q_norm == nullptr || a.k_norm == nullptr || a.positions == nullptr ||
      a.kv_rows == nullptr || a.q == nullptr || a.gate == nullptr || a.k_cache == nullptr ||
      a.v_cache == nullptr) {
    return Fail(MOED_CUDA_EINVAL, "attention_prep: bad sizes or null pointers (head_dim 1.." +
                                      std::to_string(kMaxHeadDim) + ", n_rot even and <= head_dim)");
  }
  if (a.n_tokens == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  if (kv_type == MOED_CUDA_KV_F16) {
    AttentionPrepKernel<__half><<<static_cast<unsigned>(a.n_tokens), 32 * kPrepWarps, 0, s>>>(a);
  } else {
    AttentionPrepKernel<float><<<static_cast<unsigned>(a.n_tokens), 32 * kPrepWarps, 0, s>>>(a);
  }
  return FailCuda(cudaGetLastError(), "attention_prep launch");
}

int AttentionLaunch(const MoedCudaAttentionArgs& a, int32_t kv_type, void* stream) {
  if (!KnownKvType(kv_type)) return Fail(MOED_CUDA_EINVAL, "attention: unknown kv_type " + std::to_string(kv_type));
  if (a.n_tokens < 0 || a.n_tokens > 65535 || a.n_heads < 1 || a.n_kv_heads < 1 ||
      a.n_heads % a.n_kv_heads != 0 || a.head_dim < 1 || a.head_dim > kMaxHeadDimGrouped ||
      a.head_dim_v < 1 || a.head_dim_v > kMaxHeadDimGrouped || a.block_size < 1 || a.q == nullptr ||
      a.k_cache == nullptr || a.v_cache == nullptr || a.block_tables == nullptr ||
      a.token_slots == nullptr || a.positions == nullptr || a.out == nullptr || a.max_position < 0) {
    return Fail(MOED_CUDA_EINVAL, "attention: bad sizes or null pointers (head dims 1.." +
                                      std::to_string(kMaxHeadDimGrouped) +
                                      ", n_heads a multiple of n_kv_heads)");
  }
  if (a.n_tokens == 0) return 0;
  const int group = static_cast<int>(a.n_heads / a.n_kv_heads);
  const int64_t ctas = a.n_kv_heads * ((group + kGroup - 1) / kGroup) * a.n_tokens;
  // Split the keys when the grid is too small to fill the GPU (decode at long contexts) and the
  // caller gave room for the partial results.
  int n_splits = (a.max_position + kKeysPerSplit) / kKeysPerSplit;
  n_splits = ctas >= 264 ? 1 : std::min(n_splits, 32);
  if (a.partials == nullptr ||
      a.partials_floats < a.n_tokens * a.n_heads * n_splits * (a.head_dim_v + 2)) {
    n_splits = 1;
  }
  const int keys_per_split = (a.max_position + n_splits) / n_splits;  // ceil((max_position + 1) / n_splits)
  const auto s = static_cast<cudaStream_t>(stream);
  const dim3 grid(static_cast<unsigned>(a.n_kv_heads * ((group + kGroup - 1) / kGroup)),
                  static_cast<unsigned>(a.n_tokens), static_cast<unsigned>(n_splits));
  if (kv_type == MOED_CUDA_KV_F16) {
    AttentionKernel<__half><<<grid, kThreads, 0, s>>>(a, n_splits, keys_per_split);
  } else {
    AttentionKernel<float><<<grid, kThreads, 0, s>>>(a, n_splits, keys_per_split);
  }
  if (const int err = FailCuda(cudaGetLastError(), "attention launch")) return err;
  if (n_splits == 1) return 0;
  const dim3 combine(static_cast<unsigned>(a.n_heads), static_cast<unsigned>(a.n_tokens));
  AttentionCombineKernel<<<combine, kThreads, 0, s>>>(a, n_splits);
  return FailCuda(cudaGetLastError(), "attention combine launch");
}

}  // namespace moed::cuda

// The recurrent parts of the Gated DeltaNet layers (qwen35moe.md §3.4 steps 2 and 7): the gated
// delta rule in its recurrent form and the causal depthwise conv1d + SiLU with its rolling state,
// for a batch of sequences (decode: one token each; a few tokens per sequence work too). CPU
// twins: cpu::DeltaRuleRecurrent and cpu::CausalConv1dSilu; test: cuda_ops_test.cc.
//
// Delta rule. Each row v of a head's state (dk floats, contiguous: element (v, k) at v*dk + k)
// evolves on its own given the token's k, q, v[v], g and beta, so a warp owns kRowsPerWarp rows of
// one (sequence, head) and keeps them in registers (lane l holds elements [E*l, E*l + E), E =
// dk/32) across all tokens of the sequence: the state is read once and written once per launch,
// which is the whole byte floor (2 * Hv * dv * dk * 4 bytes per sequence). Per token and row, as
// the CPU twin does: one pass gives s.k and s.q, then mem = decay * s.k, delta = beta*(v - mem),
// o = decay * s.q + delta * (k.q), s' = decay * s + delta * k. The 2 * kRowsPerWarp reductions of
// a token are interleaved for shuffle-latency hiding.
//
// Conv1d. A thread per (sequence, channel, chunk of tokens) keeps the d_conv - 1 previous inputs in
// registers, runs its tokens through them, and the last chunk writes the new state (coalesced over
// channels).
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "kernels/cuda/ops.h"

namespace moed::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kRowsPerWarp = 4;

template <int E>
__device__ __forceinline__ void LoadE(const float* p, float v[E]) {
  if constexpr (E % 4 == 0) {
#pragma unroll
    for (int i = 0; i < E; i += 4) {
      const float4 f = *reinterpret_cast<const float4*>(p + i);
      v[i] = f.x, v[i + 1] = f.y, v[i + 2] = f.z, v[i + 3] = f.w;
    }
  } else if constexpr (E == 2) {
    const float2 f = *reinterpret_cast<const float2*>(p);
    v[0] = f.x, v[1] = f.y;
  } else {
    v[0] = *p;
  }
}
template <int E>
__device__ __forceinline__ void StoreE(float* p, const float v[E]) {
  if constexpr (E % 4 == 0) {
#pragma unroll
    for (int i = 0; i < E; i += 4) {
      *reinterpret_cast<float4*>(p + i) = make_float4(v[i], v[i + 1], v[i + 2], v[i + 3]);
    }
  } else if constexpr (E == 2) {
    *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
  } else {
    *p = v[0];
  }
}

struct DeltaParams {
  int n_k_heads, n_v_heads, dk, dv, n_tokens;
  const float *q, *k, *v, *g, *beta;
  float* state;
  const int32_t* slots;
  float* out;
};

// grid (row tiles of dv, n_v_heads, n_seqs); dk = 32 * E, or dk in {8, 16} with E = 1 and the
// lanes past dk holding zeros (small test models).
template <int E>
__global__ void __launch_bounds__(kThreads) DeltaRuleKernel(DeltaParams p) {
  constexpr int R = kRowsPerWarp;
  const int b = blockIdx.z, j = blockIdx.y, hk = j % p.n_k_heads;
  const int lane = threadIdx.x & 31;
  const bool active = E * lane < p.dk;
  const int row0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * R;
  if (row0 >= p.dv) return;  // whole warps only
  const int64_t slot = p.slots != nullptr ? p.slots[b] : b;
  float* st = p.state + (slot * p.n_v_heads + j) * static_cast<int64_t>(p.dv) * p.dk;
  float s[R][E];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (row0 + r < p.dv && active) {
      LoadE<E>(st + static_cast<int64_t>(row0 + r) * p.dk + E * lane, s[r]);
    } else {
#pragma unroll
      for (int e = 0; e < E; ++e) s[r][e] = 0.0f;
    }
  }
  for (int t = 0; t < p.n_tokens; ++t) {
    const int64_t tok = static_cast<int64_t>(b) * p.n_tokens + t;
    float kv[E] = {}, qv[E] = {};
    if (active) {
      LoadE<E>(p.k + (tok * p.n_k_heads + hk) * p.dk + E * lane, kv);
      LoadE<E>(p.q + (tok * p.n_k_heads + hk) * p.dk + E * lane, qv);
    }
    const int64_t gi = tok * p.n_v_heads + j;
    const float decay = expf(p.g[gi]);
    const float beta = p.beta[gi];
    const float* vt = p.v + gi * p.dv;
    float kq = 0.0f, sk[R], sq[R];
#pragma unroll
    for (int e = 0; e < E; ++e) kq = fmaf(kv[e], qv[e], kq);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      sk[r] = 0.0f, sq[r] = 0.0f;
#pragma unroll
      for (int e = 0; e < E; ++e) {
        sk[r] = fmaf(s[r][e], kv[e], sk[r]);
        sq[r] = fmaf(s[r][e], qv[e], sq[r]);
      }
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      kq += __shfl_xor_sync(0xffffffffu, kq, off);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        sk[r] += __shfl_xor_sync(0xffffffffu, sk[r], off);
        sq[r] += __shfl_xor_sync(0xffffffffu, sq[r], off);
      }
    }
    float o_mine = 0.0f;  // lane r < R writes row r's output
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float vr = row0 + r < p.dv ? vt[row0 + r] : 0.0f;
      const float delta = beta * (vr - decay * sk[r]);
      const float o = decay * sq[r] + delta * kq;
      if (lane == r) o_mine = o;
#pragma unroll
      for (int e = 0; e < E; ++e) s[r][e] = fmaf(decay, s[r][e], delta * kv[e]);
    }
    if (lane < R && row0 + lane < p.dv) p.out[gi * p.dv + row0 + lane] = o_mine;
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (row0 + r < p.dv && active) StoreE<E>(st + static_cast<int64_t>(row0 + r) * p.dk + E * lane, s[r]);
  }
}

template <int E>
int LaunchDelta(const DeltaParams& p, int n_seqs, cudaStream_t stream) {
  constexpr int rows_per_cta = kWarps * kRowsPerWarp;
  const dim3 grid(static_cast<unsigned>((p.dv + rows_per_cta - 1) / rows_per_cta),
                  static_cast<unsigned>(p.n_v_heads), static_cast<unsigned>(n_seqs));
  DeltaRuleKernel<E><<<grid, kThreads, 0, stream>>>(p);
  return FailCuda(cudaGetLastError(), "delta_rule_step launch");
}

struct ConvParams {
  int n_channels, n_seqs, n_tokens;
  const float* x;
  const float* w;
  float* state;
  const int32_t* slots;
  float* y;
};

// kChunks threads share a (sequence, channel): thread `chunk` runs tokens [t0, t1), starting from
// the d_conv - 1 inputs before t0 (the sequence's own, or the state's before token 0). A channel's
// chunks sit in one CTA, so the barrier puts every read of the old state before the write of the
// new one, which the last non-empty chunk makes. Prefills use 8 chunks: one thread walking 2,048
// tokens is a chain of 2,048 load latencies (0.9 ms a layer, NOTES.md); decode uses 1.
constexpr int kConvThreads = 256;

template <int D, int kChunks>  // d_conv
__global__ void __launch_bounds__(kConvThreads) Conv1dKernel(ConvParams p) {
  constexpr int kChannels = kConvThreads / kChunks;
  const int chunk = static_cast<int>(threadIdx.x) / kChannels;
  const int c = static_cast<int>(blockIdx.x) * kChannels + static_cast<int>(threadIdx.x) % kChannels;
  const int b = blockIdx.y;
  const bool active = c < p.n_channels;
  const int64_t C = p.n_channels;
  const float* __restrict__ x = p.x;
  float* __restrict__ y = p.y;
  const int per = (p.n_tokens + kChunks - 1) / kChunks;
  const int t0 = min(chunk * per, p.n_tokens), t1 = min(t0 + per, p.n_tokens);
  float w[D], hist[D > 1 ? D - 1 : 1];
  float* st = nullptr;
  if (active) {
#pragma unroll
    for (int k = 0; k < D; ++k) w[k] = p.w[c * static_cast<int64_t>(D) + k];
    const int64_t slot = p.slots != nullptr ? p.slots[b] : b;
    st = D > 1 ? p.state + slot * (D - 1) * C + c : nullptr;
#pragma unroll
    for (int k = 0; k < D - 1; ++k) {
      const int t = t0 - (D - 1) + k;  // state row t + D - 1 holds token t < 0
      hist[k] = t >= 0 ? x[(static_cast<int64_t>(b) * p.n_tokens + t) * C + c] : st[(t + D - 1) * C];
    }
  }
  __syncthreads();
  if (!active) return;
#pragma unroll 4
  for (int t = t0; t < t1; ++t) {
    const int64_t row = (static_cast<int64_t>(b) * p.n_tokens + t) * C + c;
    const float xv = x[row];
    // Tap 0 (the oldest input) first and the current token last, like the CPU twin.
    float acc = D > 1 ? w[0] * hist[0] : w[0] * xv;
#pragma unroll
    for (int k = 1; k < D - 1; ++k) acc = fmaf(w[k], hist[k], acc);
    if (D > 1) acc = fmaf(w[D - 1], xv, acc);
    y[row] = acc / (1.0f + expf(-acc));
#pragma unroll
    for (int k = 0; k + 1 < D - 1; ++k) hist[k] = hist[k + 1];
    if (D > 1) hist[D - 2] = xv;
  }
  if (t1 == p.n_tokens && t0 < t1) {
#pragma unroll
    for (int k = 0; k < D - 1; ++k) st[k * C] = hist[k];
  }
}

template <int D>
int LaunchConv(const ConvParams& p, cudaStream_t stream) {
  const auto s = static_cast<unsigned>(p.n_seqs);
  if (p.n_tokens >= 64) {
    constexpr int kChunks = 8, kChannels = kConvThreads / kChunks;
    Conv1dKernel<D, kChunks><<<dim3((p.n_channels + kChannels - 1) / kChannels, s), kConvThreads, 0, stream>>>(p);
  } else {
    Conv1dKernel<D, 1><<<dim3((p.n_channels + kConvThreads - 1) / kConvThreads, s), kConvThreads, 0, stream>>>(p);
  }
  return FailCuda(cudaGetLastError(), "conv1d_step launch");
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

int DeltaRuleStepLaunch(const MoedCudaDeltaRuleArgs& a, void* stream) {
  if (a.n_seqs < 1 || a.n_seqs > 65535 || a.n_tokens < 1 || a.n_k_heads < 1 || a.n_v_heads < 1 ||
      a.n_v_heads > 65535 || a.dv < 1 || a.dv > (1 << 20) || a.q == nullptr || a.k == nullptr ||
      a.v == nullptr || a.g == nullptr || a.beta == nullptr || a.state == nullptr ||
      a.out == nullptr) {
    return Fail(MOED_CUDA_EINVAL, "delta_rule_step: bad sizes or null pointers");
  }
  if (a.dk != 8 && a.dk != 16 && a.dk != 32 && a.dk != 64 && a.dk != 128 && a.dk != 256) {
    return Fail(MOED_CUDA_EINVAL,
                "delta_rule_step: dk must be 8, 16, 32, 64, 128 or 256, got " + std::to_string(a.dk));
  }
  if (!Aligned16(a.q) || !Aligned16(a.k) || !Aligned16(a.state)) {
    return Fail(MOED_CUDA_EINVAL, "delta_rule_step: q, k and state must be 16-byte aligned");
  }
  DeltaParams p;
  p.n_k_heads = static_cast<int>(a.n_k_heads);
  p.n_v_heads = static_cast<int>(a.n_v_heads);
  p.dk = static_cast<int>(a.dk);
  p.dv = static_cast<int>(a.dv);
  p.n_tokens = a.n_tokens;
  p.q = a.q, p.k = a.k, p.v = a.v, p.g = a.g, p.beta = a.beta;
  p.state = a.state;
  p.slots = a.state_slots;
  p.out = a.out;
  const auto s = static_cast<cudaStream_t>(stream);
  switch (a.dk) {
    case 8: case 16: case 32: return LaunchDelta<1>(p, a.n_seqs, s);
    case 64: return LaunchDelta<2>(p, a.n_seqs, s);
    case 128: return LaunchDelta<4>(p, a.n_seqs, s);
    default: return LaunchDelta<8>(p, a.n_seqs, s);
  }
}

int Conv1dStepLaunch(const MoedCudaConv1dArgs& a, void* stream) {
  if (a.n_seqs < 1 || a.n_seqs > 65535 || a.n_tokens < 1 || a.n_channels < 1 ||
      a.n_channels > (int64_t{1} << 30) || a.d_conv < 1 || a.d_conv > 8 || a.x == nullptr ||
      a.w == nullptr || a.y == nullptr || (a.d_conv > 1 && a.state == nullptr)) {
    return Fail(MOED_CUDA_EINVAL, "conv1d_step: bad sizes or null pointers (d_conv 1..8)");
  }
  ConvParams p;
  p.n_channels = static_cast<int>(a.n_channels);
  p.n_seqs = a.n_seqs;
  p.n_tokens = a.n_tokens;
  p.x = a.x, p.w = a.w, p.state = a.state, p.slots = a.state_slots, p.y = a.y;
  const auto s = static_cast<cudaStream_t>(stream);
  switch (a.d_conv) {
    case 1: return LaunchConv<1>(p, s);
    case 2: return LaunchConv<2>(p, s);
    case 3: return LaunchConv<3>(p, s);
    case 4: return LaunchConv<4>(p, s);
    case 5: return LaunchConv<5>(p, s);
    case 6: return LaunchConv<6>(p, s);
    case 7: return LaunchConv<7>(p, s);
    default: return LaunchConv<8>(p, s);
  }
}

}  // namespace moed::cuda

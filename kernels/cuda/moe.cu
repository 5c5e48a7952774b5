// MoE decode (qwen35moe.md §3.6 step 3) for a few tokens, each with its top-k experts, in two
// launches. CPU twin: per (token, slot) MatMulReference on cpu::ExpertSlice of the gate, up and
// down tensors, SiLU(gate) * up, and the routing-weighted sum (cuda_ops_test.cc); numbers: NOTES.md.
//
// Launch 1 (gate+up+SiLU): grid (n_ff row tiles, n_tokens * top_k). CTA (tile, pair) computes
// rows of act[pair] = silu(W_gate[e] x[t]) * (W_up[e] x[t]) for expert e = ids[pair]: a group of
// `lpr` lanes (lanes per row: 32 for 2048-wide rows, fewer for short rows so that no lane idles)
// owns kGateUpRows rows and decodes gate and up rows for each 32-weight unit of x it holds in
// registers, so x is loaded once for 2 * kGateUpRows weight rows. ids are read on the device (no
// host sync, capturable in a CUDA graph). Each (token, slot) pair reads its expert's weights: with
// random routing nearly all pairs of a small batch have distinct experts, and a repeated expert is
// read by CTAs that run concurrently, so the second read is an L2 hit.
//
// Launch 2 (down + weighted sum): grid (n_embd row tiles, n_tokens). A lane group owns one output
// row of one token and loops over the k slots, accumulating weight_s * (W_down[e_s] act[t][s])
// per lane before one shuffle reduction, then writes (or adds to) y. No atomics, no memset of y,
// deterministic: the order of the k-slot sum is fixed. The cost is that a CTA reads k experts'
// rows in sequence; at 1 token the grid (256 CTAs of 4 warps for n_embd = 2048) still covers the
// GPU.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "kernels/cuda/ops.h"
#include "kernels/cuda/quants.cuh"

namespace moed::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kGateUpRows = 2;  // output rows per lane group in launch 1 (4 weight rows)

struct MoeParams {
  const uint8_t* gate;
  const uint8_t* up;
  const uint8_t* down;
  uint64_t gu_row_bytes;  // gate/up rows (n_embd weights)
  uint64_t gu_matrix_bytes;
  uint64_t d_row_bytes;  // down rows (n_ff weights)
  uint64_t d_matrix_bytes;
  int n_embd;
  int n_ff;
  int n_expert;
  int top_k;
  int lpr_log2;  // lanes per row = 1 << lpr_log2 (launch-specific)
  const int32_t* ids;
  const float* weights;
  const float* x;
  float* act;
  float* y;
  int accumulate;
};

// sum over units u = sub, sub + lpr, ... of row · x for R rows, per lane (not yet reduced).
template <class Q, int R>
__device__ __forceinline__ void UnitDots(const uint8_t* const rows[R], const float* x, int n_units,
                                         int sub, int lpr, float acc[R]) {
  for (int u = sub; u < n_units; u += lpr) {
    float xv[32];
    const float4* xp = reinterpret_cast<const float4*>(x) + 8 * u;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float4 v = __ldg(xp + k);
      xv[4 * k] = v.x, xv[4 * k + 1] = v.y, xv[4 * k + 2] = v.z, xv[4 * k + 3] = v.w;
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float wv[32];
      Q::Decode32(rows[r], u, wv);
      float a = acc[r];
#pragma unroll
      for (int k = 0; k < 32; ++k) a = fmaf(wv[k], xv[k], a);
      acc[r] = a;
    }
  }
}

// Sums v over the lpr lanes of each aligned lane group (all 32 lanes take part).
__device__ __forceinline__ float GroupSum(float v, int lpr) {
  for (int off = lpr >> 1; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

template <class Q>
__global__ void __launch_bounds__(kThreads) MoeGateUpKernel(MoeParams p) {
  constexpr int R = kGateUpRows;
  const int pair = blockIdx.y;  // token * top_k + slot
  const int t = pair / p.top_k;
  const int e = __ldg(p.ids + pair);
  const int lane = threadIdx.x & 31, lpr = 1 << p.lpr_log2;
  const int sub = lane & (lpr - 1);
  const int group = ((blockIdx.x * kWarps + (threadIdx.x >> 5)) << (5 - p.lpr_log2)) +
                    (lane >> p.lpr_log2);
  const int row0 = group * R;
  float* act = p.act + static_cast<int64_t>(pair) * p.n_ff;
  if (e < 0 || e >= p.n_expert) {  // a skipped slot (uniform over the CTA)
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (sub == 0 && row0 + r < p.n_ff) act[row0 + r] = 0.0f;
    }
    return;
  }
  if ((group - (lane >> p.lpr_log2)) * R >= p.n_ff) return;  // the whole warp is past the end
  const uint8_t* g = p.gate + static_cast<uint64_t>(e) * p.gu_matrix_bytes;
  const uint8_t* u = p.up + static_cast<uint64_t>(e) * p.gu_matrix_bytes;
  const uint8_t* rows[2 * R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    // Rows past the end decode the last row again; their sums are never written.
    const uint64_t off = static_cast<uint64_t>(min(row0 + r, p.n_ff - 1)) * p.gu_row_bytes;
    rows[2 * r] = g + off;
    rows[2 * r + 1] = u + off;
  }
  float acc[2 * R];
#pragma unroll
  for (int r = 0; r < 2 * R; ++r) acc[r] = 0.0f;
  UnitDots<Q, 2 * R>(rows, p.x + static_cast<int64_t>(t) * p.n_embd, p.n_embd / 32, sub, lpr, acc);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const float gs = GroupSum(acc[2 * r], lpr);
    const float us = GroupSum(acc[2 * r + 1], lpr);
    if (sub == 0 && row0 + r < p.n_ff) act[row0 + r] = gs / (1.0f + expf(-gs)) * us;
  }
}

template <class Q>
__global__ void __launch_bounds__(kThreads) MoeDownKernel(MoeParams p) {
  const int t = blockIdx.y;
  const int lane = threadIdx.x & 31, lpr = 1 << p.lpr_log2;
  const int sub = lane & (lpr - 1);
  const int warp_row0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) << (5 - p.lpr_log2);
  if (warp_row0 >= p.n_embd) return;  // whole warps only
  const int row = warp_row0 + (lane >> p.lpr_log2);
  const uint64_t row_off = static_cast<uint64_t>(min(row, p.n_embd - 1)) * p.d_row_bytes;
  float acc = 0.0f;
  for (int s = 0; s < p.top_k; ++s) {
    const int pair = t * p.top_k + s;
    const int e = __ldg(p.ids + pair);
    if (e < 0 || e >= p.n_expert) continue;  // uniform over the CTA
    const float wgt = __ldg(p.weights + pair);
    const uint8_t* rows[1] = {p.down + static_cast<uint64_t>(e) * p.d_matrix_bytes + row_off};
    float part[1] = {0.0f};
    UnitDots<Q, 1>(rows, p.act + static_cast<int64_t>(pair) * p.n_ff, p.n_ff / 32, sub, lpr, part);
    acc = fmaf(wgt, part[0], acc);
  }
  acc = GroupSum(acc, lpr);
  if (sub == 0 && row < p.n_embd) {
    float* y = p.y + static_cast<int64_t>(t) * p.n_embd + row;
    *y = p.accumulate ? *y + acc : acc;
  }
}

// Plain float weights with rows whose length is not a multiple of 32 (small test models): one warp
// per output row, lanes strided over the row, the same two launches and sums as above.
struct PlainTypes {
  uint32_t gate_up, down;
};

__global__ void __launch_bounds__(kThreads) MoePlainGateUpKernel(PlainTypes types, MoeParams p) {
  const int pair = blockIdx.y, t = pair / p.top_k, e = __ldg(p.ids + pair);
  const int lane = threadIdx.x & 31, row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (row >= p.n_ff) return;
  float* act = p.act + static_cast<int64_t>(pair) * p.n_ff;
  if (e < 0 || e >= p.n_expert) {
    if (lane == 0) act[row] = 0.0f;
    return;
  }
  const uint64_t off = static_cast<uint64_t>(e) * p.gu_matrix_bytes + static_cast<uint64_t>(row) * p.gu_row_bytes;
  const float* x = p.x + static_cast<int64_t>(t) * p.n_embd;
  float g = 0.0f, u = 0.0f;
  for (int i = lane; i < p.n_embd; i += 32) {
    g = fmaf(LoadPlain(types.gate_up, p.gate + off, i), x[i], g);
    u = fmaf(LoadPlain(types.gate_up, p.up + off, i), x[i], u);
  }
  g = GroupSum(g, 32), u = GroupSum(u, 32);
  if (lane == 0) act[row] = g / (1.0f + expf(-g)) * u;
}

__global__ void __launch_bounds__(kThreads) MoePlainDownKernel(PlainTypes types, MoeParams p) {
  const int t = blockIdx.y;
  const int lane = threadIdx.x & 31, row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (row >= p.n_embd) return;
  float acc = 0.0f;
  for (int s = 0; s < p.top_k; ++s) {
    const int pair = t * p.top_k + s, e = __ldg(p.ids + pair);
    if (e < 0 || e >= p.n_expert) continue;
    const uint8_t* w = p.down + static_cast<uint64_t>(e) * p.d_matrix_bytes + static_cast<uint64_t>(row) * p.d_row_bytes;
    const float* act = p.act + static_cast<int64_t>(pair) * p.n_ff;
    float part = 0.0f;
    for (int i = lane; i < p.n_ff; i += 32) part = fmaf(LoadPlain(types.down, w, i), act[i], part);
    acc = fmaf(__ldg(p.weights + pair), GroupSum(part, 32), acc);
  }
  if (lane == 0) {
    float* y = p.y + static_cast<int64_t>(t) * p.n_embd + row;
    *y = p.accumulate ? *y + acc : acc;
  }
}

int LaunchPlain(MoeParams p, const MoedCudaMoeArgs& a, cudaStream_t stream) {
  const PlainTypes types{a.gate_up_type, a.down_type};
  p.gu_row_bytes = static_cast<uint64_t>(a.n_embd * PlainBytes(a.gate_up_type));
  p.gu_matrix_bytes = p.gu_row_bytes * static_cast<uint64_t>(a.n_ff);
  p.d_row_bytes = static_cast<uint64_t>(a.n_ff * PlainBytes(a.down_type));
  p.d_matrix_bytes = p.d_row_bytes * static_cast<uint64_t>(a.n_embd);
  const dim3 gate_up_grid(static_cast<unsigned>((a.n_ff + kWarps - 1) / kWarps),
                          static_cast<unsigned>(a.n_tokens * a.top_k));
  MoePlainGateUpKernel<<<gate_up_grid, kThreads, 0, stream>>>(types, p);
  if (const int err = FailCuda(cudaGetLastError(), "moe gate/up launch")) return err;
  const dim3 down_grid(static_cast<unsigned>((a.n_embd + kWarps - 1) / kWarps), static_cast<unsigned>(a.n_tokens));
  MoePlainDownKernel<<<down_grid, kThreads, 0, stream>>>(types, p);
  return FailCuda(cudaGetLastError(), "moe down launch");
}

// Lanes per row: the largest power of two <= min(32, units per row), as log2.
int LprLog2(int64_t n_in) {
  const int64_t units = n_in / 32;
  int l = 0;
  while (l < 5 && (int64_t{2} << l) <= units) ++l;
  return l;
}

template <class Q>
int CheckWeights(const char* what, const void* w, int64_t n_in, int64_t n_out, uint64_t* row_bytes,
                 uint64_t* matrix_bytes) {
  if (n_in % 32 != 0 || n_in % Q::kWeights != 0) {
    return Fail(MOED_CUDA_EINVAL, std::string("moe_decode: ") + what + " rows of " +
                                      std::to_string(n_in) + " weights do not fit the type");
  }
  *row_bytes = static_cast<uint64_t>(n_in / Q::kWeights * Q::kBytes);
  *matrix_bytes = *row_bytes * static_cast<uint64_t>(n_out);
  if (reinterpret_cast<uintptr_t>(w) % Q::kAlign != 0 || *row_bytes % Q::kAlign != 0) {
    return Fail(MOED_CUDA_EINVAL, std::string("moe_decode: ") + what + " weights not aligned to " +
                                      std::to_string(Q::kAlign) + " bytes");
  }
  if constexpr (std::is_same_v<Q, BlockIq3Xxs>) {
    return EnsureIq3XxsGrid();
  } else {
    return 0;
  }
}

template <class Q>
int LaunchGateUp(MoeParams p, const MoedCudaMoeArgs& a, cudaStream_t stream) {
  if (const int err = CheckWeights<Q>("gate/up", a.gate_w, a.n_embd, a.n_ff, &p.gu_row_bytes,
                                      &p.gu_matrix_bytes)) {
    return err;
  }
  if (reinterpret_cast<uintptr_t>(a.up_w) % Q::kAlign != 0) {
    return Fail(MOED_CUDA_EINVAL, "moe_decode: up weights misaligned");
  }
  p.lpr_log2 = LprLog2(a.n_embd);
  const int64_t rows_per_cta = int64_t{kWarps} * (32 >> p.lpr_log2) * kGateUpRows;
  const dim3 grid(static_cast<unsigned>((a.n_ff + rows_per_cta - 1) / rows_per_cta),
                  static_cast<unsigned>(a.n_tokens * a.top_k));
  MoeGateUpKernel<Q><<<grid, kThreads, 0, stream>>>(p);
  return FailCuda(cudaGetLastError(), "moe gate/up launch");
}

template <class Q>
int LaunchDown(MoeParams p, const MoedCudaMoeArgs& a, cudaStream_t stream) {
  if (const int err = CheckWeights<Q>("down", a.down_w, a.n_ff, a.n_embd, &p.d_row_bytes,
                                      &p.d_matrix_bytes)) {
    return err;
  }
  p.lpr_log2 = LprLog2(a.n_ff);
  const int64_t rows_per_cta = int64_t{kWarps} * (32 >> p.lpr_log2);
  const dim3 grid(static_cast<unsigned>((a.n_embd + rows_per_cta - 1) / rows_per_cta),
                  static_cast<unsigned>(a.n_tokens));
  MoeDownKernel<Q><<<grid, kThreads, 0, stream>>>(p);
  return FailCuda(cudaGetLastError(), "moe down launch");
}

}  // namespace

bool MoeSupportsType(uint32_t ggml_type) { return GemvSupportsType(ggml_type); }

// The one dispatch point of the MoE decode family.
int MoeDecodeLaunch(const MoedCudaMoeArgs& a, void* stream) {
  if (a.n_tokens < 1 || a.n_tokens > MOED_CUDA_MAX_MOE_TOKENS || a.top_k < 1 ||
      a.top_k > MOED_CUDA_MAX_MOE_TOPK) {
    return Fail(MOED_CUDA_EINVAL, "moe_decode: n_tokens must be 1.." +
                                      std::to_string(MOED_CUDA_MAX_MOE_TOKENS) + " and top_k 1.." +
                                      std::to_string(MOED_CUDA_MAX_MOE_TOPK));
  }
  if (a.n_embd <= 0 || a.n_ff <= 0 || a.n_expert <= 0 || a.n_embd > (int64_t{1} << 24) ||
      a.n_ff > (int64_t{1} << 24) || a.n_expert > (int64_t{1} << 20) || a.gate_w == nullptr ||
      a.up_w == nullptr || a.down_w == nullptr || a.ids == nullptr || a.weights == nullptr ||
      a.x == nullptr || a.act == nullptr || a.y == nullptr) {
    return Fail(MOED_CUDA_EINVAL, "moe_decode: bad sizes or null pointers");
  }
  if (reinterpret_cast<uintptr_t>(a.x) % 16 != 0 || reinterpret_cast<uintptr_t>(a.act) % 16 != 0) {
    return Fail(MOED_CUDA_EINVAL, "moe_decode: x and act must be 16-byte aligned");
  }
  MoeParams p{};
  p.gate = static_cast<const uint8_t*>(a.gate_w);
  p.up = static_cast<const uint8_t*>(a.up_w);
  p.down = static_cast<const uint8_t*>(a.down_w);
  p.n_embd = static_cast<int>(a.n_embd);
  p.n_ff = static_cast<int>(a.n_ff);
  p.n_expert = static_cast<int>(a.n_expert);
  p.top_k = a.top_k;
  p.ids = a.ids;
  p.weights = a.weights;
  p.x = a.x;
  p.act = a.act;
  p.y = a.y;
  p.accumulate = a.accumulate != 0;
  const auto s = static_cast<cudaStream_t>(stream);
  if (IsPlainType(a.gate_up_type) && IsPlainType(a.down_type) &&
      (a.n_embd % 32 != 0 || a.n_ff % 32 != 0)) {
    return LaunchPlain(p, a, s);
  }
  // Both launches' arguments are checked before either is enqueued.
  MoeParams probe = p;
  if (const int err = WithBlockType("moe_decode", a.down_type, [&](auto q) {
        using Q = decltype(q);
        return CheckWeights<Q>("down", a.down_w, a.n_ff, a.n_embd, &probe.d_row_bytes,
                               &probe.d_matrix_bytes);
      })) {
    return err;
  }
  if (const int err = WithBlockType("moe_decode", a.gate_up_type,
                               [&](auto q) { return LaunchGateUp<decltype(q)>(p, a, s); })) {
    return err;
  }
  return WithBlockType("moe_decode", a.down_type, [&](auto q) { return LaunchDown<decltype(q)>(p, a, s); });
}

}  // namespace moed::cuda

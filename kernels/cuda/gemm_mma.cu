// Matrix products on tensor cores straight from the GGUF blocks: the grouped expert FFN of many
// tokens (moe_grouped: prefill and decode batches) and the dense y = W x of batches (gemm_mma).
// CPU twins: the same products as moe_decode / gemv (MatMulReference), to F16 rounding of the
// inputs (cuda_mma_test.cc); numbers: NOTES.md, "Fifth slice".
//
// Why: the cuBLAS path (gemm.cu) writes F16 copies of the weights before each product and makes
// one call per expert (768 a layer in a 2,048-token prefill), moe_decode reads an expert once per
// (token, slot) pair, and gemv re-reads a matrix for every 8 tokens. Here a CTA decodes a 64-row
// weight tile once per tile of tokens, in registers (Q4_K and Q8_0 with F16 arithmetic, every other
// type with quants.cuh's Decode32), stores it as F16 in shared memory and multiplies with
// mma.sync m16n8k16 (float32 accumulation). Inputs are rounded to F16 as in the cuBLAS F16 path.
//
// moe_grouped, four launches, no host synchronisation (so decode steps capture it in a graph):
//   1. Group (one CTA): counts rows per expert, lays out each expert's (token, slot) pairs as
//      consecutive rows, and lists their tiles (expert, first row, rows).
//   2. Gate+up+SiLU: grid (n_ff / 64, tiles); act rows in F16.
//   3. Down: grid (n_embd / 64, tiles); float32 rows.
//   4. moe_combine (gemm.cu): y[t] += sum over slots in slot order of weight * row. Each row is
//      computed independently of its tile-mates, so results do not depend on the row order the
//      group kernel's atomics pick: deterministic.
#include <cooperative_groups.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "kernels/cuda/ops.h"
#include "kernels/cuda/quants.cuh"

namespace moed::cuda {
namespace {

constexpr int kThreads = 128;        // 4 warps, 16 weight rows each
constexpr int kTileRows = 64;        // weight rows (outputs) per CTA
constexpr int kTileTokens = 32;      // input rows per tile (8 for small groups: kSmallTileTokens)
constexpr int kSmallTileTokens = 8;
constexpr int kStageK = 128;         // weights of a row per shared-memory stage: 4 units of 32
constexpr int kPitch = kStageK + 8;  // halves per shared row; the 16-byte pad keeps fragment loads conflict-free
constexpr int kMaxExperts = 1024;    // the group kernel's one-thread-per-expert scan
constexpr int kGroupThreads = 1024;

struct MmaParams {
  const uint8_t* w0;  // gate (or the only) matrix of expert 0
  const uint8_t* w1;  // up matrix (gate/up launch only)
  uint64_t row_bytes;
  uint64_t matrix_bytes;  // expert stride
  int n_in;
  int n_out;
  const void* x;              // float or __half rows of n_in
  const int32_t* pair_of_row; // row r's input is x row pair_of_row[r] / top_k (NULL: row r)
  int top_k;
  const int32_t* n_tiles;  // NULL: gridDim.y tiles of expert 0, rows [32 y, 32 y + 32) of n_rows
  const int32_t* tile_expert;
  const int32_t* tile_row0;
  const int32_t* tile_rows;
  int n_rows;
  __half* act;  // gate/up launch: silu(gate) * up, [rows][n_out]
  float* y;     // otherwise: [rows][n_out]
};

__device__ __forceinline__ uint32_t PackHalf2(float a, float b) {
  const __half2 h = __floats2half2_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&h);
}

__device__ __forceinline__ void Mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// A thread's share of one shared-memory stage (128 weights of a row: units 4 s .. 4 s + 3) for
// thread `part` (0..3). Load issues the global loads, Store writes the 32 F16 weights; the kernel
// loads stage s + 1 before it multiplies stage s, so the loads overlap the tensor-core work.
// Generic types keep no registers between the two: Store decodes with quants.cuh's Decode32 (its
// loads included), exactly as the CPU dequantizer, then rounds to F16.
template <class Q>
struct WeightStage {
  const uint8_t* row;
  int u;
  __device__ __forceinline__ void Load(const uint8_t* r, int stage, int part, int n_units) {
    u = 4 * stage + part;
    row = u < n_units ? r : nullptr;
  }
  __device__ __forceinline__ void Store(__half* dst, int part) const {
    uint4 v[4] = {};
    if (row != nullptr) {
      float w[32];
      Q::Decode32(row, u, w);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        v[i] = make_uint4(PackHalf2(w[8 * i], w[8 * i + 1]), PackHalf2(w[8 * i + 2], w[8 * i + 3]),
                          PackHalf2(w[8 * i + 4], w[8 * i + 5]), PackHalf2(w[8 * i + 6], w[8 * i + 7]));
      }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) reinterpret_cast<uint4*>(dst + 32 * part)[i] = v[i];
  }
};

// Two bytes' values v0, v1 (each 0..255 after the caller's bias) as the half2 (1024 + v0, 1024 + v1):
// 0x6400 is 1024 in binary16, whose ulp is 1, so OR-ing an integer below 1024 into the mantissa
// gives 1024 + it exactly.
__device__ __forceinline__ __half2 BiasedHalf2(uint32_t bits) {
  const uint32_t h = bits | 0x64006400u;
  return *reinterpret_cast<const __half2*>(&h);
}

// Q8_0 (block = unit: d, 32 int8): q * d, rounded once to F16 like the generic path.
template <>
struct WeightStage<BlockQ8_0> {
  uint32_t d, q[16];
  bool ok;
  __device__ __forceinline__ void Load(const uint8_t* r, int stage, int part, int n_units) {
    const int u = 4 * stage + part;
    ok = r != nullptr && u < n_units;
    if (!ok) return;
    const uint8_t* b = r + u * BlockQ8_0::kBytes;
    d = Ld16(b);
#pragma unroll
    for (int k = 0; k < 16; ++k) q[k] = Ld16(b + 2 + 2 * k);
  }
  __device__ __forceinline__ void Store(__half* dst, int part) const {
    uint32_t out[16] = {};
    if (ok) {
      const __half2 dd = __half2half2(__ushort_as_half(static_cast<unsigned short>(d)));
      const __half2 bias = __float2half2_rn(1152.0f);  // 1024 + the 128 that ^ 0x80 adds
#pragma unroll
      for (int k = 0; k < 16; ++k) {
        const __half2 v = __hmul2(__hsub2(BiasedHalf2(__byte_perm(q[k] ^ 0x8080u, 0, 0x4140)), bias), dd);
        out[k] = *reinterpret_cast<const uint32_t*>(&v);
      }
    }
    auto* o = reinterpret_cast<uint4*>(dst + 32 * part);
#pragma unroll
    for (int i = 0; i < 4; ++i) o[i] = make_uint4(out[4 * i], out[4 * i + 1], out[4 * i + 2], out[4 * i + 3]);
  }
};

// Q4_K: a stage is half a super-block. Thread `part` holds 16 of its qs bytes, whose low nibbles
// are weights [16 (part & 1), +16) of unit 2 (part >> 1) of the stage and whose high nibbles are
// the same weights of the next unit. w = d1 q - m1 in F16 (d1 and m1 rounded to F16 first).
template <>
struct WeightStage<BlockQ4_K> {
  uint4 head, qs;
  bool ok;
  int half_block;
  __device__ __forceinline__ void Load(const uint8_t* r, int stage, int part, int n_units) {
    ok = r != nullptr && 4 * stage < n_units;
    if (!ok) return;
    half_block = stage & 1;
    const uint8_t* b = r + (stage >> 1) * BlockQ4_K::kBytes;
    head = Ld128(b);
    qs = Ld128(b + 16 + 32 * (2 * half_block + (part >> 1)) + 16 * (part & 1));
  }
  __device__ __forceinline__ void Store(__half* dst, int part) const {
    uint32_t lo[8] = {}, hi[8] = {};
    if (ok) {
      const uint32_t s[3] = {head.y, head.z, head.w};
      const int j = 4 * half_block + 2 * (part >> 1);
      float sc_lo, m_lo, sc_hi, m_hi;
      ScaleMinK4(j, s, &sc_lo, &m_lo);
      ScaleMinK4(j + 1, s, &sc_hi, &m_hi);
      const float d = Half(head.x & 0xffff), dmin = Half(head.x >> 16);
      const __half2 d_lo = __float2half2_rn(d * sc_lo), m_lo2 = __float2half2_rn(-dmin * m_lo);
      const __half2 d_hi = __float2half2_rn(d * sc_hi), m_hi2 = __float2half2_rn(-dmin * m_hi);
      const __half2 bias = __float2half2_rn(1024.0f);
      const uint32_t words[4] = {qs.x, qs.y, qs.z, qs.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
#pragma unroll
        for (int pair = 0; pair < 2; ++pair) {  // bytes 2 pair, 2 pair + 1 of the word
          const uint32_t spread = __byte_perm(words[k], 0, pair == 0 ? 0x4140 : 0x4342);
          const __half2 a = __hfma2(__hsub2(BiasedHalf2(spread & 0x000f000fu), bias), d_lo, m_lo2);
          const __half2 c = __hfma2(__hsub2(BiasedHalf2((spread >> 4) & 0x000f000fu), bias), d_hi, m_hi2);
          lo[2 * k + pair] = *reinterpret_cast<const uint32_t*>(&a);
          hi[2 * k + pair] = *reinterpret_cast<const uint32_t*>(&c);
        }
      }
    }
    auto* o_lo = reinterpret_cast<uint4*>(dst + 64 * (part >> 1) + 16 * (part & 1));
    auto* o_hi = reinterpret_cast<uint4*>(dst + 64 * (part >> 1) + 32 + 16 * (part & 1));
    o_lo[0] = make_uint4(lo[0], lo[1], lo[2], lo[3]), o_lo[1] = make_uint4(lo[4], lo[5], lo[6], lo[7]);
    o_hi[0] = make_uint4(hi[0], hi[1], hi[2], hi[3]), o_hi[1] = make_uint4(hi[4], hi[5], hi[6], hi[7]);
  }
};

// The same for 32 inputs of a row (float32 rounded to F16, or F16 as they are).
template <class XT>
struct InputStage {
  static constexpr int kVectors = std::is_same_v<XT, float> ? 8 : 4;
  uint4 v[kVectors];
  bool ok;
  __device__ __forceinline__ void Load(const XT* row, int stage, int part, int n_units) {
    const int u = 4 * stage + part;
    ok = row != nullptr && u < n_units;
    if (!ok) return;
    const uint4* p = reinterpret_cast<const uint4*>(row + 32 * u);
#pragma unroll
    for (int i = 0; i < kVectors; ++i) {
      if constexpr (std::is_same_v<XT, float>) {
        v[i] = __ldg(p + i);
      } else {
        v[i] = p[i];  // written by the previous launch: not through the read-only path
      }
    }
  }
  __device__ __forceinline__ void Store(__half* dst, int part) const {
    uint4 out[4] = {};
    if (ok) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if constexpr (std::is_same_v<XT, float>) {
          const float4 a = *reinterpret_cast<const float4*>(&v[2 * i]);
          const float4 b = *reinterpret_cast<const float4*>(&v[2 * i + 1]);
          out[i] = make_uint4(PackHalf2(a.x, a.y), PackHalf2(a.z, a.w), PackHalf2(b.x, b.y), PackHalf2(b.z, b.w));
        } else {
          out[i] = v[i];
        }
      }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) reinterpret_cast<uint4*>(dst + 32 * part)[i] = out[i];
  }
};

// One CTA: weight rows [64 blockIdx.x, +64) of one expert times one tile of up to kTT input rows.
// Thread tid stages unit (tid & 3) of each stage for weight rows (tid >> 2) and (tid >> 2) + 32
// and for input row (tid >> 2) < kTT; warp w multiplies weight rows [16 w, 16 w + 16) by all kTT
// inputs. kTT = 8 serves decode batches, whose experts get a row or two each: a 32-row tile would
// mostly multiply zeros, and its shared-memory traffic is what limits the kernel (NOTES.md).
//
// kSplit > 1 (dense products, Hopper): the kSplit CTAs of a thread-block cluster along z take
// consecutive slices of K, and rank 0 adds the others' accumulators, in rank order, through
// distributed shared memory: deterministic, one launch, no global scratch. A CTA walks its
// stages one after another with one stage of loads in flight, so a matrix of few output tiles
// and a long K is bound by that chain's latency, not by bandwidth (NOTES.md, seventh slice).
template <class Q, bool kGateUp, class XT, int kTT, int kSplit = 1>
__global__ void __launch_bounds__(kThreads) MmaKernel(MmaParams p) {
  constexpr int kMats = kGateUp ? 2 : 1;
  __shared__ __align__(16) __half ws[kMats][kTileRows * kPitch];
  __shared__ __align__(16) __half xs[kTT * kPitch];
  int expert = 0, row0, rows;
  if (p.n_tiles != nullptr) {
    if (static_cast<int>(blockIdx.y) >= *p.n_tiles) return;
    expert = p.tile_expert[blockIdx.y], row0 = p.tile_row0[blockIdx.y], rows = p.tile_rows[blockIdx.y];
  } else {
    row0 = static_cast<int>(blockIdx.y) * kTT;
    rows = min(kTT, p.n_rows - row0);
  }
  const int o0 = static_cast<int>(blockIdx.x) * kTileRows;
  const int tid = static_cast<int>(threadIdx.x), warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3, part = tid & 3, srow = tid >> 2;

  const XT* xrow = nullptr;
  if (srow < rows) {
    const int r = row0 + srow;
    const int src = p.pair_of_row != nullptr ? p.pair_of_row[r] / p.top_k : r;
    xrow = static_cast<const XT*>(p.x) + static_cast<int64_t>(src) * p.n_in;
  }
  const uint8_t* wrow[kMats][2];
#pragma unroll
  for (int m = 0; m < kMats; ++m) {
    const uint8_t* base = (m == 0 ? p.w0 : p.w1) + static_cast<uint64_t>(expert) * p.matrix_bytes;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int o = o0 + srow + 32 * h;
      wrow[m][h] = o < p.n_out ? base + static_cast<uint64_t>(o) * p.row_bytes : nullptr;
    }
  }

  float acc[kMats][kTT / 8][4] = {};
  const int n_units = p.n_in / 32, n_stages = (n_units + kStageK / 32 - 1) / (kStageK / 32);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr int kSlices = kSplit;
#else
  // A build without clusters (the compute_80 PTX, JIT-compiled on a newer GPU that passes the
  // host's Hopper check): z-rank 0 computes the whole product, the others have nothing to do.
  constexpr int kSlices = 1;
  if (kSplit > 1 && blockIdx.z != 0) return;
#endif
  const int per_split = (n_stages + kSlices - 1) / kSlices;
  const int stage_begin = min(n_stages, static_cast<int>(blockIdx.z) * per_split);
  const int stage_end = min(n_stages, stage_begin + per_split);
  WeightStage<Q> wst[kMats][2];
  InputStage<XT> xst;
  if (stage_begin < stage_end) {
#pragma unroll
    for (int m = 0; m < kMats; ++m) {
#pragma unroll
      for (int h = 0; h < 2; ++h) wst[m][h].Load(wrow[m][h], stage_begin, part, n_units);
    }
    xst.Load(xrow, stage_begin, part, n_units);
  }
  for (int stage = stage_begin; stage < stage_end; ++stage) {
    __syncthreads();  // the previous stage's fragments are read
#pragma unroll
    for (int m = 0; m < kMats; ++m) {
#pragma unroll
      for (int h = 0; h < 2; ++h) wst[m][h].Store(&ws[m][(srow + 32 * h) * kPitch], part);
    }
    if (srow < kTT) xst.Store(&xs[srow * kPitch], part);
    __syncthreads();
    if (stage + 1 < stage_end) {
#pragma unroll
      for (int m = 0; m < kMats; ++m) {
#pragma unroll
        for (int h = 0; h < 2; ++h) wst[m][h].Load(wrow[m][h], stage + 1, part, n_units);
      }
      xst.Load(xrow, stage + 1, part, n_units);
    }
#pragma unroll
    for (int k = 0; k < kStageK; k += 16) {
      uint32_t a[kMats][4];
#pragma unroll
      for (int m = 0; m < kMats; ++m) {
        const __half* w = &ws[m][(16 * warp + g) * kPitch + k + 2 * t4];
        a[m][0] = *reinterpret_cast<const uint32_t*>(w);
        a[m][1] = *reinterpret_cast<const uint32_t*>(w + 8 * kPitch);
        a[m][2] = *reinterpret_cast<const uint32_t*>(w + 8);
        a[m][3] = *reinterpret_cast<const uint32_t*>(w + 8 * kPitch + 8);
      }
#pragma unroll
      for (int nt = 0; nt < kTT / 8; ++nt) {
        const __half* xp = &xs[(8 * nt + g) * kPitch + k + 2 * t4];
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(xp);
        const uint32_t b1 = *reinterpret_cast<const uint32_t*>(xp + 8);
#pragma unroll
        for (int m = 0; m < kMats; ++m) Mma(acc[m][nt], a[m], b0, b1);
      }
    }
  }

  if constexpr (kSplit > 1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    static_assert(!kGateUp && kTT / 8 * 4 * kThreads * sizeof(float) <= sizeof(ws[0]));
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    float* red = reinterpret_cast<float*>(&ws[0][0]);
    __syncthreads();  // the last stage's fragments are read
#pragma unroll
    for (int nt = 0; nt < kTT / 8; ++nt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) red[(4 * nt + i) * kThreads + tid] = acc[0][nt][i];
    }
    cluster.sync();
    const bool leader = cluster.block_rank() == 0;
    if (leader) {
      for (int r = 1; r < kSplit; ++r) {
        const float* other = cluster.map_shared_rank(red, r);
#pragma unroll
        for (int nt = 0; nt < kTT / 8; ++nt) {
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[0][nt][i] += other[(4 * nt + i) * kThreads + tid];
        }
      }
    }
    cluster.sync();  // every CTA's shared memory lives until the leader has read it
    if (!leader) return;
#endif
  }

  // Fragment element i of n-tile nt: weight row 16 warp + g (+8 for i >= 2), input row 8 nt + 2 t4 + (i & 1).
#pragma unroll
  for (int nt = 0; nt < kTT / 8; ++nt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int col = 8 * nt + 2 * t4 + (i & 1), o = o0 + 16 * warp + g + (i >= 2 ? 8 : 0);
      if (col >= rows || o >= p.n_out) continue;
      const int64_t at = static_cast<int64_t>(row0 + col) * p.n_out + o;
      if constexpr (kGateUp) {
        const float gv = acc[0][nt][i], uv = acc[kMats - 1][nt][i];
        p.act[at] = __float2half_rn(gv / (1.0f + __expf(-gv)) * uv);
      } else {
        p.y[at] = acc[0][nt][i];
      }
    }
  }
}

// The rows of each expert, consecutive, and their tiles of tile_tokens rows. One CTA of 1024
// threads; thread e owns expert e in the scan.
__global__ void __launch_bounds__(kGroupThreads)
    GroupKernel(const int32_t* ids, int n_pairs, int n_expert, int tile_tokens, int32_t* n_tiles, int32_t* tile_expert,
                int32_t* tile_row0, int32_t* tile_rows, int32_t* pair_of_row, int32_t* row_of) {
  __shared__ int count[kMaxExperts], first[kMaxExperts], cursor[kMaxExperts];
  __shared__ int warp_rows[32], warp_tiles[32];
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  count[tid] = 0, cursor[tid] = 0;
  __syncthreads();
  for (int i = tid; i < n_pairs; i += kGroupThreads) {
    const int e = ids[i];
    if (e >= 0 && e < n_expert) atomicAdd(&count[e], 1);
  }
  __syncthreads();
  // Block-wide inclusive scan of (rows, tiles) per expert.
  const int c = count[tid], tl = (c + tile_tokens - 1) / tile_tokens;
  int sr = c, st = tl;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int a = __shfl_up_sync(0xffffffffu, sr, o), b = __shfl_up_sync(0xffffffffu, st, o);
    if (lane >= o) sr += a, st += b;
  }
  if (lane == 31) warp_rows[warp] = sr, warp_tiles[warp] = st;
  __syncthreads();
  if (warp == 0) {
    int a = warp_rows[lane], b = warp_tiles[lane];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int a2 = __shfl_up_sync(0xffffffffu, a, o), b2 = __shfl_up_sync(0xffffffffu, b, o);
      if (lane >= o) a += a2, b += b2;
    }
    warp_rows[lane] = a, warp_tiles[lane] = b;
  }
  __syncthreads();
  const int row_first = (warp > 0 ? warp_rows[warp - 1] : 0) + sr - c;
  const int tile_first = (warp > 0 ? warp_tiles[warp - 1] : 0) + st - tl;
  first[tid] = row_first;
  for (int j = 0; j < tl; ++j) {
    tile_expert[tile_first + j] = tid;
    tile_row0[tile_first + j] = row_first + j * tile_tokens;
    tile_rows[tile_first + j] = min(tile_tokens, c - j * tile_tokens);
  }
  if (tid == kGroupThreads - 1) *n_tiles = tile_first + tl;
  __syncthreads();
  for (int i = tid; i < n_pairs; i += kGroupThreads) {
    const int e = ids[i];
    int r = -1;
    if (e >= 0 && e < n_expert) {
      r = first[e] + atomicAdd(&cursor[e], 1);
      pair_of_row[r] = i;
    }
    row_of[i] = r;
  }
}

// Scratch of moe_grouped, carved in this order at 256-byte boundaries.
struct GroupedLayout {
  uint64_t n_tiles, tile_expert, tile_row0, tile_rows, pair_of_row, row_of, act, down, bytes;
};

uint64_t Align256(uint64_t v) { return (v + 255) / 256 * 256; }

int64_t MaxTiles(int64_t n_pairs, int64_t n_expert, int tile_tokens) {
  return (n_pairs + tile_tokens - 1) / tile_tokens + (n_expert < n_pairs ? n_expert : n_pairs);
}

GroupedLayout Layout(int64_t n_tokens, int64_t top_k, int64_t n_embd, int64_t n_ff, int64_t n_expert) {
  const int64_t pairs = n_tokens * top_k, tiles = MaxTiles(pairs, n_expert, kSmallTileTokens);
  GroupedLayout l{};
  uint64_t at = 0;
  auto take = [&](uint64_t* field, uint64_t bytes) { *field = at, at += Align256(bytes); };
  take(&l.n_tiles, 4);
  take(&l.tile_expert, 4 * tiles), take(&l.tile_row0, 4 * tiles), take(&l.tile_rows, 4 * tiles);
  take(&l.pair_of_row, 4 * pairs), take(&l.row_of, 4 * pairs);
  take(&l.act, 2 * pairs * n_ff), take(&l.down, 4 * pairs * n_embd);
  l.bytes = at;
  return l;
}

template <class Q>
int CheckMatrix(const char* op, const char* what, const void* w, int64_t n_in, uint64_t* row_bytes) {
  if (n_in % 32 != 0 || n_in % Q::kWeights != 0) {
    return Fail(MOED_CUDA_EINVAL, std::string(op) + ": " + what + " rows of " + std::to_string(n_in) +
                                      " weights are not whole 32-weight units of the type");
  }
  *row_bytes = static_cast<uint64_t>(n_in / Q::kWeights * Q::kBytes);
  if (w == nullptr || reinterpret_cast<uintptr_t>(w) % Q::kAlign != 0 || *row_bytes % Q::kAlign != 0) {
    return Fail(MOED_CUDA_EINVAL, std::string(op) + ": " + what + " weights null or not aligned to " +
                                      std::to_string(Q::kAlign) + " bytes");
  }
  if constexpr (std::is_same_v<Q, BlockIq3Xxs>) {
    return EnsureIq3XxsGrid();
  } else {
    return 0;
  }
}

template <class Q, bool kGateUp, class XT, int kTT = kTileTokens>
int Launch(const MmaParams& p, unsigned tiles, cudaStream_t stream, const char* what) {
  const dim3 grid(static_cast<unsigned>((p.n_out + kTileRows - 1) / kTileRows), tiles);
  MmaKernel<Q, kGateUp, XT, kTT><<<grid, kThreads, 0, stream>>>(p);
  return FailCuda(cudaGetLastError(), what);
}

// The dense product in clusters of kSplitK CTAs along K (MmaKernel's kSplit).
constexpr int kSplitK = 4;
template <class Q>
int LaunchSplitK(const MmaParams& p, unsigned tiles, cudaStream_t stream, const char* what) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>((p.n_out + kTileRows - 1) / kTileRows), tiles, kSplitK);
  config.blockDim = dim3(kThreads);
  config.stream = stream;
  cudaLaunchAttribute cluster = {};
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = 1, cluster.val.clusterDim.y = 1, cluster.val.clusterDim.z = kSplitK;
  config.attrs = &cluster, config.numAttrs = 1;
  return FailCuda(cudaLaunchKernelEx(&config, MmaKernel<Q, false, float, kTileTokens, kSplitK>, p), what);
}

// Whether a dense product should split K: its output tiles fill at most half the SMs (so the
// split CTAs still fit in one wave) and K has stages enough to split; clusters need Hopper.
bool SplitK(int64_t ctas, int64_t n_in) {
  int device = 0, major = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    return false;
  }
  return major >= 9 && 2 * ctas <= sms && n_in / kStageK >= 2 * kSplitK;
}

}  // namespace

int MoeGroupedScratchBytes(int64_t n_tokens, int32_t top_k, int64_t n_embd, int64_t n_ff, int64_t n_expert,
                           uint64_t* bytes) {
  if (bytes == nullptr || n_tokens < 1 || n_tokens > 65535 || top_k < 1 || top_k > MOED_CUDA_MAX_MOE_TOPK ||
      n_embd < 1 || n_ff < 1 || n_expert < 1 || n_expert > kMaxExperts) {
    return Fail(MOED_CUDA_EINVAL, "moe_grouped: n_tokens must be 1..65535, top_k 1.." +
                                      std::to_string(MOED_CUDA_MAX_MOE_TOPK) + ", n_expert 1.." +
                                      std::to_string(kMaxExperts));
  }
  *bytes = Layout(n_tokens, top_k, n_embd, n_ff, n_expert).bytes;
  return 0;
}

// The one dispatch point of the grouped MoE.
int MoeGroupedLaunch(const MoedCudaMoeGroupedArgs& a, void* stream) {
  uint64_t need = 0;
  if (const int err = MoeGroupedScratchBytes(a.n_tokens, a.top_k, a.n_embd, a.n_ff, a.n_expert, &need)) return err;
  if (a.ids == nullptr || a.weights == nullptr || a.x == nullptr || a.y == nullptr || a.scratch == nullptr ||
      a.n_embd > (int64_t{1} << 24) || a.n_ff > (int64_t{1} << 24)) {
    return Fail(MOED_CUDA_EINVAL, "moe_grouped: bad sizes or null pointers");
  }
  if (a.scratch_bytes < 0 || static_cast<uint64_t>(a.scratch_bytes) < need) {
    return Fail(MOED_CUDA_EINVAL, "moe_grouped: scratch of " + std::to_string(a.scratch_bytes) + " bytes, " +
                                      std::to_string(need) + " needed");
  }
  if (reinterpret_cast<uintptr_t>(a.x) % 16 != 0 || reinterpret_cast<uintptr_t>(a.scratch) % 256 != 0) {
    return Fail(MOED_CUDA_EINVAL, "moe_grouped: x must be 16-byte and scratch 256-byte aligned");
  }
  MmaParams gu{}, dn{};
  if (const int err = WithBlockType("moe_grouped", a.gate_up_type, [&](auto q) {
        using Q = decltype(q);
        if (const int e = CheckMatrix<Q>("moe_grouped", "gate", a.gate_w, a.n_embd, &gu.row_bytes)) return e;
        return CheckMatrix<Q>("moe_grouped", "up", a.up_w, a.n_embd, &gu.row_bytes);
      })) {
    return err;
  }
  if (const int err = WithBlockType("moe_grouped", a.down_type, [&](auto q) {
        return CheckMatrix<decltype(q)>("moe_grouped", "down", a.down_w, a.n_ff, &dn.row_bytes);
      })) {
    return err;
  }
  const GroupedLayout l = Layout(a.n_tokens, a.top_k, a.n_embd, a.n_ff, a.n_expert);
  auto* base = static_cast<uint8_t*>(a.scratch);
  auto at = [&](uint64_t offset) { return reinterpret_cast<int32_t*>(base + offset); };
  const int n_pairs = a.n_tokens * a.top_k;
  const auto s = static_cast<cudaStream_t>(stream);
  // Small tiles when the experts average at most 8 rows (decode batches), 32-row tiles otherwise.
  const bool small = n_pairs <= kSmallTileTokens * a.n_expert;
  const int tile_tokens = small ? kSmallTileTokens : kTileTokens;
  if (MaxTiles(n_pairs, a.n_expert, tile_tokens) > 65535) {
    return Fail(MOED_CUDA_EINVAL, "moe_grouped: " + std::to_string(n_pairs) +
                                      " (token, slot) pairs need more than 65535 tiles; pass fewer tokens a call");
  }
  GroupKernel<<<1, kGroupThreads, 0, s>>>(a.ids, n_pairs, static_cast<int>(a.n_expert), tile_tokens, at(l.n_tiles),
                                          at(l.tile_expert), at(l.tile_row0), at(l.tile_rows), at(l.pair_of_row),
                                          at(l.row_of));
  if (const int err = FailCuda(cudaGetLastError(), "moe_grouped: group launch")) return err;
  const auto tiles = static_cast<unsigned>(MaxTiles(n_pairs, a.n_expert, tile_tokens));

  for (MmaParams* p : {&gu, &dn}) {
    p->n_tiles = at(l.n_tiles), p->tile_expert = at(l.tile_expert);
    p->tile_row0 = at(l.tile_row0), p->tile_rows = at(l.tile_rows);
  }
  gu.w0 = static_cast<const uint8_t*>(a.gate_w), gu.w1 = static_cast<const uint8_t*>(a.up_w);
  gu.matrix_bytes = gu.row_bytes * static_cast<uint64_t>(a.n_ff);
  gu.n_in = static_cast<int>(a.n_embd), gu.n_out = static_cast<int>(a.n_ff);
  gu.x = a.x, gu.pair_of_row = at(l.pair_of_row), gu.top_k = a.top_k;
  gu.act = reinterpret_cast<__half*>(base + l.act);
  if (const int err = WithBlockType("moe_grouped", a.gate_up_type, [&](auto q) {
        using Q = decltype(q);
        return small ? Launch<Q, true, float, kSmallTileTokens>(gu, tiles, s, "moe_grouped: gate/up launch")
                     : Launch<Q, true, float>(gu, tiles, s, "moe_grouped: gate/up launch");
      })) {
    return err;
  }
  dn.w0 = static_cast<const uint8_t*>(a.down_w);
  dn.matrix_bytes = dn.row_bytes * static_cast<uint64_t>(a.n_embd);
  dn.n_in = static_cast<int>(a.n_ff), dn.n_out = static_cast<int>(a.n_embd);
  dn.x = gu.act;
  dn.y = reinterpret_cast<float*>(base + l.down);
  if (const int err = WithBlockType("moe_grouped", a.down_type, [&](auto q) {
        using Q = decltype(q);
        return small ? Launch<Q, false, __half, kSmallTileTokens>(dn, tiles, s, "moe_grouped: down launch")
                     : Launch<Q, false, __half>(dn, tiles, s, "moe_grouped: down launch");
      })) {
    return err;
  }
  if (a.accumulate == 0) {
    if (const int err = FailCuda(cudaMemsetAsync(a.y, 0, static_cast<size_t>(a.n_tokens * a.n_embd) * 4, s),
                                 "moe_grouped: clear y")) {
      return err;
    }
  }
  return MoeCombineLaunch(a.y, dn.y, at(l.row_of), a.weights, a.n_tokens, a.top_k, a.n_embd, stream);
}

int GemmMmaLaunch(const MoedCudaGemvArgs& a, void* stream) {
  if (a.x == nullptr || a.y == nullptr || a.n_tokens < 1 || a.n_matrices != 1 || a.n_out < 1 ||
      a.n_out > (int64_t{1} << 30) || a.n_in > (int64_t{1} << 24) ||
      (a.n_tokens + int64_t{kTileTokens} - 1) / kTileTokens > 65535) {
    return Fail(MOED_CUDA_EINVAL, "gemm_mma: bad sizes or null pointers (one matrix, 1..2097120 tokens)");
  }
  if (reinterpret_cast<uintptr_t>(a.x) % 16 != 0) return Fail(MOED_CUDA_EINVAL, "gemm_mma: x must be 16-byte aligned");
  return WithBlockType("gemm_mma", a.ggml_type, [&](auto q) {
    using Q = decltype(q);
    MmaParams p{};
    if (const int err = CheckMatrix<Q>("gemm_mma", "W", a.w, a.n_in, &p.row_bytes)) return err;
    if (p.row_bytes != a.row_bytes) return Fail(MOED_CUDA_EINVAL, "gemm_mma: row_bytes does not match the type");
    p.w0 = static_cast<const uint8_t*>(a.w);
    p.n_in = static_cast<int>(a.n_in), p.n_out = static_cast<int>(a.n_out);
    p.x = a.x, p.y = a.y, p.n_rows = a.n_tokens;
    const auto tiles = static_cast<unsigned>((a.n_tokens + kTileTokens - 1) / kTileTokens);
    const auto s = static_cast<cudaStream_t>(stream);
    if (SplitK(static_cast<int64_t>(tiles) * ((a.n_out + kTileRows - 1) / kTileRows), a.n_in)) {
      return LaunchSplitK<Q>(p, tiles, s, "gemm_mma launch (split K)");
    }
    return Launch<Q, false, float>(p, tiles, s, "gemm_mma launch");
  });
}

}  // namespace moed::cuda

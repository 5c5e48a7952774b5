// Device-side decoders of the GGUF block formats, shared by every CUDA op family that reads
// weights (GEMV now; MoE and GEMM next). Each type is a struct with its block geometry and
//   static void Decode32(const uint8_t* row, int u, float w[32])
// which decodes weights [32u, 32u + 32) of a row into registers. The values are the CPU
// dequantizers' (kernels/quants/dequantize_*.cc) bit for bit: every product in these formats is
// exact in float32 (gguf-and-quants.md §2.18), and where a min is subtracted the fused
// multiply-add nvcc emits rounds once, like the CPU's exact product followed by the subtraction.
//
// Alignment: blocks are packed without padding, so a type loads with the widest access its block
// size keeps aligned (kAlign): 16 bytes for Q4_K/Q5_K/BF16/F16, 8 for IQ4_XS, 4 for NVFP4, 2 for
// Q8_0/Q3_K/Q6_K/IQ3_XXS/IQ3_A770, 1 for MXFP4. The launcher checks row alignment.
#ifndef MOED_KERNELS_CUDA_QUANTS_CUH_
#define MOED_KERNELS_CUDA_QUANTS_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <string>

#include "kernels/cuda/ops.h"
#include "kernels/quants/iq_grids.h"

namespace moed::cuda {

// ---- Loads and scalar conversions ---------------------------------------------------------------

// Read-only loads through L1 (ld.global.nc). Measured on the H200: bypassing L1 allocation for
// the weights (ld.global.nc.L1::no_allocate, to keep x cached) made the 2-byte-aligned formats
// up to 2.7x slower (each u16 load of a sector went to L2 again) and gained nothing elsewhere.
__device__ __forceinline__ uint32_t Ld8(const uint8_t* p) { return __ldg(p); }
__device__ __forceinline__ uint32_t Ld16(const uint8_t* p) {
  return __ldg(reinterpret_cast<const unsigned short*>(p));
}
__device__ __forceinline__ uint32_t Ld32(const uint8_t* p) {
  return __ldg(reinterpret_cast<const unsigned int*>(p));
}
__device__ __forceinline__ uint2 Ld64(const uint8_t* p) {
  return __ldg(reinterpret_cast<const uint2*>(p));
}
__device__ __forceinline__ uint4 Ld128(const uint8_t* p) {
  return __ldg(reinterpret_cast<const uint4*>(p));
}
__device__ __forceinline__ float Half(uint32_t bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
}
__device__ __forceinline__ float LdHalf(const uint8_t* p) { return Half(Ld16(p)); }

// 32 bytes at p (2-byte aligned) as 16 little-endian u16 words: q[k] holds bytes 2k, 2k+1.
__device__ __forceinline__ void Ld32Bytes2(const uint8_t* p, uint32_t q[16]) {
#pragma unroll
  for (int k = 0; k < 16; ++k) q[k] = Ld16(p + 2 * k);
}
__device__ __forceinline__ uint32_t Byte2(const uint32_t q[16], int i) {
  return (q[i >> 1] >> (8 * (i & 1))) & 0xff;
}
// 32 bytes at p (16-byte aligned) as 8 u32 words.
__device__ __forceinline__ void Ld32Bytes16(const uint8_t* p, uint32_t q[8]) {
  const uint4 a = Ld128(p), b = Ld128(p + 16);
  q[0] = a.x, q[1] = a.y, q[2] = a.z, q[3] = a.w, q[4] = b.x, q[5] = b.y, q[6] = b.z, q[7] = b.w;
}
__device__ __forceinline__ uint32_t Byte4(const uint32_t* q, int i) {
  return (q[i >> 2] >> (8 * (i & 3))) & 0xff;
}

// A 16-entry int8 table held in four registers, looked up with byte permutes (no memory access,
// so lanes with different indices do not serialise as they would on __constant__ memory).
__device__ __forceinline__ float Lut16(uint32_t t0, uint32_t t1, uint32_t t2, uint32_t t3,
                                       uint32_t n) {
  const uint32_t lo = __byte_perm(t0, t1, n & 7);
  const uint32_t hi = __byte_perm(t2, t3, n & 7);
  return static_cast<float>(static_cast<int8_t>(((n & 8) ? hi : lo) & 0xff));
}
__host__ __device__ constexpr uint32_t Pack4(int a, int b, int c, int d) {
  return (static_cast<uint32_t>(a) & 0xff) | ((static_cast<uint32_t>(b) & 0xff) << 8) |
         ((static_cast<uint32_t>(c) & 0xff) << 16) | ((static_cast<uint32_t>(d) & 0xff) << 24);
}
// kvalues_iq4nl, kvalues_mxfp4 (doubled E2M1) and the Phase Twin's kvalues_iq3nl (8 entries).
__device__ __forceinline__ float Iq4nlValue(uint32_t n) {
  return Lut16(Pack4(-127, -104, -83, -65), Pack4(-49, -35, -22, -10), Pack4(1, 13, 25, 38),
               Pack4(53, 69, 89, 113), n);
}
__device__ __forceinline__ float Mxfp4Value(uint32_t n) {
  return Lut16(Pack4(0, 1, 2, 3), Pack4(4, 6, 8, 12), Pack4(0, -1, -2, -3), Pack4(-4, -6, -8, -12),
               n);
}
__device__ __forceinline__ float Iq3nlValue(uint32_t n) {
  return static_cast<float>(static_cast<int8_t>(
      __byte_perm(Pack4(-125, -73, -36, -4), Pack4(21, 49, 82, 127), n & 7) & 0xff));
}

// ggml_e8m0_to_fp32_half and ggml_ue4m3_to_fp32 (both halved: the FP4 table is doubled).
__device__ __forceinline__ float E8m0Half(uint32_t e) {
  return __uint_as_float(e < 2 ? (0x00200000u << e) : ((e - 1) << 23));
}
__device__ __forceinline__ float Ue4m3Half(uint32_t x) {
  if (x == 0 || x == 0x7F) return 0.0f;
  const uint32_t exp = (x >> 3) & 0xF, man = x & 7;
  const float raw = exp == 0 ? static_cast<float>(man) * 0x1p-9f
                             : (1.0f + static_cast<float>(man) * 0.125f) *
                                   __uint_as_float((exp - 7 + 127) << 23);
  return raw * 0.5f;
}

// ---- Block formats ------------------------------------------------------------------------------

struct BlockQ8_0 {  // d @0, qs[32] int8 @2
  static constexpr int kWeights = 32, kBytes = 34, kAlign = 2;
  __device__ __forceinline__ static void Decode32(const uint8_t* row, int u, float w[32]) {
    const uint8_t* b = row + u * kBytes;
    const float d = LdHalf(b);
#pragma unroll
    for (int k = 0; k < 16; ++k) {
      const uint32_t v = Ld16(b + 2 + 2 * k);
      w[2 * k] = static_cast<float>(static_cast<int8_t>(v & 0xff)) * d;
      w[2 * k + 1] = static_cast<float>(static_cast<int8_t>(v >> 8)) * d;
    }
  }
};

// get_scale_min_k4 over the 12 scale bytes held as three u32 words.
__device__ __forceinline__ void ScaleMinK4(int j, const uint32_t s[3], float* sc, float* m) {
  if (j < 4) {
    *sc = static_cast<float>(Byte4(s, j) & 63);
    *m = static_cast<float>(Byte4(s, j + 4) & 63);
  } else {
    *sc = static_cast<float>((Byte4(s, j + 4) & 0xF) | ((Byte4(s, j - 4) >> 6) << 4));
    *m = static_cast<float>((Byte4(s, j + 4) >> 4) | ((Byte4(s, j) >> 6) << 4));
  }
}

struct BlockQ4_K {  // d @0, dmin @2, scales[12] @4, qs[128] @16; unit u = sub-block j of 32
  static constexpr int kWeights = 256, kBytes = 144, kAlign = 16;
  __device__ __forceinline__ static void Decode32(const uint8_t* row, int u, float w[32]) {
    const uint8_t* b = row + (u >> 3) * kBytes;
    const int j = u & 7;
    const uint4 head = Ld128(b);  // d, dmin, scales[12]
    const uint32_t s[3] = {head.y, head.z, head.w};
    float sc, m;
    ScaleMinK4(j, s, &sc, &m);
    const float d1 = Half(head.x & 0xffff) * sc;
    const float m1 = Half(head.x >> 16) * m;
    uint32_t q[8];
    Ld32Bytes16(b + 16 + 32 * (j >> 1), q);
    const int shift = 4 * (j & 1);
#pragma unroll
    for (int l = 0; l < 32; ++l) {
      w[l] = d1 * static_cast<float>((Byte4(q, l) >> shift) & 15) - m1;
    }
  }
};

struct BlockQ5_K {  // d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48
  static constexpr int kWeights = 256, kBytes = 176, kAlign = 16;
  __device__ __forceinline__ static void Decode32(const uint8_t* row, int u, float w[32]) {
    const uint8_t* b = row + (u >> 3) * kBytes;
    const int j = u & 7;
    const uint4 head = Ld128(b);
    const uint32_t s[3] = {head.y, head.z, head.w};
    float sc, m;
    ScaleMinK4(j, s, &sc, &m);
    const float d1 = Half(head.x & 0xffff) * sc;
    const float m1 = Half(head.x >> 16) * m;
    uint32_t qh[8], q[8];
    Ld32Bytes16(b + 16, qh);
    Ld32Bytes16(b + 48 + 32 * (j >> 1), q);
    const int shift = 4 * (j & 1);
#pragma unroll
    for (int l = 0; l < 32; ++l) {
      const uint32_t code = ((Byte4(q, l) >> shift) & 15) + (((Byte4(qh, l) >> j) & 1) << 4);
      w[l] = d1 * static_cast<float>(code) - m1;
    }
  }
};

struct BlockQ6_K {  // ql[128] @0, qh[64] @128, scales[16] int8 @192, d @208
  static constexpr int kWeights = 256, kBytes = 210, kAlign = 2;
  __device__ __forceinline__ static void Decode32(const uint8_t* row, int u, float w[32]) {
    const uint8_t* b = row + (u >> 3) * kBytes;
    const int h = (u >> 2) & 1, k = u & 3;  // weights 128h + 32k + l
    uint32_t ql[16], qh[16];
    Ld32Bytes2(b + 64 * h + 32 * (k & 1), ql);
    Ld32Bytes2(b + 128 + 32 * h, qh);
    const uint32_t s = Ld16(b + 192 + 8 * h + 2 * k);
    const float d = LdHalf(b + 208);
    const float ds0 = d * static_cast<float>(static_cast<int8_t>(s & 0xff));
    const float ds1 = d * static_cast<float>(static_cast<int8_t>(s >> 8));
    const int lo_shift = 4 * (k >> 1), hi_shift = 2 * k;
#pragma unroll
    for (int l = 0; l < 32; ++l) {
      const int q = static_cast<int>(((Byte2(ql, l) >> lo_shift) & 15) |
                                     (((Byte2(qh, l) >> hi_shift) & 3) << 4)) - 32;
      w[l] = (l < 16 ? ds0 : ds1) * static_cast<float>(q);
    }
  }
};

struct BlockQ3_K {  // hmask[32] @0, qs[64] @32, scales[12] @96 (16 x 6 bits), d @108
  static constexpr int kWeights = 256, kBytes = 110, kAlign = 2;
  __device__ __forceinline__ static float Scale(const uint8_t* packed, int s) {
    const uint32_t low4 = s < 8 ? (Ld8(packed + s) & 15) : (Ld8(packed + s - 8) >> 4);
    const uint32_t high2 = (Ld8(packed + 8 + (s & 3)) >> (2 * (s >> 2))) & 3;
    return static_cast<float>(static_cast<int>(low4 | (high2 << 4)) - 32);
  }
  __device__ __forceinline__ static void Decode32(const uint8_t* row, int u, float w[32]) {
    const uint8_t* b = row + (u >> 3) * kBytes;
    const int j = u & 7, h = j >> 2, p = j & 3;  // weights 128h + 32p + i = 32j + i
    uint32_t hm[16], qs[16];
    Ld32Bytes2(b, hm);
    Ld32Bytes2(b + 32 + 32 * h, qs);
    const float d = LdHalf(b + 108);
    const float dl0 = d * Scale(b + 96, 2 * j);
    const float dl1 = d * Scale(b + 96, 2 * j + 1);
    const int hbit = 4 * h + p;
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int q = static_cast<int>((Byte2(qs, i) >> (2 * p)) & 3) -
                    (((Byte2(hm, i) >> hbit) & 1) ? 0 : 4);
      w[i] = (i < 16 ? dl0 : dl1) * static_cast<float>(q);
    }
  }
};

struct BlockIq3A770 {  // hmask[32] @0, qs[64] @32, scales[4] @96 (nibble - 8), d @100
  static constexpr int kWeights = 256, kBytes = 102, kAlign = 2;
  __device__ __forceinline__ static void Decode32(const uint8_t* row, int u, float w[32]) {
    const uint8_t* b = row + (u >> 3) * kBytes;
    const int j = u & 7, h = j >> 2, p = j & 3;
    uint32_t hm[16], qs[16];
    Ld32Bytes2(b, hm);
    Ld32Bytes2(b + 32 + 32 * h, qs);
    const int sc = static_cast<int>((Ld8(b + 96 + (j >> 1)) >> (4 * (j & 1))) & 15) - 8;
    const float dl = LdHalf(b + 100) * static_cast<float>(sc);
    const int hbit = 4 * h + p;
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const uint32_t code = ((Byte2(qs, i) >> (2 * p)) & 3) | (((Byte2(hm, i) >> hbit) & 1) << 2);
      w[i] = dl * Iq3nlValue(code);
    }
  }
};

struct BlockIq4Xs {  // d @0, scales_h u16 @2, scales_l[4] @4, qs[128] @8
  static constexpr int kWeights = 256, kBytes = 136, kAlign = 8;
  __device__ __forceinline__ static void Decode32(const uint8_t* row, int u, float w[32]) {
    const uint8_t* b = row + (u >> 3) * kBytes;
    const int ib = u & 7;
    const uint2 head = Ld64(b);  // d, scales_h, scales_l[4]
    const uint32_t sl = (head.y >> (8 * (ib >> 1))) & 0xff;
    const int ls = static_cast<int>(((sl >> (4 * (ib & 1))) & 15) |
                                    (((head.x >> (16 + 2 * ib)) & 3) << 4));
    const float dl = Half(head.x & 0xffff) * static_cast<float>(ls - 32);
    const uint2 q0 = Ld64(b + 8 + 16 * ib);
    const uint2 q1 = Ld64(b + 16 + 16 * ib);
    const uint32_t q[4] = {q0.x, q0.y, q1.x, q1.y};
#pragma unroll
    for (int l = 0; l < 16; ++l) {
      const uint32_t v = Byte4(q, l);
      w[l] = dl * Iq4nlValue(v & 15);
      w[l + 16] = dl * Iq4nlValue(v >> 4);
    }
  }
};

struct BlockMxfp4 {  // e (E8M0) @0, qs[16] @1
  static constexpr int kWeights = 32, kBytes = 17, kAlign = 1;
  __device__ __forceinline__ static void Decode32(const uint8_t* row, int u, float w[32]) {
    const uint8_t* b = row + u * kBytes;
    const float d = E8m0Half(Ld8(b));
#pragma unroll
    for (int l = 0; l < 16; ++l) {
      const uint32_t v = Ld8(b + 1 + l);
      w[l] = Mxfp4Value(v & 15) * d;
      w[l + 16] = Mxfp4Value(v >> 4) * d;
    }
  }
};

struct BlockNvfp4 {  // d[4] (UE4M3 per 16 weights) @0, qs[32] @4; unit = half a block
  static constexpr int kWeights = 64, kBytes = 36, kAlign = 4;
  __device__ __forceinline__ static void Decode32(const uint8_t* row, int u, float w[32]) {
    const uint8_t* b = row + (u >> 1) * kBytes;
    const int hh = u & 1;
    const uint32_t scales = Ld32(b);
    uint32_t q[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) q[k] = Ld32(b + 4 + 16 * hh + 4 * k);
#pragma unroll
    for (int sl = 0; sl < 2; ++sl) {
      const float ds = Ue4m3Half((scales >> (8 * (2 * hh + sl))) & 0xff);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const uint32_t v = Byte4(q, 8 * sl + j);
        w[16 * sl + j] = Mxfp4Value(v & 15) * ds;
        w[16 * sl + 8 + j] = Mxfp4Value(v >> 4) * ds;
      }
    }
  }
};

// The IQ3_XXS grid (ggml's iq3xxs_grid) in device memory. Whole-program compilation (no -rdc)
// gives each translation unit its own copy: a .cu that decodes IQ3_XXS copies
// kernels/quants/iq_grids.cc's table into it on first use per device (EnsureIq3XxsGrid below).
static __device__ uint32_t g_iq3xxs_grid[256];

// Copies ggml's iq3xxs_grid into this translation unit's g_iq3xxs_grid on the current device, once
// per device. Internal linkage on purpose: each .cu that decodes IQ3_XXS has its own grid and its
// own copy of this function (and of its once-per-device bookkeeping).
static int EnsureIq3XxsGrid() {
  static std::mutex mu;
  static uint64_t done = 0;  // bit d: device d has the grid
  int device = 0;
  if (const int err = FailCuda(cudaGetDevice(&device), "cudaGetDevice")) return err;
  if (device >= 64) return Fail(MOED_CUDA_EINVAL, "IQ3_XXS: device ordinal above 63");
  std::lock_guard<std::mutex> lock(mu);
  if (done & (uint64_t{1} << device)) return 0;
  static_assert(sizeof(quants_internal::kIq3XxsGrid) == sizeof(g_iq3xxs_grid));
  if (const int err = FailCuda(cudaMemcpyToSymbol(g_iq3xxs_grid, quants_internal::kIq3XxsGrid.data(),
                                                  sizeof(g_iq3xxs_grid)),
                               "copying the IQ3_XXS grid")) {
    return err;
  }
  done |= uint64_t{1} << device;
  return 0;
}

struct BlockIq3Xxs {  // d @0, qs[64] @2 (grid indices), scales_and_signs u32[8] @66
  static constexpr int kWeights = 256, kBytes = 98, kAlign = 2;
  __device__ __forceinline__ static void Decode32(const uint8_t* row, int u, float w[32]) {
    const uint8_t* b = row + (u >> 3) * kBytes;
    const int ib = u & 7;
    const float d = LdHalf(b);
    const uint32_t aux = Ld16(b + 66 + 4 * ib) | (Ld16(b + 68 + 4 * ib) << 16);
    const float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.5f;
    uint32_t idx[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) idx[k] = Ld16(b + 2 + 8 * ib + 2 * k);
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const uint32_t i7 = (aux >> (7 * l)) & 127;
      const uint32_t signs = i7 | ((__popc(i7) & 1) << 7);  // ksigns_iq2xs
      const uint32_t g1 = __ldg(&g_iq3xxs_grid[idx[l] & 0xff]);
      const uint32_t g2 = __ldg(&g_iq3xxs_grid[idx[l] >> 8]);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const uint32_t g = j < 4 ? g1 : g2;
        const float mag = db * static_cast<float>((g >> (8 * (j & 3))) & 0xff);
        w[8 * l + j] = ((signs >> j) & 1) ? -mag : mag;
      }
    }
  }
};

template <bool kBf16>
struct BlockHalf16 {  // plain 16-bit floats; a unit is 64 bytes
  static constexpr int kWeights = 1, kBytes = 2, kAlign = 16;
  __device__ __forceinline__ static void Decode32(const uint8_t* row, int u, float w[32]) {
    const uint8_t* b = row + 64 * u;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint4 v = Ld128(b + 16 * k);
      const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if constexpr (kBf16) {
          w[8 * k + 2 * e] = __uint_as_float(words[e] << 16);
          w[8 * k + 2 * e + 1] = __uint_as_float(words[e] & 0xffff0000u);
        } else {
          w[8 * k + 2 * e] = Half(words[e] & 0xffff);
          w[8 * k + 2 * e + 1] = Half(words[e] >> 16);
        }
      }
    }
  }
};
using BlockF16 = BlockHalf16<false>;
using BlockBf16 = BlockHalf16<true>;

struct BlockF32 {  // plain 32-bit floats; a unit is 128 bytes
  static constexpr int kWeights = 1, kBytes = 4, kAlign = 16;
  __device__ __forceinline__ static void Decode32(const uint8_t* row, int u, float w[32]) {
    const uint8_t* b = row + 128 * u;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const uint4 v = Ld128(b + 16 * k);
      w[4 * k] = __uint_as_float(v.x), w[4 * k + 1] = __uint_as_float(v.y);
      w[4 * k + 2] = __uint_as_float(v.z), w[4 * k + 3] = __uint_as_float(v.w);
    }
  }
};

// Element i of a row of a plain float type (F32, F16 or BF16), for the generic kernels that take
// rows whose length is not a multiple of 32 (small test models).
__device__ __forceinline__ float LoadPlain(uint32_t type, const uint8_t* row, int64_t i) {
  if (type == kF32) return __ldg(reinterpret_cast<const float*>(row) + i);
  const uint32_t bits = Ld16(row + 2 * i);
  return type == kF16 ? Half(bits) : __uint_as_float(bits << 16);
}
__host__ __device__ inline bool IsPlainType(uint32_t type) {
  return type == kF32 || type == kF16 || type == kBf16;
}
__host__ __device__ inline int64_t PlainBytes(uint32_t type) { return type == kF32 ? 4 : 2; }

// The one switch from a type id to its decoder: returns f(Q{}) for the block type of `type`, or a
// MOED_CUDA_EINVAL failure naming `what` for a type without a decoder here.
template <class F>
int WithBlockType(const char* what, uint32_t type, F&& f) {
  switch (type) {
    case kF32: return f(BlockF32{});
    case kF16: return f(BlockF16{});
    case kBf16: return f(BlockBf16{});
    case kQ8_0: return f(BlockQ8_0{});
    case kQ3_K: return f(BlockQ3_K{});
    case kQ4_K: return f(BlockQ4_K{});
    case kQ5_K: return f(BlockQ5_K{});
    case kQ6_K: return f(BlockQ6_K{});
    case kIq4Xs: return f(BlockIq4Xs{});
    case kMxfp4: return f(BlockMxfp4{});
    case kNvfp4: return f(BlockNvfp4{});
    case kIq3A770: return f(BlockIq3A770{});
    case kIq3Xxs: return f(BlockIq3Xxs{});
    default:
      return Fail(MOED_CUDA_EINVAL, std::string(what) + ": ggml type " + std::to_string(type) + " is not supported");
  }
}

}  // namespace moed::cuda

#endif  // MOED_KERNELS_CUDA_QUANTS_CUH_

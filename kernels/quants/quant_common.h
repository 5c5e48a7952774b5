// Small pieces shared by the CPU (de)quantizers of kernels/quants: unaligned little-endian field
// access, ggml's rounding helpers, the scale decoders of the FP4 formats and the non-linear value
// tables. Internal to kernels/quants. Each helper reproduces the ggml reference bit for bit
// (ggml-quants.c, ggml-impl.h, ggml-common.h).
#ifndef MOED_KERNELS_QUANTS_QUANT_COMMON_H_
#define MOED_KERNELS_QUANTS_QUANT_COMMON_H_

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/base/half.h"

namespace moed::quants_internal {

static_assert(std::endian::native == std::endian::little, "ggml blocks are little-endian");

// Blocks are packed back to back without alignment, so multi-byte fields go through memcpy.
inline uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Scalar loads of block scales keep the branchy conversion: for the normal scales of real
// weights its branches always predict, and it is shorter on the critical path than the
// branch-free Fp16ToFp32Bits below (measured: Q8_0 rows ~10% faster).
inline float LoadFp16(const uint8_t* p) { return Fp16ToFp32(LoadU16(p)); }
// IEEE binary16 -> float32 bits, equal to moed::Fp16ToFp32 on all 65536 inputs (tested) but
// without branches, so that a loop over many halves (F16 rows) vectorises: shifting the exponent
// and mantissa into place and multiplying by 2^112 rebiases normals and subnormals exactly;
// exponent 31 (inf/NaN) is selected by a mask instead and mapped to exponent 255 keeping the
// payload. Like Fp16ToFp32 it needs the default MXCSR (no flush-to-zero, no denormals-are-zero).
inline uint32_t Fp16ToFp32Bits(uint32_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  const uint32_t scaled = std::bit_cast<uint32_t>(std::bit_cast<float>(em << 13) * 0x1.0p112f);
  const uint32_t special = 0x7f800000u | ((em & 0x3ffu) << 13);
  const uint32_t mask = 0u - ((em + 0x400u) >> 15);  // all ones iff em >= 0x7c00
  return (scaled & ~mask) | (special & mask) | sign;
}

inline void StoreU16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, sizeof(v)); }
inline void StoreU32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, sizeof(v)); }
inline void StoreFp16(uint8_t* p, float f) { StoreU16(p, Fp32ToFp16(f)); }

// ggml's nearest_int: round half to even by adding 1.5 * 2^23 and reading the mantissa. Valid
// for |x| < 2^22; outside that it returns garbage in [-2^22, 2^22), like the reference, but never
// invokes undefined behaviour.
inline int NearestInt(float fval) {
  const float val = fval + 12582912.f;
  int32_t i;
  std::memcpy(&i, &val, sizeof(i));
  return (i & 0x007fffff) - 0x00400000;
}

// What a C cast (int8_t)f / (uint8_t)f does on x86-64: truncate toward zero through a 32-bit
// cvttss2si, which yields INT32_MIN for NaN and out-of-range values. Spelled out because such a
// cast of an out-of-range float is undefined behaviour in C++; callers narrow the int
// themselves, which is modular and well defined.
inline int32_t TruncToInt32(float f) {
  if (!(f >= -2147483648.0f && f < 2147483648.0f)) return INT32_MIN;
  return static_cast<int32_t>(f);
}

// ggml_e8m0_to_fp32_half: 2^(e-128), i.e. half the OCP MX scale (the FP4 table is doubled).
inline float E8M0ToFp32Half(uint8_t e) {
  const uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
  return std::bit_cast<float>(bits);
}

// ggml_ue4m3_to_fp32: half the unsigned E4M3 value; 0x00 and 0x7F (NaN) decode to 0.
inline float Ue4m3ToFp32Half(uint8_t x) {
  if (x == 0 || x == 0x7F) return 0.0f;
  const int exp = (x >> 3) & 0xF;
  const int man = x & 0x7;
  const float raw = exp == 0 ? std::ldexp(static_cast<float>(man), -9)
                             : std::ldexp(1.0f + static_cast<float>(man) / 8.0f, exp - 7);
  return raw * 0.5f;
}

// Non-linear value tables (ggml-common.h; kIq3nlValues from the Phase Twin patch, §2.17).
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};
inline constexpr int8_t kMxfp4Values[16] = {0, 1,  2,  3,  4,  6,  8,  12,
                                            0, -1, -2, -3, -4, -6, -8, -12};
inline constexpr int8_t kIq3nlValues[8] = {-125, -73, -36, -4, 21, 49, 82, 127};

// ggml's best_index_int8 (current upstream form): index of the sorted table entry nearest to x,
// ties going up. Doubling x keeps the midpoint comparison exact. n must be a power of two.
inline int BestIndexInt8(int n, const int8_t* val, float x) {
  const float x2 = x + x;
  int idx = 0;
  for (int step = n >> 1; step > 0; step >>= 1) {
    const int j = idx + step;
    idx = (x2 >= static_cast<float>(val[j - 1] + val[j])) ? j : idx;
  }
  return idx;
}

}  // namespace moed::quants_internal

#endif  // MOED_KERNELS_QUANTS_QUANT_COMMON_H_

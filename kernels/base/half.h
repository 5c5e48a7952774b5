// Exact scalar conversions between float32 and the 16-bit formats of GGUF files (IEEE binary16
// and bfloat16). Both directions round to nearest even, as F16C, CUDA and ggml do, so quantizers
// that store a rounded scale produce the same bytes as llama.cpp.
#ifndef MOED_KERNELS_BASE_HALF_H_
#define MOED_KERNELS_BASE_HALF_H_

#include <bit>
#include <cmath>
#include <cstdint>

namespace moed {

inline float Fp16ToFp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24 is exact in float32.
    const float magnitude = static_cast<float>(mantissa) * 0x1.0p-24f;
    return std::bit_cast<float>(std::bit_cast<uint32_t>(magnitude) | sign);
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// Round to nearest even; overflow gives infinity, NaN stays a quiet NaN.
inline uint16_t Fp32ToFp16(float f) {
  const uint32_t w = std::bit_cast<uint32_t>(f);
  const uint32_t doubled = w + w;  // drops the sign
  const uint32_t sign = w & 0x80000000u;
  // Scaling up then down saturates values too large for binary16 to infinity while leaving the
  // others unchanged; adding a power of two aligned to the result's ulp performs the rounding.
  float base = (std::fabs(f) * 0x1.0p+112f) * 0x1.0p-110f;
  uint32_t bias = doubled & 0xff000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = std::bit_cast<float>((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = std::bit_cast<uint32_t>(base);
  const uint32_t exponent_bits = (bits >> 13) & 0x00007c00u;
  const uint32_t mantissa_bits = bits & 0x00000fffu;
  const uint32_t nonsign = exponent_bits + mantissa_bits;
  return static_cast<uint16_t>((sign >> 16) | (doubled > 0xff000000u ? 0x7e00u : nonsign));
}

inline float Bf16ToFp32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

inline uint16_t Fp32ToBf16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 64);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

}  // namespace moed

#endif  // MOED_KERNELS_BASE_HALF_H_

// Reference quantizers for the plain float types, the legacy 32-weight formats (Q4_0, Q4_1,
// Q5_0, Q5_1, Q8_0), the ternary formats (TQ1_0, TQ2_0) and MXFP4. Each transcribes llama.cpp's
// quantize_row_*_ref operation by operation in float32 (no FMA contraction: kernels/CMakeLists.txt
// builds this library with -ffp-contract=off), so the bytes equal llama.cpp's and gguf-py's.
// Where the reference casts a float to a narrow integer, TruncToInt32 reproduces the x86 result
// without C++ undefined behaviour.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/quants/quant_common.h"
#include "kernels/quants/quantize_impl.h"

namespace moed::quants_internal {
namespace {

constexpr int kQK = 32;

// (int8_t)f and (uint8_t)f as compiled for x86-64.
inline int8_t CastInt8(float f) { return static_cast<int8_t>(TruncToInt32(f)); }
inline uint8_t CastUint8(float f) { return static_cast<uint8_t>(TruncToInt32(f)); }

// Index of the doubled-E2M1 table entry nearest to x at scale e; the first one wins ties.
inline int BestIndexMxfp4(float x, float e) {
  int best_index = 0;
  float best_err = std::fabs(kMxfp4Values[0] * e - x);
  for (int i = 1; i < 16; ++i) {
    const float err = std::fabs(kMxfp4Values[i] * e - x);
    if (err < best_err) {
      best_index = i;
      best_err = err;
    }
  }
  return best_index;
}

// Signed value with the largest magnitude (the first one on ties) and that magnitude.
inline float SignedAbsMax(const float* x, int n) {
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

inline void MinMax(const float* x, int n, float* min, float* max) {
  *min = FLT_MAX;
  *max = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    if (x[j] < *min) *min = x[j];
    if (x[j] > *max) *max = x[j];
  }
}

// lroundf(v) + 1 as the ternary quantizers compute it: -1, 0, 1 -> 0, 1, 2.
inline int Trit(float v) { return static_cast<int>(std::lround(v)) + 1; }

}  // namespace

void QuantizeF32(const float* src, uint8_t* dst, int64_t n_blocks) {
  std::memcpy(dst, src, static_cast<size_t>(n_blocks) * sizeof(float));
}

void QuantizeF16(const float* src, uint8_t* dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i) StoreU16(dst + 2 * i, Fp32ToFp16(src[i]));
}

void QuantizeBf16(const float* src, uint8_t* dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i) StoreU16(dst + 2 * i, Fp32ToBf16(src[i]));
}

void QuantizeQ4_0(const float* src, uint8_t* dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += kQK, dst += 18) {
    const float max = SignedAbsMax(src, kQK);
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    StoreFp16(dst, d);
    for (int j = 0; j < kQK / 2; ++j) {
      const float x0 = src[j] * id;
      const float x1 = src[kQK / 2 + j] * id;
      const uint8_t xi0 = static_cast<uint8_t>(std::min<int>(15, CastInt8(x0 + 8.5f)));
      const uint8_t xi1 = static_cast<uint8_t>(std::min<int>(15, CastInt8(x1 + 8.5f)));
      dst[2 + j] = static_cast<uint8_t>(xi0 | (xi1 << 4));
    }
  }
}

void QuantizeQ4_1(const float* src, uint8_t* dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += kQK, dst += 20) {
    float min, max;
    MinMax(src, kQK, &min, &max);
    const float d = (max - min) / ((1 << 4) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    StoreFp16(dst, d);
    StoreFp16(dst + 2, min);
    for (int j = 0; j < kQK / 2; ++j) {
      const float x0 = (src[j] - min) * id;
      const float x1 = (src[kQK / 2 + j] - min) * id;
      const uint8_t xi0 = static_cast<uint8_t>(std::min<int>(15, CastInt8(x0 + 0.5f)));
      const uint8_t xi1 = static_cast<uint8_t>(std::min<int>(15, CastInt8(x1 + 0.5f)));
      dst[4 + j] = static_cast<uint8_t>(xi0 | (xi1 << 4));
    }
  }
}

void QuantizeQ5_0(const float* src, uint8_t* dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += kQK, dst += 22) {
    const float max = SignedAbsMax(src, kQK);
    const float d = max / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    StoreFp16(dst, d);
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const float x0 = src[j] * id;
      const float x1 = src[kQK / 2 + j] * id;
      const uint8_t xi0 = static_cast<uint8_t>(std::min<int>(31, CastInt8(x0 + 16.5f)));
      const uint8_t xi1 = static_cast<uint8_t>(std::min<int>(31, CastInt8(x1 + 16.5f)));
      dst[6 + j] = static_cast<uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
      qh |= ((xi0 & 0x10u) >> 4) << j;
      qh |= ((xi1 & 0x10u) >> 4) << (j + kQK / 2);
    }
    StoreU32(dst + 2, qh);
  }
}

void QuantizeQ5_1(const float* src, uint8_t* dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += kQK, dst += 24) {
    float min, max;
    MinMax(src, kQK, &min, &max);
    const float d = (max - min) / ((1 << 5) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    StoreFp16(dst, d);
    StoreFp16(dst + 2, min);
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const float x0 = (src[j] - min) * id;
      const float x1 = (src[kQK / 2 + j] - min) * id;
      const uint8_t xi0 = CastUint8(x0 + 0.5f);
      const uint8_t xi1 = CastUint8(x1 + 0.5f);
      dst[8 + j] = static_cast<uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
      qh |= ((xi0 & 0x10u) >> 4) << j;
      qh |= ((xi1 & 0x10u) >> 4) << (j + kQK / 2);
    }
    StoreU32(dst + 4, qh);
  }
}

// Also the activation quantizer: Q8_0 has no separate "activation" variant.
void QuantizeQ8_0(const float* src, uint8_t* dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += kQK, dst += 34) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(src[j]));
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    StoreFp16(dst, d);
    // roundf: half away from zero, unlike the K-quants' NearestInt.
    for (int j = 0; j < kQK; ++j)
      dst[2 + j] = static_cast<uint8_t>(CastInt8(std::round(src[j] * id)));
  }
}

void QuantizeMxfp4(const float* src, uint8_t* dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += kQK, dst += 17) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) {
      if (amax < std::fabs(src[j])) amax = std::fabs(src[j]);
    }
    const uint8_t e = amax > 0.0f ? CastUint8(std::floor(std::log2(amax)) - 2 + 127) : 0;
    const float d = E8M0ToFp32Half(e);
    dst[0] = e;
    for (int j = 0; j < kQK / 2; ++j) {
      const int x0 = BestIndexMxfp4(src[j], d);
      const int x1 = BestIndexMxfp4(src[kQK / 2 + j], d);
      dst[1 + j] = static_cast<uint8_t>(x0 | (x1 << 4));
    }
  }
}

// block_tq1_0: qs[48] @0, qh[4] @48, d @52. Five trits per qs byte (the first trit most
// significant), stored as ceil(code * 256 / 243) so the decoder extracts trits by multiplying.
void QuantizeTq1_0(const float* src, uint8_t* dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, dst += 54) {
    float amax = 0.0f;
    for (int j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(src[j]));
    const float d = amax;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    StoreFp16(dst + 52, d);
    const auto pack = [](uint8_t q) {
      return static_cast<uint8_t>((static_cast<uint16_t>(q) * 256 + (243 - 1)) / 243);
    };
    // 32 bytes covering 160 weights, then 16 bytes covering 80.
    for (int m = 0; m < 32; ++m) {
      uint8_t q = 0;
      for (int n = 0; n < 5; ++n) q = static_cast<uint8_t>(q * 3 + Trit(src[m + n * 32] * id));
      dst[m] = pack(q);
    }
    src += 5 * 32;
    for (int m = 0; m < 16; ++m) {
      uint8_t q = 0;
      for (int n = 0; n < 5; ++n) q = static_cast<uint8_t>(q * 3 + Trit(src[m + n * 16] * id));
      dst[32 + m] = pack(q);
    }
    src += 5 * 16;
    // Four trits per qh byte, shifted up by one trit.
    for (int j = 0; j < 4; ++j) {
      uint8_t q = 0;
      for (int m = 0; m < 4; ++m) q = static_cast<uint8_t>(q * 3 + Trit(src[j + m * 4] * id));
      q = static_cast<uint8_t>(q * 3);
      dst[48 + j] = pack(q);
    }
    src += 4 * 4;
  }
}

// block_tq2_0: qs[64] @0, d @64; code = trit + 1 in 2 bits, four 32-weight planes per 32 bytes.
void QuantizeTq2_0(const float* src, uint8_t* dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, dst += 66) {
    float amax = 0.0f;
    for (int j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(src[j]));
    const float d = amax;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    StoreFp16(dst + 64, d);
    for (int j = 0; j < 64; j += 32) {
      for (int m = 0; m < 32; ++m) {
        uint8_t q = 0;
        for (int n = 0; n < 4; ++n) {
          q = static_cast<uint8_t>(q + ((Trit(src[m + n * 32] * id) & 3) << (2 * n)));
        }
        dst[j + m] = q;
      }
      src += 4 * 32;
    }
  }
}

}  // namespace moed::quants_internal

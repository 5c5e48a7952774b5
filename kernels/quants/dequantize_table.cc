// Dequantizers for the table formats without grids (IQ4_NL, IQ4_XS), the ternary formats
// (TQ1_0, TQ2_0) and the FP4 formats (MXFP4, NVFP4). Each follows llama.cpp's dequantize_row_*
// with the same multiplication grouping, so the float32 results are bit-identical.
#include <cstdint>

#include "kernels/quants/dequantize_impl.h"
#include "kernels/quants/quant_common.h"

namespace moed::quants_internal {

// block_iq4_nl: d @0, qs[16] @2 (low nibbles weights 0..15, high nibbles 16..31).
void DequantizeIq4Nl(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += 18, dst += 32) {
    const float d = LoadFp16(src);
    const uint8_t* qs = src + 2;
    for (int j = 0; j < 16; ++j) {
      dst[j] = d * kIq4nlValues[qs[j] & 0xF];
      dst[j + 16] = d * kIq4nlValues[qs[j] >> 4];
    }
  }
}

// block_iq4_xs: d @0, scales_h (u16) @2, scales_l[4] @4, qs[128] @8; 8 sub-blocks of 32 with
// 6-bit scales (value - 32).
void DequantizeIq4Xs(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += 136) {
    const float d = LoadFp16(src);
    const uint16_t scales_h = LoadU16(src + 2);
    const uint8_t* scales_l = src + 4;
    const uint8_t* qs = src + 8;
    for (int ib = 0; ib < 8; ++ib, dst += 32, qs += 16) {
      const int ls = ((scales_l[ib / 2] >> 4 * (ib % 2)) & 0xF) | (((scales_h >> 2 * ib) & 3) << 4);
      const float dl = d * (ls - 32);
      for (int j = 0; j < 16; ++j) {
        dst[j] = dl * kIq4nlValues[qs[j] & 0xF];
        dst[j + 16] = dl * kIq4nlValues[qs[j] >> 4];
      }
    }
  }
}

// block_tq1_0: qs[48] @0 (5 trits per byte, stored as a fixed-point fraction of 3^5),
// qh[4] @48 (4 trits per byte), d @52. Trit t of byte b is ((b * 3^t) mod 256) * 3 >> 8.
void DequantizeTq1_0(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  static constexpr uint8_t kPow3[6] = {1, 3, 9, 27, 81, 243};
  for (int64_t i = 0; i < n_blocks; ++i, src += 54) {
    const uint8_t* qs = src;
    const uint8_t* qh = src + 48;
    const float d = LoadFp16(src + 52);
    const auto trit = [](uint8_t byte, int n) {
      const uint8_t q = static_cast<uint8_t>(byte * kPow3[n]);
      return ((static_cast<uint16_t>(q) * 3) >> 8) - 1;
    };
    // 32-byte run then 16-byte run of qs, each emitting 5 rows of trits, then qh's 4 rows.
    for (int n = 0; n < 5; ++n) {
      for (int m = 0; m < 32; ++m) *dst++ = static_cast<float>(trit(qs[m], n)) * d;
    }
    for (int n = 0; n < 5; ++n) {
      for (int m = 0; m < 16; ++m) *dst++ = static_cast<float>(trit(qs[32 + m], n)) * d;
    }
    for (int n = 0; n < 4; ++n) {
      for (int j = 0; j < 4; ++j) *dst++ = static_cast<float>(trit(qh[j], n)) * d;
    }
  }
}

// block_tq2_0: qs[64] @0 (2-bit codes 0..3 meaning -1..2), d @64.
void DequantizeTq2_0(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += 66) {
    const float d = LoadFp16(src + 64);
    for (int j = 0; j < 64; j += 32) {
      for (int l = 0; l < 4; ++l) {
        for (int m = 0; m < 32; ++m) {
          const int q = (src[j + m] >> (l * 2)) & 3;
          *dst++ = static_cast<float>(q - 1) * d;
        }
      }
    }
  }
}

// block_mxfp4: e (E8M0) @0, qs[16] @1; low nibbles weights 0..15, high nibbles 16..31.
void DequantizeMxfp4(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += 17, dst += 32) {
    const float d = E8M0ToFp32Half(src[0]);
    const uint8_t* qs = src + 1;
    for (int j = 0; j < 16; ++j) {
      dst[j] = kMxfp4Values[qs[j] & 0xF] * d;
      dst[j + 16] = kMxfp4Values[qs[j] >> 4] * d;
    }
  }
}

// block_nvfp4: d[4] (UE4M3, one per 16 weights) @0, qs[32] @4; within each 16-weight
// sub-block the low nibbles are weights 0..7 and the high nibbles 8..15.
void DequantizeNvfp4(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += 36) {
    for (int s = 0; s < 4; ++s, dst += 16) {
      const float d = Ue4m3ToFp32Half(src[s]);
      const uint8_t* qs = src + 4 + 8 * s;
      for (int j = 0; j < 8; ++j) {
        dst[j] = kMxfp4Values[qs[j] & 0xF] * d;
        dst[j + 8] = kMxfp4Values[qs[j] >> 4] * d;
      }
    }
  }
}

}  // namespace moed::quants_internal

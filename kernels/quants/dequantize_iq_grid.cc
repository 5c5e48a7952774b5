// Dequantizers for the grid (lattice codebook) formats IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
// IQ1_S and IQ1_M: 256 weights per block, decoded in groups of 8 (or 4) weights that share one
// grid entry. Each function mirrors llama.cpp's dequantize_row_* (ggml-quants.c) operation by
// operation, in float32 and with the same grouping, e.g. IQ2's db = (d * (0.5f + s)) * 0.25f and
// then db * grid * sign. Every product is exact in float32 and IQ1's grid + delta sum is exact,
// so the results are bit-identical to the reference whatever the compiler contracts.
#include <cstdint>

#include "kernels/quants/dequantize_impl.h"
#include "kernels/quants/iq_grids.h"
#include "kernels/quants/quant_common.h"

namespace moed::quants_internal {
namespace {

constexpr int kBlockWeights = 256;  // QK_K
constexpr int kSubBlocks = kBlockWeights / 32;

// Block sizes in bytes (ggml-common.h block_iq* structs; all packed, no padding).
constexpr int kIq2XxsBytes = 2 + 64;        // d, qs[32] as u16
constexpr int kIq2XsBytes = 2 + 64 + 8;     // d, qs[32] as u16, scales[8]
constexpr int kIq2SBytes = 2 + 64 + 8 + 8;  // d, qs[64] (32 indices + 32 signs), qh[8], scales[8]
constexpr int kIq3XxsBytes = 2 + 64 + 32;   // d, qs[64], scales_and_signs[8] as u32
constexpr int kIq3SBytes = 2 + 64 + 8 + 32 + 4;  // d, qs[64], qh[8], signs[32], scales[4]
constexpr int kIq1SBytes = 2 + 32 + 16;          // d, qs[32], qh[8] as u16
constexpr int kIq1MBytes = 32 + 16 + 8;          // qs[32], qh[16], scales[8] (holding d too)

// Byte j of a grid entry: the magnitude (or IQ1 value) of weight j of the group.
inline int GridByte(uint64_t entry, int j) { return static_cast<int>((entry >> (8 * j)) & 0xff); }

// Decodes one group of 8 weights: scale * magnitude, negated where the sign mask has a bit set.
// Written as ggml does: (scale * grid[j]) * (±1.f).
inline void DecodeSigned8(float scale, uint64_t entry, uint8_t signs, float* y) {
  for (int j = 0; j < 8; ++j) {
    y[j] = scale * static_cast<float>(GridByte(entry, j)) * ((signs >> j) & 1 ? -1.f : 1.f);
  }
}

// Same for two 4-weight entries of an IQ3 grid forming one group of 8.
inline void DecodeSigned4x2(float scale, uint32_t entry1, uint32_t entry2, uint8_t signs,
                            float* y) {
  for (int j = 0; j < 4; ++j) {
    y[j + 0] = scale * static_cast<float>(GridByte(entry1, j)) * ((signs >> j) & 1 ? -1.f : 1.f);
    y[j + 4] =
        scale * static_cast<float>(GridByte(entry2, j)) * ((signs >> (j + 4)) & 1 ? -1.f : 1.f);
  }
}

// One IQ1 group of 8: scale * (value + delta), values int8 in {-1, 0, 1}.
inline void DecodeIq1Group(float scale, float delta, uint64_t entry, float* y) {
  for (int j = 0; j < 8; ++j) {
    const int8_t value = static_cast<int8_t>(GridByte(entry, j));
    y[j] = scale * (static_cast<float>(value) + delta);
  }
}

}  // namespace

// block_iq2_xxs: d (fp16) @0, then 8 bytes per sub-block of 32 weights: four grid indices, then
// a u32 whose bits 7l..7l+6 are group l's sign index and whose top 4 bits are the scale.
void DequantizeIq2Xxs(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += kIq2XxsBytes) {
    const float d = LoadFp16(src);
    for (int ib = 0; ib < kSubBlocks; ++ib) {
      const uint8_t* q = src + 2 + 8 * ib;
      const uint32_t aux = LoadU32(q + 4);
      const float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.25f;
      for (int l = 0; l < 4; ++l, dst += 8) {
        DecodeSigned8(db, kIq2XxsGrid[q[l]], kKsignsIq2xs[(aux >> (7 * l)) & 127], dst);
      }
    }
  }
}

// block_iq2_xs: d (fp16) @0, qs u16[32] @2 (9-bit grid index | 7-bit sign index << 9),
// scales[8] @66 (low nibble: groups 0-1 of the sub-block, high nibble: groups 2-3).
void DequantizeIq2Xs(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += kIq2XsBytes) {
    const float d = LoadFp16(src);
    const uint8_t* scales = src + 66;
    for (int ib = 0; ib < kSubBlocks; ++ib) {
      const float db[2] = {d * (0.5f + static_cast<float>(scales[ib] & 0xf)) * 0.25f,
                           d * (0.5f + static_cast<float>(scales[ib] >> 4)) * 0.25f};
      for (int l = 0; l < 4; ++l, dst += 8) {
        const uint16_t q = LoadU16(src + 2 + 2 * (4 * ib + l));
        DecodeSigned8(db[l / 2], kIq2XsGrid[q & 511], kKsignsIq2xs[q >> 9], dst);
      }
    }
  }
}

// block_iq2_s: d (fp16) @0, qs[32] @2 (low 8 bits of the 10-bit grid indices), signs[32] @34
// (plain 8-bit masks), qh[8] @66 (2 high index bits per group), scales[8] @74.
void DequantizeIq2S(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += kIq2SBytes) {
    const float d = LoadFp16(src);
    const uint8_t* qs = src + 2;
    const uint8_t* signs = src + 34;
    const uint8_t* qh = src + 66;
    const uint8_t* scales = src + 74;
    for (int ib = 0; ib < kSubBlocks; ++ib) {
      const float db[2] = {d * (0.5f + static_cast<float>(scales[ib] & 0xf)) * 0.25f,
                           d * (0.5f + static_cast<float>(scales[ib] >> 4)) * 0.25f};
      for (int l = 0; l < 4; ++l, dst += 8) {
        const int index = qs[4 * ib + l] | ((qh[ib] << (8 - 2 * l)) & 0x300);
        DecodeSigned8(db[l / 2], kIq2SGrid[index], signs[4 * ib + l], dst);
      }
    }
  }
}

// block_iq3_xxs: d (fp16) @0, qs[64] @2 (8 grid indices per sub-block, two per group of 8),
// scales_and_signs u32[8] @66 (bits 7l..7l+6: sign index of group l; top 4 bits: scale).
void DequantizeIq3Xxs(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += kIq3XxsBytes) {
    const float d = LoadFp16(src);
    for (int ib = 0; ib < kSubBlocks; ++ib) {
      const uint8_t* qs = src + 2 + 8 * ib;
      const uint32_t aux = LoadU32(src + 66 + 4 * ib);
      const float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.5f;
      for (int l = 0; l < 4; ++l, dst += 8) {
        DecodeSigned4x2(db, kIq3XxsGrid[qs[2 * l]], kIq3XxsGrid[qs[2 * l + 1]],
                        kKsignsIq2xs[(aux >> (7 * l)) & 127], dst);
      }
    }
  }
}

// block_iq3_s: d (fp16) @0, qs[64] @2 (low 8 bits of the 9-bit indices), qh[8] @66 (bit k: 9th
// bit of the sub-block's index k), signs[32] @74 (plain masks), scales[4] @106 (4-bit scales,
// two sub-blocks per byte). Scale: d * (1 + 2 * s).
void DequantizeIq3S(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += kIq3SBytes) {
    const float d = LoadFp16(src);
    const uint8_t* scales = src + 106;
    for (int ib = 0; ib < kSubBlocks; ++ib) {
      const uint8_t* qs = src + 2 + 8 * ib;
      const uint8_t qh = src[66 + ib];
      const uint8_t* signs = src + 74 + 4 * ib;
      const int sc = (ib % 2 == 0) ? (scales[ib / 2] & 0xf) : (scales[ib / 2] >> 4);
      const float db = d * static_cast<float>(1 + 2 * sc);
      for (int l = 0; l < 4; ++l, dst += 8) {
        const int index1 = qs[2 * l + 0] | ((qh << (8 - 2 * l)) & 256);
        const int index2 = qs[2 * l + 1] | ((qh << (7 - 2 * l)) & 256);
        DecodeSigned4x2(db, kIq3SGrid[index1], kIq3SGrid[index2], signs[l], dst);
      }
    }
  }
}

// block_iq1_s: d (fp16) @0, qs[32] @2 (low 8 bits of the 11-bit indices), qh u16[8] @34: bits
// 3l..3l+2 are the high index bits of group l, bits 12-14 the 3-bit scale, bit 15 the delta sign.
void DequantizeIq1S(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += kIq1SBytes) {
    const float d = LoadFp16(src);
    const uint8_t* qs = src + 2;
    for (int ib = 0; ib < kSubBlocks; ++ib) {
      const uint16_t qh = LoadU16(src + 34 + 2 * ib);
      const float dl = d * static_cast<float>(2 * ((qh >> 12) & 7) + 1);
      const float delta = (qh & 0x8000) ? -kIq1SDelta : kIq1SDelta;
      for (int l = 0; l < 4; ++l, dst += 8) {
        const int index = qs[4 * ib + l] | (((qh >> (3 * l)) & 7) << 8);
        DecodeIq1Group(dl, delta, kIq1SGrid[index], dst);
      }
    }
  }
}

// block_iq1_m: qs[32] @0 (low 8 bits of the indices), qh[16] @32 (per group pair: 3 high index
// bits and a delta-sign bit for each group, low nibble first), scales[8] @48 read as u16[4]: the
// low 12 bits of each word hold four 3-bit sub-block scales (two per sub-block: groups 0-1 and
// 2-3), and the top nibbles of words 0..3 are bits 0-3, 4-7, 8-11, 12-15 of the fp16 scale d.
void DequantizeIq1M(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += kIq1MBytes) {
    const uint8_t* qs = src;
    const uint8_t* qh = src + 32;
    uint16_t sc[4];
    for (int k = 0; k < 4; ++k) sc[k] = LoadU16(src + 48 + 2 * k);
    const uint16_t d_bits = static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) |
                                                  ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
    const float d = Fp16ToFp32(d_bits);
    for (int ib = 0; ib < kSubBlocks; ++ib) {
      const int shift = 6 * (ib % 2);
      const float dl1 = d * static_cast<float>(2 * ((sc[ib / 2] >> (shift + 0)) & 0x7) + 1);
      const float dl2 = d * static_cast<float>(2 * ((sc[ib / 2] >> (shift + 3)) & 0x7) + 1);
      const uint8_t* q = qs + 4 * ib;
      const uint8_t* h = qh + 2 * ib;
      const int index[4] = {q[0] | ((h[0] << 8) & 0x700), q[1] | ((h[0] << 4) & 0x700),
                            q[2] | ((h[1] << 8) & 0x700), q[3] | ((h[1] << 4) & 0x700)};
      const float delta[4] = {
          (h[0] & 0x08) ? -kIq1MDelta : kIq1MDelta, (h[0] & 0x80) ? -kIq1MDelta : kIq1MDelta,
          (h[1] & 0x08) ? -kIq1MDelta : kIq1MDelta, (h[1] & 0x80) ? -kIq1MDelta : kIq1MDelta};
      for (int l = 0; l < 4; ++l, dst += 8) {
        DecodeIq1Group(l < 2 ? dl1 : dl2, delta[l], kIq1SGrid[index[l]], dst);
      }
    }
  }
}

}  // namespace moed::quants_internal

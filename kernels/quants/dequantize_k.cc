// Dequantizers for the K-quants (Q2_K..Q6_K, 256-weight super-blocks) and for IQ3_A770, the
// Phase Twin type that reuses Q3_K's code packing (gguf-and-quants.md §2.5-§2.9, §2.17). Each
// follows llama.cpp's dequantize_row_* with the same multiplication grouping, e.g.
// (d*sc)*q - (dmin*m), so the float32 results are bit-identical. These are also MatMul's row
// decoders (kernels/cpu/matmul.cc): restrict pointers and fixed-length inner loops let GCC's -O2
// vectoriser take them. Q6_K's loops are reordered so that each inner loop has one scale
// (llama.cpp's loop picks sc[l / 16] inside it, which GCC does not vectorise, 3x slower); the
// arithmetic is unchanged.
#include <cstdint>

#include "kernels/quants/dequantize_impl.h"
#include "kernels/quants/quant_common.h"

namespace moed::quants_internal {
namespace {

constexpr int kQK = 256;

// Q4_K/Q5_K scale packing (get_scale_min_k4): 8 pairs of 6-bit (scale, min) in 12 bytes.
inline void ScaleMinK4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

}  // namespace

// block_q2_K: scales[16] @0 (low nibble scale, high nibble min), qs[64] @16, d @80, dmin @82.
void DequantizeQ2_K(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += 84) {
    const uint8_t* scales = src;
    const uint8_t* q = src + 16;
    const float d = LoadFp16(src + 80);
    const float min = LoadFp16(src + 82);
    int is = 0;
    for (int n = 0; n < kQK; n += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half = 0; half < 2; ++half) {
          const uint8_t sc = scales[is++];
          const float dl = d * (sc & 0xF);
          const float ml = min * (sc >> 4);
          const uint8_t* qh = q + 16 * half;
          for (int l = 0; l < 16; ++l) *dst++ = dl * ((qh[l] >> shift) & 3) - ml;
        }
      }
    }
  }
}

// block_q3_K: hmask[32] @0, qs[64] @32, scales[12] @96 (16 packed 6-bit), d @108.
void DequantizeQ3_K(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += 110) {
    const uint8_t* hm = src;
    const uint8_t* q = src + 32;
    const uint8_t* packed = src + 96;
    const float d_all = LoadFp16(src + 108);
    int scales[16];
    for (int j = 0; j < 16; ++j) {
      const int low4 = j < 8 ? (packed[j] & 15) : (packed[j - 8] >> 4);
      const int high2 = (packed[8 + (j % 4)] >> (2 * (j / 4))) & 3;
      scales[j] = (low4 | (high2 << 4)) - 32;
    }
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < kQK; n += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
        for (int half = 0; half < 2; ++half) {
          const float dl = d_all * scales[is++];
          const int o = 16 * half;
          for (int l = 0; l < 16; ++l) {
            *dst++ = dl * (((q[o + l] >> shift) & 3) - ((hm[o + l] & m) ? 0 : 4));
          }
        }
      }
    }
  }
}

// block_q4_K: d @0, dmin @2, scales[12] @4, qs[128] @16.
void DequantizeQ4_K(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += 144) {
    const float d = LoadFp16(src);
    const float min = LoadFp16(src + 2);
    const uint8_t* scales = src + 4;
    const uint8_t* q = src + 16;
    for (int is = 0; is < 8; is += 2, q += 32) {
      uint8_t sc, m;
      ScaleMinK4(is, scales, &sc, &m);
      const float d1 = d * sc;
      const float m1 = min * m;
      ScaleMinK4(is + 1, scales, &sc, &m);
      const float d2 = d * sc;
      const float m2 = min * m;
      for (int l = 0; l < 32; ++l) *dst++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *dst++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

// block_q5_K: d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48.
void DequantizeQ5_K(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += 176) {
    const float d = LoadFp16(src);
    const float min = LoadFp16(src + 2);
    const uint8_t* scales = src + 4;
    const uint8_t* qh = src + 16;
    const uint8_t* ql = src + 48;
    uint8_t u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
      uint8_t sc, m;
      ScaleMinK4(is, scales, &sc, &m);
      const float d1 = d * sc;
      const float m1 = min * m;
      ScaleMinK4(is + 1, scales, &sc, &m);
      const float d2 = d * sc;
      const float m2 = min * m;
      for (int l = 0; l < 32; ++l) *dst++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *dst++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    }
  }
}

// block_q6_K: ql[128] @0, qh[64] @128, scales[16] (int8) @192, d @208. y = (d*sc)*q with
// q = (4 low bits | 2 high bits << 4) - 32. llama.cpp writes d * sc[is] * q, which C evaluates
// as (d * sc) * q: the product below.
void DequantizeQ6_K(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += 210, dst += kQK) {
    const float d = LoadFp16(src + 208);
    const auto* sc = reinterpret_cast<const int8_t*>(src + 192);
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = src + 64 * half;
      const uint8_t* qh = src + 128 + 32 * half;
      const int8_t* s = sc + 8 * half;
      float* o = dst + 128 * half;
      // Weights [32k, 32k + 32) of this half use scale s[2k] for l < 16, s[2k+1] above.
      for (int k = 0; k < 4; ++k) {
        const float ds0 = d * static_cast<float>(s[2 * k]);
        const float ds1 = d * static_cast<float>(s[2 * k + 1]);
        const uint8_t* lo = ql + 32 * (k & 1);
        const int lo_shift = 4 * (k >> 1);
        const int hi_shift = 2 * k;
        for (int l = 0; l < 16; ++l) {
          const int q = (((lo[l] >> lo_shift) & 0xF) | (((qh[l] >> hi_shift) & 3) << 4)) - 32;
          o[32 * k + l] = ds0 * static_cast<float>(q);
        }
        for (int l = 16; l < 32; ++l) {
          const int q = (((lo[l] >> lo_shift) & 0xF) | (((qh[l] >> hi_shift) & 3) << 4)) - 32;
          o[32 * k + l] = ds1 * static_cast<float>(q);
        }
      }
    }
  }
}

// block_iq3_a770: hmask[32] @0, qs[64] @32, scales[4] @96 (8 signed nibbles, value - 8),
// d @100. The 3-bit code (Q3_K packing, no -4 offset) indexes kvalues_iq3nl.
void DequantizeIq3A770(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += 102) {
    const uint8_t* hm = src;
    const uint8_t* q = src + 32;
    const uint8_t* packed = src + 96;
    const float d_all = LoadFp16(src + 100);
    int scales[8];
    for (int j = 0; j < 8; ++j) scales[j] = ((packed[j >> 1] >> (4 * (j & 1))) & 0xF) - 8;
    int is = 0;  // 16-weight group; the 32-weight sub-block is is/2
    uint8_t m = 1;
    for (int n = 0; n < kQK; n += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
        for (int half = 0; half < 2; ++half) {
          const float dl = d_all * scales[is / 2];
          ++is;
          const int o = 16 * half;
          for (int l = 0; l < 16; ++l) {
            const int code = ((q[o + l] >> shift) & 3) | ((hm[o + l] & m) ? 4 : 0);
            *dst++ = dl * kIq3nlValues[code];
          }
        }
      }
    }
  }
}

}  // namespace moed::quants_internal

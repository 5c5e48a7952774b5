// Reference quantizers for the 256-weight formats moed writes: Q4_K, Q5_K, Q6_K (the
// quantize_row_*_ref paths of ggml-quants.c, i.e. without an imatrix), IQ4_XS (quantize_iq4_xs
// with no imatrix) and IQ3_A770 (quantize_row_iq3_a770_ref of the Phase Twin patch). The
// arithmetic is transcribed expression by expression in float32, keeping the reference's
// evaluation order (e.g. (w*l)*x), its use of NearestInt (half to even) and which scale is
// rounded to fp16 before reuse; that is what makes the bytes equal llama.cpp's. The library is
// built with -ffp-contract=off so no a*b+c here is fused into an FMA.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/quants/quant_common.h"
#include "kernels/quants/quantize_impl.h"

namespace moed::quants_internal {
namespace {

constexpr int kQK = 256;
constexpr float kGroupMaxEps = 1e-15f;  // GROUP_MAX_EPS

// make_qkx2_quants: fits x ~ scale*L - the_min with L in [0, nmax] and the_min >= 0, by a
// weighted least-squares search over nstep+1 trial inverse scales. Note that a better fit found
// during the search moves `min`, and later trials use the moved value, as in the reference.
float MakeQkx2Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                     float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep) {
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = NearestInt(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * L[i] + min - x[i];
    diff = diff * diff;
    best_error += weights[i] * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// make_qx_quants with rmse_type 1 and no importance weights (w = x^2): symmetric codes
// L in [0, 2*nmax) meaning L - nmax, scale possibly negative.
float MakeQxQuants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0;
  float amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = NearestInt(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = NearestInt(iscale * x[i]);
        L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

inline void ScaleMinK4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Shared body of quantize_row_q4_K_ref / quantize_row_q5_K_ref up to the final codes L[256]
// (0..nmax): per-32 fits, 6-bit scale/min packing into scales[12], and requantization against
// the fp16-rounded super-block scales. Writes d @0, dmin @2, scales @4 of the block.
void QuantizeQxK(const float* x, uint8_t* block, int nmax, float rmin, float rdelta, int nstep,
                 uint8_t* L) {
  uint8_t Laux[32];
  float weights[32];
  float mins[kQK / 32];
  float scales[kQK / 32];
  float max_scale = 0;  // scales are non-negative: the min is subtracted
  float max_min = 0;
  for (int j = 0; j < kQK / 32; ++j) {
    const float* xb = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xb[l] * xb[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xb[l]);
    scales[j] =
        MakeQkx2Quants(32, nmax, xb, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  uint8_t* packed = block + 4;
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < kQK / 32; ++j) {
    uint8_t ls = static_cast<uint8_t>(NearestInt(inv_scale * scales[j]));
    uint8_t lm = static_cast<uint8_t>(NearestInt(inv_min * mins[j]));
    ls = std::min<uint8_t>(63, ls);
    lm = std::min<uint8_t>(63, lm);
    if (j < 4) {
      packed[j] = ls;
      packed[j + 4] = lm;
    } else {
      packed[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      packed[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      packed[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  StoreFp16(block, max_scale / 63.f);
  StoreFp16(block + 2, max_min / 63.f);
  const float d_all = LoadFp16(block);
  const float dmin_all = LoadFp16(block + 2);
  for (int j = 0; j < kQK / 32; ++j) {
    uint8_t sc, m;
    ScaleMinK4(j, packed, &sc, &m);
    const float d = d_all * sc;
    if (d == 0.0f) continue;  // keep the codes of the fit
    const float dm = dmin_all * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = NearestInt((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

}  // namespace

// block_q4_K: d @0, dmin @2, scales[12] @4, qs[128] @16 (gguf-and-quants.md §3.3).
void QuantizeQ4_K(const float* src, uint8_t* dst, int64_t n_blocks) {
  uint8_t L[kQK];
  for (int64_t i = 0; i < n_blocks; ++i, src += kQK, dst += 144) {
    QuantizeQxK(src, dst, 15, -1.f, 0.1f, 20, L);
    uint8_t* q = dst + 16;
    for (int j = 0; j < kQK; j += 64, q += 32) {
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    }
  }
}

// block_q5_K: d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48.
void QuantizeQ5_K(const float* src, uint8_t* dst, int64_t n_blocks) {
  uint8_t L[kQK];
  for (int64_t i = 0; i < n_blocks; ++i, src += kQK, dst += 176) {
    QuantizeQxK(src, dst, 31, -0.5f, 0.1f, 15, L);
    uint8_t* qh = dst + 16;
    uint8_t* ql = dst + 48;
    std::memset(qh, 0, kQK / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < kQK; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
      for (int j = 0; j < 32; ++j) {
        int l1 = L[n + j];
        if (l1 > 15) {
          l1 -= 16;
          qh[j] |= m1;
        }
        int l2 = L[n + j + 32];
        if (l2 > 15) {
          l2 -= 16;
          qh[j] |= m2;
        }
        ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
      }
    }
  }
}

// block_q6_K: ql[128] @0, qh[64] @128, scales[16] (int8) @192, d @208 (§3.4).
void QuantizeQ6_K(const float* src, uint8_t* dst, int64_t n_blocks) {
  int8_t L[kQK];
  float scales[kQK / 16];
  for (int64_t i = 0; i < n_blocks; ++i, src += kQK, dst += 210) {
    float max_scale = 0;
    float max_abs_scale = 0;
    for (int ib = 0; ib < kQK / 16; ++ib) {
      const float scale = MakeQxQuants(16, 32, src + 16 * ib, L + 16 * ib);
      scales[ib] = scale;
      const float abs_scale = std::fabs(scale);
      if (abs_scale > max_abs_scale) {
        max_abs_scale = abs_scale;
        max_scale = scale;
      }
    }
    std::memset(dst, 0, 210);
    if (max_abs_scale < kGroupMaxEps) continue;  // an all-zero block (d = +0)

    int8_t* sc = reinterpret_cast<int8_t*>(dst + 192);
    const float iscale = -128.f / max_scale;
    StoreFp16(dst + 208, 1 / iscale);
    for (int ib = 0; ib < kQK / 16; ++ib) {
      sc[ib] = static_cast<int8_t>(std::min(127, NearestInt(iscale * scales[ib])));
    }
    const float d_all = LoadFp16(dst + 208);
    for (int j = 0; j < kQK / 16; ++j) {
      const float d = d_all * sc[j];
      if (d == 0.0f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        int l = NearestInt(src[16 * j + ii] / d);
        l = std::max(-32, std::min(31, l));
        L[16 * j + ii] = static_cast<int8_t>(l + 32);
      }
    }
    uint8_t* ql = dst;
    uint8_t* qh = dst + 128;
    for (int j = 0; j < kQK; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t q1 = L[j + l + 0] & 0xF;
        const uint8_t q2 = L[j + l + 32] & 0xF;
        const uint8_t q3 = L[j + l + 64] & 0xF;
        const uint8_t q4 = L[j + l + 96] & 0xF;
        ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
        ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
        qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                     ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
      }
    }
  }
}

// quantize_row_iq4_nl_impl(super_block_size 256, block_size 32, 16 values, no imatrix,
// ntry 7). block_iq4_xs: d @0, scales_h (u16) @2, scales_l[4] @4, qs[128] @8.
void QuantizeIq4Xs(const float* src, uint8_t* dst, int64_t n_blocks) {
  const int8_t* values = kIq4nlValues;
  constexpr int kNtry = 7;
  uint8_t L[kQK];
  float scales[kQK / 32];
  float weight[32];
  for (int64_t ibl = 0; ibl < n_blocks; ++ibl, src += kQK, dst += 136) {
    const float* x = src;
    std::memset(dst, 0, 136);
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < kQK / 32; ++ib) {
      const float* xb = x + 32 * ib;
      uint8_t* Lb = L + 32 * ib;
      for (int j = 0; j < 32; ++j) weight[j] = xb[j] * xb[j];
      float amax = 0, max = 0;
      for (int j = 0; j < 32; ++j) {
        const float ax = std::fabs(xb[j]);
        if (ax > amax) {
          amax = ax;
          max = xb[j];
        }
      }
      if (amax < kGroupMaxEps) {
        scales[ib] = 0;
        std::memset(Lb, 0, 32);
        continue;
      }
      float d = -max / values[0];
      float id = 1 / d;
      float sumqx = 0, sumq2 = 0;
      for (int j = 0; j < 32; ++j) {
        const float al = id * xb[j];
        const int l = BestIndexInt8(16, values, al);
        Lb[j] = static_cast<uint8_t>(l);
        const float q = values[l];
        const float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
      float best = d * sumqx;
      for (int itry = -kNtry; itry <= kNtry; ++itry) {
        id = (itry + values[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; ++j) {
          const float al = id * xb[j];
          const int l = BestIndexInt8(16, values, al);
          const float q = values[l];
          const float w = weight[j];
          sumqx += w * q * xb[j];
          sumq2 += w * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
          d = sumqx / sumq2;
          best = d * sumqx;
        }
      }
      scales[ib] = d;
      const float abs_d = std::fabs(d);
      if (abs_d > amax_scale) {
        amax_scale = abs_d;
        max_scale = d;
      }
    }
    // The super-block scale is -max_scale/32 unrounded; the 6-bit sub-scales and the final codes
    // use that float32 value, not its fp16 rounding. An all-zero block stores d = -0 (0x8000).
    const float d = -max_scale / 32;
    StoreFp16(dst, d);
    const float id = d != 0.0f ? 1 / d : 0.f;
    uint16_t scales_h = 0;
    uint8_t* scales_l = dst + 4;
    for (int ib = 0; ib < kQK / 32; ++ib) {
      int l = NearestInt(id * scales[ib]);
      l = std::max(-32, std::min(31, l));
      const float dl = d * l;
      const float idl = dl != 0.0f ? 1 / dl : 0.f;
      uint8_t* Lb = L + 32 * ib;
      const float* xb = x + 32 * ib;
      for (int j = 0; j < 32; ++j)
        Lb[j] = static_cast<uint8_t>(BestIndexInt8(16, values, idl * xb[j]));
      l += 32;
      const uint8_t l_l = l & 0xf;
      const uint8_t l_h = static_cast<uint8_t>(l >> 4);
      if (ib % 2 == 0) {
        scales_l[ib / 2] = l_l;
      } else {
        scales_l[ib / 2] |= static_cast<uint8_t>(l_l << 4);
      }
      scales_h = static_cast<uint16_t>(scales_h | (l_h << 2 * (ib % 8)));
    }
    StoreU16(dst + 2, scales_h);
    uint8_t* q4 = dst + 8;
    for (int i = 0; i < kQK / 32; ++i) {
      for (int j = 0; j < 16; ++j) {
        q4[16 * i + j] = static_cast<uint8_t>(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
      }
    }
  }
}

// quantize_row_iq3_a770_impl without an imatrix (weights x^2), from the Phase Twin patch
// (gguf-and-quants.md §2.17). block_iq3_a770: hmask[32] @0, qs[64] @32, scales[4] @96, d @100.
void QuantizeIq3A770(const float* src, uint8_t* dst, int64_t n_blocks) {
  const int8_t* kv = kIq3nlValues;
  const int kz = BestIndexInt8(8, kv, 0.0f);  // code nearest 0, for empty sub-blocks
  uint8_t L[kQK];
  float scales[kQK / 32];
  float weight[32];
  for (int64_t i = 0; i < n_blocks; ++i, src += kQK, dst += 102) {
    const float* x = src;
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < kQK / 32; ++ib) {
      const float* xb = x + 32 * ib;
      uint8_t* Lb = L + 32 * ib;
      for (int j = 0; j < 32; ++j) weight[j] = xb[j] * xb[j];
      float amax = 0, max = 0;
      for (int j = 0; j < 32; ++j) {
        const float ax = std::fabs(xb[j]);
        if (ax > amax) {
          amax = ax;
          max = xb[j];
        }
      }
      if (amax < kGroupMaxEps) {
        scales[ib] = 0;
        std::memset(Lb, kz, 32);
        continue;
      }
      // Map the largest element onto the extreme level, then refine by least squares.
      float d = -max / kv[0];
      float id = 1 / d;
      float sumqx = 0, sumq2 = 0;
      for (int j = 0; j < 32; ++j) {
        const int l = BestIndexInt8(8, kv, id * xb[j]);
        Lb[j] = static_cast<uint8_t>(l);
        const float q = kv[l], w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
      float best = d * sumqx;
      for (int itry = -3; itry <= 3; ++itry) {
        id = (itry + kv[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; ++j) {
          const int l = BestIndexInt8(8, kv, id * xb[j]);
          const float q = kv[l], w = weight[j];
          sumqx += w * q * xb[j];
          sumq2 += w * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
          d = sumqx / sumq2;
          best = d * sumqx;
        }
      }
      scales[ib] = d;
      const float ad = std::fabs(d);
      if (ad > amax_scale) {
        amax_scale = ad;
        max_scale = d;
      }
    }

    std::memset(dst, 0, 102);
    uint8_t* hmask = dst;
    uint8_t* qs = dst + 32;
    uint8_t* sc4 = dst + 96;
    if (max_scale != 0.0f) {
      const float iscale = -8.f / max_scale;  // 4-bit signed sub-scales in [-8, 7]
      const float d_blk = 1 / iscale;         // reused unrounded, as in the patch
      StoreFp16(dst + 100, d_blk);
      for (int ib = 0; ib < kQK / 32; ++ib) {
        int l = NearestInt(iscale * scales[ib]);
        l = std::max(-8, std::min(7, l)) + 8;
        sc4[ib >> 1] |= static_cast<uint8_t>((l & 0xF) << (4 * (ib & 1)));
        const int sc = l - 8;
        const float dl = d_blk * sc;
        if (dl != 0.0f) {
          const float idl = 1 / dl;
          for (int j = 0; j < 32; ++j) {
            L[32 * ib + j] = static_cast<uint8_t>(BestIndexInt8(8, kv, idl * x[32 * ib + j]));
          }
        } else {
          std::memset(L + 32 * ib, kz, 32);
        }
      }
    } else {
      std::memset(L, kz, kQK);  // d stays +0
    }

    // Low 2 bits of each code go to qs (Q3_K planes), the high bit to hmask.
    int m = 0;
    uint8_t hm = 1;
    for (int j = 0; j < kQK; ++j) {
      if (L[j] > 3) {
        hmask[m] |= hm;
        L[j] -= 4;
      }
      if (++m == kQK / 8) {
        m = 0;
        hm <<= 1;
      }
    }
    for (int j = 0; j < kQK; j += 128) {
      for (int l = 0; l < 32; ++l) {
        qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) |
                                             (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
      }
    }
  }
}

}  // namespace moed::quants_internal

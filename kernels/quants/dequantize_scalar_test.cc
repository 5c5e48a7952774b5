// Tests of the vectorised dequantizers (F16, BF16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K: the MatMul hot
// path) against llama.cpp's dequantize_row_* loops written out literally here, on inputs the
// llama.cpp fixtures do not contain: every fp16/bf16 bit pattern (subnormals, infinities, NaN
// payloads) and random blocks whose scales include such values. Also checks the BlockDecoderFor
// dispatch that MatMul relies on.
#include <cstdint>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/base/half.h"
#include "kernels/quants/dequantize.h"
#include "kernels/quants/dequantize_impl.h"
#include "kernels/quants/ggml_type.h"

namespace moed {
namespace {

// ---------------------------------------------------------------------------------------------
// The oracle: ggml-quants.c's scalar loops, term by term, with moed::Fp16ToFp32 (branchy, the
// obvious definition) for the fp16 fields.

uint16_t U16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
float H(const uint8_t* p) { return Fp16ToFp32(U16(p)); }

void OracleQ4_0(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 18) {
    const float d = H(x);
    for (int j = 0; j < 16; ++j) {
      const int x0 = (x[2 + j] & 0x0F) - 8;
      const int x1 = (x[2 + j] >> 4) - 8;
      y[i * 32 + j] = x0 * d;
      y[i * 32 + j + 16] = x1 * d;
    }
  }
}

void OracleQ8_0(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 34) {
    const float d = H(x);
    for (int j = 0; j < 32; ++j) y[i * 32 + j] = static_cast<int8_t>(x[2 + j]) * d;
  }
}

// get_scale_min_k4
void ScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

void OracleQ4_K(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 144) {
    const uint8_t* q = x + 16;
    const float d = H(x);
    const float min = H(x + 2);
    int is = 0;
    uint8_t sc, m;
    for (int j = 0; j < 256; j += 64) {
      ScaleMinK4(is + 0, x + 4, &sc, &m);
      const float d1 = d * sc;
      const float m1 = min * m;
      ScaleMinK4(is + 1, x + 4, &sc, &m);
      const float d2 = d * sc;
      const float m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
      q += 32;
      is += 2;
    }
  }
}

void OracleQ5_K(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 176) {
    const uint8_t* ql = x + 48;
    const uint8_t* qh = x + 16;
    const float d = H(x);
    const float min = H(x + 2);
    int is = 0;
    uint8_t sc, m;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 256; j += 64) {
      ScaleMinK4(is + 0, x + 4, &sc, &m);
      const float d1 = d * sc;
      const float m1 = min * m;
      ScaleMinK4(is + 1, x + 4, &sc, &m);
      const float d2 = d * sc;
      const float m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      ql += 32;
      is += 2;
      u1 <<= 2;
      u2 <<= 2;
    }
  }
}

void OracleQ6_K(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 210) {
    const float d = H(x + 208);
    const uint8_t* ql = x;
    const uint8_t* qh = x + 128;
    const auto* sc = reinterpret_cast<const int8_t*>(x + 192);
    for (int n = 0; n < 256; n += 128) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int8_t q1 = static_cast<int8_t>(((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
        const int8_t q2 =
            static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        const int8_t q3 = static_cast<int8_t>(((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        const int8_t q4 = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        y[l + 0] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}

// ---------------------------------------------------------------------------------------------

TEST(DequantizeScalarOracleTest, EveryF16AndBf16BitPattern) {
  std::vector<uint8_t> src(2 * 65536);
  for (uint32_t h = 0; h < 65536; ++h) {
    const auto v = static_cast<uint16_t>(h);
    std::memcpy(src.data() + 2 * h, &v, 2);
  }
  // Whole rows, and rows starting at an odd element whose length is not a multiple of the
  // 16-value vector step, so that the scalar tail decodes every pattern too.
  for (const int64_t start : {0, 5}) {
    const int64_t n = 65536 - start;
    std::vector<float> f16(static_cast<size_t>(n)), bf16(static_cast<size_t>(n));
    ASSERT_TRUE(DequantizeRow(GgmlType::kF16, src.data() + 2 * start, f16.data(), n).ok());
    ASSERT_TRUE(DequantizeRow(GgmlType::kBf16, src.data() + 2 * start, bf16.data(), n).ok());
    for (int64_t i = 0; i < n; ++i) {
      const auto h = static_cast<uint16_t>(start + i);
      ASSERT_EQ(Bits(f16[i]), Bits(Fp16ToFp32(h))) << "F16 0x" << std::hex << h;
      ASSERT_EQ(Bits(bf16[i]), Bits(Bf16ToFp32(h))) << "BF16 0x" << std::hex << h;
    }
  }
  // The scalar tail alone: rows shorter than one vector step.
  for (const uint16_t h :
       {0x0001, 0x03ff, 0x0400, 0x7bff, 0x7c00, 0x7c01, 0x7e00, 0xfc00, 0xffff, 0x8000}) {
    float f = 0.0f;
    ASSERT_TRUE(DequantizeRow(GgmlType::kF16, src.data() + 2 * h, &f, 1).ok());
    EXPECT_EQ(Bits(f), Bits(Fp16ToFp32(h))) << "F16 0x" << std::hex << h;
  }
}

struct OracleCase {
  GgmlType type;
  void (*oracle)(const uint8_t*, float*, int64_t);
  std::vector<int> fp16_fields;  // byte offsets of the block's fp16 scales
};

// Random block bytes, with the fp16 scales of some blocks set to zeros, subnormals, the largest
// finite value, infinities and NaNs (which random bytes alone rarely or never produce).
TEST(DequantizeScalarOracleTest, RandomBlocksMatchLlamaCppLoopsBitForBit) {
  const std::vector<OracleCase> cases = {
      {GgmlType::kQ4_0, OracleQ4_0, {0}},    {GgmlType::kQ8_0, OracleQ8_0, {0}},
      {GgmlType::kQ4_K, OracleQ4_K, {0, 2}}, {GgmlType::kQ5_K, OracleQ5_K, {0, 2}},
      {GgmlType::kQ6_K, OracleQ6_K, {208}},
  };
  const uint16_t specials[] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x7bff,
                               0xfbff, 0x7c00, 0xfc00, 0x7c01, 0x7e00, 0xffff};
  std::mt19937 rng(13);
  for (const OracleCase& c : cases) {
    const GgmlTypeTraits* t = FindGgmlType(c.type);
    const int64_t n_blocks = 4096 / t->block_size + 3;
    const int64_t n = n_blocks * t->block_size;
    for (int round = 0; round < 20; ++round) {
      std::vector<uint8_t> src(static_cast<size_t>(n_blocks * t->type_size));
      for (uint8_t& b : src) b = static_cast<uint8_t>(rng());
      for (int64_t b = 0; b < n_blocks; b += 2) {
        for (const int offset : c.fp16_fields) {
          if (rng() % 2 == 0) continue;
          const uint16_t h = specials[rng() % std::size(specials)];
          std::memcpy(src.data() + b * t->type_size + offset, &h, 2);
        }
      }
      std::vector<float> expect(static_cast<size_t>(n)), got(static_cast<size_t>(n));
      c.oracle(src.data(), expect.data(), n_blocks);
      ASSERT_TRUE(DequantizeRow(c.type, src.data(), got.data(), n).ok());
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(Bits(expect[i]), Bits(got[i])) << t->name << " round " << round << " weight " << i
                                                 << ": " << expect[i] << " vs " << got[i];
      }
    }
  }
}

// MatMul calls BlockDecoderFor without DequantizeRow's checks, trusting that a type it accepted
// (can_dequantize) has a decoder; and the decoder must be the one DequantizeRow uses.
TEST(DequantizeBlockDecoderTest, ExistsExactlyForDequantizableTypes) {
  std::mt19937 rng(5);
  int with_decoder = 0;
  for (const GgmlTypeTraits& t : AllGgmlTypes()) {
    const quants_internal::BlockDecoder decode = quants_internal::BlockDecoderFor(t.type);
    ASSERT_EQ(decode != nullptr, t.can_dequantize) << t.name;
    if (decode == nullptr) continue;
    ++with_decoder;
    const int64_t n_blocks = 3;
    std::vector<uint8_t> src(static_cast<size_t>(n_blocks * t.type_size));
    for (uint8_t& b : src) b = static_cast<uint8_t>(rng());
    std::vector<float> a(static_cast<size_t>(n_blocks * t.block_size));
    std::vector<float> b(a.size());
    decode(src.data(), a.data(), n_blocks);
    ASSERT_TRUE(DequantizeRow(t.type, src.data(), b.data(), n_blocks * t.block_size).ok())
        << t.name;
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << t.name;
  }
  EXPECT_GE(with_decoder, 27);  // F32 .. NVFP4, the grid formats and IQ3_A770
  EXPECT_EQ(quants_internal::BlockDecoderFor(static_cast<GgmlType>(4)), nullptr);
  EXPECT_EQ(quants_internal::BlockDecoderFor(static_cast<GgmlType>(100000)), nullptr);
}

}  // namespace
}  // namespace moed

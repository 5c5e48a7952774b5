// Dequantizers for the plain float types and the legacy 32-weight block formats (Q4_0, Q4_1,
// Q5_0, Q5_1, Q8_0). Each mirrors llama.cpp's dequantize_row_* (ggml-quants.c) term by term, so
// the float32 results are bit-identical: every product is exact and the only rounding is the
// single "+ m" of Q4_1/Q5_1. These are also MatMul's row decoders (kernels/cpu/matmul.cc), so
// they are written for GCC's -O2 vectoriser: restrict pointers, fixed-length inner loops, and
// for F16/BF16 a branch-free conversion in blocks of 16.
#include <cstdint>
#include <cstring>

#include "kernels/quants/dequantize_impl.h"
#include "kernels/quants/quant_common.h"

namespace moed::quants_internal {
namespace {

constexpr int kQK = 32;  // weights per legacy block

}  // namespace

void DequantizeF32(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  std::memcpy(dst, src, static_cast<size_t>(n_blocks) * sizeof(float));
}

// F16 and BF16 rows go 16 values at a time through local arrays: a fixed trip count and no
// epilogue inside the vector loop is what GCC's -O2 (very cheap) cost model accepts.
void DequantizeF16(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  int64_t i = 0;
  for (; i + 16 <= n_blocks; i += 16) {
    uint16_t h[16];
    uint32_t bits[16];
    std::memcpy(h, src + 2 * i, sizeof(h));
    for (int k = 0; k < 16; ++k) bits[k] = Fp16ToFp32Bits(h[k]);
    std::memcpy(dst + i, bits, sizeof(bits));
  }
  for (; i < n_blocks; ++i) dst[i] = LoadFp16(src + 2 * i);
}

void DequantizeBf16(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  int64_t i = 0;
  for (; i + 16 <= n_blocks; i += 16) {
    uint16_t h[16];
    uint32_t bits[16];
    std::memcpy(h, src + 2 * i, sizeof(h));
    for (int k = 0; k < 16; ++k) bits[k] = static_cast<uint32_t>(h[k]) << 16;
    std::memcpy(dst + i, bits, sizeof(bits));
  }
  for (; i < n_blocks; ++i) dst[i] = Bf16ToFp32(LoadU16(src + 2 * i));
}

// block_q4_0: d (fp16) @0, qs[16] @2. Low nibbles are weights 0..15, high nibbles 16..31.
void DequantizeQ4_0(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += 18, dst += kQK) {
    const float d = LoadFp16(src);
    const uint8_t* qs = src + 2;
    for (int j = 0; j < kQK / 2; ++j) {
      const int x0 = (qs[j] & 0x0F) - 8;
      const int x1 = (qs[j] >> 4) - 8;
      dst[j] = x0 * d;
      dst[j + kQK / 2] = x1 * d;
    }
  }
}

// block_q4_1: d (fp16) @0, m (fp16) @2, qs[16] @4. y = q*d + m.
void DequantizeQ4_1(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += 20, dst += kQK) {
    const float d = LoadFp16(src);
    const float m = LoadFp16(src + 2);
    const uint8_t* qs = src + 4;
    for (int j = 0; j < kQK / 2; ++j) {
      const int x0 = qs[j] & 0x0F;
      const int x1 = qs[j] >> 4;
      dst[j] = x0 * d + m;
      dst[j + kQK / 2] = x1 * d + m;
    }
  }
}

// block_q5_0: d (fp16) @0, qh (u32, bit j = 5th bit of weight j) @2, qs[16] @6.
void DequantizeQ5_0(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += 22, dst += kQK) {
    const float d = LoadFp16(src);
    const uint32_t qh = LoadU32(src + 2);
    const uint8_t* qs = src + 6;
    for (int j = 0; j < kQK / 2; ++j) {
      const uint8_t xh_0 = ((qh >> j) << 4) & 0x10;
      const uint8_t xh_1 = (qh >> (j + 12)) & 0x10;
      const int32_t x0 = ((qs[j] & 0x0F) | xh_0) - 16;
      const int32_t x1 = ((qs[j] >> 4) | xh_1) - 16;
      dst[j] = x0 * d;
      dst[j + kQK / 2] = x1 * d;
    }
  }
}

// block_q5_1: d (fp16) @0, m (fp16) @2, qh (u32) @4, qs[16] @8.
void DequantizeQ5_1(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += 24, dst += kQK) {
    const float d = LoadFp16(src);
    const float m = LoadFp16(src + 2);
    const uint32_t qh = LoadU32(src + 4);
    const uint8_t* qs = src + 8;
    for (int j = 0; j < kQK / 2; ++j) {
      const uint8_t xh_0 = ((qh >> j) << 4) & 0x10;
      const uint8_t xh_1 = (qh >> (j + 12)) & 0x10;
      const int x0 = (qs[j] & 0x0F) | xh_0;
      const int x1 = (qs[j] >> 4) | xh_1;
      dst[j] = x0 * d + m;
      dst[j + kQK / 2] = x1 * d + m;
    }
  }
}

// block_q8_0: d (fp16) @0, qs[32] (int8) @2.
void DequantizeQ8_0(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks) {
  for (int64_t i = 0; i < n_blocks; ++i, src += 34, dst += kQK) {
    const float d = LoadFp16(src);
    const uint8_t* qs = src + 2;
    for (int j = 0; j < kQK; ++j) dst[j] = static_cast<int8_t>(qs[j]) * d;
  }
}

}  // namespace moed::quants_internal

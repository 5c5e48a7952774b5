// Per-format reference quantizers behind QuantizeRow's single dispatch switch (quantize.cc).
// Each encodes n_blocks consecutive blocks (n_blocks * block_size floats from src) into dst,
// byte-identical to llama.cpp's quantize_row_*_ref. Internal to kernels/quants: callers use
// QuantizeRow.
#ifndef MOED_KERNELS_QUANTS_QUANTIZE_IMPL_H_
#define MOED_KERNELS_QUANTS_QUANTIZE_IMPL_H_

#include <cstdint>

namespace moed::quants_internal {

// Plain, legacy, ternary and FP4 formats (quantize_legacy.cc).
void QuantizeF32(const float* src, uint8_t* dst, int64_t n_blocks);
void QuantizeF16(const float* src, uint8_t* dst, int64_t n_blocks);
void QuantizeBf16(const float* src, uint8_t* dst, int64_t n_blocks);
void QuantizeQ4_0(const float* src, uint8_t* dst, int64_t n_blocks);
void QuantizeQ4_1(const float* src, uint8_t* dst, int64_t n_blocks);
void QuantizeQ5_0(const float* src, uint8_t* dst, int64_t n_blocks);
void QuantizeQ5_1(const float* src, uint8_t* dst, int64_t n_blocks);
void QuantizeQ8_0(const float* src, uint8_t* dst, int64_t n_blocks);
void QuantizeMxfp4(const float* src, uint8_t* dst, int64_t n_blocks);
void QuantizeTq1_0(const float* src, uint8_t* dst, int64_t n_blocks);
void QuantizeTq2_0(const float* src, uint8_t* dst, int64_t n_blocks);

// K-quants and the non-linear 256-weight formats (quantize_k.cc).
void QuantizeQ4_K(const float* src, uint8_t* dst, int64_t n_blocks);
void QuantizeQ5_K(const float* src, uint8_t* dst, int64_t n_blocks);
void QuantizeQ6_K(const float* src, uint8_t* dst, int64_t n_blocks);
void QuantizeIq4Xs(const float* src, uint8_t* dst, int64_t n_blocks);
void QuantizeIq3A770(const float* src, uint8_t* dst, int64_t n_blocks);

}  // namespace moed::quants_internal

#endif  // MOED_KERNELS_QUANTS_QUANTIZE_IMPL_H_

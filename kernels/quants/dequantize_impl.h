// Per-format dequantizers behind DequantizeRow's single dispatch switch (dequantize.cc).
// Each decodes n_blocks consecutive blocks from src into dst (n_blocks * block_size floats); the
// buffers never overlap, which __restrict tells the compiler so that it can vectorise the loops.
// Internal to kernels: DequantizeRow is the checked entry point; BlockDecoderFor is for hot loops
// that validated their arguments once (kernels/cpu/matmul.cc decodes weight rows chunk by chunk
// through it without paying DequantizeRow's checks per chunk).
#ifndef MOED_KERNELS_QUANTS_DEQUANTIZE_IMPL_H_
#define MOED_KERNELS_QUANTS_DEQUANTIZE_IMPL_H_

#include <cstdint>

#include "kernels/quants/ggml_type.h"

namespace moed::quants_internal {

// Decodes n_blocks whole blocks from src into dst (n_blocks * block_size floats). No checks: src
// must hold n_blocks * type_size bytes and dst n_blocks * block_size floats, not overlapping.
using BlockDecoder = void (*)(const uint8_t* __restrict src, float* __restrict dst,
                              int64_t n_blocks);

// The decoder of `type`; nullptr exactly when the type has no CPU dequantizer (can_dequantize is
// false) or is not a known type id.
BlockDecoder BlockDecoderFor(GgmlType type);

// Plain and legacy formats (dequantize_legacy.cc).
void DequantizeF32(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeF16(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeBf16(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeQ4_0(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeQ4_1(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeQ5_0(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeQ5_1(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeQ8_0(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);

// K-quants and the Phase Twin type that shares Q3_K's code packing (dequantize_k.cc).
void DequantizeQ2_K(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeQ3_K(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeQ4_K(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeQ5_K(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeQ6_K(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeIq3A770(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);

// Table formats without grids, ternary and FP4 formats (dequantize_table.cc).
void DequantizeIq4Nl(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeIq4Xs(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeTq1_0(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeTq2_0(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeMxfp4(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeNvfp4(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);

// Grid (lattice codebook) formats (dequantize_iq_grid.cc, tables in iq_grids.cc).
void DequantizeIq2Xxs(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeIq2Xs(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeIq2S(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeIq3Xxs(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeIq3S(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeIq1S(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);
void DequantizeIq1M(const uint8_t* __restrict src, float* __restrict dst, int64_t n_blocks);

}  // namespace moed::quants_internal

#endif  // MOED_KERNELS_QUANTS_DEQUANTIZE_IMPL_H_

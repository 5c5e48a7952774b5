// CPU dequantization of every block format moed reads. Results are bit-identical to llama.cpp's
// reference dequantizers (checked against tests/data/quant-blocks), because every product in
// these formats is exact in float32 (docs: gguf-and-quants.md §2.18).
#ifndef MOED_KERNELS_QUANTS_DEQUANTIZE_H_
#define MOED_KERNELS_QUANTS_DEQUANTIZE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/quants/ggml_type.h"

namespace moed {

// Decodes n weights of `type` starting at `src` into dst[0..n).
// Errors: InvalidArgument if the type has no dequantizer or n is not a multiple of its block
// size; dst is then untouched. Thread-safe.
absl::Status DequantizeRow(GgmlType type, const void* src, float* dst, int64_t n);

}  // namespace moed

#endif  // MOED_KERNELS_QUANTS_DEQUANTIZE_H_

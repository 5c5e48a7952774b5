// CPU reference quantizers: float32 rows to ggml blocks, byte-identical to llama.cpp's
// quantize_row_*_ref for the same input (the float32 operation order of gguf-and-quants.md §3).
#ifndef MOED_KERNELS_QUANTS_QUANTIZE_H_
#define MOED_KERNELS_QUANTS_QUANTIZE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/quants/ggml_type.h"

namespace moed {

// True if QuantizeRow supports `type`.
bool HasQuantizer(GgmlType type);

// Encodes src[0..n) as `type` into dst (RowBytes(type, n) bytes).
// Errors: InvalidArgument if there is no quantizer for the type or n is not a multiple of its
// block size; dst is then untouched. Thread-safe.
absl::Status QuantizeRow(GgmlType type, const float* src, void* dst, int64_t n);

}  // namespace moed

#endif  // MOED_KERNELS_QUANTS_QUANTIZE_H_

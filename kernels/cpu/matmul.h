// Matrix products directly on GGUF weights in their block format (no model-wide dequantization:
// the weight bytes stay where the loader put them, e.g. in mmap'ed pages).
#ifndef MOED_KERNELS_CPU_MATMUL_H_
#define MOED_KERNELS_CPU_MATMUL_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/quants/ggml_type.h"

namespace moed::cpu {

// A 2-D weight as GGUF stores it: n_out rows of n_in weights (ne = [n_in, n_out]), each row
// row_bytes long. For a 3-D expert tensor, ExpertSlice() gives expert e's matrix.
struct WeightMatrix {
  GgmlType type = GgmlType::kF32;
  const uint8_t* data = nullptr;
  int64_t n_in = 0;
  int64_t n_out = 0;
  uint64_t row_bytes = 0;
};

// Matrix e of a [n_in, n_out, n_expert] tensor whose data starts at `data`.
WeightMatrix ExpertSlice(GgmlType type, const uint8_t* data, int64_t n_in, int64_t n_out, int64_t e);

// y[t * n_out + o] = sum_i W[o][i] * x[t * n_in + i] for t in [0, n_tokens).
// Any type with a CPU dequantizer is accepted. Accumulation is float32 (double for the
// reference twin). Errors: InvalidArgument for a type without a dequantizer or bad sizes.
absl::Status MatMul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, ThreadPool* pool);

// The plain reference twin: dequantizes each row and accumulates in double. For tests.
absl::Status MatMulReference(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y);

// Copies row `row` of the weight (e.g. an embedding) into out[0..n_in) as float32.
absl::Status GetRow(const WeightMatrix& w, int64_t row, float* out);

}  // namespace moed::cpu

#endif  // MOED_KERNELS_CPU_MATMUL_H_

// The per-tensor half of an HF -> GGUF conversion that every architecture shares: an output tensor
// is planned as "row r of the output comes from row s of source tensor T", with an optional
// column permutation and an element-wise operation, then produced row by row straight from the
// mmap'ed safetensors into the writer's buffer. Nothing larger than one row is ever copied, so
// converting a 400B checkpoint needs no more memory than the writer's own buffer.
//
// Arithmetic follows llama.cpp's converter exactly: sources that are not F16/F32 are first widened
// to F32; the operation runs in the source precision (F16 results are rounded back to F16, as
// torch does); the result is cast to the output type with round-to-nearest-even.
#ifndef MOED_LOADER_CONVERT_CONVERT_TENSOR_H_
#define MOED_LOADER_CONVERT_CONVERT_TENSOR_H_

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/quants/ggml_type.h"
#include "loader/convert/hf_checkpoint.h"

namespace moed::convert {

enum class ValueOp {
  kCopy,
  kNegExp,  // -exp(x): A_log -> ssm_a
  kAddOne,  // x + 1: zero-centred RMSNorm weights
};

struct RowRef {
  const HfTensorRef* source = nullptr;
  int64_t row = 0;  // in the source viewed as [n / cols, cols]
};

struct PlannedTensor {
  std::string name;  // GGUF tensor name
  GgmlType type = GgmlType::kF32;
  // ggml order (ne[0] contiguous); as many entries as the converter writes dimensions, trailing
  // 1s included (HF [1, H] becomes {H, 1} with n_dims 2).
  std::vector<int64_t> ne;
  std::function<RowRef(int64_t out_row)> row_source;
  std::vector<int64_t> column_order;  // empty: identity; else out column c = source column [c]
  ValueOp op = ValueOp::kCopy;

  int64_t cols() const { return ne.empty() ? 1 : ne[0]; }
  int64_t rows() const;
  int64_t num_elements() const { return rows() * cols(); }
  uint64_t nbytes() const;

  // Produces the tensor into `out` (exactly nbytes()).
  absl::Status Fill(std::span<uint8_t> out) const;
};

// Source dtypes a conversion can read (F32, F16, BF16, F64).
bool IsConvertibleDtype(SafetensorsDtype dtype);
// Rows of `ref` viewed as [n / cols, cols]; InvalidArgument if it does not divide or the dtype is
// not convertible.
absl::StatusOr<int64_t> SourceRows(const HfTensorRef& ref, int64_t cols);

// The V-head reorder of llama.cpp's _LinearAttentionVReorderBase: `n_k_heads * r` heads of
// `head_dim` entries go from grouped order [k][r] to tiled order [r][k]. Returns, for each new
// position, the old position it holds.
std::vector<int64_t> TiledHeadOrder(int64_t n_k_heads, int64_t r, int64_t head_dim);

// gguf-py's get_total_parameter_count over planned tensors: tensors named "*_exps.*" count once
// per expert.
struct ParameterCounts {
  int64_t total = 0;
  int64_t shared = 0;
  int64_t expert = 0;
  int64_t expert_count = 0;
};
ParameterCounts CountParameters(const std::vector<PlannedTensor>& tensors);

}  // namespace moed::convert

#endif  // MOED_LOADER_CONVERT_CONVERT_TENSOR_H_

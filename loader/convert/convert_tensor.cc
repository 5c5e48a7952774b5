// Row-by-row production of converted tensors (convert_tensor.h): decode, reorder, operate, encode.
#include "loader/convert/convert_tensor.h"

#include <cmath>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/half.h"
#include "kernels/base/strings.h"

namespace moed::convert {
namespace {

void DecodeRow(SafetensorsDtype dtype, const uint8_t* src, int64_t n, float* dst) {
  switch (dtype) {
    case SafetensorsDtype::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case SafetensorsDtype::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = Fp16ToFp32(h);
      }
      return;
    case SafetensorsDtype::kBf16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, src + 2 * i, 2);
        dst[i] = Bf16ToFp32(b);
      }
      return;
    case SafetensorsDtype::kF64:
      for (int64_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, src + 8 * i, 8);
        dst[i] = static_cast<float>(d);  // round to nearest, as torch's .to(float32)
      }
      return;
    default:
      return;  // excluded by SourceRows
  }
}

void EncodeRow(GgmlType type, const float* src, int64_t n, uint8_t* dst) {
  switch (type) {
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = Fp32ToFp16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    case GgmlType::kBf16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t b = Fp32ToBf16(src[i]);
        std::memcpy(dst + 2 * i, &b, 2);
      }
      return;
    default:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
  }
}

size_t OutputElementSize(GgmlType type) { return type == GgmlType::kF32 ? 4 : 2; }

}  // namespace

bool IsConvertibleDtype(SafetensorsDtype dtype) {
  return dtype == SafetensorsDtype::kF32 || dtype == SafetensorsDtype::kF16 ||
         dtype == SafetensorsDtype::kBf16 || dtype == SafetensorsDtype::kF64;
}

absl::StatusOr<int64_t> SourceRows(const HfTensorRef& ref, int64_t cols) {
  if (!IsConvertibleDtype(ref.tensor->dtype)) {
    return absl::UnimplementedError(absl::StrCat(
        "tensor '", ref.name, "' has dtype ", Sv(SafetensorsDtypeName(ref.tensor->dtype)),
        "; only F32, F16, BF16 and F64 weights can be converted"));
  }
  const int64_t n = ref.tensor->num_elements();
  if (cols <= 0 || n % cols != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", ref.name, "' ",
                                                   ref.tensor->ShapeString(),
                                                   " cannot be read as rows of ", cols, " values"));
  }
  return n / cols;
}

std::vector<int64_t> TiledHeadOrder(int64_t n_k_heads, int64_t r, int64_t head_dim) {
  std::vector<int64_t> order(static_cast<size_t>(n_k_heads * r * head_dim));
  for (int64_t i = 0; i < r; ++i) {
    for (int64_t k = 0; k < n_k_heads; ++k) {
      for (int64_t j = 0; j < head_dim; ++j) {
        order[static_cast<size_t>((i * n_k_heads + k) * head_dim + j)] = (k * r + i) * head_dim + j;
      }
    }
  }
  return order;
}

int64_t PlannedTensor::rows() const {
  int64_t r = 1;
  for (size_t i = 1; i < ne.size(); ++i) r *= ne[i];
  return r;
}

uint64_t PlannedTensor::nbytes() const {
  return static_cast<uint64_t>(num_elements()) * OutputElementSize(type);
}

absl::Status PlannedTensor::Fill(std::span<uint8_t> out) const {
  if (type != GgmlType::kF32 && type != GgmlType::kF16 && type != GgmlType::kBf16) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": output type ", Sv(GgmlTypeName(type)),
                                                   " is not one a conversion writes"));
  }
  if (out.size() != nbytes()) {
    return absl::InternalError(
        absl::StrCat(name, ": writer buffer has ", out.size(), " bytes, expected ", nbytes()));
  }
  const int64_t n_cols = cols();
  const size_t out_row_bytes = static_cast<size_t>(n_cols) * OutputElementSize(type);
  std::vector<float> src_row(static_cast<size_t>(n_cols));
  std::vector<float> permuted(column_order.empty() ? 0 : static_cast<size_t>(n_cols));
  for (int64_t r = 0; r < rows(); ++r) {
    const RowRef ref = row_source(r);
    const SafetensorsTensor& t = *ref.source->tensor;
    const size_t elem = SafetensorsDtypeSize(t.dtype);
    const int64_t src_rows = t.num_elements() / n_cols;
    if (ref.row < 0 || ref.row >= src_rows) {
      return absl::InternalError(absl::StrCat(name, ": row ", r, " maps to row ", ref.row, " of '",
                                              ref.source->name, "' (", src_rows, " rows)"));
    }
    std::span<const uint8_t> data = ref.source->file->Data(t);
    DecodeRow(t.dtype, data.data() + static_cast<size_t>(ref.row) * n_cols * elem, n_cols,
              src_row.data());
    float* row = src_row.data();
    if (!column_order.empty()) {
      for (int64_t c = 0; c < n_cols; ++c) permuted[c] = src_row[column_order[c]];
      row = permuted.data();
    }
    if (op != ValueOp::kCopy) {
      const bool half = t.dtype == SafetensorsDtype::kF16;
      for (int64_t c = 0; c < n_cols; ++c) {
        float v = op == ValueOp::kNegExp ? -std::exp(row[c]) : row[c] + 1.0f;
        if (half) v = Fp16ToFp32(Fp32ToFp16(v));  // torch keeps F16 tensors in F16
        row[c] = v;
      }
    }
    EncodeRow(type, row, n_cols, out.data() + static_cast<size_t>(r) * out_row_bytes);
  }
  return absl::OkStatus();
}

ParameterCounts CountParameters(const std::vector<PlannedTensor>& tensors) {
  ParameterCounts c;
  int64_t expert_sum = 0;
  int64_t n_expert_tensors = 0;
  for (const PlannedTensor& t : tensors) {
    const int64_t size = t.num_elements();
    if (absl::StrContains(t.name, "_exps.") && t.ne.size() >= 3) {
      // numpy shape[-3] is ggml ne[2]: the expert axis of a 3-D expert tensor.
      const int64_t n_expert = t.ne[2];
      c.expert += size / n_expert;
      expert_sum += n_expert;
      ++n_expert_tensors;
    } else {
      c.shared += size;
    }
    c.total += size;
  }
  c.expert_count = n_expert_tensors > 0 ? expert_sum / n_expert_tensors : 0;
  return c;
}

}  // namespace moed::convert

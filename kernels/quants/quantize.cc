// QuantizeRow: argument validation and the single dispatch switch over GgmlType. Like
// DequantizeRow's, the switch has no default label: a new GgmlType enumerator fails to compile
// until it is placed either with a quantizer or in the explicit "no quantizer" list.
#include "kernels/quants/quantize.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/strings.h"
#include "kernels/quants/quantize_impl.h"

namespace moed {
namespace {

using QuantizeFn = void (*)(const float*, uint8_t*, int64_t);

// The per-format quantizer, or nullptr if there is none.
QuantizeFn QuantizerFor(GgmlType type) {
  namespace qi = quants_internal;
  switch (type) {
    case GgmlType::kF32:
      return qi::QuantizeF32;
    case GgmlType::kF16:
      return qi::QuantizeF16;
    case GgmlType::kBf16:
      return qi::QuantizeBf16;
    case GgmlType::kQ4_0:
      return qi::QuantizeQ4_0;
    case GgmlType::kQ4_1:
      return qi::QuantizeQ4_1;
    case GgmlType::kQ5_0:
      return qi::QuantizeQ5_0;
    case GgmlType::kQ5_1:
      return qi::QuantizeQ5_1;
    case GgmlType::kQ8_0:
      return qi::QuantizeQ8_0;
    case GgmlType::kMxfp4:
      return qi::QuantizeMxfp4;
    case GgmlType::kTq1_0:
      return qi::QuantizeTq1_0;
    case GgmlType::kTq2_0:
      return qi::QuantizeTq2_0;
    case GgmlType::kQ4_K:
      return qi::QuantizeQ4_K;
    case GgmlType::kQ5_K:
      return qi::QuantizeQ5_K;
    case GgmlType::kQ6_K:
      return qi::QuantizeQ6_K;
    case GgmlType::kIq4Xs:
      return qi::QuantizeIq4Xs;
    case GgmlType::kIq3A770:
      return qi::QuantizeIq3A770;
    // No reference quantizer in moed: the grid IQ types need neighbour tables and an imatrix,
    // the rest are never written by moed.
    case GgmlType::kQ8_1:
    case GgmlType::kQ2_K:
    case GgmlType::kQ3_K:
    case GgmlType::kQ8_K:
    case GgmlType::kIq2Xxs:
    case GgmlType::kIq2Xs:
    case GgmlType::kIq3Xxs:
    case GgmlType::kIq1S:
    case GgmlType::kIq4Nl:
    case GgmlType::kIq3S:
    case GgmlType::kIq2S:
    case GgmlType::kI8:
    case GgmlType::kI16:
    case GgmlType::kI32:
    case GgmlType::kI64:
    case GgmlType::kF64:
    case GgmlType::kIq1M:
    case GgmlType::kNvfp4:
    case GgmlType::kQ1_0:
    case GgmlType::kQ2_0:
      return nullptr;
  }
  return nullptr;  // an id outside the enum
}

}  // namespace

bool HasQuantizer(GgmlType type) { return QuantizerFor(type) != nullptr; }

absl::Status QuantizeRow(GgmlType type, const float* src, void* dst, int64_t n) {
  const GgmlTypeTraits* traits = FindGgmlType(type);
  const QuantizeFn fn = QuantizerFor(type);
  if (traits == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("QuantizeRow: unknown ggml type id ", static_cast<uint32_t>(type)));
  }
  if (fn == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("QuantizeRow: no quantizer for type ", Sv(traits->name)));
  }
  if (n < 0 || n % traits->block_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "QuantizeRow: n = ", n, " is not a ", "non-negative multiple of the block size ",
        traits->block_size, " of type ", Sv(traits->name)));
  }
  if (n > 0 && (src == nullptr || dst == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("QuantizeRow: null buffer for ", n, " weights of type ", Sv(traits->name)));
  }
  // The block quantizers derive scales from the data; an inf or NaN would silently poison a
  // whole block (the float types store them as they are).
  if (traits->block_size > 1) {
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(src[i])) {
        return absl::InvalidArgumentError(absl::StrCat("QuantizeRow: input value ", i, " is ",
                                                       src[i], "; ", Sv(traits->name),
                                                       " needs finite values"));
      }
    }
  }
  fn(src, static_cast<uint8_t*>(dst), n / traits->block_size);
  return absl::OkStatus();
}

}  // namespace moed

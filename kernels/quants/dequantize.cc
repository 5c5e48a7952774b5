// DequantizeRow: argument validation and the single dispatch switch over GgmlType. The switch has
// no default label on purpose: adding an enumerator to GgmlType fails to compile (-Wswitch,
// -Werror) until it is wired here, either to a dequantizer or to the explicit "no dequantizer"
// list.
#include "kernels/quants/dequantize.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/strings.h"
#include "kernels/quants/dequantize_impl.h"

namespace moed {

absl::Status DequantizeRow(GgmlType type, const void* src, float* dst, int64_t n) {
  namespace qi = quants_internal;
  const GgmlTypeTraits* traits = FindGgmlType(type);
  if (traits == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("DequantizeRow: unknown ggml type id ", static_cast<uint32_t>(type)));
  }
  if (!traits->can_dequantize) {
    return absl::InvalidArgumentError(
        absl::StrCat("DequantizeRow: no CPU dequantizer for type ", Sv(traits->name)));
  }
  if (n < 0 || n % traits->block_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DequantizeRow: n = ", n, " is not a ", "non-negative multiple of the block size ",
        traits->block_size, " of type ", Sv(traits->name)));
  }
  if (n > 0 && (src == nullptr || dst == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("DequantizeRow: null buffer for ", n, " weights of type ", Sv(traits->name)));
  }
  const auto* s = static_cast<const uint8_t*>(src);
  const int64_t nb = n / traits->block_size;
  // One indirect call per row, not per weight.
  const auto run = [s, dst, nb](void (*fn)(const uint8_t*, float*, int64_t)) {
    fn(s, dst, nb);
    return absl::OkStatus();
  };
  switch (type) {
    case GgmlType::kF32:
      return run(qi::DequantizeF32);
    case GgmlType::kF16:
      return run(qi::DequantizeF16);
    case GgmlType::kBf16:
      return run(qi::DequantizeBf16);
    case GgmlType::kQ4_0:
      return run(qi::DequantizeQ4_0);
    case GgmlType::kQ4_1:
      return run(qi::DequantizeQ4_1);
    case GgmlType::kQ5_0:
      return run(qi::DequantizeQ5_0);
    case GgmlType::kQ5_1:
      return run(qi::DequantizeQ5_1);
    case GgmlType::kQ8_0:
      return run(qi::DequantizeQ8_0);
    case GgmlType::kQ2_K:
      return run(qi::DequantizeQ2_K);
    case GgmlType::kQ3_K:
      return run(qi::DequantizeQ3_K);
    case GgmlType::kQ4_K:
      return run(qi::DequantizeQ4_K);
    case GgmlType::kQ5_K:
      return run(qi::DequantizeQ5_K);
    case GgmlType::kQ6_K:
      return run(qi::DequantizeQ6_K);
    case GgmlType::kIq3A770:
      return run(qi::DequantizeIq3A770);
    case GgmlType::kIq4Nl:
      return run(qi::DequantizeIq4Nl);
    case GgmlType::kIq4Xs:
      return run(qi::DequantizeIq4Xs);
    case GgmlType::kTq1_0:
      return run(qi::DequantizeTq1_0);
    case GgmlType::kTq2_0:
      return run(qi::DequantizeTq2_0);
    case GgmlType::kMxfp4:
      return run(qi::DequantizeMxfp4);
    case GgmlType::kNvfp4:
      return run(qi::DequantizeNvfp4);
    case GgmlType::kIq2Xxs:
      return run(qi::DequantizeIq2Xxs);
    case GgmlType::kIq2Xs:
      return run(qi::DequantizeIq2Xs);
    case GgmlType::kIq2S:
      return run(qi::DequantizeIq2S);
    case GgmlType::kIq3Xxs:
      return run(qi::DequantizeIq3Xxs);
    case GgmlType::kIq3S:
      return run(qi::DequantizeIq3S);
    case GgmlType::kIq1S:
      return run(qi::DequantizeIq1S);
    case GgmlType::kIq1M:
      return run(qi::DequantizeIq1M);
    // Types without a CPU dequantizer (can_dequantize is false; rejected above already).
    case GgmlType::kQ8_1:
    case GgmlType::kQ8_K:
    case GgmlType::kI8:
    case GgmlType::kI16:
    case GgmlType::kI32:
    case GgmlType::kI64:
    case GgmlType::kF64:
    case GgmlType::kQ1_0:
    case GgmlType::kQ2_0:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("DequantizeRow: no CPU dequantizer for type ", Sv(traits->name)));
}

}  // namespace moed

// DequantizeRow (argument validation) and BlockDecoderFor, the single dispatch switch over
// GgmlType. The switch has no default label on purpose: adding an enumerator to GgmlType fails to
// compile (-Wswitch, -Werror) until it is wired here, either to a dequantizer or to the explicit
// "no dequantizer" list.
#include "kernels/quants/dequantize.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/strings.h"
#include "kernels/quants/dequantize_impl.h"

namespace moed {

namespace quants_internal {

BlockDecoder BlockDecoderFor(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
      return DequantizeF32;
    case GgmlType::kF16:
      return DequantizeF16;
    case GgmlType::kBf16:
      return DequantizeBf16;
    case GgmlType::kQ4_0:
      return DequantizeQ4_0;
    case GgmlType::kQ4_1:
      return DequantizeQ4_1;
    case GgmlType::kQ5_0:
      return DequantizeQ5_0;
    case GgmlType::kQ5_1:
      return DequantizeQ5_1;
    case GgmlType::kQ8_0:
      return DequantizeQ8_0;
    case GgmlType::kQ2_K:
      return DequantizeQ2_K;
    case GgmlType::kQ3_K:
      return DequantizeQ3_K;
    case GgmlType::kQ4_K:
      return DequantizeQ4_K;
    case GgmlType::kQ5_K:
      return DequantizeQ5_K;
    case GgmlType::kQ6_K:
      return DequantizeQ6_K;
    case GgmlType::kIq3A770:
      return DequantizeIq3A770;
    case GgmlType::kIq4Nl:
      return DequantizeIq4Nl;
    case GgmlType::kIq4Xs:
      return DequantizeIq4Xs;
    case GgmlType::kTq1_0:
      return DequantizeTq1_0;
    case GgmlType::kTq2_0:
      return DequantizeTq2_0;
    case GgmlType::kMxfp4:
      return DequantizeMxfp4;
    case GgmlType::kNvfp4:
      return DequantizeNvfp4;
    case GgmlType::kIq2Xxs:
      return DequantizeIq2Xxs;
    case GgmlType::kIq2Xs:
      return DequantizeIq2Xs;
    case GgmlType::kIq2S:
      return DequantizeIq2S;
    case GgmlType::kIq3Xxs:
      return DequantizeIq3Xxs;
    case GgmlType::kIq3S:
      return DequantizeIq3S;
    case GgmlType::kIq1S:
      return DequantizeIq1S;
    case GgmlType::kIq1M:
      return DequantizeIq1M;
    // Types without a CPU dequantizer (can_dequantize is false).
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
  return nullptr;  // also reached by ids outside the enum
}

}  // namespace quants_internal

absl::Status DequantizeRow(GgmlType type, const void* src, float* dst, int64_t n) {
  const GgmlTypeTraits* traits = FindGgmlType(type);
  if (traits == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("DequantizeRow: unknown ggml type id ", static_cast<uint32_t>(type)));
  }
  const quants_internal::BlockDecoder decode = quants_internal::BlockDecoderFor(type);
  if (!traits->can_dequantize || decode == nullptr) {
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
  // One indirect call per row, not per weight. An empty row may come with null buffers, which
  // must not reach memcpy (F32).
  if (n > 0) decode(static_cast<const uint8_t*>(src), dst, n / traits->block_size);
  return absl::OkStatus();
}

}  // namespace moed

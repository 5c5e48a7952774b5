#include "kernels/quants/ggml_type.h"

#include <array>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/strings.h"

namespace moed {
namespace {

using T = GgmlType;
constexpr std::array<GgmlTypeTraits, 35> kTypes = {{
    {T::kF32, "F32", 1, 4, true},
    {T::kF16, "F16", 1, 2, true},
    {T::kQ4_0, "Q4_0", 32, 18, true},
    {T::kQ4_1, "Q4_1", 32, 20, true},
    {T::kQ5_0, "Q5_0", 32, 22, true},
    {T::kQ5_1, "Q5_1", 32, 24, true},
    {T::kQ8_0, "Q8_0", 32, 34, true},
    {T::kQ8_1, "Q8_1", 32, 36, false},
    {T::kQ2_K, "Q2_K", 256, 84, true},
    {T::kQ3_K, "Q3_K", 256, 110, true},
    {T::kQ4_K, "Q4_K", 256, 144, true},
    {T::kQ5_K, "Q5_K", 256, 176, true},
    {T::kQ6_K, "Q6_K", 256, 210, true},
    {T::kQ8_K, "Q8_K", 256, 292, false},
    {T::kIq2Xxs, "IQ2_XXS", 256, 66, true},
    {T::kIq2Xs, "IQ2_XS", 256, 74, true},
    {T::kIq3Xxs, "IQ3_XXS", 256, 98, true},
    {T::kIq1S, "IQ1_S", 256, 50, true},
    {T::kIq4Nl, "IQ4_NL", 32, 18, true},
    {T::kIq3S, "IQ3_S", 256, 110, true},
    {T::kIq2S, "IQ2_S", 256, 82, true},
    {T::kIq4Xs, "IQ4_XS", 256, 136, true},
    {T::kI8, "I8", 1, 1, false},
    {T::kI16, "I16", 1, 2, false},
    {T::kI32, "I32", 1, 4, false},
    {T::kI64, "I64", 1, 8, false},
    {T::kF64, "F64", 1, 8, false},
    {T::kIq1M, "IQ1_M", 256, 56, true},
    {T::kBf16, "BF16", 1, 2, true},
    {T::kTq1_0, "TQ1_0", 256, 54, true},
    {T::kTq2_0, "TQ2_0", 256, 66, true},
    {T::kMxfp4, "MXFP4", 32, 17, true},
    {T::kNvfp4, "NVFP4", 64, 36, true},
    {T::kQ1_0, "Q1_0", 128, 18, false},
    {T::kQ2_0, "Q2_0", 64, 18, false},
}};
constexpr GgmlTypeTraits kIq3A770Traits = {T::kIq3A770, "IQ3_A770", 256, 102, true};

}  // namespace

std::span<const GgmlTypeTraits> AllGgmlTypes() {
  static const auto* all = [] {
    auto* v = new std::array<GgmlTypeTraits, kTypes.size() + 1>();
    for (size_t i = 0; i < kTypes.size(); ++i) (*v)[i] = kTypes[i];
    (*v)[kTypes.size()] = kIq3A770Traits;
    return v;
  }();
  return *all;
}

const GgmlTypeTraits* FindGgmlType(GgmlType type) {
  for (const GgmlTypeTraits& t : AllGgmlTypes()) {
    if (t.type == type) return &t;
  }
  return nullptr;
}

std::optional<GgmlType> GgmlTypeFromFileId(uint32_t id) {
  for (const GgmlTypeTraits& t : kTypes) {
    if (static_cast<uint32_t>(t.type) == id) return t.type;
  }
  return std::nullopt;
}

uint32_t FileTypeId(GgmlType type) {
  return type == T::kIq3A770 ? kIq3A770FileId : static_cast<uint32_t>(type);
}

absl::StatusOr<GgmlType> GgmlTypeFromName(std::string_view name) {
  const std::string upper = absl::AsciiStrToUpper(Sv(name));
  std::string choices;
  for (const GgmlTypeTraits& t : AllGgmlTypes()) {
    if (t.name == upper) return t.type;
    absl::StrAppend(&choices, choices.empty() ? "" : ", ", Sv(t.name));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown tensor type '", Sv(name), "'; known types: ", choices));
}

std::string_view GgmlTypeName(GgmlType type) {
  const GgmlTypeTraits* t = FindGgmlType(type);
  return t ? t->name : std::string_view("?");
}

int64_t RowBytes(GgmlType type, int64_t n) {
  const GgmlTypeTraits* t = FindGgmlType(type);
  return n / t->block_size * t->type_size;
}

}  // namespace moed

// Phase Twin ("tensor_variant") resolution: a GGUF may carry several precisions of the same tensor,
// the canonical one (variant 0) under its normal name and siblings named "<canonical>.v<k>". Before
// any tensor byte is read, ResolveTensorVariants() picks one member per group (globally by index, or
// per tensor under a total weight-byte budget) and presents the survivors under their canonical
// names, so the rest of the loader sees an ordinary single-precision model.
//
// Normative rules: docs gguf-and-quants.md §5.2 (behaviour of the public reference loader,
// newjordan/NexN2-B70-Turbo select_tensor_variant) and §5.4 (our definition N1-N5). The budget
// greedy must match the reference exactly so that one file and one budget give one tensor set.
#ifndef MOED_LOADER_TENSOR_VARIANT_H_
#define MOED_LOADER_TENSOR_VARIANT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "loader/gguf/gguf_file.h"

namespace moed {

inline constexpr std::string_view kTensorVariantCountKey = "general.tensor_variant.count";
inline constexpr std::string_view kTensorVariantDefaultKey = "general.tensor_variant.default";
inline constexpr std::string_view kTensorVariantBudgetKey = "general.tensor_variant.budget_mb";
inline constexpr std::string_view kTensorVariantOrderKey = "general.tensor_variant.promote_order";

// If `name` is a sibling ("<canonical>.v<k>", k decimal without a leading zero: the regex
// ^(.+)\.v([1-9][0-9]*)$), returns the canonical part; otherwise nullopt.
std::optional<std::string_view> SiblingCanonicalName(std::string_view name);

// Overrides of the file keys, e.g. from the engine's command line.
//  * variant: replaces general.tensor_variant.default. Given without budget_mb it also selects
//    global mode even if the file sets a budget (an explicit phase request wins).
//  * budget_mb: replaces general.tensor_variant.budget_mb; 0 turns budget mode off.
struct VariantOptions {
  std::optional<uint32_t> variant = std::nullopt;
  std::optional<uint64_t> budget_mb = std::nullopt;
};

enum class VariantMode {
  kNone,    // the file has no groups: tensors pass through unchanged
  kGlobal,  // every group resolved to one variant index
  kBudget,  // greedy promotion v0 -> v1 under a total weight-byte budget
};
std::string_view VariantModeName(VariantMode mode);

// One tensor after resolution.
struct ResolvedTensor {
  gguf::TensorInfo info;    // info.name is the canonical name; type/shape/offset/nbytes are the
                            // selected member's (offset relative to the file's data section)
  std::string member_name;  // the selected member's name in the file (== info.name for v0)
  uint32_t variant = 0;     // selected variant index (0 for tensors outside any group)
  bool grouped = false;     // the tensor belonged to a variant group
};

struct VariantPlan {
  VariantMode mode = VariantMode::kNone;
  uint32_t variant = 0;           // global mode: the chosen index
  uint64_t budget_bytes = 0;      // budget mode: budget_mb << 20
  std::vector<ResolvedTensor> tensors;  // file order of each group's first member
  std::vector<std::string> promoted;    // budget mode: canonical names, in promotion order
  uint64_t total_bytes = 0;       // sum of nbytes over `tensors`
  uint64_t baseline_bytes = 0;    // sum of nbytes over every non-sibling tensor (all at v0)
  size_t num_groups = 0;
  uint32_t max_variant = 0;       // highest sibling index present (0 if no groups)
  size_t dropped = 0;             // member tensors removed by the resolution
  std::vector<std::string> warnings;

  // Infos of `tensors` (canonical names), ready for LoadTensorBytes.
  std::vector<gguf::TensorInfo> Infos() const;
  const ResolvedTensor* Find(std::string_view canonical_name) const;
};

// Resolves the file's variant groups from metadata only (no tensor byte is read):
//  * no key and no group: mode kNone; keys (or overrides) without groups: kNone plus a warning;
//    groups without keys or overrides: global variant 0 plus a warning.
//  * budget mode (budget_mb > 0): baseline = all non-siblings; walk promote_order, promoting a
//    group to v1 when v1 exists, is larger than v0 and still fits; misfits are skipped, not fatal.
//  * global mode: every group takes `<canonical>.v<default>`; a missing member is an error.
// Errors (InvalidArgument, naming the key, group or tensor): mistyped or negative keys, a group
// whose members differ in ne[], a selected member missing from the file.
absl::StatusOr<VariantPlan> ResolveTensorVariants(const gguf::GgufFile& file,
                                                  const VariantOptions& options = {});

// Multi-line human-readable summary of one plan: mode, sizes, promoted count, type histogram of
// the resolved group members, warnings.
std::string DescribeVariantPlan(const VariantPlan& plan);

// For `moed-model info`: if the file has variant groups, describes the plan of every phase
// (global variant 0..max) and, if `budget_mb` is given, of that budget; "" for ordinary files.
absl::StatusOr<std::string> DescribeTensorVariants(const gguf::GgufFile& file,
                                                   std::optional<uint64_t> budget_mb);

}  // namespace moed

#endif  // MOED_LOADER_TENSOR_VARIANT_H_

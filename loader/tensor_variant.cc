// Phase Twin resolution (see tensor_variant.h). Mirrors select_tensor_variant() of the public
// reference loader (patches 0010 + 0011 of newjordan/NexN2-B70-Turbo) and adds the checks our
// definition requires (§5.4): identical shapes within a group, integer keys of any width, v0 plus a
// warning for siblings without keys.
#include "loader/tensor_variant.h"

#include <algorithm>
#include <limits>
#include <map>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/base/log.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed {
namespace {

struct Group {
  std::string canonical;
  std::vector<size_t> members;  // indices into file.tensors(), file order (canonical included)
};

// Reads an optional non-negative integer key of any integer type; errors name the key.
absl::StatusOr<std::optional<uint64_t>> ReadUintKey(const gguf::GgufFile& file, std::string_view key) {
  const gguf::Value* v = file.FindValue(key);
  if (v == nullptr) return std::optional<uint64_t>();
  if (v->is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata key ", Sv(key), " must be a non-negative integer, found an array"));
  }
  absl::StatusOr<uint64_t> u = v->GetUint();
  if (!u.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("metadata key ", Sv(key),
                                                   " must be a non-negative integer: ", u.status().message()));
  }
  return std::optional<uint64_t>(*u);
}

std::string MemberName(const std::string& canonical, uint32_t variant) {
  return variant == 0 ? canonical : absl::StrCat(canonical, ".v", variant);
}

std::string FormatBytes(uint64_t bytes) {
  return absl::StrFormat("%d bytes (%.2f MiB, %.3f GiB)", bytes, bytes / 1048576.0, bytes / 1073741824.0);
}

}  // namespace

std::optional<std::string_view> SiblingCanonicalName(std::string_view name) {
  // ^(.+)\.v([1-9][0-9]*)$ with a greedy (.+): only the last ".v" can start the suffix, because
  // any earlier one would leave a '.' inside the digit run.
  const size_t pos = name.rfind(".v");
  if (pos == std::string_view::npos || pos == 0) return std::nullopt;
  const std::string_view digits = name.substr(pos + 2);
  if (digits.empty() || digits[0] < '1' || digits[0] > '9') return std::nullopt;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  return name.substr(0, pos);
}

std::string_view VariantModeName(VariantMode mode) {
  switch (mode) {
    case VariantMode::kNone:
      return "none";
    case VariantMode::kGlobal:
      return "global";
    case VariantMode::kBudget:
      return "budget";
  }
  return "?";
}

std::vector<gguf::TensorInfo> VariantPlan::Infos() const {
  std::vector<gguf::TensorInfo> out;
  out.reserve(tensors.size());
  for (const ResolvedTensor& t : tensors) out.push_back(t.info);
  return out;
}

const ResolvedTensor* VariantPlan::Find(std::string_view canonical_name) const {
  for (const ResolvedTensor& t : tensors) {
    if (t.info.name == canonical_name) return &t;
  }
  return nullptr;
}

absl::StatusOr<VariantPlan> ResolveTensorVariants(const gguf::GgufFile& file, const VariantOptions& options) {
  const std::vector<gguf::TensorInfo>& tensors = file.tensors();
  VariantPlan plan;

  // --- Groups: every canonical name with at least one sibling. ---------------------------------
  std::vector<Group> groups;
  absl::flat_hash_map<std::string, size_t> group_of_canonical;
  std::vector<bool> is_sibling(tensors.size(), false);
  for (size_t i = 0; i < tensors.size(); ++i) {
    std::optional<std::string_view> canonical = SiblingCanonicalName(tensors[i].name);
    if (!canonical) continue;
    if (SiblingCanonicalName(*canonical)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", tensors[i].name, "' is a variant of '",
                                                     Sv(*canonical), "', which is itself a variant name"));
    }
    is_sibling[i] = true;
    auto [it, inserted] = group_of_canonical.try_emplace(std::string(*canonical), groups.size());
    if (inserted) groups.push_back(Group{std::string(*canonical), {}});
    groups[it->second].members.push_back(i);
    // Highest index present, for DescribeTensorVariants; absurd indices saturate.
    const std::string_view digits = std::string_view(tensors[i].name).substr(canonical->size() + 2);
    uint64_t k = 0;
    for (char c : digits) k = std::min<uint64_t>(k * 10 + static_cast<uint64_t>(c - '0'), 1u << 30);
    plan.max_variant = std::max<uint32_t>(plan.max_variant, static_cast<uint32_t>(k));
  }
  // The canonical member joins its group (first, so file order is kept within the group).
  std::vector<int64_t> group_index(tensors.size(), -1);
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (is_sibling[i]) continue;
    auto it = group_of_canonical.find(tensors[i].name);
    if (it == group_of_canonical.end()) continue;
    std::vector<size_t>& members = groups[it->second].members;
    members.insert(std::upper_bound(members.begin(), members.end(), i), i);
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t i : groups[g].members) group_index[i] = static_cast<int64_t>(g);
  }
  plan.num_groups = groups.size();

  // N1: all members of a group share ne[]; only the type differs.
  for (const Group& g : groups) {
    const gguf::TensorInfo& first = tensors[g.members.front()];
    for (size_t i : g.members) {
      if (tensors[i].ne != first.ne) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor variant group '", g.canonical, "': members have different shapes ('", first.name, "' is ",
            first.ShapeString(), ", '", tensors[i].name, "' is ", tensors[i].ShapeString(), ")"));
      }
    }
  }

  // --- Keys and overrides. -----------------------------------------------------------------------
  ASSIGN_OR_RETURN(std::optional<uint64_t> file_default, ReadUintKey(file, kTensorVariantDefaultKey));
  ASSIGN_OR_RETURN(std::optional<uint64_t> file_budget, ReadUintKey(file, kTensorVariantBudgetKey));
  const bool have_any_key = file.FindValue(kTensorVariantCountKey) != nullptr || file_default.has_value() ||
                            file_budget.has_value() || file.FindValue(kTensorVariantOrderKey) != nullptr;
  const bool have_override = options.variant.has_value() || options.budget_mb.has_value();

  auto warn = [&plan](std::string message) {
    MOED_LOG(WARNING) << "tensor_variant: " << message;
    plan.warnings.push_back(std::move(message));
  };

  if (groups.empty()) {
    if (have_any_key || have_override) {
      warn("a tensor_variant key or override is set but the file has no '<name>.v<N>' tensors; ignored");
    }
    plan.mode = VariantMode::kNone;
    for (const gguf::TensorInfo& t : tensors) {
      plan.tensors.push_back(ResolvedTensor{t, t.name, 0, false});
      plan.total_bytes += t.nbytes;
    }
    plan.baseline_bytes = plan.total_bytes;
    return plan;
  }

  uint64_t budget_mb = 0;
  if (options.budget_mb) {
    budget_mb = *options.budget_mb;
  } else if (options.variant) {
    if (file_budget.value_or(0) > 0) {
      warn(absl::StrCat("variant ", *options.variant, " requested explicitly; the file's budget_mb=",
                        *file_budget, " is not used"));
    }
  } else {
    budget_mb = file_budget.value_or(0);
  }
  if (budget_mb > 0 && options.variant) {
    warn(absl::StrCat("budget mode is on (", budget_mb, " MiB); the requested variant ", *options.variant,
                      " is not used"));
  }

  // baseline: every tensor that is not a sibling (non-varianted tensors plus each canonical once).
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!is_sibling[i]) plan.baseline_bytes += tensors[i].nbytes;
  }

  // selected[g] = variant index of group g.
  std::vector<uint32_t> selected(groups.size(), 0);
  if (budget_mb > 0) {
    plan.mode = VariantMode::kBudget;
    plan.budget_bytes = budget_mb > (std::numeric_limits<uint64_t>::max() >> 20)
                            ? std::numeric_limits<uint64_t>::max()
                            : budget_mb << 20;
    std::vector<std::string> order;
    if (const gguf::Value* v = file.FindValue(kTensorVariantOrderKey)) {
      if (!v->is_array() || v->element_type() != gguf::ValueType::kString) {
        return absl::InvalidArgumentError(absl::StrCat("metadata key ", Sv(kTensorVariantOrderKey),
                                                       " must be an array of strings, found ",
                                                       v->DebugString(2)));
      }
      order.assign(v->strings().begin(), v->strings().end());
    }
    if (order.empty()) {
      warn(absl::StrCat("budget_mb=", budget_mb, " is set but ", Sv(kTensorVariantOrderKey),
                        " is missing or empty; every group stays at variant 0"));
    }
    // nbytes of a member by name; 0 if absent (as the reference does).
    auto member_bytes = [&](const std::string& name) -> uint64_t {
      const gguf::TensorInfo* t = file.FindTensor(name);
      return t == nullptr ? 0 : t->nbytes;
    };
    uint64_t total = plan.baseline_bytes;
    if (total > plan.budget_bytes) {
      warn(absl::StrCat("the all-variant-0 baseline (", FormatBytes(total), ") exceeds the budget (",
                        FormatBytes(plan.budget_bytes), "); nothing is promoted"));
    }
    for (const std::string& name : order) {
      auto it = group_of_canonical.find(name);
      if (it == group_of_canonical.end() || selected[it->second] != 0) continue;  // not a group, or a duplicate
      const uint64_t v0 = member_bytes(name);
      const uint64_t v1 = member_bytes(MemberName(name, 1));
      if (v1 <= v0) continue;  // also covers a missing v1
      const uint64_t delta = v1 - v0;
      if (delta > plan.budget_bytes || total > plan.budget_bytes - delta) continue;  // skip, keep walking
      selected[it->second] = 1;
      total += delta;
      plan.promoted.push_back(name);
    }
  } else {
    plan.mode = VariantMode::kGlobal;
    if (options.variant) {
      plan.variant = *options.variant;
    } else if (file_default) {
      if (*file_default > std::numeric_limits<uint32_t>::max()) {
        return absl::InvalidArgumentError(absl::StrCat("metadata key ", Sv(kTensorVariantDefaultKey), " = ",
                                                       *file_default, " is out of range"));
      }
      plan.variant = static_cast<uint32_t>(*file_default);
    } else {
      plan.variant = 0;
      if (!have_any_key) {
        warn(absl::StrCat("the file has ", groups.size(),
                          " '<name>.v<N>' tensor groups but no general.tensor_variant.* keys; using variant 0"));
      }
    }
    std::fill(selected.begin(), selected.end(), plan.variant);
  }

  // --- Resolution: one survivor per group, under the canonical name, at its first member's slot. -
  std::vector<bool> emitted(groups.size(), false);
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (group_index[i] < 0) {
      plan.tensors.push_back(ResolvedTensor{tensors[i], tensors[i].name, 0, false});
      plan.total_bytes += tensors[i].nbytes;
      continue;
    }
    const size_t g = static_cast<size_t>(group_index[i]);
    if (emitted[g]) continue;
    emitted[g] = true;
    const Group& group = groups[g];
    const std::string want = MemberName(group.canonical, selected[g]);
    const gguf::TensorInfo* member = file.FindTensor(want);
    if (member == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("requested tensor variant ", selected[g], " for '",
                                                     group.canonical, "', but '", want,
                                                     "' is missing from the file"));
    }
    ResolvedTensor r{*member, want, selected[g], true};
    r.info.name = group.canonical;
    plan.total_bytes += member->nbytes;
    plan.dropped += group.members.size() - 1;
    plan.tensors.push_back(std::move(r));
  }

  if (plan.mode == VariantMode::kBudget) {
    MOED_LOG(INFO) << "tensor_variant: budget " << FormatBytes(plan.budget_bytes) << ": baseline "
                   << FormatBytes(plan.baseline_bytes) << ", selected " << FormatBytes(plan.total_bytes) << " ("
                   << plan.promoted.size() << "/" << groups.size() << " groups promoted to v1)";
  } else {
    MOED_LOG(INFO) << "tensor_variant: selected variant " << plan.variant << " for " << groups.size()
                   << " groups (" << plan.dropped << " member tensors dropped), weights "
                   << FormatBytes(plan.total_bytes);
  }
  return plan;
}

std::string DescribeVariantPlan(const VariantPlan& plan) {
  std::string out;
  if (plan.mode == VariantMode::kNone) {
    absl::StrAppend(&out, "  no tensor variant groups; ", plan.tensors.size(), " tensors, ",
                    FormatBytes(plan.total_bytes), "\n");
  } else {
    if (plan.mode == VariantMode::kGlobal) {
      absl::StrAppend(&out, "  mode global, variant ", plan.variant, "\n");
    } else {
      absl::StrAppend(&out, "  mode budget, budget ", FormatBytes(plan.budget_bytes), "\n",
                      "  promoted to v1: ", plan.promoted.size(), " of ", plan.num_groups, " groups\n");
    }
    absl::StrAppend(&out, "  groups ", plan.num_groups, ", dropped member tensors ", plan.dropped, "\n",
                    "  weights after resolution ", FormatBytes(plan.total_bytes), "\n",
                    "  baseline (all variant 0) ", FormatBytes(plan.baseline_bytes), "\n");
    // Type histogram of the resolved group members: what the phase actually runs.
    std::map<std::pair<uint32_t, std::string>, std::pair<size_t, uint64_t>> by_type;
    for (const ResolvedTensor& t : plan.tensors) {
      if (!t.grouped) continue;
      auto& slot = by_type[{t.variant, std::string(GgmlTypeName(t.info.type))}];
      slot.first += 1;
      slot.second += t.info.nbytes;
    }
    for (const auto& [key, value] : by_type) {
      absl::StrAppend(&out, "    v", key.first, " ", key.second, ": ", value.first, " tensors, ",
                      FormatBytes(value.second), "\n");
    }
  }
  for (const std::string& w : plan.warnings) absl::StrAppend(&out, "  warning: ", w, "\n");
  return out;
}

absl::StatusOr<std::string> DescribeTensorVariants(const gguf::GgufFile& file, std::optional<uint64_t> budget_mb) {
  const auto& tensors = file.tensors();
  if (std::none_of(tensors.begin(), tensors.end(),
                   [](const gguf::TensorInfo& t) { return SiblingCanonicalName(t.name).has_value(); })) {
    return std::string();  // an ordinary file: nothing to describe, nothing to warn about
  }
  // Probe with an explicit variant 0 so that a file whose default points at a missing member still
  // gets described (the error is shown on that phase's line below).
  ASSIGN_OR_RETURN(VariantPlan probe, ResolveTensorVariants(file, VariantOptions{0u, 0u}));
  if (probe.num_groups == 0) return std::string();
  std::string out = absl::StrCat("tensor variants: ", probe.num_groups, " groups, variants 0..",
                                 probe.max_variant, "\n");
  auto describe = [&](const std::string& title, const VariantOptions& options) {
    absl::StrAppend(&out, title, ":\n");
    absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(file, options);
    absl::StrAppend(&out, plan.ok() ? DescribeVariantPlan(*plan)
                                    : absl::StrCat("  error: ", plan.status().message(), "\n"));
  };
  describe("as configured by the file", VariantOptions{});
  for (uint32_t v = 0; v <= probe.max_variant && v < 16; ++v) {
    describe(absl::StrCat("phase ", v), VariantOptions{v, 0u});
  }
  if (budget_mb) describe(absl::StrCat("budget ", *budget_mb, " MiB"), VariantOptions{std::nullopt, *budget_mb});
  return out;
}

}  // namespace moed

// moed-model prune: materialises the budget selection of a Phase Twin file into a plain GGUF, like
// newjordan/NexN2-B70-Turbo scripts/prune-dual.py. The same greedy the loader runs
// (ResolveTensorVariants in budget mode) picks each group's winner; the output holds the winners
// under their canonical names, in the twin's order, and none of the four tensor_variant keys.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"
#include "loader/gguf/gguf_file.h"
#include "loader/gguf/gguf_writer.h"
#include "loader/tensor_variant.h"
#include "tools/moed_model/subcommand.h"

namespace moed::tool {
namespace {

// Budget in MiB from --budget-mb N, or --vram-gib G [--reserve-gib R] as floor((G - R) * 1024).
absl::StatusOr<uint64_t> BudgetMb(const Args& args) {
  const bool mb = args.Has("budget-mb"), gib = args.Has("vram-gib");
  if (mb == gib) return absl::InvalidArgumentError("give exactly one of --budget-mb and --vram-gib");
  if (mb) {
    ASSIGN_OR_RETURN(int64_t n, args.GetInt("budget-mb", 0));
    if (n < 0) return absl::InvalidArgumentError(absl::StrCat("--budget-mb ", n, " is negative"));
    return static_cast<uint64_t>(n);
  }
  ASSIGN_OR_RETURN(double vram, args.GetDouble("vram-gib", 0));
  ASSIGN_OR_RETURN(double reserve, args.GetDouble("reserve-gib", 0.6));
  if (!std::isfinite(vram) || !std::isfinite(reserve) || reserve < 0) {
    return absl::InvalidArgumentError("--vram-gib and --reserve-gib must be finite, the reserve non-negative");
  }
  const double budget = std::floor((vram - reserve) * 1024.0);
  if (budget < 0 || budget > 1e15) {
    return absl::InvalidArgumentError(
        absl::StrCat("--vram-gib ", vram, " minus --reserve-gib ", reserve, " gives no usable budget"));
  }
  return static_cast<uint64_t>(budget);
}

absl::Status RunPrune(const Args& args) {
  RETURN_IF_ERROR(args.CheckKnown({"budget-mb", "vram-gib", "reserve-gib", "dry-run"}));
  if (args.positional().size() != 2) return absl::InvalidArgumentError("expected TWIN.gguf OUT.gguf");
  const std::string& twin_path = args.positional()[0];
  const std::string& out_path = args.positional()[1];
  ASSIGN_OR_RETURN(uint64_t budget_mb, BudgetMb(args));

  ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> twin, gguf::GgufFile::Open(twin_path));
  // A budget of 0 selects nothing, i.e. every group at variant 0 (0 means "off" for the loader's
  // key, so ask for variant 0 explicitly).
  VariantOptions options;
  options.budget_mb = budget_mb;
  if (budget_mb == 0) options.variant = 0;
  ASSIGN_OR_RETURN(VariantPlan plan, ResolveTensorVariants(*twin, options));
  if (plan.num_groups == 0) {
    return absl::InvalidArgumentError(absl::StrCat(twin_path, " is not a Phase Twin file (no '<name>.v<N>' tensors)"));
  }
  std::printf("budget: %llu MiB\n%s", static_cast<unsigned long long>(budget_mb), DescribeVariantPlan(plan).c_str());
  if (args.Has("dry-run")) return absl::OkStatus();

  gguf::GgufWriter writer;
  writer.CopyMetadataFrom(*twin);
  for (std::string_view key : {kTensorVariantCountKey, kTensorVariantDefaultKey, kTensorVariantBudgetKey,
                               kTensorVariantOrderKey}) {
    writer.RemoveValue(key);
  }
  for (const ResolvedTensor& r : plan.tensors) {
    const gguf::TensorInfo* member = twin->FindTensor(r.member_name);
    if (member == nullptr) return absl::InternalError(absl::StrCat("lost tensor '", r.member_name, "'"));
    const size_t dims = std::max<uint32_t>(r.info.n_dims, 1);
    const std::vector<int64_t> ne(r.info.ne.begin(), r.info.ne.begin() + dims);
    const gguf::GgufFile& file = *twin;
    const gguf::TensorInfo src_info = *member;
    RETURN_IF_ERROR(writer.AddTensor(r.info.name, r.info.type, ne, [&file, src_info](std::span<uint8_t> out) {
      std::span<const uint8_t> src = file.TensorData(src_info);
      if (src.size() != out.size()) {
        return absl::InternalError(absl::StrCat("tensor '", src_info.name, "': ", src.size(), " bytes, expected ",
                                                out.size()));
      }
      std::memcpy(out.data(), src.data(), src.size());
      return absl::OkStatus();
    }));
  }
  RETURN_IF_ERROR(writer.WriteFile(out_path));

  // Without the tensor_variant keys, a type 42 (IQ3_A770) tensor is recognised only by offset
  // contiguity (§5.3 (1)); check that the written file reads back with the intended types.
  ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> out, gguf::GgufFile::Open(out_path));
  bool same = out->tensors().size() == plan.tensors.size();
  for (size_t i = 0; same && i < plan.tensors.size(); ++i) {
    const gguf::TensorInfo& got = out->tensors()[i];
    const gguf::TensorInfo& want = plan.tensors[i].info;
    same = got.name == want.name && got.type == want.type && got.nbytes == want.nbytes;
  }
  if (!same) {
    std::remove(out_path.c_str());
    return absl::InternalError(absl::StrCat("the pruned file does not read back with the selected tensor types (",
                                            out->type42_decision(), "); not written"));
  }
  std::printf("wrote %s: %zu tensors, %llu bytes of weights\n", out_path.c_str(), plan.tensors.size(),
              static_cast<unsigned long long>(plan.total_bytes));
  return absl::OkStatus();
}

MOED_SUBCOMMAND(kPruneRegistered,
                Subcommand{
                    .name = "prune",
                    .usage = "TWIN.gguf OUT.gguf (--budget-mb N | --vram-gib G [--reserve-gib 0.6]) [--dry-run]",
                    .help = "Materialise a Phase Twin file's budget selection as a plain GGUF (like prune-dual.py).",
                    .bool_flags = {"dry-run"},
                    .run = &RunPrune,
                });

}  // namespace
}  // namespace moed::tool

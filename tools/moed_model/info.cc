// moed-model info: what a GGUF file holds — keys, tensors, the architecture with bytes per
// layer and per type, and for Phase Twin files the plan of every phase and of a given budget.
#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"
#include "loader/gguf/gguf_file.h"
#include "loader/model/model_description.h"
#include "loader/tensor_variant.h"
#include "tools/moed_model/subcommand.h"

namespace moed::tool {
namespace {

std::string Bytes(uint64_t b) {
  if (b >= (uint64_t{1} << 30)) return absl::StrFormat("%.2f GiB", b / double(uint64_t{1} << 30));
  if (b >= (uint64_t{1} << 20)) return absl::StrFormat("%.2f MiB", b / double(uint64_t{1} << 20));
  if (b >= 1024) return absl::StrFormat("%.1f KiB", b / 1024.0);
  return absl::StrCat(b, " B");
}

std::string TypeBreakdown(const BytesByType& by_type) {
  std::string out;
  for (const auto& [type, bytes] : by_type) {
    absl::StrAppend(&out, out.empty() ? "" : ", ", Sv(GgmlTypeName(type)), " ", Bytes(bytes));
  }
  return out;
}

void PrintModel(const ModelDescription& m) {
  std::printf("\narchitecture %s%s: %d layers, n_embd %lld, n_vocab %lld, %s of weights\n", m.architecture.c_str(),
              m.size_label.empty() ? "" : absl::StrCat(" (", m.size_label, ")").c_str(), m.n_layer,
              static_cast<long long>(m.n_embd), static_cast<long long>(m.n_vocab), Bytes(m.total_bytes).c_str());
  std::printf("  by type: %s\n", TypeBreakdown(m.bytes_by_type).c_str());
  std::printf("  outside the blocks (embedding, final norm, head): %s\n", Bytes(m.global_bytes).c_str());
  std::printf("  %-5s %-17s %12s %14s %14s  %s\n", "layer", "kind", "weights", "KV/token", "state/seq", "by type");
  for (const LayerDescription& l : m.layers) {
    std::printf("  %-5d %-17s %12s %14s %14s  %s\n", l.index,
                l.is_mtp ? "mtp (skipped)" : std::string(LayerKindName(l.kind)).c_str(), Bytes(l.weight_bytes).c_str(),
                l.kv_bytes_per_token ? Bytes(l.kv_bytes_per_token).c_str() : "-",
                l.recurrent_state_bytes ? Bytes(l.recurrent_state_bytes).c_str() : "-",
                TypeBreakdown(l.bytes_by_type).c_str());
  }
}

absl::Status RunInfo(const Args& args) {
  RETURN_IF_ERROR(args.CheckKnown({"budget-mb", "tensors", "keys"}));
  if (args.positional().size() != 1) return absl::InvalidArgumentError("expected one GGUF file");
  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> file, gguf::GgufFile::Open(args.positional()[0]));
  const double parse_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

  std::printf("%s: GGUF v%u, %s, %zu keys, %zu tensors, alignment %u, header parsed in %.1f ms\n",
              file->path().c_str(), file->version(), Bytes(file->file_size()).c_str(), file->metadata().size(),
              file->tensors().size(), file->alignment(), parse_ms);
  if (!file->type42_decision().empty()) std::printf("note: %s\n", file->type42_decision().c_str());

  if (args.Has("keys") || file->metadata().size() <= 64) {
    std::printf("\nkeys:\n");
    for (const gguf::KeyValue& kv : file->metadata()) {
      std::printf("  %-50s %s\n", kv.key.c_str(), kv.value.DebugString().c_str());
    }
  }
  std::map<GgmlType, std::pair<int, uint64_t>> per_type;
  for (const gguf::TensorInfo& t : file->tensors()) {
    per_type[t.type].first++;
    per_type[t.type].second += t.nbytes;
  }
  std::printf("\ntensors by type:\n");
  for (const auto& [type, count_bytes] : per_type) {
    std::printf("  %-9s %6d tensors %12s\n", std::string(GgmlTypeName(type)).c_str(), count_bytes.first,
                Bytes(count_bytes.second).c_str());
  }
  if (args.Has("tensors")) {
    std::printf("\ntensors:\n");
    for (const gguf::TensorInfo& t : file->tensors()) {
      std::printf("  %-48s %-9s %-22s %12s @%llu\n", t.name.c_str(), std::string(GgmlTypeName(t.type)).c_str(),
                  t.ShapeString().c_str(), Bytes(t.nbytes).c_str(),
                  static_cast<unsigned long long>(file->TensorFileOffset(t)));
    }
  }

  std::optional<uint64_t> budget;
  if (args.Has("budget-mb")) {
    ASSIGN_OR_RETURN(int64_t mb, args.GetInt("budget-mb", 0));
    if (mb < 0) return absl::InvalidArgumentError("--budget-mb must not be negative");
    budget = static_cast<uint64_t>(mb);
  }
  ASSIGN_OR_RETURN(std::string variants, DescribeTensorVariants(*file, budget));
  if (!variants.empty()) std::printf("\n%s", variants.c_str());

  // The architecture as the engine would load it: the file's own phase or budget.
  VariantOptions options;
  if (budget) options.budget_mb = *budget;
  ASSIGN_OR_RETURN(VariantPlan plan, ResolveTensorVariants(*file, options));
  const std::vector<gguf::TensorInfo> resolved = plan.Infos();
  absl::StatusOr<ModelDescription> model = DescribeModel(*file, resolved);
  if (!model.ok()) {
    std::printf("\narchitecture: %s\n", std::string(model.status().message()).c_str());
    return absl::OkStatus();  // info still describes files moed cannot run
  }
  PrintModel(*model);
  return absl::OkStatus();
}

MOED_SUBCOMMAND(kInfo, {
    .name = "info",
    .usage = "FILE.gguf [--budget-mb N] [--tensors] [--keys]",
    .help = "Show a GGUF file: keys, tensors, architecture, bytes per layer and type, Phase Twin plans.",
    .bool_flags = {"tensors", "keys"},
    .run = RunInfo,
});

}  // namespace
}  // namespace moed::tool

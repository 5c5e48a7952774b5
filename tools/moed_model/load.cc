// moed-model load: reads a model's tensors the way a worker loads its stage — Phase Twin
// resolution first (file keys, or --variant / --budget-mb), then pread of exactly the selected
// tensors, optionally only the blocks of a layer range — and reports the bytes the kernel
// counted (/proc/self/io rchar) against the bytes selected.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "loader/gguf/gguf_file.h"
#include "loader/tensor_loader.h"
#include "loader/tensor_variant.h"
#include "tools/moed_model/subcommand.h"

namespace moed::tool {
namespace {

absl::StatusOr<uint64_t> BytesReadSoFar() {
  std::ifstream io("/proc/self/io");
  std::string key;
  uint64_t value = 0;
  while (io >> key >> value) {
    if (key == "rchar:") return value;
  }
  return absl::UnavailableError("/proc/self/io has no rchar line");
}

// Layer index of "blk.N.*" tensors; -1 for tensors outside the blocks.
int LayerOf(const std::string& name) {
  if (!absl::StartsWith(name, "blk.")) return -1;
  int layer = -1;
  const size_t dot = name.find('.', 4);
  if (!absl::SimpleAtoi(name.substr(4, dot - 4), &layer)) return -1;
  return layer;
}

absl::Status RunLoad(const Args& args) {
  RETURN_IF_ERROR(args.CheckKnown({"variant", "budget-mb", "layers"}));
  if (args.positional().size() != 1) return absl::InvalidArgumentError("expected one GGUF file");
  VariantOptions options;
  if (args.Has("variant")) {
    ASSIGN_OR_RETURN(int64_t v, args.GetInt("variant", 0));
    if (v < 0) return absl::InvalidArgumentError("--variant must not be negative");
    options.variant = static_cast<uint32_t>(v);
  }
  if (args.Has("budget-mb")) {
    ASSIGN_OR_RETURN(int64_t mb, args.GetInt("budget-mb", 0));
    if (mb < 0) return absl::InvalidArgumentError("--budget-mb must not be negative");
    options.budget_mb = static_cast<uint64_t>(mb);
  }
  int first = 0, last = 1 << 30;
  if (std::optional<std::string> range = args.Get("layers")) {
    const size_t dash = range->find('-');
    if (dash == std::string::npos || !absl::SimpleAtoi(range->substr(0, dash), &first) ||
        !absl::SimpleAtoi(range->substr(dash + 1), &last) || first < 0 || last < first) {
      return absl::InvalidArgumentError(absl::StrCat("--layers expects FIRST-LAST, got '", *range, "'"));
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> file, gguf::GgufFile::Open(args.positional()[0]));
  ASSIGN_OR_RETURN(VariantPlan plan, ResolveTensorVariants(*file, options));
  std::vector<gguf::TensorInfo> selected;
  uint64_t selected_bytes = 0;
  for (const gguf::TensorInfo& t : plan.Infos()) {
    const int layer = LayerOf(t.name);
    if (args.Has("layers") && (layer < first || layer > last)) continue;
    selected_bytes += t.nbytes;
    selected.push_back(t);
  }
  ASSIGN_OR_RETURN(uint64_t before, BytesReadSoFar());
  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(std::vector<LoadedTensor> loaded, LoadTensorBytes(*file, selected));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSIGN_OR_RETURN(uint64_t after, BytesReadSoFar());
  const uint64_t read = after - before;
  std::printf("mode %s: %zu tensors, %llu bytes selected of a %llu-byte file; read %llu bytes (%+.3f%%) in %.2f s\n",
              std::string(VariantModeName(plan.mode)).c_str(), loaded.size(),
              static_cast<unsigned long long>(selected_bytes), static_cast<unsigned long long>(file->file_size()),
              static_cast<unsigned long long>(read),
              selected_bytes ? 100.0 * (static_cast<double>(read) - selected_bytes) / selected_bytes : 0.0, seconds);
  return absl::OkStatus();
}

MOED_SUBCOMMAND(kLoad, {
    .name = "load",
    .usage = "FILE.gguf [--variant N | --budget-mb N] [--layers FIRST-LAST]",
    .help = "Read a model's selected tensors as a worker does and report the bytes actually read.",
    .bool_flags = {},
    .run = RunLoad,
});

}  // namespace
}  // namespace moed::tool

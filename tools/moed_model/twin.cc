// moed-model twin: merges a base GGUF (variant 0) and a variant GGUF into one Phase Twin file, the
// layout written by newjordan/NexN2-B70-Turbo scripts/merge-tensor-variants.py (gguf-and-quants.md
// §5.2, N4): every base tensor in base order, then "<name>.v1" for each variant tensor whose name
// contains the pattern ("_exps.", the MoE experts), in the variant file's order; keys count=2,
// default=0, budget_mb=0, and promote_order when a ranking is given.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"
#include "loader/gguf/gguf_file.h"
#include "loader/gguf/gguf_writer.h"
#include "loader/tensor_variant.h"
#include "tools/moed_model/subcommand.h"

namespace moed::tool {
namespace {

// Splits one CSV record; fields may be double-quoted ("" is a quote inside quotes).
std::vector<std::string> SplitCsv(std::string_view line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        out.back().push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        out.back().push_back(c);
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else {
      out.back().push_back(c);
    }
  }
  return out;
}

// The ranking file, in one of two formats:
//  * CSV with a header row naming a "name" column: the ranking.csv of rank-experts.py. As
//    merge-tensor-variants.py does, rows are ordered by the integer "rank" column (if present) and
//    only rows whose "promotable" column is "1" (if present) are kept.
//  * Otherwise a plain list: one canonical tensor name per line, best first; blank lines and
//    lines starting with '#' are ignored.
absl::StatusOr<std::vector<std::string>> ReadRanking(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ranking file ", path));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  size_t first = 0;
  while (first < lines.size() && absl::StripAsciiWhitespace(lines[first]).empty()) ++first;
  if (first == lines.size()) return std::vector<std::string>();

  const std::vector<std::string> header = SplitCsv(lines[first]);
  auto column = [&header](std::string_view name) -> int {
    for (size_t i = 0; i < header.size(); ++i) {
      if (absl::StripAsciiWhitespace(header[i]) == Sv(name)) return static_cast<int>(i);
    }
    return -1;
  };
  const int name_col = column("name");
  if (header.size() < 2 || name_col < 0) {
    std::vector<std::string> out;
    for (const std::string& line : lines) {
      const std::string name(absl::StripAsciiWhitespace(line));
      if (name.empty() || name[0] == '#') continue;
      out.push_back(name);
    }
    return out;
  }
  const int rank_col = column("rank");
  const int promotable_col = column("promotable");
  std::vector<std::pair<int64_t, std::string>> rows;
  for (size_t i = first + 1; i < lines.size(); ++i) {
    if (absl::StripAsciiWhitespace(lines[i]).empty()) continue;
    const std::vector<std::string> f = SplitCsv(lines[i]);
    auto field = [&](int col) -> absl::StatusOr<std::string> {
      if (static_cast<size_t>(col) >= f.size()) {
        return absl::InvalidArgumentError(absl::StrCat(path, " line ", i + 1, ": missing column '",
                                                       header[col], "'"));
      }
      return std::string(absl::StripAsciiWhitespace(f[col]));
    };
    int64_t rank = static_cast<int64_t>(rows.size());
    if (rank_col >= 0) {
      ASSIGN_OR_RETURN(std::string r, field(rank_col));
      if (!absl::SimpleAtoi(r, &rank)) {
        return absl::InvalidArgumentError(absl::StrCat(path, " line ", i + 1, ": rank '", r, "' is not an integer"));
      }
    }
    if (promotable_col >= 0) {
      ASSIGN_OR_RETURN(std::string p, field(promotable_col));
      if (p != "1") continue;
    }
    ASSIGN_OR_RETURN(std::string name, field(name_col));
    rows.emplace_back(rank, std::move(name));
  }
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (auto& row : rows) out.push_back(std::move(row.second));
  return out;
}

bool HasVariantKeys(const gguf::GgufFile& file) {
  for (const gguf::KeyValue& kv : file.metadata()) {
    if (kv.key.rfind("general.tensor_variant.", 0) == 0) return true;
  }
  return false;
}

// A source must not be a twin already, and a tensor that goes into the twin (names containing
// `copied`) must not be a type 42 this file read as Q2_0: the twin's keys would make every reader
// take it as IQ3_A770 (§5.3 (1)).
absl::Status CheckSource(const gguf::GgufFile& file, std::string_view role, std::string_view copied) {
  if (HasVariantKeys(file)) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(role), " ", file.path(),
                                                   " already has general.tensor_variant.* keys"));
  }
  for (const gguf::TensorInfo& t : file.tensors()) {
    if (SiblingCanonicalName(t.name)) {
      return absl::InvalidArgumentError(absl::StrCat(Sv(role), " ", file.path(), " already has a variant tensor '",
                                                     t.name, "'"));
    }
    if (t.type == GgmlType::kQ2_0 && t.name.find(copied) != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          Sv(role), " tensor '", t.name, "' has type id 42 read as Q2_0 (", file.type42_decision(),
          "); in a Phase Twin file it would be read as IQ3_A770"));
    }
  }
  return absl::OkStatus();
}

// Adds `info` of `file` to the writer under `name`, copying its bytes when the writer reaches it.
absl::Status AddCopiedTensor(gguf::GgufWriter& writer, const gguf::GgufFile& file, const gguf::TensorInfo& info,
                             std::string name) {
  const size_t dims = std::max<uint32_t>(info.n_dims, 1);
  const std::vector<int64_t> ne(info.ne.begin(), info.ne.begin() + dims);
  return writer.AddTensor(std::move(name), info.type, ne, [&file, info](std::span<uint8_t> out) -> absl::Status {
    std::span<const uint8_t> src = file.TensorData(info);
    if (src.size() != out.size()) {
      return absl::InternalError(absl::StrCat("tensor '", info.name, "': ", src.size(), " bytes, expected ",
                                              out.size()));
    }
    std::memcpy(out.data(), src.data(), src.size());
    return absl::OkStatus();
  });
}

absl::Status RunTwin(const Args& args) {
  RETURN_IF_ERROR(args.CheckKnown({"ranking", "pattern"}));
  if (args.positional().size() != 3) {
    return absl::InvalidArgumentError("expected BASE.gguf VARIANT.gguf OUT.gguf");
  }
  const std::string& base_path = args.positional()[0];
  const std::string& variant_path = args.positional()[1];
  const std::string& out_path = args.positional()[2];
  const std::string pattern = args.Get("pattern").value_or("_exps.");
  if (pattern.empty()) return absl::InvalidArgumentError("--pattern must not be empty");

  ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> base, gguf::GgufFile::Open(base_path));
  ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> variant, gguf::GgufFile::Open(variant_path));
  RETURN_IF_ERROR(CheckSource(*base, "base", ""));
  RETURN_IF_ERROR(CheckSource(*variant, "variant", pattern));

  gguf::GgufWriter writer;
  writer.CopyMetadataFrom(*base);
  writer.SetValue(std::string(kTensorVariantCountKey), gguf::Value::Uint32(2));
  writer.SetValue(std::string(kTensorVariantDefaultKey), gguf::Value::Uint32(0));
  writer.SetValue(std::string(kTensorVariantBudgetKey), gguf::Value::Uint32(0));

  for (const gguf::TensorInfo& t : base->tensors()) {
    RETURN_IF_ERROR(AddCopiedTensor(writer, *base, t, t.name));
  }
  absl::flat_hash_set<std::string> groups;
  for (const gguf::TensorInfo& t : variant->tensors()) {
    if (t.name.find(pattern) == std::string::npos) continue;
    const gguf::TensorInfo* canonical = base->FindTensor(t.name);
    if (canonical == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("variant tensor '", t.name, "' has no tensor of the same name in the base ", base_path));
    }
    if (canonical->ne != t.ne) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "' has shape ", canonical->ShapeString(),
                                                     " in the base but ", t.ShapeString(), " in the variant"));
    }
    std::string sibling = absl::StrCat(t.name, ".v1");
    if (sibling.size() > gguf::kMaxTensorNameBytes) {
      return absl::InvalidArgumentError(absl::StrCat("variant name '", sibling, "' is longer than ",
                                                     gguf::kMaxTensorNameBytes, " bytes"));
    }
    RETURN_IF_ERROR(AddCopiedTensor(writer, *variant, t, std::move(sibling)));
    groups.insert(t.name);
  }
  if (groups.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no tensor of the variant ", variant_path, " has a name containing '", pattern, "'"));
  }

  size_t order_size = 0;
  if (std::optional<std::string> ranking = args.Get("ranking")) {
    ASSIGN_OR_RETURN(std::vector<std::string> order, ReadRanking(*ranking));
    const size_t unknown = std::count_if(order.begin(), order.end(),
                                         [&](const std::string& n) { return !groups.contains(n); });
    if (unknown > 0) {
      std::fprintf(stderr, "warning: %zu of %zu ranking entries are not variant groups; readers ignore them\n",
                   unknown, order.size());
    }
    order_size = order.size();
    writer.SetValue(std::string(kTensorVariantOrderKey), gguf::Value::StringArray(std::move(order)));
  }

  RETURN_IF_ERROR(writer.WriteFile(out_path));

  // Read the result back: it must parse and resolve as a twin (e.g. a type 42 that now reads
  // differently would show up here).
  ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> out, gguf::GgufFile::Open(out_path));
  absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*out);
  if (!plan.ok() || plan->num_groups != groups.size()) {
    std::remove(out_path.c_str());
    return absl::InternalError(absl::StrCat("the written file ", out_path, " does not resolve as a twin: ",
                                            plan.ok() ? "group count differs" : plan.status().message()));
  }
  std::printf("wrote %s: %zu base tensors + %zu '.v1' variants, promote_order %s\n", out_path.c_str(),
              base->tensors().size(), groups.size(),
              args.Has("ranking") ? absl::StrCat(order_size, " entries").c_str() : "not written");
  return absl::OkStatus();
}

MOED_SUBCOMMAND(kTwinRegistered,
                Subcommand{
                    .name = "twin",
                    .usage = "BASE.gguf VARIANT.gguf OUT.gguf [--ranking ranking.csv|names.txt] [--pattern _exps.]",
                    .help = "Merge a base and a variant GGUF into a Phase Twin file (the variant's experts as '<name>.v1').",
                    .bool_flags = {},
                    .run = &RunTwin,
                });

}  // namespace
}  // namespace moed::tool

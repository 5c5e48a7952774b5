#include "tools/moed_model/subcommand.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/base/strings.h"

namespace moed::tool {

absl::StatusOr<Args> Args::Parse(const std::vector<std::string>& argv,
                                 const std::vector<std::string_view>& bool_flags) {
  Args args;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.size() < 3 || a.compare(0, 2, "--") != 0) {
      args.positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2);
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      args.flags_.emplace(name.substr(0, eq), name.substr(eq + 1));
      continue;
    }
    const bool is_bool = std::find(bool_flags.begin(), bool_flags.end(), name) != bool_flags.end();
    if (is_bool) {
      args.flags_.emplace(name, "true");
      continue;
    }
    if (i + 1 >= argv.size()) return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
    args.flags_.emplace(name, argv[++i]);
  }
  return args;
}

std::optional<std::string> Args::Get(std::string_view flag) const {
  auto [begin, end] = flags_.equal_range(std::string(flag));
  if (begin == end) return std::nullopt;
  return std::prev(end)->second;
}

std::vector<std::string> Args::GetAll(std::string_view flag) const {
  std::vector<std::string> out;
  auto [begin, end] = flags_.equal_range(std::string(flag));
  for (auto it = begin; it != end; ++it) out.push_back(it->second);
  return out;
}

absl::StatusOr<std::string> Args::Require(std::string_view flag) const {
  std::optional<std::string> v = Get(flag);
  if (!v) return absl::InvalidArgumentError(absl::StrCat("missing required flag --", Sv(flag)));
  return *v;
}

absl::StatusOr<int64_t> Args::GetInt(std::string_view flag, int64_t default_value) const {
  std::optional<std::string> v = Get(flag);
  if (!v) return default_value;
  int64_t out;
  if (!absl::SimpleAtoi(*v, &out)) {
    return absl::InvalidArgumentError(absl::StrCat("--", Sv(flag), " expects an integer, got '", *v, "'"));
  }
  return out;
}

absl::StatusOr<double> Args::GetDouble(std::string_view flag, double default_value) const {
  std::optional<std::string> v = Get(flag);
  if (!v) return default_value;
  double out;
  if (!absl::SimpleAtod(*v, &out)) {
    return absl::InvalidArgumentError(absl::StrCat("--", Sv(flag), " expects a number, got '", *v, "'"));
  }
  return out;
}

absl::Status Args::CheckKnown(const std::vector<std::string_view>& known) const {
  for (const auto& [name, value] : flags_) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, "; this subcommand takes: --",
                                                     absl::StrJoin(known, ", --", [](std::string* out, std::string_view k) { out->append(k); })));
    }
  }
  return absl::OkStatus();
}

namespace {
std::map<std::string_view, Subcommand>& Registry() {
  static auto* registry = new std::map<std::string_view, Subcommand>();
  return *registry;
}
}  // namespace

bool RegisterSubcommand(Subcommand subcommand) {
  Registry().emplace(subcommand.name, std::move(subcommand));
  return true;
}

const std::map<std::string_view, Subcommand>& Subcommands() { return Registry(); }

}  // namespace moed::tool

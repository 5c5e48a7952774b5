// The moed-model tool is a set of subcommands ("info", "convert", "quantize", ...), one file
// each, that register themselves here so that adding one touches no central switch.
#ifndef MOED_TOOLS_MOED_MODEL_SUBCOMMAND_H_
#define MOED_TOOLS_MOED_MODEL_SUBCOMMAND_H_

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace moed::tool {

// Command-line arguments of one subcommand: positionals and --flags. A flag takes the next
// argument as its value ("--type Q4_K" or "--type=Q4_K") unless it is declared boolean.
class Args {
 public:
  static absl::StatusOr<Args> Parse(const std::vector<std::string>& argv,
                                    const std::vector<std::string_view>& bool_flags);

  const std::vector<std::string>& positional() const { return positional_; }
  bool Has(std::string_view flag) const { return flags_.count(std::string(flag)) > 0; }
  // The last value of a flag.
  std::optional<std::string> Get(std::string_view flag) const;
  // Every value of a repeatable flag, in order.
  std::vector<std::string> GetAll(std::string_view flag) const;
  // Errors name the flag: missing, or not a number.
  absl::StatusOr<std::string> Require(std::string_view flag) const;
  absl::StatusOr<int64_t> GetInt(std::string_view flag, int64_t default_value) const;
  absl::StatusOr<double> GetDouble(std::string_view flag, double default_value) const;
  // Fails on flags not in `known` (a typo must not be ignored silently).
  absl::Status CheckKnown(const std::vector<std::string_view>& known) const;

 private:
  std::vector<std::string> positional_;
  std::multimap<std::string, std::string> flags_;
};

struct Subcommand {
  std::string_view name;
  std::string_view usage;  // one line after "moed-model <name>"
  std::string_view help;   // what it does
  std::vector<std::string_view> bool_flags;
  absl::Status (*run)(const Args& args);
};

// Registers at static-initialisation time; returns true so it can initialise a variable.
bool RegisterSubcommand(Subcommand subcommand);
const std::map<std::string_view, Subcommand>& Subcommands();

}  // namespace moed::tool

#define MOED_SUBCOMMAND(var, ...) \
  [[maybe_unused]] static const bool var = ::moed::tool::RegisterSubcommand(__VA_ARGS__)

#endif  // MOED_TOOLS_MOED_MODEL_SUBCOMMAND_H_

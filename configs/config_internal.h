// Shared between the config's parser, validator and loader; not part of the public API. The parser
// remembers where each key path sits in the YAML so that a Validate() error, which names a key but
// knows no YAML, can be reported with its line and column.
#ifndef MOED_CONFIGS_CONFIG_INTERNAL_H_
#define MOED_CONFIGS_CONFIG_INTERNAL_H_

#include <map>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "configs/config.h"

namespace moed::config::internal {

struct Location {
  int line = 0;    // 1-based
  int column = 0;  // 1-based
};

struct ParsedConfig {
  Config config;
  std::map<std::string, Location> locations;  // "scheduler.max_running", "server.api_keys[1]", ...
};

// YAML text to structs, without Validate(). Errors: InvalidArgument "source:line:col: key: ...".
absl::StatusOr<ParsedConfig> ParseYaml(std::string_view yaml, std::string_view source_name);

// Prefixes a Validate() error ("key.path: problem") with the source and, if the key path (or the
// key it is an element of) was written in the YAML, its line and column.
absl::Status Locate(const absl::Status& status, std::string_view source_name,
                    const std::map<std::string, Location>& locations);

// Error text helpers shared by the parser and the validator.
std::string KeyError(std::string_view path, std::string_view message);

}  // namespace moed::config::internal

#endif  // MOED_CONFIGS_CONFIG_INTERNAL_H_

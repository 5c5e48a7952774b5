// Request bodies as JSON, checked before and after parsing: valid UTF-8 (the byte offset of the
// first bad byte is reported), nesting depth counted on the raw bytes before nlohmann sees them
// (a deeply nested array overflows the stack in nlohmann's recursive destructor), syntax, and a
// top-level object. The typed readers turn a wrong type into OpenAI's "invalid_type" error
// naming the field; nothing here throws.
#ifndef MOED_DAEMON_GATEWAY_JSON_INPUT_H_
#define MOED_DAEMON_GATEWAY_JSON_INPUT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace moed::gateway {

using Json = nlohmann::ordered_json;

inline constexpr int kDefaultMaxJsonDepth = 64;

// The deepest nesting of arrays/objects in `text` (strings and escapes skipped), stopping early
// once `limit` is exceeded (returns limit + 1 then).
int JsonNestingDepth(std::string_view text, int limit);

// Parses a request body into a JSON object. InvalidArgument (400) for invalid UTF-8, nesting
// deeper than `max_depth`, a syntax error, or a top level that is not an object.
absl::StatusOr<Json> ParseJsonObject(std::string_view body, int max_depth = kDefaultMaxJsonDepth);

// JSON text for a response: compact, invalid UTF-8 replaced (never throws).
std::string DumpJson(const Json& value);

// "a string", "an integer", "an object", ... for error messages.
std::string JsonTypeName(const Json& value);

// The member `key` of `object`, or nullptr when it is absent or null.
const Json* Member(const Json& object, std::string_view key);

// Typed optional members: nullopt when absent or null; "invalid_type" InvalidArgument naming
// `key` when present with another type; "invalid_value" when outside [min, max].
absl::StatusOr<std::optional<bool>> OptionalBool(const Json& object, std::string_view key);
absl::StatusOr<std::optional<std::string>> OptionalString(const Json& object, std::string_view key);
absl::StatusOr<std::optional<double>> OptionalNumber(const Json& object, std::string_view key,
                                                     double min, double max);
// Integers; a number with a fractional part is a type error.
absl::StatusOr<std::optional<int64_t>> OptionalInt(const Json& object, std::string_view key,
                                                   int64_t min, int64_t max);

// The type error for `param` (exposed for array elements and nested fields).
absl::Status TypeError(std::string_view param, std::string_view expected, const Json& got);

}  // namespace moed::gateway

#endif  // MOED_DAEMON_GATEWAY_JSON_INPUT_H_

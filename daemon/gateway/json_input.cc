// Checked JSON request parsing and typed field readers (see json_input.h).
#include "daemon/gateway/json_input.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "daemon/gateway/api_error.h"
#include "daemon/text/utf8.h"
#include "kernels/base/strings.h"

namespace moed::gateway {

int JsonNestingDepth(std::string_view text, int limit) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[':
      case '{':
        if (++depth > deepest) {
          deepest = depth;
          if (deepest > limit) return limit + 1;
        }
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default: break;
    }
  }
  return deepest;
}

absl::StatusOr<Json> ParseJsonObject(std::string_view body, int max_depth) {
  const size_t bad = text::FirstInvalidUtf8(body);
  if (bad != body.size()) {
    return ParamError("", absl::StrCat("The request body is not valid UTF-8 (byte offset ", bad, ")."),
                      "invalid_utf8");
  }
  if (JsonNestingDepth(body, max_depth) > max_depth) {
    return ParamError("", absl::StrCat("The request body nests arrays/objects deeper than ",
                                       max_depth, " levels."),
                      "invalid_json");
  }
  Json parsed = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return ParamError("", "We could not parse the JSON body of your request. (HINT: This likely "
                          "means you aren't using your HTTP library correctly. The OpenAI API "
                          "expects a JSON payload.)",
                      "invalid_json");
  }
  if (!parsed.is_object()) {
    return ParamError("", absl::StrCat("The request body must be a JSON object, got ",
                                       JsonTypeName(parsed), "."),
                      "invalid_json");
  }
  return parsed;
}

std::string DumpJson(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string JsonTypeName(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::object: return "an object";
    case Json::value_t::array: return "an array";
    case Json::value_t::string: return "a string";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "an integer";
    case Json::value_t::number_float: return "a number";
    default: return "an unsupported value";
  }
}

const Json* Member(const Json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status TypeError(std::string_view param, std::string_view expected, const Json& got) {
  return ParamError(param,
                    absl::StrCat("Invalid type for '", Sv(param), "': expected ", Sv(expected),
                                 ", but got ", JsonTypeName(got), " instead."),
                    "invalid_type");
}

absl::StatusOr<std::optional<bool>> OptionalBool(const Json& object, std::string_view key) {
  const Json* v = Member(object, key);
  if (v == nullptr) return std::optional<bool>();
  if (!v->is_boolean()) return TypeError(key, "a boolean", *v);
  return std::optional<bool>(v->get<bool>());
}

absl::StatusOr<std::optional<std::string>> OptionalString(const Json& object,
                                                          std::string_view key) {
  const Json* v = Member(object, key);
  if (v == nullptr) return std::optional<std::string>();
  if (!v->is_string()) return TypeError(key, "a string", *v);
  return std::optional<std::string>(v->get<std::string>());
}

absl::StatusOr<std::optional<double>> OptionalNumber(const Json& object, std::string_view key,
                                                     double min, double max) {
  const Json* v = Member(object, key);
  if (v == nullptr) return std::optional<double>();
  if (!v->is_number()) return TypeError(key, "a number", *v);
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < min || d > max) {
    return ParamError(key,
                      absl::StrCat("Invalid value for '", Sv(key), "': ", d,
                                   " is outside the allowed range [", min, ", ", max, "]."),
                      "invalid_value");
  }
  return std::optional<double>(d);
}

absl::StatusOr<std::optional<int64_t>> OptionalInt(const Json& object, std::string_view key,
                                                   int64_t min, int64_t max) {
  const Json* v = Member(object, key);
  if (v == nullptr) return std::optional<int64_t>();
  int64_t value = 0;
  bool in_range = true;
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    in_range = u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    value = in_range ? static_cast<int64_t>(u) : std::numeric_limits<int64_t>::max();
  } else if (v->is_number_integer()) {
    value = v->get<int64_t>();
  } else if (v->is_number_float()) {
    const double d = v->get<double>();
    // 1e300 or 2.5 is not an integer; 3.0 is accepted as 3, as Python-based servers do.
    if (!std::isfinite(d) || std::floor(d) != d) return TypeError(key, "an integer", *v);
    if (d < -9.2e18 || d > 9.2e18) {
      in_range = false;
      value = d < 0 ? std::numeric_limits<int64_t>::min() : std::numeric_limits<int64_t>::max();
    } else {
      value = static_cast<int64_t>(d);
    }
  } else {
    return TypeError(key, "an integer", *v);
  }
  if (!in_range || value < min || value > max) {
    return ParamError(key,
                      absl::StrCat("Invalid value for '", Sv(key), "': ", DumpJson(*v),
                                   " is outside the allowed range [", min, ", ", max, "]."),
                      "invalid_value");
  }
  return std::optional<int64_t>(value);
}

}  // namespace moed::gateway

// Metric and label name validation; see names.h.
#include "daemon/metrics/names.h"

#include <array>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kernels/base/strings.h"

namespace moed::metrics {
namespace {

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

absl::Status Validate(std::string_view what, std::string_view name, bool allow_colon) {
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(Sv(what), " name is empty"));
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = IsAlpha(c) || (allow_colon && c == ':') || (i > 0 && IsDigit(c));
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(Sv(what), " name '", Sv(name), "' has an invalid character at offset ", i,
                       allow_colon ? " (allowed: [a-zA-Z_:][a-zA-Z0-9_:]*)"
                                   : " (allowed: [a-zA-Z_][a-zA-Z0-9_]*)"));
    }
  }
  if (name.size() >= 2 && name[0] == '_' && name[1] == '_') {
    return absl::InvalidArgumentError(absl::StrCat(
        Sv(what), " name '", Sv(name), "' starts with '__', which is reserved for Prometheus"));
  }
  return absl::OkStatus();
}

bool HasCamelCase(std::string_view name) {
  for (size_t i = 1; i < name.size(); ++i) {
    if (name[i - 1] >= 'a' && name[i - 1] <= 'z' && name[i] >= 'A' && name[i] <= 'Z') return true;
  }
  return false;
}

absl::Status Convention(std::string_view name, std::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("metric name '", Sv(name), "' breaks a Prometheus naming convention: ",
                   Sv(problem)));
}

// promlint's unit tables: a name token equal to prefix+unit is a unit; it must be a base unit.
constexpr std::array<std::string_view, 14> kAbbreviations = {
    "s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d"};
constexpr std::array<std::string_view, 10> kBaseUnits = {
    "amperes", "bytes", "celsius", "grams", "joules", "kelvin", "meters", "metres", "seconds",
    "volts"};
constexpr std::array<std::string_view, 14> kNonBaseUnits = {
    "minutes", "hours", "days", "weeks", "kelvins", "fahrenheit", "rankine", "inches", "yards",
    "miles", "bits", "calories", "pounds", "ounces"};
constexpr std::array<std::string_view, 18> kUnitPrefixes = {
    "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo",
    "kibi", "mega", "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi"};

// A non-base unit token ("milliseconds", "hours", "kilobytes"), or empty.
std::string NonBaseUnit(std::string_view name) {
  for (absl::string_view token : absl::StrSplit(Sv(name), '_')) {
    for (std::string_view unit : kNonBaseUnits) {
      if (StdSv(token) == unit) return std::string(unit);
    }
    for (std::string_view prefix : kUnitPrefixes) {
      if (!absl::StartsWith(token, Sv(prefix))) continue;
      const std::string_view rest = StdSv(token).substr(prefix.size());
      for (std::string_view unit : kBaseUnits) {
        if (rest == unit) return std::string(StdSv(token));
      }
      for (std::string_view unit : kNonBaseUnits) {
        if (rest == unit) return std::string(StdSv(token));
      }
    }
  }
  return "";
}

}  // namespace

absl::Status ValidateMetricName(std::string_view name) {
  return Validate("metric", name, /*allow_colon=*/true);
}

absl::Status ValidateLabelName(std::string_view name) {
  return Validate("label", name, /*allow_colon=*/false);
}

absl::Status CheckNamingConventions(MetricType type, std::string_view name) {
  const absl::string_view n = Sv(name);
  const bool total = absl::EndsWith(n, "_total");
  if (type == MetricType::kCounter && !total) {
    return Convention(name, "a counter's name must end in \"_total\"");
  }
  if (type != MetricType::kCounter && total) {
    return Convention(name, "only counters end in \"_total\"");
  }
  if (type == MetricType::kInfo && !absl::EndsWith(n, "_info")) {
    return Convention(name, "an info metric's name must end in \"_info\"");
  }
  if (type != MetricType::kHistogram) {
    for (absl::string_view suffix : {"_bucket", "_sum", "_count"}) {
      if (absl::EndsWith(n, suffix)) {
        return Convention(name, absl::StrCat("only histograms end in \"", suffix, "\""));
      }
    }
  }
  const std::string lower = absl::AsciiStrToLower(n);
  for (absl::string_view type_word : {"counter", "gauge", "histogram", "summary"}) {
    if (absl::StrContains(lower, absl::StrCat("_", type_word, "_")) ||
        absl::EndsWith(lower, absl::StrCat("_", type_word))) {
      return Convention(name, absl::StrCat("the type '", type_word, "' must not be in the name"));
    }
  }
  if (absl::StrContains(n, ":")) {
    return Convention(name, "':' is reserved for recording rules");
  }
  if (HasCamelCase(name)) return Convention(name, "write it in snake_case, not camelCase");
  for (std::string_view abbreviation : kAbbreviations) {
    const std::string token = absl::StrCat("_", Sv(abbreviation));
    if (absl::StrContains(lower, absl::StrCat(token, "_")) || absl::EndsWith(lower, token)) {
      return Convention(name, absl::StrCat("abbreviated unit '", Sv(abbreviation),
                                           "' (spell it out: seconds, bytes)"));
    }
  }
  if (const std::string unit = NonBaseUnit(name); !unit.empty()) {
    return Convention(name, absl::StrCat("'", unit, "' is not a base unit (use seconds, bytes, ...)"));
  }
  return absl::OkStatus();
}

absl::Status CheckLabelConventions(std::string_view label) {
  if (label == "le" || label == "quantile") {
    return absl::InvalidArgumentError(absl::StrCat(
        "label name '", Sv(label), "' is reserved for histograms and summaries"));
  }
  if (HasCamelCase(label)) {
    return absl::InvalidArgumentError(
        absl::StrCat("label name '", Sv(label), "' must be snake_case, not camelCase"));
  }
  return absl::OkStatus();
}

}  // namespace moed::metrics

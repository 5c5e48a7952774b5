// Byte sizes, durations and doubles in their human forms, plus the typo suggestions of the config
// errors. Parsing is exact (integer arithmetic, no rounding): a config value means one number.
#include "configs/config_units.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/strings.h"

namespace moed::config {
namespace {

struct Unit {
  std::string_view name;  // lower case
  uint64_t factor;
};

constexpr Unit kUnits[] = {
    {"", 1},
    {"b", 1},
    {"kib", uint64_t{1} << 10},
    {"mib", uint64_t{1} << 20},
    {"gib", uint64_t{1} << 30},
    {"tib", uint64_t{1} << 40},
    {"kb", 1000ull},
    {"mb", 1000ull * 1000},
    {"gb", 1000ull * 1000 * 1000},
    {"tb", 1000ull * 1000 * 1000 * 1000},
};

constexpr uint64_t kMaxBytes = uint64_t{1} << 63;  // exclusive

absl::Status SizeError(std::string_view text, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("expected a size such as '512MiB', '2GiB' or a byte count, got '", Sv(text),
                   "'", why.empty() ? "" : " (", Sv(why), why.empty() ? "" : ")"));
}

}  // namespace

absl::StatusOr<uint64_t> ParseByteSize(std::string_view text) {
  std::string_view s = StdSv(absl::StripAsciiWhitespace(Sv(text)));
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  std::string_view int_part = s.substr(0, i);
  std::string_view frac_part;
  if (i < s.size() && s[i] == '.') {
    size_t j = ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    frac_part = s.substr(j, i - j);
    if (frac_part.empty()) return SizeError(text, "a digit must follow '.'");
  }
  if (int_part.empty()) {
    if (!s.empty() && s[0] == '-') return SizeError(text, "sizes cannot be negative");
    return SizeError(text, "");
  }
  if (int_part.size() > 19 || frac_part.size() > 12) return SizeError(text, "too many digits");
  std::string unit = absl::AsciiStrToLower(absl::StripAsciiWhitespace(Sv(s.substr(i))));
  const Unit* found = nullptr;
  for (const Unit& u : kUnits) {
    if (unit == u.name) found = &u;
  }
  if (found == nullptr) {
    return SizeError(text, absl::StrCat("unknown unit '", unit,
                                        "'; use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB"));
  }
  // value = (int_part + frac_part / 10^k) * factor, in 128-bit integers so nothing overflows.
  unsigned __int128 whole = 0;
  for (char c : int_part) whole = whole * 10 + static_cast<unsigned>(c - '0');
  unsigned __int128 frac = 0, scale = 1;
  for (char c : frac_part) {
    frac = frac * 10 + static_cast<unsigned>(c - '0');
    scale *= 10;
  }
  unsigned __int128 bytes = whole * found->factor;
  unsigned __int128 frac_bytes = frac * found->factor;
  if (frac_bytes % scale != 0) return SizeError(text, "not a whole number of bytes");
  bytes += frac_bytes / scale;
  if (bytes >= kMaxBytes) return SizeError(text, "too large");
  return static_cast<uint64_t>(bytes);
}

std::string FormatByteSize(uint64_t bytes) {
  if (bytes == 0) return "0";
  static constexpr Unit kBinary[] = {
      {"TiB", uint64_t{1} << 40}, {"GiB", uint64_t{1} << 30}, {"MiB", uint64_t{1} << 20},
      {"KiB", uint64_t{1} << 10}};
  for (const Unit& u : kBinary) {
    if (bytes % u.factor == 0) return absl::StrCat(bytes / u.factor, Sv(u.name));
  }
  return absl::StrCat(bytes);
}

absl::StatusOr<absl::Duration> ParseDurationText(std::string_view text) {
  std::string_view s = StdSv(absl::StripAsciiWhitespace(Sv(text)));
  auto error = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a duration such as '30s', '250ms' or '1m30s', got '", Sv(text),
                     "'", why.empty() ? "" : " (", Sv(why), why.empty() ? "" : ")"));
  };
  bool has_unit = std::any_of(s.begin(), s.end(),
                              [](char c) { return std::isalpha(static_cast<unsigned char>(c)); });
  if (!has_unit) {
    double number = 0;
    if (absl::SimpleAtod(Sv(s), &number) && number == 0) return absl::ZeroDuration();
    return error("a number needs a unit: ns, us, ms, s, m or h");
  }
  absl::Duration d;
  if (s == "inf" || s == "-inf" || !absl::ParseDuration(Sv(s), &d)) return error("");
  // Below a nanosecond is noise, and keeping it would make the formatted text inexact.
  return absl::Trunc(d, absl::Nanoseconds(1));
}

std::string FormatDurationText(absl::Duration d) { return absl::FormatDuration(d); }

std::string FormatDouble(double v) {
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    double back = 0;
    if (absl::SimpleAtod(buf, &back) && back == v) break;
  }
  return buf;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + cost});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string_view ClosestMatch(std::string_view word,
                              const std::vector<std::string_view>& candidates) {
  std::string lower = absl::AsciiStrToLower(Sv(word));
  std::string_view best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (std::string_view c : candidates) {
    size_t d = EditDistance(lower, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  // A likely typo: a third of the letters wrong at most (and at least one allowed).
  size_t limit = std::max<size_t>(1, std::max(word.size(), best.size()) / 3);
  return best_distance <= limit ? best : std::string_view();
}

}  // namespace moed::config

// Human forms of the quantities a config holds: byte sizes ("512MiB", "2GiB", "1.5GB", 4096) and
// durations ("30s", "250ms", "1m30s"), parsed exactly and formatted so that they parse back to the
// same value. Also the edit distance behind "did you mean ...?" suggestions. The messages name
// the problem only; the caller prefixes the key.
#ifndef MOED_CONFIGS_CONFIG_UNITS_H_
#define MOED_CONFIGS_CONFIG_UNITS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace moed::config {

// A number of bytes: digits with an optional fraction, then an optional unit, case-insensitive:
// B, KiB/MiB/GiB/TiB (powers of 1024) or KB/MB/GB/TB (powers of 1000). The value must be a whole
// number of bytes below 2^63. Errors: InvalidArgument.
absl::StatusOr<uint64_t> ParseByteSize(std::string_view text);
// The largest binary unit that divides `bytes` exactly ("1536MiB"), else the plain byte count.
std::string FormatByteSize(uint64_t bytes);

// A duration in absl::ParseDuration's form ("1h30m", "250ms", "1.5s"); a bare number other than
// 0 is rejected because its unit would be a guess. Errors: InvalidArgument.
absl::StatusOr<absl::Duration> ParseDurationText(std::string_view text);
std::string FormatDurationText(absl::Duration d);

// Shortest decimal form of `v` that parses back to exactly `v`.
std::string FormatDouble(double v);

// Levenshtein distance, for suggestions.
size_t EditDistance(std::string_view a, std::string_view b);
// The candidate closest to `word` if it is close enough to be a likely typo, else "".
std::string_view ClosestMatch(std::string_view word, const std::vector<std::string_view>& candidates);

}  // namespace moed::config

#endif  // MOED_CONFIGS_CONFIG_UNITS_H_

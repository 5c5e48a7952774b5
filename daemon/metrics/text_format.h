// The Prometheus text exposition format 0.0.4: the low-level writers (HELP/TYPE lines, one sample
// line, number formatting, escaping) that Family and Registry use. Kept apart from the metric types
// so the exact bytes on the wire are tested in one place.
#ifndef MOED_DAEMON_METRICS_TEXT_FORMAT_H_
#define MOED_DAEMON_METRICS_TEXT_FORMAT_H_

#include <map>
#include <string>
#include <string_view>

namespace moed::metrics {

// The Content-Type a /metrics handler must send with Registry::Serialize()'s output.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

// Label name -> value. Sorted, so a child's series is written with its labels in name order.
using Labels = std::map<std::string, std::string>;

// Info is not a type of format 0.0.4: an info family is written as a gauge whose samples are 1.
enum class MetricType { kCounter, kGauge, kHistogram, kInfo };

// The word on the `# TYPE` line ("counter", "gauge", "histogram"; info -> "gauge").
std::string_view TypeName(MetricType type);

// A sample value as Go's strconv.ParseFloat reads it back exactly: shortest round-trip digits,
// "NaN", "+Inf", "-Inf".
std::string FormatValue(double value);

// HELP text escaping: backslash and newline. Label value escaping: backslash, double quote and
// newline. Both also replace bytes that are not valid UTF-8 with U+FFFD, because the format is
// UTF-8 and a scraper rejects the whole page for one bad byte.
std::string EscapeHelp(std::string_view help);
std::string EscapeLabelValue(std::string_view value);

// Appends "# HELP name help\n# TYPE name type\n".
void AppendHeader(std::string_view name, std::string_view help, MetricType type, std::string* out);

// Appends one sample line: name+suffix{labels[,le="le"]} value. `le` is written only when
// non-empty (histogram buckets).
void AppendSample(std::string_view name, std::string_view suffix, const Labels& labels,
                  std::string_view le, double value, std::string* out);

}  // namespace moed::metrics

#endif  // MOED_DAEMON_METRICS_TEXT_FORMAT_H_

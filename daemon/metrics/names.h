// Metric and label name rules of the Prometheus data model and promtool's conventions, checked when
// a family is registered so that a bad name is a Status at start-up rather than a page a scraper
// rejects or a lint failure.
#ifndef MOED_DAEMON_METRICS_NAMES_H_
#define MOED_DAEMON_METRICS_NAMES_H_

#include <string_view>

#include "absl/status/status.h"
#include "daemon/metrics/text_format.h"

namespace moed::metrics {

// [a-zA-Z_:][a-zA-Z0-9_:]*, not starting with "__" (reserved for Prometheus' internal use).
absl::Status ValidateMetricName(std::string_view name);

// [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__".
absl::Status ValidateLabelName(std::string_view name);

// The naming conventions `promtool check metrics` enforces (client_golang's promlint), so that a
// registered family is clean by construction: counters end in "_total" and nothing else does;
// info families end in "_info"; only histograms end in "_bucket", "_sum" or "_count"; no type
// word ("_gauge"), no ':' (kept for recording rules), no camelCase, no abbreviated unit ("_ms")
// and no non-base unit ("_milliseconds": use "_seconds", "_bytes").
absl::Status CheckNamingConventions(MetricType type, std::string_view name);

// promtool's label rules: no camelCase; "le" and "quantile" are reserved for histograms and
// summaries (a histogram's "le" is written by the family itself).
absl::Status CheckLabelConventions(std::string_view label);

}  // namespace moed::metrics

#endif  // MOED_DAEMON_METRICS_NAMES_H_

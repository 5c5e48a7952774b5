// Metric names in PromQL expressions and in Prometheus text-format pages, for the tests that check
// that dashboards and alert rules name only metrics moed exports.
#ifndef MOED_TESTS_DEPLOY_PROMQL_NAMES_H_
#define MOED_TESTS_DEPLOY_PROMQL_NAMES_H_

#include <set>
#include <string>
#include <string_view>

namespace moed::testing {

// The metric names an expression selects. A lexer, not a parser: it skips string literals, label
// matchers ({...}), ranges ([5m]), the label lists of by/without/on/ignoring/group_left/
// group_right, function calls (a name followed by "("), keywords and numbers; every other
// identifier is a metric name. Grafana's `label_values(metric, label)` yields `metric`.
std::set<std::string> PromqlMetricNames(std::string_view expr);

// The series names a text-format page (GET /metrics) can produce: every "# TYPE" family, plus
// _bucket, _sum and _count for histograms, plus every sample line's name.
std::set<std::string> ExposedMetricNames(std::string_view page);

}  // namespace moed::testing

#endif  // MOED_TESTS_DEPLOY_PROMQL_NAMES_H_

// The PromQL lexer the dashboard and alert tests rely on: it must find metric names, and only them.
#include "tests/deploy/promql_names.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moed::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(DeployPromqlMetricNamesTest, SkipsFunctionsAggregationsLabelsAndRanges) {
  EXPECT_THAT(PromqlMetricNames("histogram_quantile(0.95, sum by (le, worker) "
                                "(rate(moed_step_bucket{instance=~\"$instance\",le!=\"x\"}[$__rate_interval])))"),
              ElementsAre("moed_step_bucket"));
  EXPECT_THAT(PromqlMetricNames("sum(rate(a_total[5m])) / sum (rate(b_total[5m])) > 0.9 and c > 0"),
              ElementsAre("a_total", "b_total", "c"));
  EXPECT_THAT(PromqlMetricNames("x / on(instance) group_left(model) y offset 1h"), ElementsAre("x", "y"));
  EXPECT_THAT(PromqlMetricNames("increase(restarts[15m]) >= 3 unless bool 1e3"), ElementsAre("restarts"));
  EXPECT_THAT(PromqlMetricNames("up{job=\"moed\"} == 0"), ElementsAre("up"));
}

TEST(DeployPromqlMetricNamesTest, MisspelledNamesAreStillNames) {
  // The dashboard test relies on this: a typo must show up as a (non-exported) name.
  EXPECT_THAT(PromqlMetricNames("sum(mood_queue_length)"), ElementsAre("mood_queue_length"));
}

TEST(DeployPromqlMetricNamesTest, StringsAndSelectorsWithoutNames) {
  EXPECT_THAT(PromqlMetricNames("{__name__=~\"moed_.+\"}"), IsEmpty());
  EXPECT_THAT(PromqlMetricNames("label_replace(m, \"dst\", \"$1\", \"src\", \"(.*)\")"), ElementsAre("m"));
}

TEST(DeployPromqlMetricNamesTest, GrafanaLabelValues) {
  EXPECT_THAT(PromqlMetricNames("label_values(moed_build_info, instance)"), ElementsAre("moed_build_info"));
}

TEST(DeployExposedMetricNamesTest, FamiliesSamplesAndHistogramSuffixes) {
  const std::string page =
      "# HELP h_seconds help\n# TYPE h_seconds histogram\nh_seconds_bucket{le=\"1\"} 0\n"
      "# HELP g help\n# TYPE g gauge\ng{worker=\"0\"} 1\n# TYPE empty_info gauge\n";
  EXPECT_THAT(ExposedMetricNames(page),
              ElementsAre("empty_info", "g", "h_seconds", "h_seconds_bucket", "h_seconds_count", "h_seconds_sum"));
}

}  // namespace
}  // namespace moed::testing

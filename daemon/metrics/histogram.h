// Histogram: observations counted into fixed buckets (latencies, step times). Observe is a binary
// search plus two relaxed atomic adds, with no lock, so it is cheap on the decode hot path.
// Buckets are stored per bucket (not cumulative) and summed when read, so the `+Inf` bucket and
// `_count` of one scrape always agree even while other threads observe.
#ifndef MOED_DAEMON_METRICS_HISTOGRAM_H_
#define MOED_DAEMON_METRICS_HISTOGRAM_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/metrics/text_format.h"

namespace moed::metrics {

// Upper bounds must be finite and strictly increasing; a trailing +Inf is allowed and dropped
// (the +Inf bucket is always there). Empty means only the +Inf bucket.
absl::StatusOr<std::vector<double>> NormalizeBuckets(std::vector<double> bounds);

// start, start*factor, ..., `count` bounds (start > 0, factor > 1, 1 <= count <= 256).
absl::StatusOr<std::vector<double>> ExponentialBuckets(double start, double factor, int count);

class Histogram {
 public:
  static constexpr MetricType kType = MetricType::kHistogram;

  // `bounds` must come from NormalizeBuckets (Family does this when it is registered).
  explicit Histogram(std::vector<double> bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Counts `value` in the first bucket whose upper bound is >= value (Prometheus' `le`). NaN is
  // ignored: it would turn `_sum` into NaN for the rest of the process' life.
  void Observe(double value);

  struct Snapshot {
    std::vector<double> bounds;      // finite upper bounds, ascending
    std::vector<uint64_t> cumulative;  // bounds.size() + 1 entries; the last is the +Inf bucket
    double sum = 0.0;
    uint64_t count = 0;              // == cumulative.back()
  };
  Snapshot Read() const;

  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  const std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1, per bucket
  std::atomic<double> sum_{0.0};
};

}  // namespace moed::metrics

#endif  // MOED_DAEMON_METRICS_HISTOGRAM_H_

// Counter: a monotonically increasing value (requests, tokens, restarts). Increment is one relaxed
// atomic add, safe from any thread without a lock; a scrape reads whatever total has landed.
#ifndef MOED_DAEMON_METRICS_COUNTER_H_
#define MOED_DAEMON_METRICS_COUNTER_H_

#include <atomic>
#include <cmath>

#include "daemon/metrics/text_format.h"

namespace moed::metrics {

class Counter {
 public:
  static constexpr MetricType kType = MetricType::kCounter;

  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds `delta`. Negative, NaN and infinite deltas are ignored: a counter only goes up, and
  // Prometheus reads any decrease as a process restart. Whole-number totals stay exact up to 2^53.
  void Increment(double delta = 1.0) {
    if (!(delta >= 0.0) || std::isinf(delta)) return;
    value_.fetch_add(delta, std::memory_order_relaxed);
  }

  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

}  // namespace moed::metrics

#endif  // MOED_DAEMON_METRICS_COUNTER_H_

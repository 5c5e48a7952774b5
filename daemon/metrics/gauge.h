// Gauge: a value that goes up and down (queue length, slots in use, load time). Every operation
// is a single atomic, safe from any thread without a lock.
#ifndef MOED_DAEMON_METRICS_GAUGE_H_
#define MOED_DAEMON_METRICS_GAUGE_H_

#include <atomic>

#include "daemon/metrics/text_format.h"

namespace moed::metrics {

class Gauge {
 public:
  static constexpr MetricType kType = MetricType::kGauge;

  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Increment(double delta = 1.0) { value_.fetch_add(delta, std::memory_order_relaxed); }
  void Decrement(double delta = 1.0) { value_.fetch_sub(delta, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Info: a set of string facts carried as labels on a gauge named *_info whose value is always 1
// (build version, active phase). It has no state; the labels are the information.
class Info {
 public:
  static constexpr MetricType kType = MetricType::kInfo;

  Info() = default;
  Info(const Info&) = delete;
  Info& operator=(const Info&) = delete;
};

}  // namespace moed::metrics

#endif  // MOED_DAEMON_METRICS_GAUGE_H_

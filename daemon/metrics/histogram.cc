// Histogram buckets and observation; see histogram.h.
#include "daemon/metrics/histogram.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace moed::metrics {

absl::StatusOr<std::vector<double>> NormalizeBuckets(std::vector<double> bounds) {
  if (!bounds.empty() && std::isinf(bounds.back()) && bounds.back() > 0) bounds.pop_back();
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram bucket ", i, " is not finite (", FormatValue(bounds[i]),
                       "); only a last +Inf is allowed"));
    }
    if (i > 0 && !(bounds[i] > bounds[i - 1])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "histogram buckets must be strictly increasing: bucket ", i, " (",
          FormatValue(bounds[i]), ") follows ", FormatValue(bounds[i - 1])));
    }
  }
  return bounds;
}

absl::StatusOr<std::vector<double>> ExponentialBuckets(double start, double factor, int count) {
  if (!(start > 0.0) || !std::isfinite(start)) {
    return absl::InvalidArgumentError(absl::StrCat("exponential buckets: start must be > 0, got ",
                                                   FormatValue(start)));
  }
  if (!(factor > 1.0) || !std::isfinite(factor)) {
    return absl::InvalidArgumentError(absl::StrCat("exponential buckets: factor must be > 1, got ",
                                                   FormatValue(factor)));
  }
  if (count < 1 || count > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("exponential buckets: count must be in [1, 256], got ", count));
  }
  std::vector<double> bounds;
  bounds.reserve(count);
  double bound = start;
  for (int i = 0; i < count; ++i) {
    bounds.push_back(bound);
    bound *= factor;
  }
  return NormalizeBuckets(std::move(bounds));  // catches overflow to +Inf
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  if (std::isnan(value)) return;
  const size_t bucket =
      static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot snap;
  snap.bounds = bounds_;
  snap.cumulative.resize(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    snap.cumulative[i] = total;
  }
  snap.count = total;
  snap.sum = sum_.load(std::memory_order_relaxed);
  return snap;
}

}  // namespace moed::metrics

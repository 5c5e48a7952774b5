// Family<T>: one metric name with its HELP text and declared label names, holding one child T
// (Counter, Gauge, Histogram, Info) per distinct set of label values, as in prometheus-cpp.
//
//   Family<Counter>* requests = ...;  // from Registry::AddFamily<Counter>
//   Counter& ok = requests->Add({{"endpoint", "/v1/chat/completions"}, {"status", "200"}});
//   ok.Increment();                   // hot path: one atomic, no lock
//
// Add takes the family's mutex (a map lookup), so callers on hot paths keep the reference: it
// stays valid for the family's lifetime (children are never removed, except by Replace on an
// Info family).
#ifndef MOED_DAEMON_METRICS_FAMILY_H_
#define MOED_DAEMON_METRICS_FAMILY_H_

#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "daemon/metrics/counter.h"
#include "daemon/metrics/gauge.h"
#include "daemon/metrics/histogram.h"
#include "daemon/metrics/text_format.h"
#include "kernels/base/status_macros.h"

namespace moed::metrics {

struct FamilyOptions {
  std::string name = {};
  std::string help = {};                      // required: promtool flags a family without HELP
  std::vector<std::string> label_names = {};  // every child carries exactly these labels
  std::vector<double> buckets = {};           // histograms only: finite upper bounds, ascending
  // A bound on distinct label sets, so a label fed from a bug or from input cannot grow memory
  // and the scrape page without limit.
  size_t max_children = 10000;
};

class FamilyBase {
 public:
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  const std::string& name() const { return options_.name; }
  const std::string& help() const { return options_.help; }
  const std::vector<std::string>& label_names() const { return options_.label_names; }
  const std::vector<double>& buckets() const { return options_.buckets; }
  size_t max_children() const { return options_.max_children; }
  MetricType type() const { return type_; }

  // Appends the HELP and TYPE lines, then one sample line per child (several for histograms).
  virtual void Serialize(std::string* out) const = 0;
  // Number of children (label sets) currently exported.
  virtual size_t size() const = 0;

 protected:
  FamilyBase(MetricType type, FamilyOptions options)
      : type_(type), options_(std::move(options)) {}

  // OK when `labels` has exactly the declared label names (values may be anything).
  absl::Status CheckLabels(const Labels& labels) const;
  // Logs the first rejected Add of this family: a programming error, reported once so that a hot
  // path cannot flood the log.
  void ReportRejected(const absl::Status& status) const;
  absl::Status TooManyChildren() const;

 private:
  const MetricType type_;
  const FamilyOptions options_;
  mutable std::atomic<bool> reported_{false};
};

template <typename T>
class Family final : public FamilyBase {
  static_assert(std::is_same_v<T, Counter> || std::is_same_v<T, Gauge> ||
                std::is_same_v<T, Histogram> || std::is_same_v<T, Info>);

 public:
  // The child for `labels`, created at zero on first use. InvalidArgument when the label names
  // differ from the declared ones; ResourceExhausted past max_children.
  absl::StatusOr<T*> TryAdd(const Labels& labels) {
    RETURN_IF_ERROR(CheckLabels(labels));
    std::lock_guard<std::mutex> lock(mu_);
    auto it = children_.find(labels);
    if (it != children_.end()) return it->second.get();
    if (children_.size() >= max_children()) return TooManyChildren();
    return children_.emplace(labels, MakeChild()).first->second.get();
  }

  // As TryAdd, but always returns a usable reference: on error the error is logged once and the
  // returned child is a detached one that is never exported, so a wrong label set costs a metric,
  // never the request that was being counted.
  T& Add(const Labels& labels) {
    absl::StatusOr<T*> child = TryAdd(labels);
    if (child.ok()) return **child;
    ReportRejected(child.status());
    return *detached_;
  }

  // Info families only: replaces all children with exactly `label_sets` (all validated first;
  // on error nothing changes). For facts that change as a whole, like the active phase: the old
  // series disappear instead of staying at 1 beside the new ones. This is the one operation that
  // invalidates references (to the replaced Info children, which have nothing to call anyway).
  absl::Status Replace(const std::vector<Labels>& label_sets)
    requires std::is_same_v<T, Info>
  {
    for (const Labels& labels : label_sets) RETURN_IF_ERROR(CheckLabels(labels));
    std::map<Labels, std::unique_ptr<T>> fresh;
    for (const Labels& labels : label_sets) fresh.emplace(labels, MakeChild());
    if (fresh.size() > max_children()) return TooManyChildren();
    std::lock_guard<std::mutex> lock(mu_);
    children_.swap(fresh);
    return absl::OkStatus();
  }

  size_t size() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return children_.size();
  }

  void Serialize(std::string* out) const override {
    AppendHeader(name(), help(), type(), out);
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [labels, child] : children_) {
      if constexpr (std::is_same_v<T, Histogram>) {
        const Histogram::Snapshot snap = child->Read();
        for (size_t i = 0; i < snap.bounds.size(); ++i) {
          AppendSample(name(), "_bucket", labels, FormatValue(snap.bounds[i]),
                       static_cast<double>(snap.cumulative[i]), out);
        }
        AppendSample(name(), "_bucket", labels, "+Inf", static_cast<double>(snap.count), out);
        AppendSample(name(), "_sum", labels, "", snap.sum, out);
        AppendSample(name(), "_count", labels, "", static_cast<double>(snap.count), out);
      } else if constexpr (std::is_same_v<T, Info>) {
        AppendSample(name(), "", labels, "", 1.0, out);
      } else {
        AppendSample(name(), "", labels, "", child->Value(), out);
      }
    }
  }

 private:
  friend class Registry;

  // Only Registry creates families, after validating `options` (names, buckets).
  explicit Family(FamilyOptions options)
      : FamilyBase(T::kType, std::move(options)), detached_(MakeChild()) {}

  std::unique_ptr<T> MakeChild() const {
    if constexpr (std::is_same_v<T, Histogram>) {
      return std::make_unique<Histogram>(buckets());
    } else {
      return std::make_unique<T>();
    }
  }

  mutable std::mutex mu_;
  std::map<Labels, std::unique_ptr<T>> children_;
  const std::unique_ptr<T> detached_;
};

}  // namespace moed::metrics

#endif  // MOED_DAEMON_METRICS_FAMILY_H_

// Registry: the set of metric families one /metrics page exposes, as in prometheus-cpp.
//
//   Registry registry;
//   ASSIGN_OR_RETURN(Family<Counter>* requests,
//                    registry.AddFamily<Counter>({.name = "moed_requests_total",
//                                                 .help = "Requests answered.",
//                                                 .label_names = {"endpoint", "status"}}));
//   std::string page = registry.Serialize();  // serve with kContentType
//
// Families are validated when added (names, naming conventions, labels, buckets, collisions
// between the sample names of different families), so a page it writes is accepted by Prometheus
// and by `promtool check metrics`. Families live as long as the registry; thread-safe.
#ifndef MOED_DAEMON_METRICS_REGISTRY_H_
#define MOED_DAEMON_METRICS_REGISTRY_H_

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/metrics/family.h"
#include "daemon/metrics/text_format.h"
#include "kernels/base/status_macros.h"

namespace moed::metrics {

// What a family exposes, for tools and tests that check names (the Grafana dashboard test).
struct FamilyDescription {
  std::string name;
  MetricType type;
  std::string help;
  std::vector<std::string> label_names;
  // Names of the series it writes: the name itself, or name_bucket/_sum/_count for histograms.
  std::vector<std::string> sample_names;
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registers a family of T (Counter, Gauge, Histogram or Info). InvalidArgument on a bad name,
  // help, label name or bucket list; AlreadyExists when the name, or one of the series names it
  // writes, is taken by another family.
  template <typename T>
  absl::StatusOr<Family<T>*> AddFamily(FamilyOptions options) {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(AdmitLocked(T::kType, &options));
    std::unique_ptr<Family<T>> family(new Family<T>(std::move(options)));
    Family<T>* raw = family.get();
    families_.push_back(std::move(family));
    return raw;
  }

  // The text exposition format 0.0.4 page: families in registration order, children sorted by
  // label values. A family without children writes only its HELP and TYPE lines.
  std::string Serialize() const;

  std::vector<FamilyDescription> Describe() const;

 private:
  // Validates `options` (normalizing buckets) and reserves its sample names.
  absl::Status AdmitLocked(MetricType type, FamilyOptions* options);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<FamilyBase>> families_;
  std::set<std::string> taken_names_;  // every family's name and sample names
};

// The series names a family of `type` named `name` writes.
std::vector<std::string> SampleNames(MetricType type, const std::string& name);

}  // namespace moed::metrics

#endif  // MOED_DAEMON_METRICS_REGISTRY_H_

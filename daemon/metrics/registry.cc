// Registry: family validation and the exposition page; see registry.h.
#include "daemon/metrics/registry.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "daemon/metrics/histogram.h"
#include "daemon/metrics/names.h"

namespace moed::metrics {

std::vector<std::string> SampleNames(MetricType type, const std::string& name) {
  if (type == MetricType::kHistogram) {
    return {name + "_bucket", name + "_sum", name + "_count"};
  }
  return {name};
}

absl::Status Registry::AdmitLocked(MetricType type, FamilyOptions* options) {
  const std::string& name = options->name;
  RETURN_IF_ERROR(ValidateMetricName(name));
  RETURN_IF_ERROR(CheckNamingConventions(type, name));
  if (options->help.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("metric '", name, "' has no help text"));
  }
  std::set<std::string> seen;
  for (const std::string& label : options->label_names) {
    absl::Status status = ValidateLabelName(label);
    if (status.ok()) status = CheckLabelConventions(label);
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("metric '", name, "': ", status.message()));
    }
    if (!seen.insert(label).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric '", name, "': label '", label, "' is declared twice"));
    }
  }
  if (type == MetricType::kHistogram) {
    absl::StatusOr<std::vector<double>> buckets = NormalizeBuckets(std::move(options->buckets));
    if (!buckets.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric '", name, "': ", buckets.status().message()));
    }
    options->buckets = *std::move(buckets);
  } else if (!options->buckets.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric '", name, "' is not a histogram but has buckets"));
  }
  if (options->max_children == 0) {
    return absl::InvalidArgumentError(absl::StrCat("metric '", name, "': max_children is 0"));
  }

  std::vector<std::string> names = SampleNames(type, name);
  names.push_back(name);
  for (const std::string& taken : names) {
    if (taken_names_.count(taken) != 0) {
      return absl::AlreadyExistsError(
          taken == name
              ? absl::StrCat("metric '", name, "' is already registered")
              : absl::StrCat("metric '", name, "' would write series '", taken,
                             "', which another metric already uses"));
    }
  }
  taken_names_.insert(names.begin(), names.end());
  return absl::OkStatus();
}

std::string Registry::Serialize() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& family : families_) family->Serialize(&out);
  return out;
}

std::vector<FamilyDescription> Registry::Describe() const {
  std::vector<FamilyDescription> out;
  std::lock_guard<std::mutex> lock(mu_);
  out.reserve(families_.size());
  for (const auto& family : families_) {
    out.push_back({family->name(), family->type(), family->help(), family->label_names(),
                   SampleNames(family->type(), family->name())});
  }
  return out;
}

}  // namespace moed::metrics

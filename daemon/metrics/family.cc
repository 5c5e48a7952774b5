// The non-template parts of Family: label-set checks and error reporting; see family.h.
#include "daemon/metrics/family.h"

#include "absl/strings/str_join.h"
#include "kernels/base/log.h"

namespace moed::metrics {

absl::Status FamilyBase::CheckLabels(const Labels& labels) const {
  for (const std::string& declared : options_.label_names) {
    if (labels.find(declared) == labels.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric '", options_.name, "': missing label '", declared,
                       "' (its labels: ", absl::StrJoin(options_.label_names, ", "), ")"));
    }
  }
  if (labels.size() != options_.label_names.size()) {
    for (const auto& [label, value] : labels) {
      bool declared = false;
      for (const std::string& name : options_.label_names) declared |= (name == label);
      if (!declared) {
        return absl::InvalidArgumentError(absl::StrCat(
            "metric '", options_.name, "': label '", label, "' is not one of its labels (",
            options_.label_names.empty() ? "it has none"
                                         : absl::StrJoin(options_.label_names, ", "),
            ")"));
      }
    }
  }
  return absl::OkStatus();
}

void FamilyBase::ReportRejected(const absl::Status& status) const {
  if (reported_.exchange(true, std::memory_order_relaxed)) return;
  MOED_LOG(ERROR) << "metrics: " << status.message()
                  << " (counted in a detached child that is not exported)";
}

absl::Status FamilyBase::TooManyChildren() const {
  return absl::ResourceExhaustedError(absl::StrCat("metric '", options_.name, "' already has ",
                                                   options_.max_children,
                                                   " label sets (max_children)"));
}

}  // namespace moed::metrics

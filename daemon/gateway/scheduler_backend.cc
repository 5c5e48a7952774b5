// SchedulerBackend: the gateway's GenerationBackend over the daemon's Scheduler.
#include "daemon/gateway/generation_backend.h"
#include "daemon/scheduler/scheduler.h"

namespace moed::gateway {

absl::StatusOr<daemon::RequestId> SchedulerBackend::Submit(
    daemon::GenerateRequest request, std::shared_ptr<daemon::RequestSink> sink) {
  std::shared_ptr<daemon::Scheduler> scheduler = scheduler_.lock();
  if (scheduler == nullptr) return absl::UnavailableError("The model is being reloaded; retry shortly");
  return scheduler->Submit(std::move(request), std::move(sink));
}

void SchedulerBackend::Cancel(daemon::RequestId id) {
  if (std::shared_ptr<daemon::Scheduler> scheduler = scheduler_.lock()) scheduler->Cancel(id);
}

bool SchedulerBackend::Draining() const {
  std::shared_ptr<daemon::Scheduler> scheduler = scheduler_.lock();
  return scheduler == nullptr || scheduler->Stats().draining;
}

}  // namespace moed::gateway

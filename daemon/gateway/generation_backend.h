// What the gateway needs from the scheduler, as an interface: the daemon plugs in its Scheduler
// (SchedulerBackend), tests plug in a scripted backend that emits chosen tokens.
#ifndef MOED_DAEMON_GATEWAY_GENERATION_BACKEND_H_
#define MOED_DAEMON_GATEWAY_GENERATION_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "daemon/scheduler/request.h"

namespace moed::daemon {
class Scheduler;
}

namespace moed::gateway {

class GenerationBackend {
 public:
  virtual ~GenerationBackend() = default;
  // Same contract as Scheduler::Submit: errors come back at once and the sink is not called;
  // otherwise every event arrives on the sink, from another thread, ending with exactly one
  // OnFinish or OnError.
  virtual absl::StatusOr<daemon::RequestId> Submit(daemon::GenerateRequest request,
                                                   std::shared_ptr<daemon::RequestSink> sink) = 0;
  virtual void Cancel(daemon::RequestId id) = 0;
  // Not admitting new requests (SIGTERM drain).
  virtual bool Draining() const = 0;
};

// Forwards to a daemon::Scheduler without owning it: the daemon replaces its scheduler when it
// reloads the model, while requests that started before may still hold this backend. Once the
// scheduler is gone, Submit answers Unavailable and Draining() is true.
class SchedulerBackend final : public GenerationBackend {
 public:
  explicit SchedulerBackend(std::weak_ptr<daemon::Scheduler> scheduler) : scheduler_(std::move(scheduler)) {}
  absl::StatusOr<daemon::RequestId> Submit(daemon::GenerateRequest request,
                                           std::shared_ptr<daemon::RequestSink> sink) override;
  void Cancel(daemon::RequestId id) override;
  bool Draining() const override;

 private:
  std::weak_ptr<daemon::Scheduler> scheduler_;
};

}  // namespace moed::gateway

#endif  // MOED_DAEMON_GATEWAY_GENERATION_BACKEND_H_

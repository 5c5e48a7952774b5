// Continuous (iteration-level) batching: one scheduler thread owns every batch and slot decision.
// Callers on any thread Submit tokenized requests and get their tokens as events on a sink; each
// iteration the thread admits queued requests while slots and the token budget allow, builds one
// step of decodes plus chunked prefills, runs it on the StepExecutor, and delivers the sampled
// tokens. Requests end on a stop token, max_tokens, cancellation, or an error.
//
// Prefix caching for this recurrent model: the state of a slot at the end of a prompt is kept as
// a snapshot keyed by the prompt's tokens; a new request whose prompt starts with a kept prompt
// restores that snapshot and prefills only the rest.
//
// Thread-safe: Submit, Cancel, Drain, Stats may be called from any thread.
#ifndef MOED_DAEMON_SCHEDULER_SCHEDULER_H_
#define MOED_DAEMON_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "daemon/scheduler/request.h"
#include "daemon/scheduler/step_executor.h"

namespace moed::metrics {
class MoedMetrics;
}

namespace moed::daemon {

struct SchedulerOptions {
  int max_running = 8;               // sequences in flight (<= the executor's slot capacity)
  int64_t max_batch_tokens = 512;    // tokens per step, decodes and prefill chunks together
  int64_t prefill_chunk = 256;       // most prompt tokens one sequence adds in one step
  int queue_capacity = 64;           // waiting requests; beyond: ResourceExhausted
  int prefix_cache_entries = 16;     // kept prompt snapshots; 0 turns prefix caching off
  bool pipeline = true;              // as many steps in flight as the executor takes; false: one
};

struct SchedulerStats {
  int queue_length = 0;
  int running = 0;
  int slot_capacity = 0;
  uint64_t steps = 0;
  uint64_t prefix_lookups = 0;
  uint64_t prefix_hits = 0;
  bool draining = false;
};

class Scheduler {
 public:
  // `metrics` may be null; otherwise it must outlive the scheduler.
  Scheduler(std::unique_ptr<StepExecutor> executor, const SchedulerOptions& options,
            metrics::MoedMetrics* metrics);
  // Stops the thread; requests still queued or running get OnError(Unavailable).
  ~Scheduler();

  // Starts the scheduler thread. Errors: InvalidArgument for options the executor cannot serve.
  absl::Status Start();

  // Queues a request. Errors, returned at once (the sink is not called): InvalidArgument for an
  // empty prompt, a token outside the vocabulary, max_tokens < 1, prompt + max_tokens above the
  // context length, invalid sampling parameters; ResourceExhausted when the queue is full;
  // Unavailable while draining or stopped.
  absl::StatusOr<RequestId> Submit(GenerateRequest request, std::shared_ptr<RequestSink> sink);
  // Ends a request early (client gone, stop string matched): its slot is freed at the next
  // iteration and the sink gets OnFinish(kCancelled) unless it already finished.
  void Cancel(RequestId id);
  // Stops admitting new requests (Submit returns Unavailable); running and queued ones finish.
  void Drain();
  // True when nothing is queued or running.
  bool Idle() const;
  SchedulerStats Stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moed::daemon

#endif  // MOED_DAEMON_SCHEDULER_SCHEDULER_H_

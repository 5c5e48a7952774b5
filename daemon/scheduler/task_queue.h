// The one place where the scheduler's callers and its thread meet (style rule 7: all mutex and
// condition-variable code of the scheduler lives in this file and task_queue.cc). Callers post
// commands (submit, cancel) and read the state the scheduler thread last published; the
// scheduler thread takes the commands in order and publishes its state once per iteration.
//
// The waiting count is kept here, not on the scheduler thread, so that Submit can answer
// ResourceExhausted at once: a request counts as waiting from Submit until the scheduler
// thread publishes that it left the queue (admitted, cancelled or failed).
#ifndef MOED_DAEMON_SCHEDULER_TASK_QUEUE_H_
#define MOED_DAEMON_SCHEDULER_TASK_QUEUE_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "daemon/scheduler/request.h"
#include "daemon/scheduler/scheduler.h"

namespace moed::daemon {

using SchedulerClock = std::chrono::steady_clock;

struct SubmitCommand {
  RequestId id = 0;
  GenerateRequest request;
  std::shared_ptr<RequestSink> sink;
  SchedulerClock::time_point submitted;
};

struct CancelCommand {
  RequestId id = 0;
};

using SchedulerCommand = std::variant<SubmitCommand, CancelCommand>;

// What the scheduler thread takes in one go: every command posted so far, in order.
struct TakenCommands {
  std::vector<SchedulerCommand> commands;
  bool stopping = false;  // Stop() was called: fail what is left and exit
};

// Thread-safe. Methods marked "scheduler thread" must be called by that thread only.
class TaskQueue {
 public:
  explicit TaskQueue(int capacity);

  // Starts accepting Submits (before this, and after Stop, Submit answers Unavailable).
  void Open();
  // Assigns the request an id and posts it. Errors: Unavailable when not open, draining or
  // stopped; ResourceExhausted when `capacity` requests are already waiting.
  absl::StatusOr<RequestId> Submit(GenerateRequest request, std::shared_ptr<RequestSink> sink);
  void Cancel(RequestId id);
  // Refuses new Submits from now on (Unavailable); what is queued or running still finishes.
  void Drain();
  // Refuses new Submits and tells the scheduler thread to stop (TakenCommands::stopping).
  void Stop();

  // The state last published, with queue_length = the waiting count (posted or queued).
  SchedulerStats Stats() const;
  // No request waiting or running.
  bool Idle() const;

  // Scheduler thread: takes every command posted so far. With `wait`, blocks until there is
  // at least one or Stop() was called.
  TakenCommands Take(bool wait);
  // Scheduler thread: `left_waiting` requests left the queue since the last call; `stats`
  // becomes what Stats() reports (its queue_length and draining are filled in here). Returns
  // the waiting count.
  int Publish(int left_waiting, const SchedulerStats& stats);

 private:
  const int capacity_;
  mutable absl::Mutex mu_;
  absl::CondVar has_commands_;
  std::vector<SchedulerCommand> commands_ ABSL_GUARDED_BY(mu_);
  RequestId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  SchedulerStats published_ ABSL_GUARDED_BY(mu_);
};

}  // namespace moed::daemon

#endif  // MOED_DAEMON_SCHEDULER_TASK_QUEUE_H_

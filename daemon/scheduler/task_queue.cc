// The command queue between the scheduler's callers and its thread; see task_queue.h.
#include "daemon/scheduler/task_queue.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace moed::daemon {

TaskQueue::TaskQueue(int capacity) : capacity_(capacity) {}

void TaskQueue::Open() {
  absl::MutexLock lock(&mu_);
  if (!stopping_) open_ = true;
}

absl::StatusOr<RequestId> TaskQueue::Submit(GenerateRequest request, std::shared_ptr<RequestSink> sink) {
  const SchedulerClock::time_point now = SchedulerClock::now();
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the scheduler is stopped");
  if (draining_) return absl::UnavailableError("the scheduler is draining: no new requests");
  if (!open_) return absl::UnavailableError("the scheduler is not started");
  if (waiting_ >= capacity_) {
    return absl::ResourceExhaustedError(absl::StrCat("the request queue is full (", capacity_, " waiting)"));
  }
  const RequestId id = next_id_++;
  ++waiting_;
  commands_.emplace_back(SubmitCommand{id, std::move(request), std::move(sink), now});
  has_commands_.Signal();
  return id;
}

void TaskQueue::Cancel(RequestId id) {
  absl::MutexLock lock(&mu_);
  commands_.emplace_back(CancelCommand{id});
  has_commands_.Signal();
}

void TaskQueue::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

void TaskQueue::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  open_ = false;
  has_commands_.Signal();
}

SchedulerStats TaskQueue::Stats() const {
  absl::MutexLock lock(&mu_);
  SchedulerStats stats = published_;
  stats.queue_length = waiting_;
  stats.draining = draining_;
  return stats;
}

bool TaskQueue::Idle() const {
  absl::MutexLock lock(&mu_);
  return waiting_ == 0 && published_.running == 0;
}

TakenCommands TaskQueue::Take(bool wait) {
  absl::MutexLock lock(&mu_);
  if (wait) {
    while (commands_.empty() && !stopping_) has_commands_.Wait(&mu_);
  }
  TakenCommands taken;
  taken.commands.swap(commands_);
  taken.stopping = stopping_;
  return taken;
}

int TaskQueue::Publish(int left_waiting, const SchedulerStats& stats) {
  absl::MutexLock lock(&mu_);
  waiting_ -= left_waiting;
  published_ = stats;
  published_.queue_length = waiting_;
  published_.draining = draining_;
  return waiting_;
}

}  // namespace moed::daemon

// The contract between the router's scheduler and the model: what one step of continuous batching
// asks of the pipeline stages, wherever they run. Two implementations: InProcessExecutor (the
// engine's Pipeline in the router's own process; tests and tools) and the worker pool (one
// moed-worker process per stage, gRPC control, activations over a transport between workers).
//
// Slots are the scheduler's: it chooses slot ids in [0, slot_capacity()) and opens/closes them;
// a slot's sampling state (parameters, random generator, penalty history) lives with the last
// stage, which samples, so that only token ids travel back to the router.
//
// Thread-compatible: only the scheduler thread calls an executor.
#ifndef MOED_DAEMON_SCHEDULER_STEP_EXECUTOR_H_
#define MOED_DAEMON_SCHEDULER_STEP_EXECUTOR_H_

#include <cstdint>
#include <deque>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/sampling.h"

namespace moed::daemon {

// One sequence's part of a step.
struct StepSequence {
  int slot = -1;
  std::vector<int32_t> tokens;  // new tokens: a prompt chunk, or the token sampled last step
  bool sample = false;          // sample a token after these (last prompt chunk, and every decode)
  int32_t top_logprobs = 0;     // 0..20 alternatives to report with the sampled token
};

struct SampledToken {
  int slot = -1;
  int32_t token = -1;
  float logprob = 0.0f;                              // log-probability of `token` (after penalties)
  std::vector<std::pair<int32_t, float>> top;        // the top_logprobs most likely, best first
};

struct ExecutorInfo {
  int slot_capacity = 0;        // slots usable at once
  int64_t context_length = 0;   // max tokens a slot can hold (KV capacity per slot)
  int64_t n_vocab = 0;
  int n_stages = 0;
};

class StepExecutor {
 public:
  virtual ~StepExecutor() = default;

  virtual ExecutorInfo info() const = 0;

  // Prepares `slot` (empty state) for a new sequence sampled with `params`.
  // Errors: InvalidArgument for a slot out of range or already open, or invalid params.
  virtual absl::Status OpenSlot(int slot, const cpu::SamplingParams& params) = 0;
  // Frees the slot's state. Errors: InvalidArgument if not open.
  virtual absl::Status CloseSlot(int slot) = 0;

  // Runs every stage once over `sequences` (distinct open slots). Returns one SampledToken per
  // sequence with sample == true, in order. On error the step had no effect on any slot when
  // the error is InvalidArgument/ResourceExhausted (validation); any other error (a worker died)
  // leaves the slots of this step in an unknown state: the scheduler closes them and fails
  // their requests.
  virtual absl::StatusOr<std::vector<SampledToken>> Step(std::span<const StepSequence> sequences) = 0;

  // Pipelining: up to max_steps_in_flight() steps may be started before the oldest is finished,
  // so that each stage of a pipeline works on a different step. The steps in flight must not
  // share a slot, and no slot of a step in flight may be closed, saved or restored until its step
  // is finished. StartStep's errors are Step's validation errors (nothing was started: do not
  // finish it); FinishStep returns the oldest started step's result as Step would. Executors
  // without pipelining keep the defaults: one step in flight, run by Step.
  virtual int max_steps_in_flight() const { return 1; }
  virtual absl::Status StartStep(std::span<const StepSequence> sequences) {
    started_.emplace_back(sequences.begin(), sequences.end());
    return absl::OkStatus();
  }
  virtual absl::StatusOr<std::vector<SampledToken>> FinishStep() {
    if (started_.empty()) return absl::FailedPreconditionError("FinishStep without a step in flight");
    const std::vector<StepSequence> step = std::move(started_.front());
    started_.pop_front();
    return Step(step);
  }

  // Prefix cache: keep a copy of `slot`'s state (all stages) under `snapshot_id`, put a kept
  // copy into an open slot, forget a copy. Errors: NotFound for an unknown id.
  virtual absl::Status SaveSnapshot(int slot, int64_t snapshot_id) = 0;
  virtual absl::Status RestoreSnapshot(int slot, int64_t snapshot_id) = 0;
  virtual absl::Status DropSnapshot(int64_t snapshot_id) = 0;

 private:
  std::deque<std::vector<StepSequence>> started_;  // the default StartStep's steps
};

}  // namespace moed::daemon

#endif  // MOED_DAEMON_SCHEDULER_STEP_EXECUTOR_H_

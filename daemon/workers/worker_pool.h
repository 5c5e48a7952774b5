// WorkerPool: the StepExecutor over K moed-worker processes, one per pipeline stage. A Supervisor
// starts, loads, watches and restarts the processes; the pool turns the scheduler's calls into
// RPCs on the current pipeline. A step is sent to every stage at once over its step channel
// (proto/step_channel.h); stage 0 embeds, activations flow stage to stage (Unix sockets, or NCCL
// between GPUs), the last stage samples, and the pool waits for every stage's answer. Up to one
// step per stage may be in flight (StartStep/FinishStep): stage 1 computes step t while stage 0
// computes step t+1, and moed_worker_idle_ratio shows what is left of the pipeline bubble.
//
// The pool validates a step completely before any stage runs (open slots, token ids, top_logprobs,
// context length), so InvalidArgument and ResourceExhausted leave every slot as it was. A slot
// never holds more than context_length tokens, its share of the KV blocks, so no stage can run
// out of KV room half-way through a step (stage 0 may have no attention layer to notice). When a
// worker dies, the step in flight, and any step on a slot opened before the restart, returns
// Unavailable; the supervisor restarts the worker and rebuilds the pipeline, after which the
// scheduler closes the lost slots (CloseSlot succeeds) and opens new ones. Snapshots are lost with
// the pipeline (NotFound afterwards).
//
// Thread-compatible, like every StepExecutor (the scheduler thread calls it); the supervisor works
// on its own thread.
#ifndef MOED_DAEMON_WORKERS_WORKER_POOL_H_
#define MOED_DAEMON_WORKERS_WORKER_POOL_H_

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/scheduler/step_executor.h"
#include "daemon/workers/supervisor.h"
#include "daemon/workers/worker_pool_options.h"

namespace moed::metrics {
class Gauge;
class Histogram;
}

namespace moed::daemon {

class WorkerPool final : public StepExecutor {
 public:
  // Starts and loads every worker. Errors: see Supervisor::Start (a worker that fails to load is
  // named with its message; no process is left behind).
  static absl::StatusOr<std::unique_ptr<WorkerPool>> Create(const WorkerPoolOptions& options);
  // Stops and reaps every worker.
  ~WorkerPool() override;

  ExecutorInfo info() const override { return info_; }
  absl::Status OpenSlot(int slot, const cpu::SamplingParams& params) override;
  // Also succeeds for a slot lost in a restart (its state is gone already).
  absl::Status CloseSlot(int slot) override;
  absl::StatusOr<std::vector<SampledToken>> Step(std::span<const StepSequence> sequences) override;
  // One step per stage in flight (the step channel or stream; the unary path takes one).
  int max_steps_in_flight() const override;
  absl::Status StartStep(std::span<const StepSequence> sequences) override;
  absl::StatusOr<std::vector<SampledToken>> FinishStep() override;
  absl::Status SaveSnapshot(int slot, int64_t snapshot_id) override;
  absl::Status RestoreSnapshot(int slot, int64_t snapshot_id) override;
  absl::Status DropSnapshot(int64_t snapshot_id) override;

  // Waits until the pipeline is up (after a restart). Errors: DeadlineExceeded.
  absl::Status WaitReady(absl::Duration timeout) const { return supervisor_->WaitReady(timeout); }
  // Restarts of stage `stage`'s worker so far.
  int restarts(int stage) const { return supervisor_->restarts(stage); }
  std::vector<pid_t> WorkerPidsForTest() const { return supervisor_->pids(); }

 private:
  struct Slot {
    bool open = false;
    uint64_t generation = 0;  // pipeline generation it was opened on
    int64_t n_past = 0;       // tokens the stages hold for it
    bool in_flight = false;   // in a started step not yet finished
  };
  // A started step: what its end changes, and how far its fan-out got.
  struct InFlight {
    uint64_t step_id = 0;
    std::shared_ptr<const WorkerPipeline> pipeline;
    int started = 0;       // stages it was sent to
    absl::Status failure;  // a transport failure while sending it
    std::vector<std::pair<int, int64_t>> advance;  // slot, tokens added
    size_t samples = 0;
  };
  struct KeptSnapshot {
    uint64_t generation = 0;
    int64_t n_past = 0;
  };

  WorkerPool(std::unique_ptr<Supervisor> supervisor, const WorkerPoolOptions& options);
  // The slot's state on the current pipeline. Errors: InvalidArgument if not open; Unavailable
  // if it was lost in a restart.
  absl::Status CheckSlot(int slot, uint64_t generation) const;
  absl::Status Validate(std::span<const StepSequence> sequences, uint64_t generation) const;
  // moed_kv_blocks_used: the blocks the open slots' tokens fill (the same in every stage).
  void ReportKvBlocks() const;
  // Stage busy time for moed_worker_idle_ratio: the stages' compute time against the time the
  // pipeline had a step in flight, over windows of at least a second.
  void NoteBusy(const std::vector<WorkerStepReply>& replies);
  // A failed RPC on `generation`: if it looks like the transport, tells the supervisor.
  void NoteFailure(uint64_t generation, const absl::Status& status);

  std::unique_ptr<Supervisor> supervisor_;
  const WorkerPoolOptions options_;
  ExecutorInfo info_;
  std::vector<Slot> slots_;
  std::map<int64_t, KeptSnapshot> snapshots_;
  uint64_t step_id_ = 0;
  std::vector<metrics::Histogram*> step_histograms_;  // per stage; empty without metrics
  std::deque<InFlight> in_flight_;
  std::vector<metrics::Gauge*> idle_gauges_;  // per stage; empty without metrics
  std::vector<uint64_t> stage_busy_us_;
  absl::Time busy_since_;
  absl::Duration window_;
};

}  // namespace moed::daemon

#endif  // MOED_DAEMON_WORKERS_WORKER_POOL_H_

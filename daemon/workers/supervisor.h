// Supervisor: starts one moed-worker process per pipeline stage, loads each with its layers, and
// keeps the pipeline alive. Its thread watches the processes (pidfds: an exit is seen at once),
// checks their health every interval (a worker that does not answer, or whose step runs past
// the step timeout, is killed), and when a worker died or the pool reports a broken pipeline it
// rebuilds: the dead workers are restarted with exponential back-off, then every stage is loaded
// again (the survivors keep their mapped weights and only reset). All slots and snapshots are
// lost in a rebuild; each rebuild starts a new pipeline generation, so the pool can tell a slot
// of the old pipeline from one of the new.
//
// Thread-safe: Current, ReportBroken, WaitReady and the accessors may be called from any thread;
// the supervision runs on the supervisor's own thread.
#ifndef MOED_DAEMON_WORKERS_SUPERVISOR_H_
#define MOED_DAEMON_WORKERS_SUPERVISOR_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/workers/worker_client.h"
#include "daemon/workers/worker_pool_options.h"

namespace moed::daemon {

// One loaded pipeline: the clients of its stages, in order. Immutable once published; replaced
// as a whole by a rebuild (the old one's clients are cancelled).
struct WorkerPipeline {
  uint64_t generation = 0;
  std::vector<std::shared_ptr<WorkerClient>> stages;
};

// What the stages reported when the pool started (the same model after every rebuild).
struct PipelineFacts {
  int64_t n_vocab = 0;
  int64_t context_length = 0;  // the smallest over the stages
  int slot_capacity = 0;
};

class Supervisor {
 public:
  // Starts and loads every stage, then the supervision thread. Errors: InvalidArgument for bad
  // options; the first stage that fails to start or load, naming it (its message is the
  // worker's). On error every started process has been killed and reaped.
  static absl::StatusOr<std::unique_ptr<Supervisor>> Start(const WorkerPoolOptions& options);
  // Stops supervising, asks every worker to shut down, kills those that do not exit within the
  // shutdown timeout, reaps them all and removes the socket directory it created.
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // The pipeline to use now. Errors: Unavailable (saying why) while it is being rebuilt.
  absl::StatusOr<std::shared_ptr<const WorkerPipeline>> Current() const;
  // Tells the supervisor that a call on pipeline `generation` failed in a way that breaks it (a
  // step channel closed, a transport error); it rebuilds unless a newer generation exists.
  void ReportBroken(uint64_t generation, const absl::Status& why);
  // Waits until a pipeline is published. Errors: DeadlineExceeded.
  absl::Status WaitReady(absl::Duration timeout) const;

  const PipelineFacts& facts() const { return facts_; }
  int stage_count() const { return static_cast<int>(options_.stages.size()); }
  // Restarts of stage `stage`'s worker since Start.
  int restarts(int stage) const;
  // The current process id of each stage's worker (0 while none runs).
  std::vector<pid_t> pids() const;

 private:
  struct Worker;
  struct State;

  explicit Supervisor(const WorkerPoolOptions& options);
  absl::Status Init();
  // Starts stage `i`'s process and waits until it accepts RPCs.
  absl::Status SpawnWorker(int i);
  // Loads every stage in parallel; returns per-stage statuses.
  std::vector<absl::Status> LoadAll(std::vector<WorkerLoadFacts>* facts);
  void Publish();
  // Unpublishes pipeline `generation` (0: whichever is current) and cancels its clients; false
  // when it is not the current one.
  bool TakeDown(uint64_t generation, const std::string& reason);
  void Loop();
  // Kills workers that fail a health check; returns the stages that are down.
  std::vector<int> CheckHealth();
  void Rebuild(std::vector<int> down, const std::string& reason);
  // Sleeps up to `d`, waking early when stopping; false when stopping.
  bool SleepUnlessStopping(absl::Duration d);
  bool stopping() const;
  void Wake();
  void StopWorkers();

  const WorkerPoolOptions options_;
  std::string runtime_dir_;
  bool own_runtime_dir_ = false;
  std::string worker_binary_;
  PipelineFacts facts_;
  std::vector<std::unique_ptr<Worker>>
      workers_;  // the supervisor thread's (Start/~ before/after it)
  std::unique_ptr<State> state_;
};

}  // namespace moed::daemon

#endif  // MOED_DAEMON_WORKERS_SUPERVISOR_H_

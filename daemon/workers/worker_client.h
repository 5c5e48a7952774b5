// WorkerClient: the router's end of one moed-worker's gRPC service (proto/moed/worker/v1), with
// plain C++ types on this side so that no protobuf object travels past it. Unary RPCs carry a
// deadline each; a step is split into StartStep (send) and FinishStep (wait) so the pool can fan
// one step out to every stage before waiting for any.
//
// Thread-safety: the unary RPCs and Cancel may be called from any thread; StartStep/FinishStep
// from one thread (the scheduler's) at a time.
#ifndef MOED_DAEMON_WORKERS_WORKER_CLIENT_H_
#define MOED_DAEMON_WORKERS_WORKER_CLIENT_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/scheduler/step_executor.h"
#include "daemon/workers/worker_pool_options.h"
#include "kernels/cpu/sampling.h"
#include "loader/tensor_variant.h"
#include "workers/engine/state_cache.h"

namespace moed::daemon {

struct WorkerLoadSpec {
  std::string model_path;
  int first_layer = 0;
  int last_layer = 0;
  int stage_index = 0;
  int stage_count = 1;
  VariantOptions variants;
  engine::StateCacheOptions cache;
  int threads = 1;
  std::string backend = "cpu";  // LoadRequest.backend
  int device = 0;
  std::string activation_link = "socket";  // LoadRequest.activation_link
  std::string activation_listen;  // empty for the first stage
  std::string activation_next;    // empty for the last stage
  absl::Duration activation_timeout = absl::Minutes(2);
  std::string step_channel;  // where the worker accepts the step channel
  absl::Duration step_spin = absl::ZeroDuration();  // see LoadRequest.step_spin_us
};

struct WorkerLoadFacts {
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int n_layer = 0;
  int64_t context_length = 0;
  int slot_capacity = 0;
  bool reused_weights = false;
};

struct WorkerHealthReport {
  bool loaded = false;
  int slots_in_use = 0;
  absl::Duration step_running;
  uint64_t steps = 0;
  int64_t rss_bytes = 0;
};

struct WorkerStepReply {
  absl::Status status;                // this stage's outcome
  bool upstream_failed = false;       // the error came from an earlier stage
  std::vector<SampledToken> sampled;  // last stage only
  uint64_t forward_us = 0;
};

class WorkerClient {
 public:
  // `target` is a gRPC address ("unix:/path", "127.0.0.1:port"); `step_channel` the path of the
  // worker's step channel (used with StepPath::kChannel). No connection is made yet.
  WorkerClient(const std::string& target, StepPath step_path, const std::string& step_channel);
  // Cancels a step still in flight and closes the step path.
  ~WorkerClient();
  WorkerClient(const WorkerClient&) = delete;
  WorkerClient& operator=(const WorkerClient&) = delete;

  // True once the worker accepts connections; false at the deadline.
  bool WaitConnected(absl::Time deadline);

  absl::StatusOr<WorkerLoadFacts> Load(const WorkerLoadSpec& spec, absl::Duration timeout);
  absl::StatusOr<WorkerHealthReport> Health(absl::Duration timeout);
  absl::Status OpenSlot(int slot, const cpu::SamplingParams& params, absl::Duration timeout);
  absl::Status CloseSlot(int slot, absl::Duration timeout);
  absl::Status SaveSnapshot(int slot, int64_t snapshot_id, absl::Duration timeout);
  absl::Status RestoreSnapshot(int slot, int64_t snapshot_id, absl::Duration timeout);
  absl::Status DropSnapshot(int64_t snapshot_id, absl::Duration timeout);
  absl::Status Shutdown(absl::Duration timeout);

  // Sends one step (connecting the step channel or opening the stream the first time). Errors:
  // Unavailable when the path is broken or the client was cancelled; then FinishStep must not be
  // called.
  absl::Status StartStep(uint64_t step_id, std::span<const StepSequence> sequences);
  // Waits for the reply to the oldest step not yet answered. The step channel and the Step stream
  // take several steps in flight (a worker answers them in order); the unary path one. Errors
  // (the transport's, not the step's: those are in the reply): Unavailable when the worker went
  // away or Cancel was called.
  absl::StatusOr<WorkerStepReply> FinishStep();

  // Breaks the step path (a blocked FinishStep returns Unavailable) and makes every later
  // StartStep fail. Thread-safe; used when the supervisor tears the pipeline down.
  void Cancel();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moed::daemon

#endif  // MOED_DAEMON_WORKERS_WORKER_CLIENT_H_

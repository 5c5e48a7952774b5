// Options of the worker pool and its supervisor: which model and layers each moed-worker runs, how
// large its state cache is, where the sockets live, and the timeouts and restart back-off that
// keep a dead or stalled worker from hanging the router.
#ifndef MOED_DAEMON_WORKERS_WORKER_POOL_OPTIONS_H_
#define MOED_DAEMON_WORKERS_WORKER_POOL_OPTIONS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "loader/tensor_variant.h"
#include "workers/engine/state_cache.h"

namespace moed::metrics {
class MoedMetrics;
}

namespace moed::daemon {

enum class StepPath { kChannel, kStream, kUnary };

struct WorkerPoolOptions {
  // The moed-worker executable. Empty: "moed-worker" next to the running binary (or, in a build
  // tree, ../workers/moed-worker).
  std::string worker_binary = {};
  // Directory of the workers' Unix sockets. Empty: a fresh /tmp/moed-workers-XXXXXX, removed
  // when the pool stops.
  std::string runtime_dir = {};
  std::string worker_log_level = "info";  // passed as the workers' --log-level

  std::string model_path = {};
  VariantOptions variants = {};
  // Layer range [first, last) of each stage, in pipeline order; one worker per stage.
  std::vector<std::pair<int, int>> stages = {};
  // Where the stages compute (LoadRequest.backend: "cpu" or "cuda") and each stage's device
  // ordinal (empty: 0 for every stage).
  std::string backend = "cpu";
  std::vector<int> stage_devices = {};
  // LoadRequest.activation_link: "socket" or "nccl" (cuda stages only).
  std::string activation_link = "socket";
  int threads_per_worker = 1;
  engine::StateCacheOptions cache = {};

  // How steps reach the workers: the step channel (a framed Unix socket, the fastest), or the
  // gRPC Step stream, or one unary StepOnce call per worker per step. The two gRPC paths are the
  // alternatives bench/worker_step_bench.cc measures the channel against.
  StepPath step_path = StepPath::kChannel;
  // How long the router and the workers check for the next message without sleeping (see
  // LoadRequest.step_spin_us). Zero unless every process has a core of its own.
  absl::Duration step_spin = absl::ZeroDuration();

  absl::Duration start_timeout = absl::Seconds(30);      // process start until it accepts RPCs
  absl::Duration load_timeout = absl::Minutes(10);       // Load of a stage (maps the weights)
  absl::Duration rpc_timeout = absl::Seconds(30);        // slot and snapshot RPCs
  absl::Duration activation_timeout = absl::Minutes(2);  // a stage waiting for its neighbour
  absl::Duration health_interval = absl::Seconds(1);
  absl::Duration health_timeout = absl::Seconds(5);
  absl::Duration step_timeout = absl::Minutes(10);  // a step running longer: the worker is killed
  absl::Duration shutdown_timeout = absl::Seconds(5);  // Shutdown RPC until SIGKILL

  // Restart back-off: the first restart waits `restart_backoff`, each further one twice as long up
  // to `restart_backoff_max`; a worker that ran `restart_backoff_reset` since its last restart
  // starts again from the first delay.
  absl::Duration restart_backoff = absl::Milliseconds(100);
  absl::Duration restart_backoff_max = absl::Seconds(30);
  absl::Duration restart_backoff_reset = absl::Minutes(1);

  // Where worker_up, worker_restarts_total, worker_memory_bytes and worker_step_duration_seconds
  // go (label worker = the stage index); may be null. Must outlive the pool.
  metrics::MoedMetrics* metrics = nullptr;
};

}  // namespace moed::daemon

#endif  // MOED_DAEMON_WORKERS_WORKER_POOL_OPTIONS_H_

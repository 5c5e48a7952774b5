// StageWorker: everything one moed-worker process does, without gRPC. It holds one pipeline stage
// (a StageEngine over a LoadedModel), its activation links (a listener for the previous stage, a
// connection to the next), and, on the last stage, each slot's SlotSampler. WorkerService turns
// RPCs into calls on it; tests can drive it directly.
//
// Step protocol: every stage gets the same step description. A stage after the first takes one
// activation frame from the previous stage per step, a stage before the last sends one per step,
// whatever happens: a stage that fails sends an error frame instead, so no stage waits for
// activations that will not come and the frame counts stay in step. With device_links the rows
// stay on the GPUs and go over NCCL; the frames then only announce them.
//
// Thread-compatible: one thread (the worker's step thread) makes every call except Health and
// Interrupt, which any thread may call at any time.
#ifndef MOED_WORKERS_STAGE_WORKER_H_
#define MOED_WORKERS_STAGE_WORKER_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kernels/cpu/sampling.h"
#include "kernels/cpu/thread_pool.h"
#include "loader/tensor_variant.h"
#include "workers/engine/loaded_model.h"
#include "workers/engine/stage_engine.h"
#include "workers/sampling/slot_sampler.h"
#include "workers/transport/nccl_link.h"
#include "workers/transport/unix_socket_transport.h"

namespace moed::worker {

struct StageConfig {
  std::string model_path;
  int first_layer = 0;  // [first_layer, last_layer) of the model's trunk
  int last_layer = 0;
  int stage_index = 0;
  int stage_count = 1;
  VariantOptions variants;
  engine::EngineOptions engine;
  std::string activation_listen;  // socket path for the previous stage; empty for the first
  std::string activation_next;    // the next stage's socket path; empty for the last
  absl::Duration activation_timeout = absl::Seconds(120);
  absl::Duration step_spin = absl::ZeroDuration();  // LoadRequest.step_spin_us
  // Activations to and from the neighbours stay on the GPUs (transport::NcclLink); a CUDA engine
  // only. Every stage of a pipeline must agree.
  bool device_links = false;
};

// What the router needs to know about a loaded stage.
struct StageFacts {
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int n_layer = 0;
  // A slot's share of the KV blocks, capped by the training context (as InProcessExecutor).
  int64_t context_length = 0;
  int slot_capacity = 0;
  bool reused_weights = false;
};

struct WorkerSequence {
  int slot = -1;
  std::vector<int32_t> tokens;
  bool sample = false;
  int top_logprobs = 0;
};

struct WorkerSample {
  int slot = -1;
  sampling::SampledChoice choice;
};

struct StepOutcome {
  absl::Status status;
  bool upstream_failed = false;       // status came from an earlier stage; this one did not run
  std::vector<WorkerSample> sampled;  // last stage: one per sequence with sample, in order
  uint64_t forward_us = 0;            // compute time, without the wait for activations
};

struct WorkerHealth {
  bool loaded = false;
  int slots_in_use = 0;
  int64_t step_running_ms = 0;
  uint64_t steps = 0;
  int64_t rss_bytes = 0;
};

class StageWorker {
 public:
  StageWorker();
  ~StageWorker();

  // Loads the stage. With the model path and variant options of the loaded one it keeps the
  // mapped model and only rebuilds the stage (the router's pipeline rebuild). Either way all
  // slots and snapshots are dropped and the activation links are reopened. Errors:
  // InvalidArgument for a bad range, options or links (naming them); the model loader's errors.
  // On error the worker is unloaded.
  absl::StatusOr<StageFacts> Load(const StageConfig& config);

  // `params` matter only on the last stage. Errors: FailedPrecondition before Load;
  // InvalidArgument for a slot out of range or in use, or invalid params.
  absl::Status OpenSlot(int slot, const cpu::SamplingParams& params);
  absl::Status CloseSlot(int slot);

  // Runs this stage's part of one step (see the file comment). Never blocks past the activation
  // timeout.
  StepOutcome Step(std::span<const WorkerSequence> sequences);

  // Errors: InvalidArgument for a slot not open; NotFound for an unknown snapshot id.
  absl::Status SaveSnapshot(int slot, int64_t snapshot_id);
  absl::Status RestoreSnapshot(int slot, int64_t snapshot_id);
  absl::Status DropSnapshot(int64_t snapshot_id);

  // Thread-safe.
  WorkerHealth Health() const;
  // Thread-safe: makes the step in progress (or the next) give up waiting for a neighbour, with
  // Cancelled, until the next Load. For a Load or Shutdown that comes while a step is stuck.
  void Interrupt();

 private:
  struct Snapshot {
    engine::SlotSnapshot state;
    std::vector<int32_t> history;  // last stage: the sampler's penalty history
  };

  // A step's rows between stages: in host memory, or in device memory over device links.
  struct Activations {
    std::vector<float> host;
    engine::StageEngine::DeviceRows device;
  };

  absl::Status CheckLoaded() const;
  absl::Status OpenLinks();
  // Gets the previous stage's frame for this step (accepting its connection the first time).
  absl::StatusOr<Activations> ReceiveActivations();
  // Sends this step's frame to the next stage (connecting the first time): activations, or
  // `failure` when not OK.
  absl::Status SendDownstream(Activations hidden, const absl::Status& failure);
  absl::Status RunStage(std::span<const WorkerSequence> sequences, Activations hidden_in, Activations* hidden_out,
                        StepOutcome* outcome);
  // Drops the links after a failure on them (the router rebuilds the pipeline).
  void DropUpstream();
  void DropDownstream();
  bool is_last() const { return engine_ != nullptr && engine_->is_last(); }

  StageConfig config_;
  std::unique_ptr<engine::LoadedModel> model_;
  std::unique_ptr<engine::StageEngine> engine_;
  std::unique_ptr<transport::UnixSocketListener> listener_;
  std::unique_ptr<transport::UnixSocketTransport> upstream_;      // from the previous stage
  std::unique_ptr<transport::UnixSocketTransport> downstream_;    // to the next stage
  std::unique_ptr<transport::NcclLink> upstream_device_;          // with device_links
  std::unique_ptr<transport::NcclLink> downstream_device_;
  std::vector<std::unique_ptr<sampling::SlotSampler>> samplers_;  // per slot; last stage only
  // Samples a step's rows in parallel (last stage): a row of a 250k vocabulary costs about a
  // millisecond of softmax and selection, so a 64-sequence decode step would otherwise spend more
  // time sampling than a GPU spends computing it.
  std::unique_ptr<cpu::ThreadPool> sampling_pool_;
  std::map<int64_t, Snapshot> snapshots_;

  int interrupt_fd_ = -1;  // eventfd: readable while a Load or Shutdown is waiting
  std::atomic<bool> loaded_{false};
  std::atomic<int> slots_in_use_{0};
  std::atomic<int64_t> step_started_ns_{
      0};  // absl::GetCurrentTimeNanos() of the running step, 0 if idle
  std::atomic<uint64_t> steps_{0};
};

}  // namespace moed::worker

#endif  // MOED_WORKERS_STAGE_WORKER_H_

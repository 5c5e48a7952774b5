// StepExecutor over an engine::Pipeline in the router's own process: every stage runs in this
// process, one after the other. Used by tests and tools, and by moed when no worker processes
// are configured. Each slot samples with its own sampling::SlotSampler, the same one the workers'
// last stage uses (its seed; its penalties over the slot's history = every token fed to it: the
// prompt, then each generated token as it is fed back; logprobs from a log-softmax of the
// penalised logits), so both executors report the same tokens and log-probabilities.
// Prefix-cache snapshots are kept in a map together with the history they cover.
//
// Thread-compatible: only the scheduler thread calls it.
#ifndef MOED_DAEMON_SCHEDULER_IN_PROCESS_EXECUTOR_H_
#define MOED_DAEMON_SCHEDULER_IN_PROCESS_EXECUTOR_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "daemon/scheduler/step_executor.h"
#include "kernels/cpu/sampling.h"
#include "workers/sampling/slot_sampler.h"
#include "workers/engine/loaded_model.h"
#include "workers/engine/pipeline.h"

namespace moed::daemon {

class InProcessExecutor final : public StepExecutor {
 public:
  // Builds a pipeline of `n_stages` stages over `model`, which must outlive the executor.
  // slot_capacity = options.cache.max_slots; context_length = the KV pool's share per slot
  // (kv_blocks / max_slots blocks, so that every slot can grow to it at once), capped by the
  // model's training context when the file states one. Errors: from Pipeline::Create, and
  // InvalidArgument when that share is empty.
  static absl::StatusOr<std::unique_ptr<InProcessExecutor>> Create(const engine::LoadedModel& model, int n_stages,
                                                                    const engine::EngineOptions& options);

  ExecutorInfo info() const override { return info_; }
  absl::Status OpenSlot(int slot, const cpu::SamplingParams& params) override;
  absl::Status CloseSlot(int slot) override;
  absl::StatusOr<std::vector<SampledToken>> Step(std::span<const StepSequence> sequences) override;
  absl::Status SaveSnapshot(int slot, int64_t snapshot_id) override;
  absl::Status RestoreSnapshot(int slot, int64_t snapshot_id) override;
  absl::Status DropSnapshot(int64_t snapshot_id) override;

  int snapshots_kept() const { return static_cast<int>(snapshots_.size()); }

 private:
  struct Slot {
    bool open = false;
    std::optional<sampling::SlotSampler> sampler;  // set while open; holds the penalty history
  };
  struct Snapshot {
    std::vector<engine::SlotSnapshot> state;  // one per stage
    std::vector<int32_t> history;
  };

  InProcessExecutor(std::unique_ptr<engine::Pipeline> pipeline, const ExecutorInfo& info);
  absl::Status CheckOpen(int slot) const;
  absl::Status ValidateStep(std::span<const StepSequence> sequences) const;

  std::unique_ptr<engine::Pipeline> pipeline_;
  ExecutorInfo info_;
  std::vector<Slot> slots_;
  absl::flat_hash_map<int64_t, Snapshot> snapshots_;
};

}  // namespace moed::daemon

#endif  // MOED_DAEMON_SCHEDULER_IN_PROCESS_EXECUTOR_H_

// The CPU backend of StageEngine: kernels/cpu on the stage's thread pool, the KV and recurrent
// state in the StateCache's host memory.
#ifndef MOED_WORKERS_ENGINE_CPU_STAGE_ENGINE_H_
#define MOED_WORKERS_ENGINE_CPU_STAGE_ENGINE_H_

#include <memory>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "workers/engine/stage_engine.h"

namespace moed::engine {

class CpuStageEngine final : public StageEngine {
 public:
  // Errors: InvalidArgument for options.threads outside 1..512.
  static absl::StatusOr<std::unique_ptr<StageEngine>> Create(const LoadedModel& model, StageWeights weights,
                                                            const EngineOptions& options);

  absl::Status Forward(std::span<const SequenceStep> sequences, std::span<const float> hidden_in,
                       std::vector<float>* hidden_out, std::vector<float>* logits) override;
  absl::StatusOr<SlotSnapshot> Snapshot(int slot) const override { return cache_->Snapshot(slot); }
  absl::Status Restore(int slot, const SlotSnapshot& snapshot) override { return cache_->Restore(slot, snapshot); }

 private:
  CpuStageEngine(const LoadedModel& model, StageWeights weights, const EngineOptions& options);

  void FullAttention(int layer, const std::vector<Rows>& rows, const float* a, float* out);
  void DeltaNet(int layer, const std::vector<Rows>& rows, const float* a, float* out);
  void Moe(int layer, int64_t n_tokens, const float* f, float* out);
  void MatMul(const cpu::WeightMatrix& w, const float* x, int64_t n_tokens, float* y);

  std::unique_ptr<cpu::ThreadPool> pool_;
};

}  // namespace moed::engine

#endif  // MOED_WORKERS_ENGINE_CPU_STAGE_ENGINE_H_

// A model run as K pipeline stages in one process, each stage a StageEngine over a contiguous
// layer range, activations handed stage to stage through an ActivationTransport. This is what the
// model tool uses; worker processes use the same StageEngine with a transport between processes.
#ifndef MOED_WORKERS_ENGINE_PIPELINE_H_
#define MOED_WORKERS_ENGINE_PIPELINE_H_

#include <deque>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "workers/engine/loaded_model.h"
#include "workers/engine/stage_engine.h"

namespace moed::engine {

// Carries one step's activations ([tokens][n_embd] float32) from a stage to the next.
class ActivationTransport {
 public:
  virtual ~ActivationTransport() = default;
  virtual absl::Status Send(std::vector<float> hidden) = 0;
  virtual absl::StatusOr<std::vector<float>> Receive() = 0;
};

// Both ends in one process: a FIFO.
class InProcessTransport : public ActivationTransport {
 public:
  absl::Status Send(std::vector<float> hidden) override;
  absl::StatusOr<std::vector<float>> Receive() override;

 private:
  std::deque<std::vector<float>> queue_;
};

// Cuts the trunk into n_stages contiguous ranges [first, last) minimising the largest stage's
// weight bytes (the first stage also holds the embedding, the last the head). Errors: n_stages
// outside [1, n_layer].
absl::StatusOr<std::vector<std::pair<int, int>>> SplitLayers(const ModelDescription& model, int n_stages);

class Pipeline {
 public:
  static absl::StatusOr<std::unique_ptr<Pipeline>> Create(const LoadedModel& model, int n_stages,
                                                          const EngineOptions& options);

  // A slot in every stage (the same index everywhere).
  absl::StatusOr<int> AllocateSlot();
  // Takes slot `slot` in every stage (the router chooses slot ids).
  absl::Status AcquireSlot(int slot);
  absl::Status FreeSlot(int slot);
  // Runs every stage; logits as StageEngine::Forward's last stage writes them.
  absl::Status Forward(std::span<const SequenceStep> sequences, std::vector<float>* logits);
  // The last stage's summaries of the last Forward's kTop sequences (StageEngine::tops).
  const std::vector<cpu::TopLogits>& tops() const { return stages_.back()->tops(); }
  const std::vector<cpu::Drawn>& draws() const { return stages_.back()->draws(); }

  absl::StatusOr<std::vector<SlotSnapshot>> Snapshot(int slot) const;
  absl::Status Restore(int slot, const std::vector<SlotSnapshot>& snapshot);

  int n_stages() const { return static_cast<int>(stages_.size()); }
  const std::vector<std::pair<int, int>>& ranges() const { return ranges_; }
  int64_t n_vocab() const { return stages_.back()->n_vocab(); }
  int64_t n_past(int slot) const { return stages_.front()->cache().n_past(slot); }

 private:
  std::vector<std::pair<int, int>> ranges_;
  std::vector<std::unique_ptr<StageEngine>> stages_;
  std::vector<std::unique_ptr<ActivationTransport>> links_;  // links_[i]: stage i -> i + 1
};

}  // namespace moed::engine

#endif  // MOED_WORKERS_ENGINE_PIPELINE_H_

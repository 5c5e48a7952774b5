// Runs one pipeline stage of a qwen35moe model (a contiguous layer range; the first stage embeds,
// the last applies the final norm and the head) over a batch that mixes sequences in prefill and
// in decode with ragged lengths. Each sequence lives in a slot of the stage's StateCache; a step
// appends its tokens to the slot.
//
// Thread-compatible: one step thread calls Forward; the kernels use the stage's thread pool.
#ifndef MOED_WORKERS_ENGINE_STAGE_ENGINE_H_
#define MOED_WORKERS_ENGINE_STAGE_ENGINE_H_

#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/thread_pool.h"
#include "workers/engine/loaded_model.h"
#include "workers/engine/stage_weights.h"
#include "workers/engine/state_cache.h"

namespace moed::engine {

enum class LogitsWanted { kNone, kLast, kAll };

// One sequence's part of a step: n_tokens new tokens appended to the slot.
struct SequenceStep {
  int slot = -1;
  std::vector<int32_t> tokens;  // the ids (all stages get them; only the first embeds them)
  LogitsWanted logits = LogitsWanted::kLast;
};

struct EngineOptions {
  int threads = 1;
  StateCacheOptions cache;
};

class StageEngine {
 public:
  static absl::StatusOr<std::unique_ptr<StageEngine>> Create(const LoadedModel& model, int first_layer,
                                                            int last_layer, const EngineOptions& options);
  ~StageEngine();

  // Runs the stage on `sequences` (their tokens concatenated in order). hidden_in holds
  // [total_tokens][n_embd] activations from the previous stage (ignored by the first stage).
  // A middle stage writes its activations to hidden_out; the last stage writes to logits the rows
  // each sequence asked for, in order ([rows][n_vocab]).
  // Errors (nothing is changed): InvalidArgument for an unknown slot, an empty sequence, a token
  // outside the vocabulary or a hidden_in of the wrong size; ResourceExhausted when the KV cache
  // cannot hold the new tokens.
  absl::Status Forward(std::span<const SequenceStep> sequences, std::span<const float> hidden_in,
                       std::vector<float>* hidden_out, std::vector<float>* logits);

  StateCache& cache() { return *cache_; }
  const StageWeights& weights() const { return weights_; }
  bool is_first() const { return weights_.embeds; }
  bool is_last() const { return weights_.samples; }
  int64_t n_embd() const { return hp_.n_embd; }
  int64_t n_vocab() const { return n_vocab_; }

 private:
  StageEngine(const LoadedModel& model, StageWeights weights, const EngineOptions& options);

  // Per-sequence layout of the step's token rows.
  struct Rows {
    int slot;
    int64_t begin;  // first row in the step
    int64_t count;
    int64_t first_pos;  // position of the first new token
  };

  absl::Status Validate(std::span<const SequenceStep> sequences, std::span<const float> hidden_in) const;
  void FullAttention(int layer, const std::vector<Rows>& rows, const float* a, float* out);
  void DeltaNet(int layer, const std::vector<Rows>& rows, const float* a, float* out);
  void Moe(int layer, int64_t n_tokens, const float* f, float* out);
  void MatMul(const cpu::WeightMatrix& w, const float* x, int64_t n_tokens, float* y);

  const Qwen35MoeHparams& hp_;
  int64_t n_vocab_;
  StageWeights weights_;
  std::unique_ptr<cpu::ThreadPool> pool_;
  std::unique_ptr<StateCache> cache_;
};

}  // namespace moed::engine

#endif  // MOED_WORKERS_ENGINE_STAGE_ENGINE_H_

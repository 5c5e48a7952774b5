// Runs one pipeline stage of a qwen35moe model (a contiguous layer range; the first stage embeds,
// the last applies the final norm and the head) over a batch that mixes sequences in prefill and
// in decode with ragged lengths. Each sequence lives in a slot; a step appends its tokens to it.
//
// StageEngine is the backend interface: CpuStageEngine (cpu_stage_engine.h) computes with
// kernels/cpu, CudaStageEngine (cuda_stage_engine.h) with libmoed_cuda.so loaded at run time.
// Both keep their slot bookkeeping (positions, KV block tables) in a StateCache, so that the
// scheduling-visible behaviour is the same on every backend.
//
// Thread-compatible: one step thread calls Forward and the slot methods.
#ifndef MOED_WORKERS_ENGINE_STAGE_ENGINE_H_
#define MOED_WORKERS_ENGINE_STAGE_ENGINE_H_

#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/sampling.h"
#include "workers/engine/loaded_model.h"
#include "workers/engine/stage_weights.h"
#include "workers/engine/state_cache.h"

namespace moed::engine {

// What the last stage returns for a sequence: nothing, its last row of logits, all its rows, or
// a summary of its last row (cpu::TopLogits: the top_n best logits and log-sum-exp), which is all
// greedy sampling and log-probabilities need; a device then sends a few bytes instead of the row.
// A kTop sequence may also ask for a draw over its row (cpu::DrawFromRow), made where the row is.
enum class LogitsWanted { kNone, kLast, kAll, kTop };

// One sequence's part of a step: n_tokens new tokens appended to the slot.
struct SequenceStep {
  int slot = -1;
  std::vector<int32_t> tokens;  // the ids (all stages get them; only the first embeds them)
  LogitsWanted logits = LogitsWanted::kLast;
  int top_n = 1;  // kTop: how many of the best logits, 1..cpu::kMaxTopLogits
  std::optional<cpu::RowDraw> draw = std::nullopt;  // kTop only: the draw's answer goes to draws()
};

enum class Backend { kCpu, kCuda };
std::string_view BackendName(Backend backend);

// How the CUDA backend computes the matrix products of prefill steps: cuBLAS on F16 tensor cores
// (weights and activations rounded to F16: the fast default), cuBLAS in float32 (results as the
// GEMV's up to summation order: for tests and reproducibility), or the decode GEMV throughout.
enum class CudaGemm { kF16, kF32, kOff };

struct EngineOptions {
  Backend backend = Backend::kCpu;
  int device = 0;    // CUDA device ordinal (kCuda)
  CudaGemm cuda_gemm = CudaGemm::kF16;
  int threads = 1;   // CPU compute threads (kCpu; kCuda uses one host thread)
  StateCacheOptions cache;
};

class StageEngine {
 public:
  // Binds layers [first_layer, last_layer) of `model` on options.backend. Errors: InvalidArgument
  // for bad options or a model the backend cannot compute; Unavailable when the CUDA backend is
  // absent (no libmoed_cuda.so, driver or device); ResourceExhausted when the device is too small.
  static absl::StatusOr<std::unique_ptr<StageEngine>> Create(const LoadedModel& model, int first_layer,
                                                            int last_layer, const EngineOptions& options);
  virtual ~StageEngine();

  // Runs the stage on `sequences` (their tokens concatenated in order). hidden_in holds
  // [total_tokens][n_embd] activations from the previous stage (ignored by the first stage).
  // A middle stage writes its activations to hidden_out; the last stage writes to logits the rows
  // each kLast / kAll sequence asked for, in order ([rows][n_vocab]), and the summaries of the
  // kTop sequences' rows to tops() (and their draws to draws()).
  // Errors (nothing is changed): InvalidArgument for an unknown slot, an empty sequence, a token
  // outside the vocabulary, a kTop top_n outside [1, cpu::kMaxTopLogits], a draw that is not kTop
  // or has parameters out of range, or a hidden_in of the
  // wrong size; ResourceExhausted when the KV cache cannot hold the new tokens.
  virtual absl::Status Forward(std::span<const SequenceStep> sequences, std::span<const float> hidden_in,
                               std::vector<float>* hidden_out, std::vector<float>* logits) = 0;

  // Rows of activations in the engine's device memory ([tokens][n_embd] floats).
  struct DeviceRows {
    const float* data = nullptr;
    int64_t floats = 0;
  };
  // As Forward, for stages whose neighbours are linked over a device link (NCCL): hidden_in is in
  // this engine's device memory (ignored by the first stage), and a middle stage's output stays
  // there: *hidden_out points into the engine's buffers until its next call. Errors: as Forward;
  // Unimplemented for a backend without device memory (the CPU).
  virtual absl::Status ForwardOnDevice(std::span<const SequenceStep> sequences, DeviceRows hidden_in,
                                       DeviceRows* hidden_out, std::vector<float>* logits);

  // Slots (StateCache's contracts). A newly acquired slot starts from empty state.
  absl::StatusOr<int> AllocateSlot();
  virtual absl::Status AcquireSlot(int slot);
  absl::Status FreeSlot(int slot) { return cache_->FreeSlot(slot); }
  absl::Status CheckSlot(int slot) const { return cache_->CheckSlot(slot); }
  // A copy of the slot's state (host memory, the same layout on every backend) and its inverse.
  virtual absl::StatusOr<SlotSnapshot> Snapshot(int slot) const = 0;
  virtual absl::Status Restore(int slot, const SlotSnapshot& snapshot) = 0;

  // The last stage's summaries of the last Forward's kTop sequences, in their order; valid until
  // the next Forward.
  const std::vector<cpu::TopLogits>& tops() const { return tops_; }
  // Beside tops(): the draw of each kTop sequence that asked for one (else id -1).
  const std::vector<cpu::Drawn>& draws() const { return draws_; }

  const StateCache& cache() const { return *cache_; }
  const StageWeights& weights() const { return weights_; }
  bool is_first() const { return weights_.embeds; }
  bool is_last() const { return weights_.samples; }
  int64_t n_embd() const { return hp_.n_embd; }
  int64_t n_vocab() const { return n_vocab_; }

 protected:
  // host_state: whether the StateCache holds the KV and recurrent state itself (CPU) or only
  // the bookkeeping (a device holds the state).
  StageEngine(const LoadedModel& model, StageWeights weights, const StateCacheOptions& cache, bool host_state);

  // Per-sequence layout of a step's token rows.
  struct Rows {
    int slot;
    int64_t begin;  // first row in the step
    int64_t count;
    int64_t first_pos;  // position of the first new token
  };
  // Checks the step (hidden_in_floats: the size of its input activations) and reserves KV room
  // for it; on success `rows` describes it.
  absl::Status BeginStep(std::span<const SequenceStep> sequences, int64_t hidden_in_floats, std::vector<Rows>* rows);
  // The host's way to answer kTop: `logits` holds a row for every sequence that wants any (kTop
  // counted as kLast); the kTop rows are summarised into tops_ (and drawn from into draws_) and
  // removed from it.
  void SummariseTops(std::span<const SequenceStep> sequences, std::vector<float>* logits);

  const Qwen35MoeHparams& hp_;
  int64_t n_vocab_;
  StageWeights weights_;
  std::unique_ptr<StateCache> cache_;
  std::vector<cpu::TopLogits> tops_;
  std::vector<cpu::Drawn> draws_;
};

}  // namespace moed::engine

#endif  // MOED_WORKERS_ENGINE_STAGE_ENGINE_H_

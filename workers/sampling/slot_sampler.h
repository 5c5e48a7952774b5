// SlotSampler: the sampling state of one sequence slot, kept by whoever samples (the last pipeline
// stage, or an in-process executor): its parameters, its seeded random generator and its penalty
// history (the slot's prompt plus the tokens generated so far, i.e. every token fed to the slot).
// Sampling draws with cpu::Sampler; the reported log-probabilities come from a log-softmax of the
// final logits after the same penalties (temperature 1), as OpenAI's logprobs describe the model's
// distribution rather than the truncated one the draw used.
//
// Thread-compatible.
#ifndef MOED_WORKERS_SAMPLING_SLOT_SAMPLER_H_
#define MOED_WORKERS_SAMPLING_SLOT_SAMPLER_H_

#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "kernels/cpu/sampling.h"

namespace moed::sampling {

// Most alternatives a caller may ask for (OpenAI's top_logprobs limit).
inline constexpr int kMaxTopLogprobs = cpu::kMaxTopLogits;

struct SampledChoice {
  int32_t token = -1;
  float logprob = 0.0f;                        // log-probability of `token` after penalties
  std::vector<std::pair<int32_t, float>> top;  // the most likely tokens, best first
};

// Fills out->logprob for `token` and out->top with the `top_n` (clamped to [0, kMaxTopLogprobs])
// most likely tokens (ties: lower id first), from log_softmax(penalised logits). NaN logits count
// as -inf; when no logit is finite every log-probability is -inf.
void ComputeLogprobs(const cpu::SamplingParams& params, std::span<const float> logits,
                     std::span<const int32_t> history, int32_t token, int top_n,
                     SampledChoice* out);
// The same from a row's summary (no penalties): out->logprob for a token whose logit is
// token_logit, out->top from top.best (which must hold the top_n best).
void ChoiceFromTop(const cpu::TopLogits& top, float token_logit, int top_n, SampledChoice* out);

class SlotSampler {
 public:
  // REQUIRES: params.Validate().ok().
  explicit SlotSampler(const cpu::SamplingParams& params);

  // Records tokens fed to the slot (a prompt chunk, or the token sampled last step).
  void Append(std::span<const int32_t> tokens) {
    history_.insert(history_.end(), tokens.begin(), tokens.end());
  }
  const std::vector<int32_t>& history() const { return history_; }
  // Replaces the history (restoring a prefix-cache snapshot); the generator keeps its state.
  void set_history(std::vector<int32_t> history) { history_ = std::move(history); }

  // Draws the next token from one row of logits (n_vocab floats) and reports its log-probability
  // and the top_n alternatives. Does not append the drawn token: it is fed back next step.
  SampledChoice Sample(std::span<const float> logits, int top_n);

  // Before a step: what the next draw needs from its row of n_vocab logits. With summary_only the
  // row's summary (cpu::TopOfLogits with top_n best) is enough: greedy, or top-k of at most
  // kMaxTopLogprobs, with any top-p and min-p (the chain then runs on the k best exactly as on the
  // row). With a draw too, the row is drawn from where it is (cpu::DrawFromRow): no top-k or
  // top-p; this advances the generator as Sample would. Otherwise (penalties, top-p without
  // top-k, top-k beyond the summary) the row itself is needed.
  struct RowNeeds {
    bool summary_only = false;
    int top_n = 1;
    std::optional<cpu::RowDraw> draw;
  };
  RowNeeds Prepare(int64_t n_vocab, int top_logprobs);
  // After a summary_only step: what Sample would return on the row the summary came from; drawn
  // is the answer to the draw Prepare asked for (else null).
  SampledChoice SampleFromSummary(const cpu::TopLogits& top, const cpu::Drawn* drawn, int top_n);

 private:
  cpu::SamplingParams params_;
  cpu::Sampler sampler_;
  std::vector<int32_t> history_;
};

}  // namespace moed::sampling

#endif  // MOED_WORKERS_SAMPLING_SLOT_SAMPLER_H_

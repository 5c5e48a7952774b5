// Token sampling from logits, with the parameters OpenAI and llama-server clients send. The chain
// runs in llama.cpp's order: penalties, top-k, top-p, min-p, temperature, then a seeded draw.
// Temperature <= 0 is greedy (argmax, lowest id on ties).
#ifndef MOED_KERNELS_CPU_SAMPLING_H_
#define MOED_KERNELS_CPU_SAMPLING_H_

#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace moed::cpu {

struct SamplingParams {
  float temperature = 1.0f;
  int32_t top_k = 0;          // 0 = off
  float top_p = 1.0f;         // 1 = off
  float min_p = 0.0f;         // 0 = off
  float repetition_penalty = 1.0f;  // llama.cpp/HF style: divide positive logits, multiply negative
  float presence_penalty = 0.0f;    // OpenAI style: subtract once per seen token
  float frequency_penalty = 0.0f;   // OpenAI style: subtract per occurrence
  uint64_t seed = 0;

  // InvalidArgument naming the field for out-of-range values (negative top_k, top_p outside
  // (0, 1], min_p outside [0, 1], repetition_penalty <= 0, non-finite numbers).
  absl::Status Validate() const;
};

// One sequence's sampler: owns its random state, so the same seed and logits give the same tokens.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // `history` is the tokens the penalties look at (prompt and generated so far).
  int32_t Sample(std::span<const float> logits, std::span<const int32_t> history);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

// Index of the largest logit (lowest index on ties).
int32_t Argmax(std::span<const float> logits);

// Most best logits a TopLogits holds (OpenAI's top_logprobs limit).
inline constexpr int kMaxTopLogits = 20;

// The summary of one logits row that greedy sampling and log-probabilities need, so that a device
// can send it instead of the whole row: the best logits and log Σ exp(logits). NaN counts as -inf.
struct TopLogits {
  // -inf when the largest logit is not finite (all -inf, or +inf present): then there is no
  // distribution and every log-probability is -inf.
  double log_sum_exp = 0.0;
  std::vector<std::pair<int32_t, float>> best;  // (id, logit), best first, ties by lower id
};
// The reference (and the CUDA kernel logits_top's CPU twin). best holds min(top_n, size) entries;
// best[0] is Argmax's answer.
TopLogits TopOfLogits(std::span<const float> logits, int top_n);

}  // namespace moed::cpu

#endif  // MOED_KERNELS_CPU_SAMPLING_H_

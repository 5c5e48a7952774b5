// Token sampling from logits, with the parameters OpenAI and llama-server clients send. The chain
// runs in llama.cpp's order: penalties, top-k, top-p, min-p, temperature, then a seeded draw.
// Temperature <= 0 is greedy (argmax, lowest id on ties).
#ifndef MOED_KERNELS_CPU_SAMPLING_H_
#define MOED_KERNELS_CPU_SAMPLING_H_

#include <cstdint>
#include <limits>
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

// The chain without penalties, top-k or top-p reduces to one draw over the whole row: weights
// exp((logit - max) / T) for the tokens min-p keeps, one uniform u, the first token (by id) whose
// cumulative weight exceeds u times the total. Defined so that any summation order gives the same
// token, which lets a device draw where the row is (the CUDA kernel logits_draw is the twin of
// DrawFromRow): the weight is computed in double with plain IEEE operations (no FMA contraction,
// no libm), then truncated to a multiple of 2^-40 (kDrawWeightBits) and summed in 64-bit integers.
// Tokens whose weight is below 2^-40 (logit more than ~27.7 T below the best) are never drawn.
struct RowDraw {
  float inv_temperature = 1.0f;  // 1.0f / temperature, computed by the caller in float
  float log_min_p = -std::numeric_limits<float>::infinity();  // std::log(min_p); -inf: min-p off
  double u = 0.0;  // uniform in [0, 1)
};
struct Drawn {
  int32_t id = -1;
  float logit = -std::numeric_limits<float>::infinity();  // the row's value there (NaN as -inf)
};
inline constexpr int kDrawWeightBits = 40;
// The most entries a row drawn from may have: 2^23 weights of at most 2^40 sum below 2^63.
inline constexpr int64_t kMaxDrawVocab = int64_t{1} << 23;
// A weight exp(x) (x <= 0) as the integer floor(exp(x) * 2^40); 0 below 2^-40.
uint64_t DrawWeight(float x);
// REQUIRES: logits.size() <= kMaxDrawVocab. Without a finite maximum (all -inf/NaN, or +inf
// present), or with a zero total, the answer is the argmax, NaN counted as -inf and ties to the
// lower id (TopOfLogits' best[0]).
Drawn DrawFromRow(std::span<const float> logits, const RowDraw& draw);

// One sequence's sampler: owns its random state, so the same seed and logits give the same tokens.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // `history` is the tokens the penalties look at (prompt and generated so far).
  int32_t Sample(std::span<const float> logits, std::span<const int32_t> history);

  // Sampling from a summary instead of the row, for parameters without penalties (the caller
  // checks), each consuming the generator exactly as Sample does:
  // - SampleTopK: top_k > 0, and `best` holds the row's top_k best (id, logit) pairs, best first,
  //   ties by lower id (TopOfLogits), for a row longer than top_k. Returns what Sample returns.
  // - NextRowDraw: top_k == 0 and top_p == 1. The draw's parameters, for DrawFromRow wherever the
  //   row is; Sample on the row would return DrawFromRow's id.
  int32_t SampleTopK(std::span<const std::pair<int32_t, float>> best);
  RowDraw NextRowDraw();

 private:
  double NextUniform();

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

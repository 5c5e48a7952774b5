// Log-probabilities for the token a SlotSampler draws. The penalties are applied exactly as
// cpu::Sampler applies them (llama.cpp's penalties sampler: once per distinct history token,
// repetition by division/multiplication, then frequency * count + presence subtracted), so the
// reported distribution is the one the draw started from.
#include "workers/sampling/slot_sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/container/flat_hash_map.h"

namespace moed::sampling {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

bool PenaltiesActive(const cpu::SamplingParams& p, std::span<const int32_t> history) {
  return !history.empty() && (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f ||
                              p.frequency_penalty != 0.0f);
}

void ApplyPenalties(const cpu::SamplingParams& p, std::span<const int32_t> history,
                    std::vector<float>& logits) {
  const auto n = static_cast<int64_t>(logits.size());
  absl::flat_hash_map<int32_t, int32_t> counts;
  for (const int32_t id : history) {
    if (id >= 0 && id < n) ++counts[id];
  }
  for (const auto& [id, count] : counts) {
    float& l = logits[static_cast<size_t>(id)];
    if (l <= 0.0f) {
      l *= p.repetition_penalty;
    } else {
      l /= p.repetition_penalty;
    }
    l -= static_cast<float>(count) * p.frequency_penalty + p.presence_penalty;
  }
}

}  // namespace

void ComputeLogprobs(const cpu::SamplingParams& params, std::span<const float> logits,
                     std::span<const int32_t> history, int32_t token, int top_n,
                     SampledChoice* out) {
  thread_local std::vector<float> scratch;
  std::span<const float> z = logits;
  if (PenaltiesActive(params, history)) {
    scratch.assign(logits.begin(), logits.end());
    ApplyPenalties(params, history, scratch);
    z = scratch;
  }
  const cpu::TopLogits top = cpu::TopOfLogits(z, std::clamp(top_n, 0, kMaxTopLogprobs));
  const float logit = token >= 0 && static_cast<size_t>(token) < z.size() ? z[static_cast<size_t>(token)] : kNegInf;
  ChoiceFromTop(top, std::isnan(logit) ? kNegInf : logit, top_n, out);
}

void ChoiceFromTop(const cpu::TopLogits& top, float token_logit, int top_n, SampledChoice* out) {
  auto logprob = [&](float logit) -> float {
    if (!std::isfinite(top.log_sum_exp)) return kNegInf;
    return static_cast<float>(static_cast<double>(logit) - top.log_sum_exp);
  };
  out->logprob = logprob(token_logit);
  out->top.clear();
  const size_t n = std::min(top.best.size(), static_cast<size_t>(std::clamp(top_n, 0, kMaxTopLogprobs)));
  for (size_t i = 0; i < n; ++i) out->top.emplace_back(top.best[i].first, logprob(top.best[i].second));
}

SlotSampler::SlotSampler(const cpu::SamplingParams& params) : params_(params), sampler_(params) {}

SampledChoice SlotSampler::Sample(std::span<const float> logits, int top_n) {
  SampledChoice choice;
  choice.token = sampler_.Sample(logits, history_);
  ComputeLogprobs(params_, logits, history_, choice.token, top_n, &choice);
  return choice;
}

SlotSampler::RowNeeds SlotSampler::Prepare(int64_t n_vocab, int top_logprobs) {
  RowNeeds needs;
  const cpu::SamplingParams& p = params_;
  if (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) return needs;
  const bool greedy = p.temperature <= 0.0f;
  const bool top_k = !greedy && p.top_k > 0 && p.top_k <= kMaxTopLogprobs && p.top_k < n_vocab;
  const bool whole_row =
      !greedy && (p.top_k == 0 || p.top_k >= n_vocab) && p.top_p >= 1.0f && n_vocab <= cpu::kMaxDrawVocab;
  if (!greedy && !top_k && !whole_row) return needs;
  needs.summary_only = true;
  needs.top_n = std::clamp(std::max(top_logprobs, top_k ? p.top_k : 1), 1, kMaxTopLogprobs);
  if (whole_row) needs.draw = sampler_.NextRowDraw();
  return needs;
}

SampledChoice SlotSampler::SampleFromSummary(const cpu::TopLogits& top, const cpu::Drawn* drawn, int top_n) {
  SampledChoice choice;
  float logit = kNegInf;
  if (drawn != nullptr) {
    choice.token = drawn->id, logit = drawn->logit;
  } else if (!top.best.empty()) {
    const size_t k = params_.temperature > 0.0f ? static_cast<size_t>(params_.top_k) : 1;
    choice.token = sampler_.SampleTopK(std::span(top.best).first(std::min(k, top.best.size())));
    for (const auto& [id, value] : top.best) {
      if (id == choice.token) logit = value;
    }
  }
  ChoiceFromTop(top, logit, top_n, &choice);
  return choice;
}

}  // namespace moed::sampling

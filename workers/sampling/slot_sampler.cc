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

// Better first: larger value, then lower id.
bool Better(const std::pair<int32_t, float>& a, const std::pair<int32_t, float>& b) {
  if (a.second != b.second) return a.second > b.second;
  return a.first < b.first;
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
  auto value = [&](size_t i) { return std::isnan(z[i]) ? kNegInf : z[i]; };

  float max_z = kNegInf;
  for (size_t i = 0; i < z.size(); ++i) max_z = std::max(max_z, value(i));
  double log_sum = -std::numeric_limits<double>::infinity();
  if (std::isfinite(max_z)) {
    double sum = 0.0;
    for (size_t i = 0; i < z.size(); ++i) sum += std::exp(static_cast<double>(value(i)) - max_z);
    log_sum = max_z + std::log(sum);
  }
  auto logprob = [&](size_t i) -> float {
    if (!std::isfinite(log_sum)) return kNegInf;
    return static_cast<float>(static_cast<double>(value(i)) - log_sum);
  };

  out->logprob = token >= 0 && static_cast<size_t>(token) < z.size()
                     ? logprob(static_cast<size_t>(token))
                     : kNegInf;
  out->top.clear();
  const size_t n = static_cast<size_t>(std::clamp(top_n, 0, kMaxTopLogprobs));
  if (n == 0) return;
  // A sorted list of at most n (id, logit) pairs: cheaper than sorting the vocabulary.
  std::vector<std::pair<int32_t, float>>& best = out->top;
  for (size_t i = 0; i < z.size(); ++i) {
    const std::pair<int32_t, float> c{static_cast<int32_t>(i), value(i)};
    if (best.size() == n && !Better(c, best.back())) continue;
    auto at = std::upper_bound(best.begin(), best.end(), c, Better);
    best.insert(at, c);
    if (best.size() > n) best.pop_back();
  }
  for (auto& [id, l] : best) l = logprob(static_cast<size_t>(id));
}

SlotSampler::SlotSampler(const cpu::SamplingParams& params) : params_(params), sampler_(params) {}

SampledChoice SlotSampler::Sample(std::span<const float> logits, int top_n) {
  SampledChoice choice;
  choice.token = sampler_.Sample(logits, history_);
  ComputeLogprobs(params_, logits, history_, choice.token, top_n, &choice);
  return choice;
}

}  // namespace moed::sampling

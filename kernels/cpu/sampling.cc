// The sampling chain of llama.cpp's common sampler, restricted to the parameters OpenAI-style
// clients send: penalties -> top-k -> top-p -> min-p -> temperature -> seeded draw. Top-p takes
// its softmax over the top-k survivors at temperature 1 (the temperature comes later in the
// chain), and min-p keeps tokens whose probability is at least min_p times the best one's; all
// three keep a prefix of the candidates sorted by logit. Ties sort by token id, so a seed fully
// determines the result. Without penalties, top-k and top-p the chain is DrawFromRow, whose
// result does not depend on summation order (a device computes it too: sampling.h).
#include "kernels/cpu/sampling.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"

namespace moed::cpu {
namespace {

struct Candidate {
  int32_t id;
  float logit;
  float weight;  // exp((logit - max_logit) / T) once computed: an unnormalised probability
};

// Descending logit, then ascending id: a total order (NaN logits were replaced by -inf). A
// function object, so that the sorts inline it.
struct ByLogit {
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.logit != b.logit) return a.logit > b.logit;
    return a.id < b.id;
  }
};
constexpr ByLogit Before;

absl::Status FieldError(const char* field, double value, const char* rule) {
  return absl::InvalidArgumentError(absl::StrCat("sampling parameter ", field, " = ", value, " ", rule));
}

// Applies the repetition / presence / frequency penalties to `logits` (indexed by token id) the
// way llama.cpp's penalties sampler does: once per distinct token of the history.
void ApplyPenalties(const SamplingParams& p, std::span<const int32_t> history, std::vector<float>& logits) {
  const bool active = p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if (!active || history.empty()) return;
  const auto n = static_cast<int64_t>(logits.size());
  // Occurrence counts live in a vocab-sized scratch array that is zero between calls; only the
  // history's entries are touched, so the cost is O(history), not O(vocab).
  thread_local std::vector<int32_t> counts;
  if (static_cast<int64_t>(counts.size()) < n) counts.assign(static_cast<size_t>(n), 0);
  for (const int32_t id : history) {
    if (id >= 0 && id < n) ++counts[static_cast<size_t>(id)];
  }
  for (const int32_t id : history) {
    if (id < 0 || id >= n) continue;
    const int32_t count = counts[static_cast<size_t>(id)];
    if (count == 0) continue;  // already penalised (a repeated id)
    float& l = logits[static_cast<size_t>(id)];
    if (l <= 0.0f) {
      l *= p.repetition_penalty;
    } else {
      l /= p.repetition_penalty;
    }
    l -= static_cast<float>(count) * p.frequency_penalty + p.presence_penalty;
    counts[static_cast<size_t>(id)] = 0;
  }
}

// Sets every candidate's weight to exp((logit - max_logit) * inv_temp) and returns their sum.
// Float exp (as llama.cpp), double sum.
double ComputeWeights(std::vector<Candidate>& cand, float max_logit, float inv_temp) {
  double sum = 0.0;
  for (Candidate& c : cand) {
    c.weight = std::exp((c.logit - max_logit) * inv_temp);
    sum += c.weight;
  }
  return sum;
}

// The chain from top-p on, over candidates that top-k may have cut and sorted: top-p, min-p,
// temperature, and the draw with uniform u. best is the argmax, max_logit its (finite) logit.
int32_t DrawFromCandidates(const SamplingParams& params, std::vector<Candidate>& cand, bool sorted, int32_t best,
                           float max_logit, double u) {
  // top-p: the shortest sorted prefix whose probability (temperature 1) reaches top_p. Sorting a
  // 250k vocabulary per token is wasteful when the prefix is short, so the prefix is grown
  // (256, 2048, ...): select the m best (nth_element) and sort them, which orders the first m
  // exactly as a full sort would (Before is a total order).
  bool weights_at_t1 = false;
  if (params.top_p < 1.0f) {
    const double sum = ComputeWeights(cand, max_logit, 1.0f);
    weights_at_t1 = true;
    size_t m = std::min<size_t>(cand.size(), 256);
    for (size_t sorted_m = sorted ? cand.size() : 0;;) {
      if (sorted_m < m) {
        const auto mid = cand.begin() + static_cast<std::ptrdiff_t>(m);
        if (mid != cand.end()) std::nth_element(cand.begin(), mid, cand.end(), Before);
        std::sort(cand.begin(), mid, Before);
        sorted_m = m;
      }
      double cum = 0.0;
      size_t cut = 0;
      for (size_t i = 0; i < m; ++i) {
        cum += cand[i].weight / sum;
        if (cum >= params.top_p) {
          cut = i + 1;
          break;
        }
      }
      if (cut > 0) {
        cand.resize(cut);
        break;
      }
      if (m == cand.size()) break;  // rounding kept the sum below top_p: keep everything
      m = std::min(cand.size(), m * 8);
    }
  }
  // min-p: p_i >= min_p * p_max, i.e. logit_i >= max_logit + log(min_p); never empties the set
  // because the best candidate always passes.
  if (params.min_p > 0.0f) {
    const float min_logit = max_logit + std::log(params.min_p);
    std::erase_if(cand, [min_logit](const Candidate& c) { return c.logit < min_logit; });
  }
  // Temperature, softmax and the draw. exp(-inf) is 0, so masked tokens are never drawn.
  double sum = 0.0;
  if (weights_at_t1 && params.temperature == 1.0f) {
    for (const Candidate& c : cand) sum += c.weight;
  } else {
    sum = ComputeWeights(cand, max_logit, 1.0f / params.temperature);
  }
  if (!(sum > 0.0) || !std::isfinite(sum)) return best;
  const double target = u * sum;
  double cum = 0.0;
  int32_t last = best;
  for (const Candidate& c : cand) {
    if (c.weight <= 0.0f) continue;
    cum += c.weight;
    last = c.id;
    if (target < cum) return last;
  }
  return last;  // rounding left target at the very top: the last token with weight
}

}  // namespace

absl::Status SamplingParams::Validate() const {
  if (!std::isfinite(temperature)) return FieldError("temperature", temperature, "is not finite");
  if (top_k < 0) return FieldError("top_k", top_k, "is negative (0 disables it)");
  if (!(top_p > 0.0f && top_p <= 1.0f)) return FieldError("top_p", top_p, "is outside (0, 1]");
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return FieldError("min_p", min_p, "is outside [0, 1]");
  if (!std::isfinite(repetition_penalty) || repetition_penalty <= 0.0f) {
    return FieldError("repetition_penalty", repetition_penalty, "must be a finite number > 0");
  }
  if (!std::isfinite(presence_penalty)) return FieldError("presence_penalty", presence_penalty, "is not finite");
  if (!std::isfinite(frequency_penalty)) {
    return FieldError("frequency_penalty", frequency_penalty, "is not finite");
  }
  return absl::OkStatus();
}

// Lowest index among the largest values; NaN never wins. -1 for an empty span.
int32_t Argmax(std::span<const float> logits) {
  int32_t best = -1;
  float best_value = 0.0f;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float v = logits[i];
    if (std::isnan(v)) continue;
    if (best < 0 || v > best_value) {
      best = static_cast<int32_t>(i);
      best_value = v;
    }
  }
  return best < 0 && !logits.empty() ? 0 : best;
}

TopLogits TopOfLogits(std::span<const float> logits, int top_n) {
  auto value = [&](size_t i) { return std::isnan(logits[i]) ? -std::numeric_limits<float>::infinity() : logits[i]; };
  TopLogits out;
  float max_logit = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < logits.size(); ++i) max_logit = std::max(max_logit, value(i));
  out.log_sum_exp = -std::numeric_limits<double>::infinity();
  if (std::isfinite(max_logit)) {
    double sum = 0.0;
    for (size_t i = 0; i < logits.size(); ++i) sum += std::exp(static_cast<double>(value(i)) - max_logit);
    out.log_sum_exp = max_logit + std::log(sum);
  }
  // A sorted list of at most top_n pairs: cheaper than sorting the vocabulary.
  auto better = [](const std::pair<int32_t, float>& a, const std::pair<int32_t, float>& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  };
  const size_t n = static_cast<size_t>(std::max(top_n, 0));
  std::vector<std::pair<int32_t, float>>& best = out.best;
  for (size_t i = 0; i < logits.size() && n > 0; ++i) {
    const std::pair<int32_t, float> c{static_cast<int32_t>(i), value(i)};
    if (best.size() == n && !better(c, best.back())) continue;
    best.insert(std::upper_bound(best.begin(), best.end(), c, better), c);
    if (best.size() > n) best.pop_back();
  }
  return out;
}

uint64_t DrawWeight(float x) {
  // exp(x) = 2^n (1 + r + ... + r^7 / 7!), |r| <= ln2 / 2 (relative error ~6e-9). ln2 is split
  // so that n * kLn2Hi is exact for |n| < 2^21 (fdlibm's split). Every operation is one IEEE
  // double operation in this order, which logits_draw repeats with __d*_rn intrinsics; this file
  // is compiled with -ffp-contract=off so that no FMA changes a rounding.
  constexpr double kLog2e = 1.4426950408889634;
  constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  constexpr float kSmallest = -27.7f;  // exp(-27.7) < 2^-40: truncates to 0 anyway
  if (!(x > kSmallest)) return 0;       // also NaN
  const double xd = x;
  // Round to nearest even by adding and subtracting 1.5 * 2^52 (exact for |v| < 2^51, and inline,
  // where std::nearbyint is a libm call without SSE4.1); the device's rint gives the same n.
  constexpr double kRound = 0x1.8p52;
  const double n = (xd * kLog2e + kRound) - kRound;
  const double r = (xd - n * kLn2Hi) - n * kLn2Lo;
  double p = 1.0 / 5040;
  p = p * r + 1.0 / 720;
  p = p * r + 1.0 / 120;
  p = p * r + 1.0 / 24;
  p = p * r + 1.0 / 6;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // n is in [-40, 0], so 2^(n + 40) is exact and so is the product: only the truncation rounds.
  const auto scale = std::bit_cast<double>(static_cast<uint64_t>(static_cast<int>(n) + kDrawWeightBits + 1023) << 52);
  return static_cast<uint64_t>(p * scale);
}

Drawn DrawFromRow(std::span<const float> logits, const RowDraw& draw) {
  if (logits.empty()) return {};
  auto value = [&](size_t i) { return std::isnan(logits[i]) ? -std::numeric_limits<float>::infinity() : logits[i]; };
  Drawn argmax{0, value(0)};  // NaN as -inf, ties to the lower id (TopOfLogits' best[0])
  for (size_t i = 1; i < logits.size(); ++i) {
    if (value(i) > argmax.logit) argmax = {static_cast<int32_t>(i), value(i)};
  }
  const float max_logit = argmax.logit;
  if (!std::isfinite(max_logit)) return argmax;
  const float min_logit = max_logit + draw.log_min_p;
  thread_local std::vector<uint64_t> weights;
  weights.resize(logits.size());
  uint64_t total = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float l = value(i);
    weights[i] = l >= min_logit ? DrawWeight((l - max_logit) * draw.inv_temperature) : 0;
    total += weights[i];
  }
  if (total == 0) return argmax;  // a temperature so small that even the best weight is NaN
  const auto target = static_cast<uint64_t>(draw.u * static_cast<double>(total));
  uint64_t cum = 0;
  Drawn last = argmax;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (weights[i] == 0) continue;
    cum += weights[i];
    last = {static_cast<int32_t>(i), value(i)};
    if (target < cum) return last;
  }
  return last;  // (double) total rounded up past the last boundary: the last token with weight
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

double Sampler::NextUniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

RowDraw Sampler::NextRowDraw() {
  RowDraw draw;
  draw.inv_temperature = 1.0f / params_.temperature;
  if (params_.min_p > 0.0f) draw.log_min_p = std::log(params_.min_p);
  draw.u = NextUniform();
  return draw;
}

int32_t Sampler::Sample(std::span<const float> logits, std::span<const int32_t> history) {
  if (logits.empty()) return -1;
  thread_local std::vector<float> scratch;
  scratch.assign(logits.begin(), logits.end());
  for (float& l : scratch) {
    if (std::isnan(l)) l = -std::numeric_limits<float>::infinity();
  }
  ApplyPenalties(params_, history, scratch);
  const int32_t best = Argmax(scratch);
  if (params_.temperature <= 0.0f) return best;
  if ((params_.top_k == 0 || static_cast<size_t>(params_.top_k) >= scratch.size()) && params_.top_p >= 1.0f) {
    return DrawFromRow(scratch, NextRowDraw()).id;
  }
  const double u = NextUniform();

  // The best logit survives every filter below, so it is the softmax's max throughout; without
  // a finite one (all -inf, or +inf present) there is no distribution and the argmax is the answer.
  const float max_logit = scratch[static_cast<size_t>(best)];
  if (!std::isfinite(max_logit)) return best;

  thread_local std::vector<Candidate> cand;
  cand.resize(scratch.size());
  for (size_t i = 0; i < scratch.size(); ++i) cand[i] = {static_cast<int32_t>(i), scratch[i], 0.0f};

  // top-k: keep the k best, sorted.
  bool sorted = false;
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < cand.size()) {
    const auto k = static_cast<size_t>(params_.top_k);
    std::partial_sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(k), cand.end(), Before);
    cand.resize(k);
    sorted = true;
  }
  return DrawFromCandidates(params_, cand, sorted, best, max_logit, u);
}

int32_t Sampler::SampleTopK(std::span<const std::pair<int32_t, float>> best) {
  if (best.empty()) return -1;
  if (params_.temperature <= 0.0f) return best[0].first;
  const double u = NextUniform();
  const float max_logit = best[0].second;
  if (!std::isfinite(max_logit)) return best[0].first;
  thread_local std::vector<Candidate> cand;
  cand.clear();
  for (const auto& [id, logit] : best) cand.push_back({id, logit, 0.0f});
  return DrawFromCandidates(params_, cand, /*sorted=*/true, best[0].first, max_logit, u);
}

}  // namespace moed::cpu

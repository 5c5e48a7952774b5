// Tests of the sampling chain: greedy argmax, seeded determinism, the top-k / top-p / min-p masks
// (by sampling many times with a fixed seed and checking which tokens appear), the chain order,
// the penalties, and SamplingParams::Validate.
#include "kernels/cpu/sampling.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moed::cpu {
namespace {

using ::testing::HasSubstr;

constexpr float kInf = std::numeric_limits<float>::infinity();

// Logits whose softmax (temperature 1) is exactly proportional to probs.
std::vector<float> LogitsOf(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

// Counts of each token over n draws.
std::vector<int> Histogram(const SamplingParams& params, const std::vector<float>& logits, int n,
                           const std::vector<int32_t>& history = {}) {
  Sampler sampler(params);
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < n; ++i) {
    const int32_t t = sampler.Sample(logits, history);
    EXPECT_GE(t, 0);
    EXPECT_LT(t, static_cast<int32_t>(logits.size()));
    if (t >= 0 && t < static_cast<int32_t>(logits.size())) ++counts[static_cast<size_t>(t)];
  }
  return counts;
}

// The set of tokens that appeared.
std::set<int> Support(const std::vector<int>& counts) {
  std::set<int> s;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] > 0) s.insert(static_cast<int>(i));
  }
  return s;
}

TEST(ArgmaxTest, LargestLowestIndexOnTies) {
  const std::vector<float> a = {1.0f, 3.0f, -2.0f, 3.0f};
  EXPECT_EQ(Argmax(a), 1);
  const std::vector<float> b = {-kInf, -5.0f};
  EXPECT_EQ(Argmax(b), 1);
  const std::vector<float> c = {std::nanf(""), 0.5f, std::nanf("")};
  EXPECT_EQ(Argmax(c), 1);
  EXPECT_EQ(Argmax(std::span<const float>()), -1);
}

TEST(TopOfLogitsTest, BestFirstTiesByIdAndTheLogSumExp) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::vector<float> logits = {1.0f, 3.0f, nan, 3.0f, -inf, 2.0f};
  const TopLogits top = TopOfLogits(logits, 6);
  const std::vector<std::pair<int32_t, float>> want = {{1, 3.0f}, {3, 3.0f}, {5, 2.0f}, {0, 1.0f}, {2, -inf}, {4, -inf}};
  EXPECT_EQ(top.best, want);  // NaN counts as -inf; ties by lower id
  EXPECT_EQ(top.best[0].first, Argmax(logits));
  const double sum = std::exp(-2.0) + 2.0 + std::exp(-1.0);
  EXPECT_NEAR(top.log_sum_exp, 3.0 + std::log(sum), 1e-12);
  EXPECT_EQ(TopOfLogits(logits, 2).best.size(), 2u);
  EXPECT_TRUE(TopOfLogits(logits, 0).best.empty());
  // Without a finite maximum there is no distribution.
  EXPECT_EQ(TopOfLogits(std::vector<float>{-inf, nan}, 1).log_sum_exp, -std::numeric_limits<double>::infinity());
  EXPECT_EQ(TopOfLogits(std::vector<float>{inf, 0.0f}, 1).log_sum_exp, -std::numeric_limits<double>::infinity());
  EXPECT_EQ(TopOfLogits(std::vector<float>{nan, nan}, 1).best[0].first, 0);
}

TEST(SamplerTest, TemperatureZeroOrNegativeIsGreedy) {
  const std::vector<float> logits = {0.1f, 2.5f, 2.4f, 2.5f};
  for (const float temp : {0.0f, -1.0f}) {
    SamplingParams p;
    p.temperature = temp;
    p.seed = 5;
    Sampler s(p);
    for (int i = 0; i < 20; ++i) EXPECT_EQ(s.Sample(logits, {}), 1);
  }
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedDifferentTokens) {
  const std::vector<float> logits = LogitsOf({0.2, 0.2, 0.2, 0.2, 0.2});
  SamplingParams p;
  p.seed = 1234;
  Sampler a(p), b(p);
  p.seed = 1235;
  Sampler c(p);
  std::vector<int32_t> ta, tb, tc;
  for (int i = 0; i < 64; ++i) {
    ta.push_back(a.Sample(logits, {}));
    tb.push_back(b.Sample(logits, {}));
    tc.push_back(c.Sample(logits, {}));
  }
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, tc);
}

TEST(SamplerTest, FrequenciesFollowTheSoftmax) {
  SamplingParams p;
  p.seed = 7;
  const int n = 40000;
  const std::vector<int> counts = Histogram(p, LogitsOf({0.5, 0.3, 0.15, 0.05}), n);
  EXPECT_NEAR(counts[0] / double(n), 0.5, 0.015);
  EXPECT_NEAR(counts[1] / double(n), 0.3, 0.015);
  EXPECT_NEAR(counts[2] / double(n), 0.15, 0.015);
  EXPECT_NEAR(counts[3] / double(n), 0.05, 0.01);
  // Temperature 2 flattens: p ~ sqrt(p0), so token 3 becomes clearly more frequent.
  p.temperature = 2.0f;
  const std::vector<int> hot = Histogram(p, LogitsOf({0.5, 0.3, 0.15, 0.05}), n);
  const double z = std::sqrt(0.5) + std::sqrt(0.3) + std::sqrt(0.15) + std::sqrt(0.05);
  EXPECT_NEAR(hot[3] / double(n), std::sqrt(0.05) / z, 0.015);
}

TEST(SamplerTest, MaskedTokensNeverAppear) {
  SamplingParams p;
  p.seed = 3;
  const std::vector<float> logits = {0.0f, -kInf, 0.0f, std::nanf(""), 0.0f};
  EXPECT_EQ(Support(Histogram(p, logits, 3000)), (std::set<int>{0, 2, 4}));
  const std::vector<float> none = {-kInf, -kInf};
  Sampler s(p);
  EXPECT_EQ(s.Sample(none, {}), 0);
}

TEST(DrawFromRowTest, WeightsAreExpToTheirResolution) {
  for (float x = 0.0f; x > -27.6f; x -= 0.0137f) {
    const double want = std::exp(static_cast<double>(x)) * 0x1.0p40;
    const auto got = static_cast<double>(DrawWeight(x));
    EXPECT_LE(got, want * (1 + 1e-8)) << x;      // truncated, never rounded up past 1e-8
    EXPECT_GE(got, want * (1 - 1e-8) - 1) << x;  // at most one unit below
  }
  EXPECT_EQ(DrawWeight(0.0f), uint64_t{1} << kDrawWeightBits);
  EXPECT_EQ(DrawWeight(-28.0f), 0u);
  EXPECT_EQ(DrawWeight(-kInf), 0u);
  EXPECT_EQ(DrawWeight(std::nanf("")), 0u);
}

TEST(DrawFromRowTest, TheFirstTokenWhoseCumulativeWeightPassesUTimesTheTotal) {
  const std::vector<float> logits = LogitsOf({0.5, 0.25, 0.125, 0.125});
  RowDraw d;
  auto at = [&](double u) {
    d.u = u;
    return DrawFromRow(logits, d);
  };
  EXPECT_EQ(at(0.0).id, 0);
  EXPECT_EQ(at(0.49).id, 0);
  EXPECT_EQ(at(0.51).id, 1);
  EXPECT_EQ(at(0.76).id, 2);
  const Drawn last = at(1.0 - 0x1.0p-53);
  EXPECT_EQ(last.id, 3);
  EXPECT_EQ(last.logit, logits[3]);
  // min-p 0.3 keeps p >= 0.15: tokens 0 and 1 only, in proportion 2 : 1.
  d.log_min_p = std::log(0.3f);
  EXPECT_EQ(at(0.6).id, 0);
  EXPECT_EQ(at(0.7).id, 1);
  EXPECT_EQ(at(0.99).id, 1);
  // A tiny temperature leaves only the best.
  d.log_min_p = -kInf, d.inv_temperature = 1e6f;
  EXPECT_EQ(at(0.99).id, 0);
}

TEST(DrawFromRowTest, RowsWithoutADistributionGiveTheArgmax) {
  const float nan = std::nanf("");
  RowDraw d;
  d.u = 0.5;
  EXPECT_EQ(DrawFromRow(std::vector<float>{nan, -kInf, nan}, d).id, 0);  // NaN as -inf, lowest id
  EXPECT_EQ(DrawFromRow(std::vector<float>{1.0f, kInf, kInf}, d).id, 1);
  const Drawn masked = DrawFromRow(std::vector<float>{0.0f, nan, 0.0f, -kInf}, d);
  EXPECT_EQ(masked.id, 2);  // NaN and -inf weigh nothing: u 0.5 falls on the second 0
  EXPECT_EQ(DrawFromRow(std::vector<float>{}, d).id, -1);
}

TEST(DrawFromRowTest, SampleIsDrawFromRowWithoutTopKOrTopP) {
  SamplingParams p;
  p.temperature = 0.8f, p.min_p = 0.01f, p.seed = 11;
  Sampler sample(p), draw(p);
  std::vector<float> logits(5000);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int i = 0; i < 50; ++i) {
    for (float& l : logits) l = normal(rng);
    EXPECT_EQ(sample.Sample(logits, {}), DrawFromRow(logits, draw.NextRowDraw()).id);
  }
}

TEST(SamplerTest, SampleTopKIsSampleOnTheRow) {
  SamplingParams p;
  p.temperature = 0.7f, p.top_k = 20, p.top_p = 0.8f, p.min_p = 0.02f, p.seed = 12;
  Sampler on_row(p), on_best(p);
  std::vector<float> logits(3000);
  std::mt19937 rng(6);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (int i = 0; i < 100; ++i) {
    for (float& l : logits) l = normal(rng);
    EXPECT_EQ(on_row.Sample(logits, {}), on_best.SampleTopK(TopOfLogits(logits, p.top_k).best));
  }
}

TEST(SamplerTest, TopKKeepsTheKBest) {
  SamplingParams p;
  p.seed = 11;
  p.top_k = 2;
  const std::vector<float> logits = LogitsOf({0.1, 0.3, 0.05, 0.35, 0.2});
  EXPECT_EQ(Support(Histogram(p, logits, 4000)), (std::set<int>{1, 3}));
  p.top_k = 1;
  EXPECT_EQ(Support(Histogram(p, logits, 200)), (std::set<int>{3}));
  p.top_k = 100;  // more than the vocabulary: off
  EXPECT_EQ(Support(Histogram(p, logits, 4000)), (std::set<int>{0, 1, 2, 3, 4}));
}

TEST(SamplerTest, TopPKeepsTheSmallestPrefixReachingP) {
  SamplingParams p;
  p.seed = 13;
  const std::vector<float> logits = LogitsOf({0.1, 0.4, 0.2, 0.3});
  p.top_p = 0.65f;  // 0.4, then 0.7 >= 0.65
  EXPECT_EQ(Support(Histogram(p, logits, 4000)), (std::set<int>{1, 3}));
  p.top_p = 0.75f;  // 0.4, 0.7, 0.9
  EXPECT_EQ(Support(Histogram(p, logits, 4000)), (std::set<int>{1, 2, 3}));
  p.top_p = 0.3f;  // the best token alone already reaches it
  EXPECT_EQ(Support(Histogram(p, logits, 500)), (std::set<int>{1}));
}

// A vocabulary large enough that the top-p prefix (thousands of tokens) is longer than the first
// partial sorts: the kept set must equal the brute-force prefix of the fully sorted list.
TEST(SamplerTest, TopPOnALargeVocabularyMatchesFullSort) {
  std::mt19937 rng(29);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::vector<float> logits(6000);
  for (float& l : logits) l = normal(rng);
  std::vector<int32_t> order(logits.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l));
  std::vector<int> rank(logits.size());
  size_t cut = 0;
  double cum = 0.0;
  for (size_t i = 0; i < order.size(); ++i) {
    rank[static_cast<size_t>(order[i])] = static_cast<int>(i);
    cum += std::exp(static_cast<double>(logits[order[i]])) / sum;
    if (cut == 0 && cum >= 0.8) cut = i + 1;
  }
  ASSERT_GT(cut, 2048u);
  SamplingParams p;
  p.seed = 31;
  p.top_p = 0.8f;
  const std::vector<int> counts = Histogram(p, logits, 2000);
  int max_rank = 0;
  for (size_t t = 0; t < counts.size(); ++t) {
    if (counts[t] > 0) max_rank = std::max(max_rank, rank[t]);
  }
  EXPECT_LT(max_rank, static_cast<int>(cut));       // nothing beyond the prefix
  EXPECT_GT(max_rank, static_cast<int>(cut) - 100);  // and the prefix's tail does appear
}

TEST(SamplerTest, MinPKeepsTokensNearTheBest) {
  SamplingParams p;
  p.seed = 17;
  const std::vector<float> logits = LogitsOf({0.1, 0.4, 0.2, 0.3});
  p.min_p = 0.3f;  // threshold 0.12: drops 0.1
  EXPECT_EQ(Support(Histogram(p, logits, 4000)), (std::set<int>{1, 2, 3}));
  p.min_p = 0.6f;  // threshold 0.24: keeps 0.4 and 0.3
  EXPECT_EQ(Support(Histogram(p, logits, 4000)), (std::set<int>{1, 3}));
  p.min_p = 1.0f;  // only the best
  EXPECT_EQ(Support(Histogram(p, logits, 500)), (std::set<int>{1}));
}

TEST(SamplerTest, ChainOrderTopKThenTopPThenTemperature) {
  const std::vector<float> logits = LogitsOf({0.4, 0.3, 0.2, 0.1});
  SamplingParams p;
  p.seed = 19;
  p.top_p = 0.75f;
  // Over all four tokens the prefix reaching 0.75 is {0, 1, 2} (0.4, 0.7, 0.9) ...
  EXPECT_EQ(Support(Histogram(p, logits, 4000)), (std::set<int>{0, 1, 2}));
  // ... but after top-k = 3 the survivors renormalise to (0.44, 0.33, 0.22): {0, 1} reach 0.78.
  p.top_k = 3;
  EXPECT_EQ(Support(Histogram(p, logits, 4000)), (std::set<int>{0, 1}));
  // Temperature comes after the masks: a very hot sampler still never leaves {0, 1}, and the two
  // become about equally likely.
  p.temperature = 100.0f;
  const std::vector<int> hot = Histogram(p, logits, 20000);
  EXPECT_EQ(Support(hot), (std::set<int>{0, 1}));
  EXPECT_NEAR(hot[0] / 20000.0, 0.5, 0.02);
}

TEST(SamplerTest, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 1.2f;
  Sampler s(p);
  const std::vector<float> pos = {2.0f, 1.9f, -1.0f};
  EXPECT_EQ(s.Sample(pos, {}), 0);
  EXPECT_EQ(s.Sample(pos, std::vector<int32_t>{0}), 1);  // 2.0 / 1.2 = 1.67 < 1.9
  const std::vector<float> neg = {-1.0f, -1.1f};
  EXPECT_EQ(s.Sample(neg, std::vector<int32_t>{0}), 1);  // -1.0 * 1.2 = -1.2 < -1.1
  // A repeated id is penalised once, not per occurrence.
  const std::vector<float> close = {2.0f, 1.5f};
  EXPECT_EQ(s.Sample(close, std::vector<int32_t>{0, 0, 0, 0}), 0);  // 1.67 > 1.5
  // Ids outside the vocabulary are ignored.
  EXPECT_EQ(s.Sample(pos, std::vector<int32_t>{-4, 3, 1000000}), 0);
}

TEST(SamplerTest, PresenceAndFrequencyPenalties) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.presence_penalty = 0.2f;
  Sampler presence(p);
  const std::vector<float> logits = {1.0f, 0.9f};
  EXPECT_EQ(presence.Sample(logits, std::vector<int32_t>{1}), 0);
  EXPECT_EQ(presence.Sample(logits, std::vector<int32_t>{0}), 1);        // 0.8 < 0.9
  EXPECT_EQ(presence.Sample(logits, std::vector<int32_t>{0, 0, 0}), 1);  // still once: 0.8

  SamplingParams f;
  f.temperature = 0.0f;
  f.frequency_penalty = 0.1f;
  Sampler frequency(f);
  const std::vector<float> l2 = {1.0f, 0.7f};
  EXPECT_EQ(frequency.Sample(l2, std::vector<int32_t>{0, 0}), 0);        // 0.8 > 0.7
  EXPECT_EQ(frequency.Sample(l2, std::vector<int32_t>{0, 0, 0, 0}), 1);  // 0.6 < 0.7
  // Penalties also steer random sampling: a heavily penalised token disappears.
  f.temperature = 1.0f;
  f.frequency_penalty = 50.0f;
  f.seed = 23;
  EXPECT_EQ(Support(Histogram(f, {0.0f, 0.0f, 0.0f}, 2000, {2})), (std::set<int>{0, 1}));
}

TEST(SamplingParamsTest, ValidateNamesTheField) {
  EXPECT_TRUE(SamplingParams().Validate().ok());
  auto error = [](auto mutate) {
    SamplingParams p;
    mutate(p);
    const absl::Status s = p.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    return std::string(s.message());
  };
  EXPECT_THAT(error([](SamplingParams& p) { p.temperature = std::nanf(""); }), HasSubstr("temperature"));
  EXPECT_THAT(error([](SamplingParams& p) { p.temperature = kInf; }), HasSubstr("temperature"));
  EXPECT_THAT(error([](SamplingParams& p) { p.top_k = -1; }), HasSubstr("top_k"));
  EXPECT_THAT(error([](SamplingParams& p) { p.top_p = 0.0f; }), HasSubstr("top_p"));
  EXPECT_THAT(error([](SamplingParams& p) { p.top_p = 1.5f; }), HasSubstr("top_p"));
  EXPECT_THAT(error([](SamplingParams& p) { p.top_p = std::nanf(""); }), HasSubstr("top_p"));
  EXPECT_THAT(error([](SamplingParams& p) { p.min_p = -0.1f; }), HasSubstr("min_p"));
  EXPECT_THAT(error([](SamplingParams& p) { p.min_p = 1.01f; }), HasSubstr("min_p"));
  EXPECT_THAT(error([](SamplingParams& p) { p.repetition_penalty = 0.0f; }), HasSubstr("repetition_penalty"));
  EXPECT_THAT(error([](SamplingParams& p) { p.repetition_penalty = -kInf; }), HasSubstr("repetition_penalty"));
  EXPECT_THAT(error([](SamplingParams& p) { p.presence_penalty = kInf; }), HasSubstr("presence_penalty"));
  EXPECT_THAT(error([](SamplingParams& p) { p.frequency_penalty = std::nanf(""); }),
              HasSubstr("frequency_penalty"));
  // Edges that are allowed.
  SamplingParams ok;
  ok.temperature = 0.0f;
  ok.top_p = 1.0f;
  ok.min_p = 1.0f;
  ok.top_k = 0;
  ok.presence_penalty = -2.0f;
  EXPECT_TRUE(ok.Validate().ok());
}

}  // namespace
}  // namespace moed::cpu

// SlotSampler and ComputeLogprobs: greedy choice, log-softmax values, the top list's order and
// ties, penalties seen by both the draw and the reported distribution, seeded determinism.
#include "workers/sampling/slot_sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace moed::sampling {
namespace {

cpu::SamplingParams Greedy() {
  cpu::SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

TEST(SlotSamplerTest, GreedyTakesArgmaxAndReportsLogSoftmax) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f};
  SlotSampler s(Greedy());
  SampledChoice c = s.Sample(logits, 3);
  EXPECT_EQ(c.token, 1);  // lowest id among the tied best
  double sum = 0;
  for (float l : logits) sum += std::exp(l - 3.0);
  const double log_z = 3.0 + std::log(sum);
  EXPECT_NEAR(c.logprob, 3.0 - log_z, 1e-6);
  ASSERT_EQ(c.top.size(), 3u);
  EXPECT_EQ(c.top[0].first, 1);
  EXPECT_EQ(c.top[1].first, 3);
  EXPECT_EQ(c.top[2].first, 2);
  EXPECT_NEAR(c.top[2].second, 2.0 - log_z, 1e-6);
  EXPECT_FLOAT_EQ(c.top[0].second, c.logprob);
}

TEST(SlotSamplerTest, TopIsClampedAndEmptyWhenNotAsked) {
  std::vector<float> logits(50);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(i % 7);
  SlotSampler s(Greedy());
  EXPECT_TRUE(s.Sample(logits, 0).top.empty());
  SampledChoice c = s.Sample(logits, 99);
  ASSERT_EQ(c.top.size(), static_cast<size_t>(kMaxTopLogprobs));
  for (size_t i = 1; i < c.top.size(); ++i) {
    EXPECT_GE(c.top[i - 1].second, c.top[i].second);
    if (c.top[i - 1].second == c.top[i].second) {
      EXPECT_LT(c.top[i - 1].first, c.top[i].first);
    }
  }
}

TEST(SlotSamplerTest, PenaltiesShapeBothTheDrawAndTheLogprobs) {
  cpu::SamplingParams p = Greedy();
  p.repetition_penalty = 4.0f;
  p.presence_penalty = 0.5f;
  SlotSampler s(p);
  const std::vector<float> logits = {2.0f, 1.5f, -1.0f};
  const std::vector<int32_t> prompt = {0, 0, 2};
  s.Append(prompt);
  SampledChoice c = s.Sample(logits, 3);
  EXPECT_EQ(c.token, 1);  // token 0 becomes 2 / 4 - 0.5 = 0
  const std::vector<float> penalised = {0.0f, 1.5f, -4.5f};
  double sum = 0;
  for (float l : penalised) sum += std::exp(l - 1.5);
  EXPECT_NEAR(c.logprob, -std::log(sum), 1e-6);
  EXPECT_EQ(c.top[1].first, 0);
  EXPECT_NEAR(c.top[1].second, -1.5 - std::log(sum), 1e-6);
  EXPECT_EQ(s.history(), prompt);  // sampling does not append
}

TEST(SlotSamplerTest, NanAndAllMaskedLogits) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  SlotSampler s(Greedy());
  SampledChoice c = s.Sample(std::vector<float>{nan, 0.0f, nan}, 2);
  EXPECT_EQ(c.token, 1);
  EXPECT_NEAR(c.logprob, 0.0f, 1e-6);
  EXPECT_EQ(c.top[1].second, -inf);
  SampledChoice d = s.Sample(std::vector<float>{-inf, -inf}, 1);
  EXPECT_EQ(d.logprob, -inf);
}

TEST(SlotSamplerTest, GreedyWithoutPenaltiesNeedsOnlyTheRowsTop) {
  cpu::SamplingParams p = Greedy();
  EXPECT_TRUE(SlotSampler(p).needs_only_top());
  p.presence_penalty = 0.5f;
  EXPECT_FALSE(SlotSampler(p).needs_only_top());
  EXPECT_FALSE(SlotSampler(cpu::SamplingParams{}).needs_only_top());  // temperature 1 draws

  // From the row's summary, the same choice as from the row: ties, NaN and -inf included.
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::vector<float> logits(300);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>((i * 37) % 101) / 7.0f;
  logits[5] = nan, logits[7] = -inf;
  for (int top_n : {0, 1, 5, kMaxTopLogprobs}) {
    SlotSampler s(Greedy());
    const SampledChoice want = s.Sample(logits, top_n);
    const SampledChoice got = s.SampleFromTop(cpu::TopOfLogits(logits, std::max(top_n, 1)), top_n);
    EXPECT_EQ(got.token, want.token);
    EXPECT_EQ(got.logprob, want.logprob);
    EXPECT_EQ(got.top, want.top) << top_n;
  }
}

TEST(SlotSamplerTest, SameSeedSameTokens) {
  cpu::SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 1234;
  std::vector<float> logits(64);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i));
  SlotSampler a(p), b(p);
  std::vector<int32_t> ta, tb;
  for (int i = 0; i < 20; ++i) {
    ta.push_back(a.Sample(logits, 0).token);
    tb.push_back(b.Sample(logits, 0).token);
    a.Append(std::vector<int32_t>{ta.back()});
    b.Append(std::vector<int32_t>{tb.back()});
  }
  EXPECT_EQ(ta, tb);
  b.set_history({});
  EXPECT_TRUE(b.history().empty());
}

}  // namespace
}  // namespace moed::sampling

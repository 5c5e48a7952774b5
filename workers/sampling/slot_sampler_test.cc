// SlotSampler and ComputeLogprobs: greedy choice, log-softmax values, the top list's order and
// ties, penalties seen by both the draw and the reported distribution, seeded determinism.
#include "workers/sampling/slot_sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
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

// A sampler fed summaries (what a device sends) against one with the same seed fed whole rows.
void ExpectSummariesGiveWhatRowsGive(const cpu::SamplingParams& p, int top_logprobs) {
  SCOPED_TRACE(testing::Message() << "temperature " << p.temperature << " top_k " << p.top_k << " min_p " << p.min_p
                                  << " top_logprobs " << top_logprobs);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  SlotSampler from_rows(p), from_summaries(p);
  std::vector<float> logits(300);
  for (int step = 0; step < 40; ++step) {
    for (size_t i = 0; i < logits.size(); ++i) {
      logits[i] = static_cast<float>((i * 37 + static_cast<size_t>(step) * 11) % 101) / 19.0f;
    }
    logits[5] = nan, logits[7] = -inf, logits[9] = logits[10];  // NaN, -inf and ties
    const SlotSampler::RowNeeds needs = from_summaries.Prepare(static_cast<int64_t>(logits.size()), top_logprobs);
    ASSERT_TRUE(needs.summary_only);
    const cpu::TopLogits top = cpu::TopOfLogits(logits, needs.top_n);
    std::optional<cpu::Drawn> drawn;
    if (needs.draw.has_value()) drawn = cpu::DrawFromRow(logits, *needs.draw);
    const SampledChoice want = from_rows.Sample(logits, top_logprobs);
    const SampledChoice got = from_summaries.SampleFromSummary(top, drawn ? &*drawn : nullptr, top_logprobs);
    ASSERT_EQ(got.token, want.token) << "step " << step;
    EXPECT_EQ(got.logprob, want.logprob);
    EXPECT_EQ(got.top, want.top);
  }
}

TEST(SlotSamplerTest, SummariesGiveWhatRowsGive) {
  ExpectSummariesGiveWhatRowsGive(Greedy(), 0);
  ExpectSummariesGiveWhatRowsGive(Greedy(), kMaxTopLogprobs);
  cpu::SamplingParams qwen;  // Qwen3.5's suggested sampling: top-k 20 with top-p, on the summary
  qwen.temperature = 0.7f, qwen.top_k = 20, qwen.top_p = 0.8f, qwen.seed = 7;
  ExpectSummariesGiveWhatRowsGive(qwen, 0);
  ExpectSummariesGiveWhatRowsGive(qwen, 3);
  cpu::SamplingParams top_k_min_p;
  top_k_min_p.temperature = 1.5f, top_k_min_p.top_k = 5, top_k_min_p.min_p = 0.2f, top_k_min_p.seed = 8;
  ExpectSummariesGiveWhatRowsGive(top_k_min_p, 1);
  cpu::SamplingParams whole_row;  // OpenAI's defaults: the whole row, drawn where it is
  whole_row.seed = 9;
  ExpectSummariesGiveWhatRowsGive(whole_row, 0);
  whole_row.temperature = 0.6f, whole_row.min_p = 0.05f;
  ExpectSummariesGiveWhatRowsGive(whole_row, 5);
}

TEST(SlotSamplerTest, PenaltiesTopPAndLargeTopKNeedTheRow) {
  cpu::SamplingParams p = Greedy();
  EXPECT_TRUE(SlotSampler(p).Prepare(300, 0).summary_only);
  p.presence_penalty = 0.5f;
  EXPECT_FALSE(SlotSampler(p).Prepare(300, 0).summary_only);
  p = {};
  p.top_p = 0.9f;
  EXPECT_FALSE(SlotSampler(p).Prepare(300, 0).summary_only);
  p.top_k = kMaxTopLogprobs + 1;
  EXPECT_FALSE(SlotSampler(p).Prepare(300, 0).summary_only);
  p.top_k = kMaxTopLogprobs;
  const SlotSampler::RowNeeds needs = SlotSampler(p).Prepare(300, 2);
  EXPECT_TRUE(needs.summary_only);
  EXPECT_EQ(needs.top_n, kMaxTopLogprobs);
  EXPECT_FALSE(needs.draw.has_value());
  // A top-k as long as the row keeps everything: the row is drawn from as a whole.
  p.top_p = 1.0f, p.top_k = 5;
  EXPECT_TRUE(SlotSampler(p).Prepare(5, 0).draw.has_value());
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

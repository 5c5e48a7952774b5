// InProcessExecutor on the tiny-b fixture: greedy steps equal the engine's own greedy decoding,
// log-probabilities are a log-softmax of the logits, the penalties see the prompt and the
// generated tokens, seeded sampling does not depend on what else is in the step, snapshots carry
// state and penalty history, and bad calls are errors.
#include "daemon/scheduler/in_process_executor.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/sampling.h"
#include "workers/engine/loaded_model.h"
#include "workers/engine/pipeline.h"
#include "workers/sampling/slot_sampler.h"

namespace moed::daemon {
namespace {

using ::testing::HasSubstr;

std::string ModelPath() { return std::string(MOED_TEST_DATA_DIR) + "/qwen35moe-tiny/tiny-b/tiny-b-f32.gguf"; }

engine::EngineOptions Options() {
  engine::EngineOptions o;
  o.threads = 2;
  o.cache.max_slots = 4;
  o.cache.kv_block_size = 16;
  o.cache.kv_blocks = 64;
  return o;
}

std::vector<int32_t> Ids(int n, int salt) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back((i * 37 + salt * 101 + 5) % 1024);
  return ids;
}

cpu::SamplingParams Greedy() {
  cpu::SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

class InProcessExecutorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = engine::LoadModel(ModelPath());
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(m).value().release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  void SetUp() override {
    auto e = InProcessExecutor::Create(*model_, 2, Options());
    ASSERT_TRUE(e.ok()) << e.status();
    exec_ = std::move(e).value();
  }

  // Feeds `prompt` to `slot`, then n - 1 sampled tokens back; returns the n sampled tokens.
  std::vector<SampledToken> Generate(int slot, const std::vector<int32_t>& prompt, int n, int32_t top = 0) {
    std::vector<SampledToken> out;
    std::vector<StepSequence> step = {{slot, prompt, true, top}};
    for (int i = 0; i < n; ++i) {
      auto r = exec_->Step(step);
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok() || r->size() != 1) return out;
      out.push_back((*r)[0]);
      step[0].tokens = {(*r)[0].token};
    }
    return out;
  }

  static engine::LoadedModel* model_;
  std::unique_ptr<InProcessExecutor> exec_;
};

engine::LoadedModel* InProcessExecutorTest::model_ = nullptr;

TEST_F(InProcessExecutorTest, InfoDescribesTheModelAndThePool) {
  const ExecutorInfo info = exec_->info();
  EXPECT_EQ(info.slot_capacity, 4);
  EXPECT_EQ(info.n_vocab, 1024);
  EXPECT_EQ(info.n_stages, 2);
  EXPECT_EQ(info.context_length, 64 / 4 * 16);  // the pool's share per slot
}

TEST_F(InProcessExecutorTest, GreedyStepsEqualThePipelinesGreedyDecoding) {
  auto pipeline = engine::Pipeline::Create(*model_, 1, Options());
  ASSERT_TRUE(pipeline.ok());
  const std::vector<int32_t> prompt = Ids(23, 3);
  ASSERT_TRUE((*pipeline)->AcquireSlot(0).ok());
  std::vector<int32_t> want;
  std::vector<engine::SequenceStep> step = {{0, prompt, engine::LogitsWanted::kLast}};
  for (int i = 0; i < 16; ++i) {
    std::vector<float> logits;
    ASSERT_TRUE((*pipeline)->Forward(step, &logits).ok());
    want.push_back(cpu::Argmax(logits));
    step[0].tokens = {want.back()};
  }
  ASSERT_TRUE(exec_->OpenSlot(2, Greedy()).ok());
  std::vector<int32_t> got;
  for (const SampledToken& t : Generate(2, prompt, 16)) {
    EXPECT_EQ(t.slot, 2);
    got.push_back(t.token);
  }
  EXPECT_EQ(got, want);
}

TEST_F(InProcessExecutorTest, TopLogprobsAreALogSoftmaxOfTheLogits) {
  auto pipeline = engine::Pipeline::Create(*model_, 1, Options());
  ASSERT_TRUE(pipeline.ok());
  const std::vector<int32_t> prompt = Ids(9, 1);
  ASSERT_TRUE((*pipeline)->AcquireSlot(0).ok());
  std::vector<engine::SequenceStep> step = {{0, prompt, engine::LogitsWanted::kLast}};
  std::vector<float> logits;
  ASSERT_TRUE((*pipeline)->Forward(step, &logits).ok());
  double sum = 0.0;
  float max_l = logits[0];
  for (float l : logits) max_l = std::max(max_l, l);
  for (float l : logits) sum += std::exp(static_cast<double>(l - max_l));
  const double log_norm = max_l + std::log(sum);

  ASSERT_TRUE(exec_->OpenSlot(0, Greedy()).ok());
  const std::vector<SampledToken> got = Generate(0, prompt, 1, /*top=*/5);
  ASSERT_EQ(got.size(), 1u);
  const SampledToken& t = got[0];
  ASSERT_EQ(t.top.size(), 5u);
  EXPECT_EQ(t.top[0].first, t.token);  // greedy: the sampled token is the most likely
  EXPECT_FLOAT_EQ(t.top[0].second, t.logprob);
  EXPECT_NEAR(t.logprob, logits[t.token] - log_norm, 1e-4);
  for (size_t i = 1; i < t.top.size(); ++i) {
    EXPECT_LE(t.top[i].second, t.top[i - 1].second);
    EXPECT_NEAR(t.top[i].second, logits[t.top[i].first] - log_norm, 1e-4);
  }
}

TEST_F(InProcessExecutorTest, PenaltiesAndLogprobsSeeThePromptAndTheGeneratedTokens) {
  cpu::SamplingParams p = Greedy();
  p.repetition_penalty = 1.6f;
  p.frequency_penalty = 0.4f;
  p.presence_penalty = 0.2f;
  const std::vector<int32_t> prompt = Ids(15, 6);
  // Reference: the pipeline's logits, sampled with the history kept by hand.
  auto pipeline = engine::Pipeline::Create(*model_, 1, Options());
  ASSERT_TRUE(pipeline.ok());
  ASSERT_TRUE((*pipeline)->AcquireSlot(0).ok());
  cpu::Sampler sampler(p);
  std::vector<int32_t> history = prompt;
  std::vector<sampling::SampledChoice> want;
  std::vector<engine::SequenceStep> step = {{0, prompt, engine::LogitsWanted::kLast}};
  for (int i = 0; i < 12; ++i) {
    std::vector<float> logits;
    ASSERT_TRUE((*pipeline)->Forward(step, &logits).ok());
    sampling::SampledChoice c;
    c.token = sampler.Sample(logits, history);
    sampling::ComputeLogprobs(p, logits, history, c.token, 4, &c);
    want.push_back(c);
    history.push_back(c.token);
    step[0].tokens = {c.token};
  }
  ASSERT_TRUE(exec_->OpenSlot(1, p).ok());
  const std::vector<SampledToken> got = Generate(1, prompt, 12, /*top=*/4);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].token, want[i].token) << i;
    EXPECT_NEAR(got[i].logprob, want[i].logprob, 1e-5) << i;
    ASSERT_EQ(got[i].top.size(), 4u);
    for (size_t k = 0; k < 4; ++k) EXPECT_EQ(got[i].top[k].first, want[i].top[k].first) << i;
  }
}

TEST_F(InProcessExecutorTest, SeededSamplingDoesNotDependOnTheBatch) {
  cpu::SamplingParams p;
  p.temperature = 0.9f;
  p.top_k = 40;
  p.seed = 1234;
  const std::vector<int32_t> prompt = Ids(17, 5);
  ASSERT_TRUE(exec_->OpenSlot(0, p).ok());
  std::vector<int32_t> alone;
  for (const SampledToken& t : Generate(0, prompt, 12)) alone.push_back(t.token);
  ASSERT_TRUE(exec_->CloseSlot(0).ok());

  // The same request in slot 3 while two other sequences share every step.
  ASSERT_TRUE(exec_->OpenSlot(3, p).ok());
  ASSERT_TRUE(exec_->OpenSlot(1, Greedy()).ok());
  cpu::SamplingParams other = p;
  other.seed = 99;
  ASSERT_TRUE(exec_->OpenSlot(2, other).ok());
  std::vector<StepSequence> step = {{1, Ids(31, 8), true, 0}, {3, prompt, true, 2}, {2, Ids(4, 9), true, 0}};
  std::vector<int32_t> batched;
  for (int i = 0; i < 12; ++i) {
    auto r = exec_->Step(step);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->size(), 3u);
    EXPECT_EQ((*r)[1].slot, 3);
    EXPECT_EQ((*r)[1].top.size(), 2u);
    batched.push_back((*r)[1].token);
    for (size_t j = 0; j < 3; ++j) step[j].tokens = {(*r)[j].token};
  }
  EXPECT_EQ(batched, alone);
}

TEST_F(InProcessExecutorTest, SnapshotsCarryStateAndPenaltyHistory) {
  cpu::SamplingParams p = Greedy();
  p.repetition_penalty = 1.5f;
  p.frequency_penalty = 0.5f;
  const std::vector<int32_t> head = Ids(20, 2), tail = {7, 8, 9};
  std::vector<int32_t> whole = head;
  whole.insert(whole.end(), tail.begin(), tail.end());

  ASSERT_TRUE(exec_->OpenSlot(0, p).ok());
  std::vector<int32_t> cold;
  for (const SampledToken& t : Generate(0, whole, 10)) cold.push_back(t.token);

  ASSERT_TRUE(exec_->OpenSlot(1, p).ok());
  std::vector<StepSequence> prefill = {{1, head, false, 0}};
  ASSERT_TRUE(exec_->Step(prefill).ok());
  ASSERT_TRUE(exec_->SaveSnapshot(1, 42).ok());
  ASSERT_TRUE(exec_->CloseSlot(1).ok());
  ASSERT_TRUE(exec_->OpenSlot(2, p).ok());
  ASSERT_TRUE(exec_->RestoreSnapshot(2, 42).ok());
  std::vector<int32_t> warm;
  for (const SampledToken& t : Generate(2, tail, 10)) warm.push_back(t.token);
  EXPECT_EQ(warm, cold);
  EXPECT_EQ(exec_->snapshots_kept(), 1);
  ASSERT_TRUE(exec_->DropSnapshot(42).ok());
  EXPECT_EQ(exec_->snapshots_kept(), 0);
}

TEST_F(InProcessExecutorTest, BadCallsAreClearErrors) {
  EXPECT_THAT(exec_->OpenSlot(4, Greedy()).message(), HasSubstr("slot 4 is outside [0, 4)"));
  ASSERT_TRUE(exec_->OpenSlot(0, Greedy()).ok());
  EXPECT_THAT(exec_->OpenSlot(0, Greedy()).message(), HasSubstr("slot 0 is already open"));
  cpu::SamplingParams bad;
  bad.top_p = 0.0f;
  EXPECT_THAT(exec_->OpenSlot(1, bad).message(), HasSubstr("top_p"));
  EXPECT_THAT(exec_->CloseSlot(1).message(), HasSubstr("slot 1 is not open"));

  std::vector<StepSequence> closed = {{1, {5}, true, 0}};
  EXPECT_THAT(exec_->Step(closed).status().message(), HasSubstr("slot 1 is not open"));
  std::vector<StepSequence> twice = {{0, {5}, false, 0}, {0, {6}, true, 0}};
  EXPECT_THAT(exec_->Step(twice).status().message(), HasSubstr("slot 0 appears twice"));
  std::vector<StepSequence> empty = {{0, {}, true, 0}};
  EXPECT_THAT(exec_->Step(empty).status().message(), HasSubstr("no tokens"));
  std::vector<StepSequence> many = {{0, {5}, true, 21}};
  EXPECT_THAT(exec_->Step(many).status().message(), HasSubstr("top_logprobs = 21"));
  std::vector<StepSequence> vocab = {{0, {5, 1024}, true, 0}};
  EXPECT_EQ(exec_->Step(vocab).status().code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(exec_->SaveSnapshot(3, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(exec_->RestoreSnapshot(0, 77).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(exec_->DropSnapshot(77).code(), absl::StatusCode::kNotFound);

  // None of the failed steps changed slot 0: it still decodes like a fresh slot.
  ASSERT_TRUE(exec_->OpenSlot(1, Greedy()).ok());
  std::vector<StepSequence> both = {{0, {5, 6}, true, 0}, {1, {5, 6}, true, 0}};
  auto r = exec_->Step(both);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].token, (*r)[1].token);
  // More than the KV pool holds. (The engine keeps the blocks it reserved with the slot until the
  // slot closes, which is why the scheduler never asks for more than context_length per slot.)
  std::vector<StepSequence> too_long = {{0, Ids(65 * 16, 1), true, 0}};
  EXPECT_EQ(exec_->Step(too_long).status().code(), absl::StatusCode::kResourceExhausted);

  engine::EngineOptions no_room = Options();
  no_room.cache.kv_blocks = 3;
  EXPECT_THAT(InProcessExecutor::Create(*model_, 1, no_room).status().message(), HasSubstr("no KV room"));
}

}  // namespace
}  // namespace moed::daemon

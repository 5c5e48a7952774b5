// The CPU engine against HF transformers' outputs for the tiny qwen35moe fixtures
// (tests/data/qwen35moe-tiny/README.md says what "matches" means), run as 1, 2 and 3 pipeline
// stages; batching and state-slot behaviour; errors for bad input.
#include <cmath>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/sampling.h"
#include "loader/safetensors.h"
#include "workers/engine/pipeline.h"

namespace moed::engine {
namespace {

using ::testing::HasSubstr;

std::string Dir(const std::string& model) { return std::string(MOED_TEST_DATA_DIR) + "/qwen35moe-tiny/" + model; }

struct Reference {
  std::unique_ptr<SafetensorsFile> file;

  template <typename T>
  std::vector<T> Get(const std::string& name) const {
    const SafetensorsTensor* t = file->Find(name);
    EXPECT_NE(t, nullptr) << name;
    if (t == nullptr) return {};
    std::vector<T> out(t->nbytes() / sizeof(T));
    std::memcpy(out.data(), file->Data(*t).data(), t->nbytes());
    return out;
  }
};

Reference LoadReference(const std::string& model) {
  auto f = SafetensorsFile::Open(Dir(model) + "/reference.safetensors");
  EXPECT_TRUE(f.ok()) << f.status();
  return Reference{std::move(f).value()};
}

float MaxAbsDiff(const std::vector<float>& a, const float* b, size_t n) {
  float worst = 0;
  for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

EngineOptions Options() {
  EngineOptions o;
  o.threads = 2;
  o.cache.max_slots = 8;
  o.cache.kv_block_size = 16;
  o.cache.kv_blocks = 64;
  return o;
}

using Param = std::tuple<std::string, std::string, int>;  // model, type, stages

class FixtureTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    const auto& [model, type, stages] = GetParam();
    auto m = LoadModel(Dir(model) + "/" + model + "-" + type + ".gguf");
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(m).value();
    auto p = Pipeline::Create(*model_, stages, Options());
    ASSERT_TRUE(p.ok()) << p.status();
    pipeline_ = std::move(p).value();
    ref_ = LoadReference(model);
  }

  std::vector<float> Run(int slot, const std::vector<int32_t>& ids, LogitsWanted wanted) {
    std::vector<SequenceStep> step = {{slot, ids, wanted}};
    std::vector<float> logits;
    absl::Status s = pipeline_->Forward(step, &logits);
    EXPECT_TRUE(s.ok()) << s;
    return logits;
  }

  std::unique_ptr<LoadedModel> model_;
  std::unique_ptr<Pipeline> pipeline_;
  Reference ref_;
};

TEST_P(FixtureTest, UncachedLogitsMatchTransformers) {
  const int64_t V = pipeline_->n_vocab();
  for (int i = 0; i < 4; ++i) {
    const std::vector<int32_t> ids = ref_.Get<int32_t>("seq" + std::to_string(i) + ".input_ids");
    const std::vector<float> want = ref_.Get<float>("seq" + std::to_string(i) + ".logits");
    auto slot = pipeline_->AllocateSlot();
    ASSERT_TRUE(slot.ok());
    const std::vector<float> got = Run(*slot, ids, LogitsWanted::kAll);
    ASSERT_EQ(got.size(), ids.size() * V);
    EXPECT_LE(MaxAbsDiff(want, got.data(), got.size()), 5e-3f) << "seq" << i;
    ASSERT_TRUE(pipeline_->FreeSlot(*slot).ok());
  }
}

TEST_P(FixtureTest, CachedGreedyDecodeMatchesTransformers) {
  const int64_t V = pipeline_->n_vocab();
  const std::vector<int32_t> prompt = ref_.Get<int32_t>("decode.prompt_ids");
  const std::vector<int32_t> greedy = ref_.Get<int32_t>("decode.greedy_ids");
  const std::vector<float> steps = ref_.Get<float>("decode.step_logits");
  auto slot = pipeline_->AllocateSlot();
  ASSERT_TRUE(slot.ok());
  std::vector<float> logits = Run(*slot, prompt, LogitsWanted::kLast);
  for (size_t s = 0; s < greedy.size(); ++s) {
    ASSERT_EQ(logits.size(), static_cast<size_t>(V));
    EXPECT_LE(MaxAbsDiff(logits, steps.data() + s * V, V), 5e-3f) << "step " << s;
    const int32_t next = cpu::Argmax(logits);
    ASSERT_EQ(next, greedy[s]) << "step " << s;
    logits = Run(*slot, {next}, LogitsWanted::kLast);
  }
  EXPECT_LE(MaxAbsDiff(logits, steps.data() + greedy.size() * V, V), 5e-3f) << "last step";
}

INSTANTIATE_TEST_SUITE_P(Models, FixtureTest,
                         ::testing::Combine(::testing::Values("tiny-a", "tiny-b"), ::testing::Values("f32", "bf16"),
                                            ::testing::Values(1, 2, 3)),
                         [](const auto& info) {
                           std::string name = std::get<0>(info.param) + "_" + std::get<1>(info.param) + "_" +
                                              std::to_string(std::get<2>(info.param)) + "stages";
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = LoadModel(Dir("tiny-b") + "/tiny-b-f32.gguf");
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(m).value();
    auto p = Pipeline::Create(*model_, 1, Options());
    ASSERT_TRUE(p.ok()) << p.status();
    pipeline_ = std::move(p).value();
  }
  std::vector<int32_t> Ids(int n, int salt) {
    std::vector<int32_t> ids;
    for (int i = 0; i < n; ++i) ids.push_back((i * 37 + salt * 101 + 5) % 1024);
    return ids;
  }
  std::unique_ptr<LoadedModel> model_;
  std::unique_ptr<Pipeline> pipeline_;
};

TEST_F(EngineTest, RaggedBatchEqualsSeparateRuns) {
  const std::vector<int> lengths = {1, 7, 30, 65};
  std::vector<std::vector<float>> separate;
  for (size_t i = 0; i < lengths.size(); ++i) {
    auto slot = pipeline_->AllocateSlot();
    ASSERT_TRUE(slot.ok());
    std::vector<SequenceStep> step = {{*slot, Ids(lengths[i], i), LogitsWanted::kAll}};
    std::vector<float> logits;
    ASSERT_TRUE(pipeline_->Forward(step, &logits).ok());
    separate.push_back(logits);
    ASSERT_TRUE(pipeline_->FreeSlot(*slot).ok());
  }
  std::vector<SequenceStep> batch;
  for (size_t i = 0; i < lengths.size(); ++i) {
    auto slot = pipeline_->AllocateSlot();
    ASSERT_TRUE(slot.ok());
    batch.push_back({*slot, Ids(lengths[i], i), LogitsWanted::kAll});
  }
  std::vector<float> logits;
  ASSERT_TRUE(pipeline_->Forward(batch, &logits).ok());
  size_t at = 0;
  for (const auto& want : separate) {
    EXPECT_LE(MaxAbsDiff(want, logits.data() + at, want.size()), 1e-5f);
    at += want.size();
  }
  EXPECT_EQ(at, logits.size());
}

TEST_F(EngineTest, PrefillMixedWithDecodesEqualsSeparateRuns) {
  // Reference: each sequence alone (prompt, then one decode token).
  const int64_t V = pipeline_->n_vocab();
  auto run_alone = [&](const std::vector<int32_t>& prompt, int32_t next) {
    auto slot = pipeline_->AllocateSlot();
    std::vector<float> logits;
    std::vector<SequenceStep> a = {{*slot, prompt, LogitsWanted::kLast}};
    EXPECT_TRUE(pipeline_->Forward(a, &logits).ok());
    std::vector<SequenceStep> b = {{*slot, {next}, LogitsWanted::kLast}};
    EXPECT_TRUE(pipeline_->Forward(b, &logits).ok());
    EXPECT_TRUE(pipeline_->FreeSlot(*slot).ok());
    return logits;
  };
  const std::vector<float> want_a = run_alone(Ids(20, 1), 3), want_b = run_alone(Ids(9, 2), 4);
  std::vector<float> logits;
  std::vector<SequenceStep> solo = {{0, Ids(20, 1), LogitsWanted::kLast}, {1, Ids(9, 2), LogitsWanted::kLast}};
  ASSERT_TRUE(pipeline_->AllocateSlot().ok());
  ASSERT_TRUE(pipeline_->AllocateSlot().ok());
  ASSERT_TRUE(pipeline_->Forward(solo, &logits).ok());
  // Both decode while a third sequence prefills in the same step.
  ASSERT_TRUE(pipeline_->AllocateSlot().ok());
  std::vector<SequenceStep> mixed = {{0, {3}, LogitsWanted::kLast}, {2, Ids(33, 3), LogitsWanted::kNone},
                                     {1, {4}, LogitsWanted::kLast}};
  ASSERT_TRUE(pipeline_->Forward(mixed, &logits).ok());
  ASSERT_EQ(logits.size(), static_cast<size_t>(2 * V));
  EXPECT_LE(MaxAbsDiff(want_a, logits.data(), V), 1e-5f);
  EXPECT_LE(MaxAbsDiff(want_b, logits.data() + V, V), 1e-5f);
}

TEST_F(EngineTest, TopRowsAreSummariesOfTheLastRow) {
  // Two sequences with the same tokens: one returns its last row, the other that row's summary;
  // a third returns every row, which stay in `logits` around the summarised one.
  const int64_t V = pipeline_->n_vocab();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pipeline_->AllocateSlot().ok());
  std::vector<SequenceStep> step = {{0, Ids(12, 4), LogitsWanted::kLast},
                                    {1, Ids(12, 4), LogitsWanted::kTop, 7},
                                    {2, Ids(3, 5), LogitsWanted::kAll}};
  std::vector<float> logits;
  ASSERT_TRUE(pipeline_->Forward(step, &logits).ok());
  ASSERT_EQ(logits.size(), static_cast<size_t>(4 * V));
  ASSERT_EQ(pipeline_->tops().size(), 1u);
  const cpu::TopLogits want = cpu::TopOfLogits(std::span<const float>(logits.data(), V), 7);
  const cpu::TopLogits& got = pipeline_->tops()[0];
  ASSERT_EQ(got.best.size(), 7u);
  for (size_t j = 0; j < 7; ++j) {
    EXPECT_EQ(got.best[j].first, want.best[j].first);
    EXPECT_NEAR(got.best[j].second, want.best[j].second, 1e-5f);
  }
  EXPECT_NEAR(got.log_sum_exp, want.log_sum_exp, 1e-5);
  // The next step replaces the summaries; top_n is checked before anything runs.
  std::vector<SequenceStep> plain = {{0, {9}, LogitsWanted::kLast}};
  ASSERT_TRUE(pipeline_->Forward(plain, &logits).ok());
  EXPECT_TRUE(pipeline_->tops().empty());
  for (int bad : {0, cpu::kMaxTopLogits + 1}) {
    std::vector<SequenceStep> wrong = {{0, {9}, LogitsWanted::kTop, bad}};
    EXPECT_THAT(pipeline_->Forward(wrong, &logits).message(), HasSubstr("top_n"));
  }
}

TEST_F(EngineTest, SnapshotRestoreReplaysTheSameContinuation) {
  auto slot = pipeline_->AllocateSlot();
  ASSERT_TRUE(slot.ok());
  std::vector<float> logits, first, second;
  std::vector<SequenceStep> prompt = {{*slot, Ids(40, 7), LogitsWanted::kLast}};
  ASSERT_TRUE(pipeline_->Forward(prompt, &logits).ok());
  auto snap = pipeline_->Snapshot(*slot);
  ASSERT_TRUE(snap.ok());
  std::vector<SequenceStep> next = {{*slot, {11, 12, 13}, LogitsWanted::kAll}};
  ASSERT_TRUE(pipeline_->Forward(next, &first).ok());
  EXPECT_EQ(pipeline_->n_past(*slot), 43);
  ASSERT_TRUE(pipeline_->Restore(*slot, *snap).ok());
  EXPECT_EQ(pipeline_->n_past(*slot), 40);
  ASSERT_TRUE(pipeline_->Forward(next, &second).ok());
  EXPECT_EQ(first, second);
}

TEST_F(EngineTest, BadInputIsAClearError) {
  auto slot = pipeline_->AllocateSlot();
  ASSERT_TRUE(slot.ok());
  std::vector<float> logits;
  std::vector<SequenceStep> out_of_vocab = {{*slot, {5, 1024}, LogitsWanted::kLast}};
  EXPECT_THAT(pipeline_->Forward(out_of_vocab, &logits).message(), HasSubstr("token id 1024 is outside the vocabulary"));
  std::vector<SequenceStep> empty = {{*slot, {}, LogitsWanted::kLast}};
  EXPECT_THAT(pipeline_->Forward(empty, &logits).message(), HasSubstr("no tokens"));
  std::vector<SequenceStep> unknown = {{7, {5}, LogitsWanted::kLast}};
  EXPECT_THAT(pipeline_->Forward(unknown, &logits).message(), HasSubstr("slot 7 is not allocated"));
  std::vector<SequenceStep> too_long = {{*slot, Ids(64 * 16 + 1, 1), LogitsWanted::kLast}};
  EXPECT_EQ(pipeline_->Forward(too_long, &logits).code(), absl::StatusCode::kResourceExhausted);
  // A failed step changes nothing: the slot is still empty and usable.
  EXPECT_EQ(pipeline_->n_past(*slot), 0);
  std::vector<SequenceStep> fine = {{*slot, {5}, LogitsWanted::kLast}};
  EXPECT_TRUE(pipeline_->Forward(fine, &logits).ok());
  EXPECT_THAT(Pipeline::Create(*model_, 9, Options()).status().message(), HasSubstr("cannot cut 8 layers into 9"));
}

TEST(SplitLayersTest, BalancesBytesAndCoversEveryLayer) {
  auto m = LoadModel(Dir("tiny-b") + "/tiny-b-f32.gguf");
  ASSERT_TRUE(m.ok());
  for (int k = 1; k <= 8; ++k) {
    auto ranges = SplitLayers((*m)->description, k);
    ASSERT_TRUE(ranges.ok());
    ASSERT_EQ(ranges->size(), static_cast<size_t>(k));
    EXPECT_EQ(ranges->front().first, 0);
    EXPECT_EQ(ranges->back().second, 8);
    for (int i = 0; i + 1 < k; ++i) EXPECT_EQ((*ranges)[i].second, (*ranges)[i + 1].first);
  }
}

}  // namespace
}  // namespace moed::engine

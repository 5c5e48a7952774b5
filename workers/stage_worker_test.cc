// StageWorker without gRPC: two stages of the tiny fixture in one process, linked by the Unix
// socket transport, each stepped on its own thread as two worker processes would be. Checks the
// tokens and log-probabilities against the in-process engine::Pipeline, the one-frame-per-step
// protocol under errors (a failing stage tells the next one), and Load's checks and reset.
#include "workers/stage_worker.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "workers/engine/pipeline.h"

namespace moed::worker {
namespace {

using ::testing::HasSubstr;

const std::string kModel =
    std::string(MOED_TEST_DATA_DIR) + "/qwen35moe-tiny/tiny-b/tiny-b-f32.gguf";

engine::EngineOptions Engine() {
  engine::EngineOptions o;
  o.threads = 1;
  o.cache.max_slots = 4;
  o.cache.kv_block_size = 16;
  o.cache.kv_blocks = 32;
  return o;
}

class TwoStagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/moed-stage-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    configs_.resize(2);
    for (int i = 0; i < 2; ++i) {
      StageConfig& c = configs_[i];
      c.model_path = kModel;
      c.first_layer = i == 0 ? 0 : 4;
      c.last_layer = i == 0 ? 4 : 8;
      c.stage_index = i;
      c.stage_count = 2;
      c.engine = Engine();
      c.activation_timeout = absl::Seconds(10);
    }
    configs_[0].activation_next = dir_ + "/act-1.sock";
    configs_[1].activation_listen = dir_ + "/act-1.sock";
    for (int i = 0; i < 2; ++i) {
      auto facts = stages_[i].Load(configs_[i]);
      ASSERT_TRUE(facts.ok()) << facts.status();
      facts_[i] = *facts;
    }
  }
  void TearDown() override {
    unlink((dir_ + "/act-1.sock").c_str());  // stage 1's listener outlives TearDown
    rmdir(dir_.c_str());
  }

  // Runs one step on both stages at once; returns their outcomes.
  std::pair<StepOutcome, StepOutcome> Step(const std::vector<WorkerSequence>& seqs) {
    StepOutcome second;
    std::thread t([&] { second = stages_[1].Step(seqs); });
    StepOutcome first = stages_[0].Step(seqs);
    t.join();
    return {std::move(first), std::move(second)};
  }

  std::string dir_;
  std::vector<StageConfig> configs_;
  StageWorker stages_[2];
  StageFacts facts_[2];
};

TEST_F(TwoStagesTest, FactsDescribeTheStages) {
  EXPECT_EQ(facts_[0].n_vocab, 1024);
  EXPECT_EQ(facts_[0].n_embd, 96);
  EXPECT_EQ(facts_[0].n_layer, 8);
  EXPECT_EQ(facts_[0].context_length, 32 / 4 * 16);  // a slot's share of the KV blocks
  EXPECT_EQ(facts_[1].slot_capacity, 4);
  EXPECT_FALSE(facts_[0].reused_weights);
}

TEST_F(TwoStagesTest, GreedyDecodeMatchesThePipeline) {
  auto model = engine::LoadModel(kModel);
  ASSERT_TRUE(model.ok());
  auto pipeline = engine::Pipeline::Create(**model, 2, Engine());
  ASSERT_TRUE(pipeline.ok());
  ASSERT_TRUE((*pipeline)->AcquireSlot(1).ok());
  cpu::SamplingParams greedy;
  greedy.temperature = 0.0f;
  for (StageWorker& s : stages_) ASSERT_TRUE(s.OpenSlot(1, greedy).ok());

  std::vector<int32_t> feed = {5, 77, 300, 12, 9};
  for (int step = 0; step < 6; ++step) {
    auto [first, last] = Step({{1, feed, true, 3}});
    ASSERT_TRUE(first.status.ok()) << first.status;
    ASSERT_TRUE(last.status.ok()) << last.status;
    EXPECT_TRUE(first.sampled.empty());
    ASSERT_EQ(last.sampled.size(), 1u);

    std::vector<engine::SequenceStep> ref_step = {{1, feed, engine::LogitsWanted::kLast}};
    std::vector<float> logits;
    ASSERT_TRUE((*pipeline)->Forward(ref_step, &logits).ok());
    const int32_t want = cpu::Argmax(logits);
    const sampling::SampledChoice& got = last.sampled[0].choice;
    EXPECT_EQ(got.token, want) << "step " << step;
    double sum = 0;
    for (float l : logits) sum += std::exp(static_cast<double>(l) - logits[want]);
    EXPECT_NEAR(got.logprob, -std::log(sum), 1e-5);
    ASSERT_EQ(got.top.size(), 3u);
    EXPECT_EQ(got.top[0].first, want);
    feed = {got.token};
  }
}

TEST_F(TwoStagesTest, AFailingStageTellsTheNextAndFramesStayInStep) {
  cpu::SamplingParams greedy;
  greedy.temperature = 0.0f;
  for (StageWorker& s : stages_) ASSERT_TRUE(s.OpenSlot(0, greedy).ok());
  auto [first, last] = Step({{2, {1, 2}, true, 0}});  // slot 2 is not open
  EXPECT_EQ(first.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(first.upstream_failed);
  EXPECT_EQ(last.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(last.upstream_failed);
  EXPECT_THAT(std::string(last.status.message()), HasSubstr("slot 2"));

  auto [bad_top, bad_top_last] = Step({{0, {1}, true, 21}});
  EXPECT_EQ(bad_top.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(bad_top_last.upstream_failed);

  auto [ok_first, ok_last] = Step({{0, {1, 2, 3}, true, 0}});
  EXPECT_TRUE(ok_first.status.ok()) << ok_first.status;
  ASSERT_TRUE(ok_last.status.ok()) << ok_last.status;
  EXPECT_EQ(ok_last.sampled.size(), 1u);
}

TEST_F(TwoStagesTest, ADeadPreviousStageIsUnavailableForTheNext) {
  cpu::SamplingParams greedy;
  for (StageWorker& s : stages_) ASSERT_TRUE(s.OpenSlot(0, greedy).ok());
  auto [a, b] = Step({{0, {1}, true, 0}});
  ASSERT_TRUE(b.status.ok()) << b.status;
  // Reloading stage 0 drops its link to stage 1, as a restarted process would.
  ASSERT_TRUE(stages_[0].Load(configs_[0]).ok());
  StepOutcome last = stages_[1].Step(std::vector<WorkerSequence>{{0, {1}, true, 0}});
  EXPECT_EQ(last.status.code(), absl::StatusCode::kUnavailable) << last.status;
  EXPECT_FALSE(last.upstream_failed);
}

TEST_F(TwoStagesTest, InterruptEndsAStepWaitingForItsNeighbour) {
  cpu::SamplingParams greedy;
  ASSERT_TRUE(stages_[1].OpenSlot(0, greedy).ok());
  std::thread later([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    stages_[1].Interrupt();
  });
  // Stage 0 never runs this step: without the interrupt it would wait the 10 s timeout.
  StepOutcome out = stages_[1].Step(std::vector<WorkerSequence>{{0, {1}, true, 0}});
  later.join();
  EXPECT_EQ(out.status.code(), absl::StatusCode::kCancelled) << out.status;
  ASSERT_TRUE(stages_[1].Load(configs_[1]).ok());  // clears the interrupt
  ASSERT_TRUE(stages_[0].Load(configs_[0]).ok());
  for (StageWorker& s : stages_) ASSERT_TRUE(s.OpenSlot(0, greedy).ok());
  auto [first, last] = Step({{0, {1}, true, 0}});
  EXPECT_TRUE(last.status.ok()) << last.status;
}

TEST_F(TwoStagesTest, ReloadWithTheSameModelResets) {
  cpu::SamplingParams greedy;
  ASSERT_TRUE(stages_[1].OpenSlot(3, greedy).ok());
  EXPECT_EQ(stages_[1].Health().slots_in_use, 1);
  auto facts = stages_[1].Load(configs_[1]);
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_TRUE(facts->reused_weights);
  EXPECT_EQ(stages_[1].Health().slots_in_use, 0);
  EXPECT_TRUE(stages_[1].OpenSlot(3, greedy).ok());  // free again
}

TEST_F(TwoStagesTest, SlotAndSnapshotErrors) {
  cpu::SamplingParams greedy;
  EXPECT_EQ(stages_[1].OpenSlot(4, greedy).code(), absl::StatusCode::kInvalidArgument);
  cpu::SamplingParams bad;
  bad.top_p = 0.0f;
  EXPECT_EQ(stages_[1].OpenSlot(0, bad).code(),
            absl::StatusCode::kInvalidArgument);  // the last stage checks
  EXPECT_TRUE(stages_[0].OpenSlot(0, bad).ok());  // the others ignore them
  EXPECT_EQ(stages_[1].CloseSlot(1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(stages_[0].SaveSnapshot(1, 7).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(stages_[0].SaveSnapshot(0, 7).ok());
  EXPECT_EQ(stages_[0].RestoreSnapshot(0, 8).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(stages_[0].RestoreSnapshot(0, 7).ok());
  EXPECT_TRUE(stages_[0].DropSnapshot(7).ok());
  EXPECT_EQ(stages_[0].DropSnapshot(7).code(), absl::StatusCode::kNotFound);
}

TEST(StageWorkerTest, LoadErrorsNameTheProblem) {
  StageWorker w;
  EXPECT_EQ(w.Step(std::vector<WorkerSequence>{{0, {1}, true, 0}}).status.code(),
            absl::StatusCode::kFailedPrecondition);
  StageConfig c;
  c.model_path = "/nonexistent/model.gguf";
  c.first_layer = 0;
  c.last_layer = 8;
  c.engine = Engine();
  auto missing = w.Load(c);
  EXPECT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/nonexistent/model.gguf"));

  c.model_path = kModel;
  c.last_layer = 4;  // not the last layer, but no next stage given
  auto unlinked = w.Load(c);
  EXPECT_EQ(unlinked.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unlinked.status().message()), HasSubstr("activation_next"));
  EXPECT_FALSE(w.Health().loaded);

  c.last_layer = 9;
  EXPECT_EQ(w.Load(c).status().code(), absl::StatusCode::kInvalidArgument);
  c.last_layer = 8;
  c.stage_index = 2;
  EXPECT_EQ(w.Load(c).status().code(), absl::StatusCode::kInvalidArgument);
  c.stage_index = 0;
  c.engine.cache.kv_blocks = 3;  // fewer blocks than slots
  auto no_room = w.Load(c);
  EXPECT_EQ(no_room.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_room.status().message()), HasSubstr("no KV room"));
  c.engine.cache.kv_blocks = 32;
  c.engine.threads = 0;
  EXPECT_EQ(w.Load(c).status().code(), absl::StatusCode::kInvalidArgument);
  c.engine.threads = 1;
  c.device_links = true;  // NCCL links between CPU stages
  auto no_device = w.Load(c);
  EXPECT_EQ(no_device.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_device.status().message()), HasSubstr("cuda backend"));
  c.device_links = false;
  auto whole = w.Load(c);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_TRUE(w.Health().loaded);
}

}  // namespace
}  // namespace moed::worker

// Two CUDA stages on two GPUs linked over NCCL (StageWorker with device_links), each stepped on
// its own thread as two worker processes would be, against the same model as one stage on one
// GPU: the "split over 2 GPUs gives the same logits and greedy ids" on tiny-a and tiny-b.
// Skips without two CUDA devices and NCCL.
#include <cmath>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cuda/loader.h"
#include "workers/stage_worker.h"

namespace moed::worker {
namespace {

using ::testing::HasSubstr;

std::string Model(const std::string& name) {
  return std::string(MOED_TEST_DATA_DIR) + "/qwen35moe-tiny/" + name + "/" + name + "-f32.gguf";
}

absl::Status TwoGpus() {
  auto lib = cuda::CudaLibrary::Load({});
  if (!lib.ok()) return lib.status();
  if ((*lib)->device_count() < 2) return absl::UnavailableError("fewer than two CUDA devices");
  if (!(*lib)->HasNccl() || (*lib)->api().nccl_available() != 1) return absl::UnavailableError("no NCCL");
  return absl::OkStatus();
}

StageConfig Config(const std::string& model, int first, int last, int index, int count, int device) {
  StageConfig c;
  c.model_path = model;
  c.first_layer = first;
  c.last_layer = last;
  c.stage_index = index;
  c.stage_count = count;
  c.engine.backend = engine::Backend::kCuda;
  c.engine.device = device;
  c.engine.cuda_gemm = engine::CudaGemm::kF32;  // the fixtures' routers have near-ties
  c.engine.cache.max_slots = 4;
  c.engine.cache.kv_block_size = 16;
  c.engine.cache.kv_blocks = 64;
  c.activation_timeout = absl::Seconds(20);
  c.device_links = count > 1;
  return c;
}

class NcclStagesTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (absl::Status s = TwoGpus(); !s.ok()) GTEST_SKIP() << s;
    char tmpl[] = "/tmp/moed-nccl-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string model = Model(GetParam());
    const int n_layer = GetParam() == "tiny-a" ? 4 : 8;
    split_[0] = Config(model, 0, n_layer / 2, 0, 2, 0);
    split_[1] = Config(model, n_layer / 2, n_layer, 1, 2, 1);
    split_[0].activation_next = split_[1].activation_listen = dir_ + "/act.sock";
    for (int i = 0; i < 2; ++i) {
      auto facts = stages_[i].Load(split_[i]);
      ASSERT_TRUE(facts.ok()) << facts.status();
    }
    auto facts = whole_.Load(Config(model, 0, n_layer, 0, 1, 0));
    ASSERT_TRUE(facts.ok()) << facts.status();
  }
  void TearDown() override {
    if (!dir_.empty()) std::system(("rm -rf '" + dir_ + "'").c_str());
  }

  std::pair<StepOutcome, StepOutcome> SplitStep(const std::vector<WorkerSequence>& seqs) {
    StepOutcome second;
    std::thread t([&] { second = stages_[1].Step(seqs); });
    StepOutcome first = stages_[0].Step(seqs);
    t.join();
    return {std::move(first), std::move(second)};
  }
  absl::Status OpenEverywhere(int slot) {
    cpu::SamplingParams greedy;
    greedy.temperature = 0.0f;
    for (StageWorker* w : {&stages_[0], &stages_[1], &whole_}) {
      if (absl::Status s = w->OpenSlot(slot, greedy); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  std::string dir_;
  StageConfig split_[2];
  StageWorker stages_[2];
  StageWorker whole_;
};

TEST_P(NcclStagesTest, GreedyIdsAndLogprobsMatchOneGpu) {
  ASSERT_TRUE(OpenEverywhere(0).ok());
  ASSERT_TRUE(OpenEverywhere(2).ok());
  // A ragged prefill long enough for the GEMM path (20 tokens), then a batched decode.
  std::vector<int32_t> a, b = {7, 8, 9};
  for (int i = 0; i < 20; ++i) a.push_back((i * 37 + 11) % 1000);
  std::vector<WorkerSequence> step = {{0, a, true, 5}, {2, b, true, 5}};
  double worst = 0;
  for (int n = 0; n < 16; ++n) {
    auto [first, last] = SplitStep(step);
    ASSERT_TRUE(first.status.ok()) << first.status;
    ASSERT_TRUE(last.status.ok()) << last.status;
    StepOutcome ref = whole_.Step(step);
    ASSERT_TRUE(ref.status.ok()) << ref.status;
    ASSERT_EQ(last.sampled.size(), 2u);
    ASSERT_EQ(ref.sampled.size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
      const sampling::SampledChoice &got = last.sampled[i].choice, &want = ref.sampled[i].choice;
      ASSERT_EQ(got.token, want.token) << "step " << n << " sequence " << i;
      ASSERT_EQ(got.top.size(), want.top.size());
      for (size_t k = 0; k < got.top.size(); ++k) {
        EXPECT_EQ(got.top[k].first, want.top[k].first);
        worst = std::max(worst, std::abs(got.top[k].second - want.top[k].second) / (1.0 + std::abs(want.top[k].second)));
      }
    }
    step = {{0, {last.sampled[0].choice.token}, true, 5}, {2, {last.sampled[1].choice.token}, true, 5}};
  }
  EXPECT_LE(worst, 1e-3);
  std::printf("[ %s ] worst log-probability difference, 2 GPUs vs 1: %.3g (relative)\n", GetParam().c_str(), worst);
}

TEST_P(NcclStagesTest, AnErrorCrossesTheLinkAndTheNextStepWorks) {
  ASSERT_TRUE(OpenEverywhere(1).ok());
  auto [bad_first, bad_last] = SplitStep({{3, {1, 2}, true, 0}});  // slot 3 is not open
  EXPECT_EQ(bad_first.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(bad_last.upstream_failed);
  EXPECT_THAT(std::string(bad_last.status.message()), HasSubstr("slot 3"));
  auto [first, last] = SplitStep({{1, {4, 5, 6}, true, 0}});
  EXPECT_TRUE(first.status.ok()) << first.status;
  ASSERT_TRUE(last.status.ok()) << last.status;
  EXPECT_EQ(last.sampled.size(), 1u);
}

TEST_P(NcclStagesTest, AReloadedPreviousStageEndsTheWaitAndTheLinkIsRebuilt) {
  ASSERT_TRUE(OpenEverywhere(0).ok());
  auto [a, b] = SplitStep({{0, {1}, true, 0}});
  ASSERT_TRUE(b.status.ok()) << b.status;
  // Reloading stage 0 aborts its communicator and closes its socket, as a dead process would.
  ASSERT_TRUE(stages_[0].Load(split_[0]).ok());
  StepOutcome last = stages_[1].Step(std::vector<WorkerSequence>{{0, {1}, true, 0}});
  EXPECT_EQ(last.status.code(), absl::StatusCode::kUnavailable) << last.status;
  // The router then reloads every stage; the link comes back with a new communicator.
  ASSERT_TRUE(stages_[1].Load(split_[1]).ok());
  ASSERT_TRUE(OpenEverywhere(1).ok());
  auto [first, again] = SplitStep({{1, {4, 5, 6}, true, 0}});
  EXPECT_TRUE(first.status.ok()) << first.status;
  EXPECT_TRUE(again.status.ok()) << again.status;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, NcclStagesTest, ::testing::Values("tiny-a", "tiny-b"),
                         [](const auto& info) { return info.param == "tiny-a" ? "tiny_a" : "tiny_b"; });

}  // namespace
}  // namespace moed::worker

// The worker pool with real moed-worker processes on Unix sockets and the tiny qwen35moe fixture:
// 2 and 3 stages give the in-process engine::Pipeline's greedy tokens and log-probabilities (and
// its seeded samples), snapshots round-trip, validation refuses bad steps without side effects,
// a killed or frozen worker turns the next step into Unavailable (never a hang) and is restarted,
// a worker that cannot load is a clear error, and no child process outlives the pool.
#include "daemon/workers/worker_pool.h"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <future>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "daemon/metrics/moed_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "workers/engine/pipeline.h"
#include "workers/sampling/slot_sampler.h"

namespace moed::daemon {
namespace {

using ::testing::HasSubstr;

const std::string kModel =
    std::string(MOED_TEST_DATA_DIR) + "/qwen35moe-tiny/tiny-b/tiny-b-f32.gguf";

engine::StateCacheOptions Cache() {
  engine::StateCacheOptions c;
  c.max_slots = 4;
  c.kv_block_size = 16;
  c.kv_blocks = 32;
  return c;
}

std::vector<std::pair<int, int>> Split(int n_stages) {
  auto model = engine::LoadModel(kModel);
  EXPECT_TRUE(model.ok()) << model.status();
  auto ranges = engine::SplitLayers((*model)->description, n_stages);
  EXPECT_TRUE(ranges.ok()) << ranges.status();
  return *ranges;
}

WorkerPoolOptions Options(int n_stages) {
  WorkerPoolOptions o;
  o.worker_binary = std::string(MOED_BINARY_DIR) + "/workers/moed-worker";
  o.worker_log_level = "warning";
  o.model_path = kModel;
  o.stages = Split(n_stages);
  o.cache = Cache();
  o.health_interval = absl::Milliseconds(200);
  o.health_timeout = absl::Seconds(2);
  o.restart_backoff = absl::Milliseconds(10);
  o.activation_timeout = absl::Seconds(20);
  return o;
}

// Processes whose parent is this test process.
std::vector<pid_t> Children() {
  std::vector<pid_t> out;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* e = readdir(proc)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream stat(std::string("/proc/") + e->d_name + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    char state;
    int ppid = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && ppid == getpid())
      out.push_back(pid);
  }
  closedir(proc);
  return out;
}

bool Gone(pid_t pid) { return kill(pid, 0) != 0 && errno == ESRCH; }

// The state letter of /proc/PID/stat ('R', 'S', 'T' stopped, 'Z' zombie...), or 0 when gone.
char ProcState(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return 0;
  const size_t close = line.rfind(')');
  return close != std::string::npos && line.size() > close + 2 ? line[close + 2] : 0;
}

cpu::SamplingParams Greedy() {
  cpu::SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

// The same steps through the in-process engine, sampled the way the last stage samples.
class Reference {
 public:
  explicit Reference(int n_stages) {
    model_ = std::move(engine::LoadModel(kModel)).value();
    engine::EngineOptions o;
    o.threads = 1;
    o.cache = Cache();
    pipeline_ = std::move(engine::Pipeline::Create(*model_, n_stages, o)).value();
  }
  void Open(int slot, const cpu::SamplingParams& p) {
    ASSERT_TRUE(pipeline_->AcquireSlot(slot).ok());
    samplers_[slot] = std::make_unique<sampling::SlotSampler>(p);
  }
  std::vector<SampledToken> Step(const std::vector<StepSequence>& seqs,
                                 std::vector<std::vector<float>>* rows) {
    std::vector<engine::SequenceStep> steps;
    for (const StepSequence& s : seqs) {
      steps.push_back(
          {s.slot, s.tokens, s.sample ? engine::LogitsWanted::kLast : engine::LogitsWanted::kNone});
    }
    std::vector<float> logits;
    EXPECT_TRUE(pipeline_->Forward(steps, &logits).ok());
    const size_t n_vocab = static_cast<size_t>(pipeline_->n_vocab());
    std::vector<SampledToken> out;
    size_t row = 0;
    for (const StepSequence& s : seqs) {
      samplers_[s.slot]->Append(s.tokens);
      if (!s.sample) continue;
      std::span<const float> r(logits.data() + row * n_vocab, n_vocab);
      if (rows != nullptr) rows->emplace_back(r.begin(), r.end());
      sampling::SampledChoice c = samplers_[s.slot]->Sample(r, s.top_logprobs);
      out.push_back({s.slot, c.token, c.logprob, c.top});
      ++row;
    }
    return out;
  }

 private:
  std::unique_ptr<engine::LoadedModel> model_;
  std::unique_ptr<engine::Pipeline> pipeline_;
  std::map<int, std::unique_ptr<sampling::SlotSampler>> samplers_;
};

std::unique_ptr<WorkerPool> MakePool(const WorkerPoolOptions& o) {
  auto pool = WorkerPool::Create(o);
  EXPECT_TRUE(pool.ok()) << pool.status();
  return pool.ok() ? std::move(pool).value() : nullptr;
}

class PoolVsPipelineTest : public ::testing::TestWithParam<int> {};

TEST_P(PoolVsPipelineTest, GreedyTokensAndLogprobsMatch) {
  const int n_stages = GetParam();
  auto pool = MakePool(Options(n_stages));
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->info().n_stages, n_stages);
  EXPECT_EQ(pool->info().n_vocab, 1024);
  EXPECT_EQ(pool->info().slot_capacity, 4);
  EXPECT_EQ(pool->info().context_length, 32 / 4 * 16);  // a slot's share of the KV blocks
  Reference ref(n_stages);
  for (int slot : {0, 2}) {
    ASSERT_TRUE(pool->OpenSlot(slot, Greedy()).ok());
    ref.Open(slot, Greedy());
  }
  int32_t last0 = -1, last2 = -1;
  for (int i = 0; i < 10; ++i) {
    // Both sequences, then slot 2 leaves the batch, comes back without sampling, then samples.
    std::vector<StepSequence> step;
    step.push_back(i == 0 ? StepSequence{0, {11, 22, 33, 44, 55, 66, 77}, true, 5}
                          : StepSequence{0, {last0}, true, 5});
    if (i == 0) step.push_back({2, {900, 3}, true, 0});
    if ((i >= 1 && i <= 4) || i >= 8) step.push_back({2, {last2}, true, 0});
    if (i == 7) step.push_back({2, {7, 8}, false, 0});
    auto got = pool->Step(step);
    ASSERT_TRUE(got.ok()) << got.status();
    std::vector<std::vector<float>> logits;
    std::vector<SampledToken> want = ref.Step(step, &logits);
    ASSERT_EQ(got->size(), want.size());
    EXPECT_EQ((*got)[0].top.size(), 5u);
    for (size_t j = 0; j < want.size(); ++j) {
      const SampledToken& g = (*got)[j];
      EXPECT_EQ(g.slot, want[j].slot);
      // Greedy is the argmax of the in-process logits, and the log-probability their log-softmax.
      EXPECT_EQ(g.token, cpu::Argmax(logits[j])) << "step " << i;
      double sum = 0;
      for (float l : logits[j]) sum += std::exp(static_cast<double>(l) - logits[j][g.token]);
      EXPECT_NEAR(g.logprob, -std::log(sum), 1e-5);
      ASSERT_EQ(g.top.size(), want[j].top.size());
      for (size_t t = 0; t < g.top.size(); ++t) {
        EXPECT_EQ(g.top[t].first, want[j].top[t].first);
        EXPECT_NEAR(g.top[t].second, want[j].top[t].second, 1e-5);
      }
    }
    last0 = (*got)[0].token;
    if (got->size() > 1) last2 = (*got)[1].token;
  }
}

TEST_P(PoolVsPipelineTest, StepsInFlightTogetherMatchStepsOneAtATime) {
  const int n_stages = GetParam();
  auto pool = MakePool(Options(n_stages));
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->max_steps_in_flight(), n_stages);
  Reference ref(n_stages);
  for (int slot : {1, 3}) {
    ASSERT_TRUE(pool->OpenSlot(slot, Greedy()).ok());
    ref.Open(slot, Greedy());
  }
  std::vector<StepSequence> a = {{1, {5, 6, 7}, true, 2}}, b = {{3, {400, 500}, true, 2}};
  for (int i = 0; i < 6; ++i) {
    // Both started before either is finished: with two stages, stage 1 runs a while stage 0 runs b.
    ASSERT_TRUE(pool->StartStep(a).ok());
    if (n_stages > 1) {
      EXPECT_EQ(pool->StartStep(a).code(), absl::StatusCode::kInvalidArgument);  // slot 1 is in flight
      ASSERT_TRUE(pool->StartStep(b).ok());
    }
    auto got_a = pool->FinishStep();
    auto got_b = n_stages > 1 ? pool->FinishStep() : pool->Step(b);
    ASSERT_TRUE(got_a.ok()) << got_a.status();
    ASSERT_TRUE(got_b.ok()) << got_b.status();
    const std::vector<SampledToken> want_a = ref.Step(a, nullptr), want_b = ref.Step(b, nullptr);
    EXPECT_EQ((*got_a)[0].token, want_a[0].token) << "step " << i;
    EXPECT_EQ((*got_b)[0].token, want_b[0].token) << "step " << i;
    EXPECT_NEAR((*got_a)[0].logprob, want_a[0].logprob, 1e-5);
    a = {{1, {(*got_a)[0].token}, true, 2}};
    b = {{3, {(*got_b)[0].token}, true, 2}};
  }
  EXPECT_EQ(pool->FinishStep().status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(PoolVsPipelineTest, SeededSamplingWithPenaltiesMatches) {
  const int n_stages = GetParam();
  auto pool = MakePool(Options(n_stages));
  ASSERT_NE(pool, nullptr);
  Reference ref(n_stages);
  cpu::SamplingParams p;
  p.temperature = 0.9f;
  p.top_k = 50;
  p.top_p = 0.95f;
  p.repetition_penalty = 1.3f;
  p.frequency_penalty = 0.2f;
  p.seed = 1234;
  ASSERT_TRUE(pool->OpenSlot(1, p).ok());
  ref.Open(1, p);
  std::vector<StepSequence> step = {{1, {5, 6, 7, 5, 6, 7}, true, 3}};
  for (int i = 0; i < 12; ++i) {
    auto got = pool->Step(step);
    ASSERT_TRUE(got.ok()) << got.status();
    std::vector<SampledToken> want = ref.Step(step, nullptr);
    ASSERT_EQ(got->size(), 1u);
    EXPECT_EQ((*got)[0].token, want[0].token) << "step " << i;
    EXPECT_NEAR((*got)[0].logprob, want[0].logprob, 1e-5);
    step = {{1, {(*got)[0].token}, true, 3}};
  }
}

INSTANTIATE_TEST_SUITE_P(Stages, PoolVsPipelineTest, ::testing::Values(2, 3));

// Decodes `n` greedy tokens on `slot` starting by feeding `first`.
std::vector<int32_t> Decode(WorkerPool& pool, int slot, int32_t first, int n) {
  std::vector<int32_t> out;
  int32_t feed = first;
  for (int i = 0; i < n; ++i) {
    std::vector<StepSequence> step = {{slot, {feed}, true, 0}};
    auto got = pool.Step(step);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) break;
    feed = (*got)[0].token;
    out.push_back(feed);
  }
  return out;
}

TEST(WorkerPoolTest, SnapshotsRoundTrip) {
  auto pool = MakePool(Options(2));
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->OpenSlot(0, Greedy()).ok());
  std::vector<StepSequence> prompt = {
      {0, {100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 17, 18}, true, 0}};
  auto first = pool->Step(prompt);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(pool->SaveSnapshot(0, 42).ok());
  const std::vector<int32_t> continued = Decode(*pool, 0, (*first)[0].token, 6);

  // Into another slot, and back into the slot it came from.
  ASSERT_TRUE(pool->OpenSlot(1, Greedy()).ok());
  ASSERT_TRUE(pool->RestoreSnapshot(1, 42).ok());
  EXPECT_EQ(Decode(*pool, 1, (*first)[0].token, 6), continued);
  ASSERT_TRUE(pool->RestoreSnapshot(0, 42).ok());
  EXPECT_EQ(Decode(*pool, 0, (*first)[0].token, 6), continued);

  EXPECT_EQ(pool->RestoreSnapshot(0, 43).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(pool->RestoreSnapshot(3, 42).code(),
            absl::StatusCode::kInvalidArgument);  // slot not open
  EXPECT_EQ(pool->SaveSnapshot(3, 44).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(pool->DropSnapshot(42).ok());
  EXPECT_EQ(pool->DropSnapshot(42).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(pool->RestoreSnapshot(0, 42).code(), absl::StatusCode::kNotFound);
}

TEST(WorkerPoolTest, RefusedStepsChangeNothing) {
  auto pool = MakePool(Options(3));
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->OpenSlot(4, Greedy()).code(), absl::StatusCode::kInvalidArgument);
  cpu::SamplingParams bad;
  bad.top_p = 2.0f;
  EXPECT_EQ(pool->OpenSlot(0, bad).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(pool->OpenSlot(0, Greedy()).ok());
  ASSERT_TRUE(pool->OpenSlot(1, Greedy()).ok());
  EXPECT_EQ(pool->OpenSlot(0, Greedy()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->CloseSlot(2).code(), absl::StatusCode::kInvalidArgument);

  const int64_t context = pool->info().context_length;  // 128 tokens
  const std::vector<std::vector<StepSequence>> refused = {
      {},
      {{2, {1}, true, 0}},                     // not open
      {{0, {1}, true, 0}, {0, {2}, true, 0}},  // twice
      {{0, {}, true, 0}},                      // no tokens
      {{0, {1, 1024}, true, 0}},               // outside the vocabulary
      {{0, {1}, true, 21}},                    // too many alternatives
      {{1, {1}, true, 0},
       {0, std::vector<int32_t>(context + 1, 1), true, 0}},  // beyond the context
  };
  const absl::StatusCode want[] = {
      absl::StatusCode::kInvalidArgument,  absl::StatusCode::kInvalidArgument,
      absl::StatusCode::kInvalidArgument,  absl::StatusCode::kInvalidArgument,
      absl::StatusCode::kInvalidArgument,  absl::StatusCode::kInvalidArgument,
      absl::StatusCode::kResourceExhausted};
  for (size_t i = 0; i < refused.size(); ++i) {
    EXPECT_EQ(pool->Step(refused[i]).status().code(), want[i]) << "case " << i;
  }
  // The slots are still empty: the same prompt gives what a fresh pipeline gives.
  Reference ref(3);
  ref.Open(0, Greedy());
  const std::vector<StepSequence> step = {{0, {3, 1, 4, 1, 5}, true, 0}};
  auto got = pool->Step(step);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ((*got)[0].token, ref.Step(step, nullptr)[0].token);
  // A slot fills up to its context exactly; one token more is refused, and other slots still run.
  const std::vector<StepSequence> fill = {{1, std::vector<int32_t>(context - 1, 2), false, 0}};
  EXPECT_TRUE(pool->Step(fill).ok());
  EXPECT_EQ(pool->Step(std::vector<StepSequence>{{1, {7, 8}, true, 0}}).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(pool->Step(std::vector<StepSequence>{{1, {7}, true, 0}, {0, {9}, true, 0}}).ok());
}

TEST(WorkerPoolTest, KilledWorkerIsRestartedAndCounted) {
  auto metrics = std::move(metrics::MoedMetrics::Create()).value();
  WorkerPoolOptions o = Options(2);
  o.metrics = metrics.get();
  auto pool = MakePool(o);
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->OpenSlot(0, Greedy()).ok());
  const std::vector<StepSequence> prompt = {{0, {9, 8, 7, 6}, true, 0}};
  auto before = pool->Step(prompt);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(metrics->WorkerUp("1").Value(), 1.0);

  const std::vector<pid_t> pids = pool->WorkerPidsForTest();
  ASSERT_EQ(kill(pids[1], SIGKILL), 0);
  auto failed = pool->Step(std::vector<StepSequence>{{0, {(*before)[0].token}, true, 0}});
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable) << failed.status();

  ASSERT_TRUE(pool->WaitReady(absl::Seconds(60)).ok());
  EXPECT_EQ(pool->restarts(1), 1);
  EXPECT_EQ(pool->restarts(0), 0);
  EXPECT_EQ(metrics->WorkerRestarts("1").Value(), 1.0);
  EXPECT_EQ(metrics->WorkerRestarts("0").Value(), 0.0);
  EXPECT_EQ(metrics->WorkerUp("1").Value(), 1.0);
  const std::vector<pid_t> now = pool->WorkerPidsForTest();
  EXPECT_EQ(now[0], pids[0]);
  EXPECT_NE(now[1], pids[1]);
  EXPECT_TRUE(Gone(pids[1]));

  // The slot was lost with the pipeline: steps on it fail until it is closed and opened again.
  EXPECT_EQ(pool->Step(prompt).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(pool->CloseSlot(0).ok());
  ASSERT_TRUE(pool->OpenSlot(0, Greedy()).ok());
  auto after = pool->Step(prompt);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ((*after)[0].token, (*before)[0].token);
  EXPECT_GT(metrics->WorkerStep("1").Read().count, 0u);
}

TEST(WorkerPoolTest, WorkerKilledDuringAStepNeverHangs) {
  WorkerPoolOptions o = Options(2);
  o.cache.max_slots = 1;
  o.cache.kv_blocks = 128;  // one slot of 2048 tokens
  auto pool = MakePool(o);
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->OpenSlot(0, Greedy()).ok());
  const pid_t first_stage = pool->WorkerPidsForTest()[0];
  // A long prefill; stage 0 is killed while it runs (or just after, if it is quicker).
  auto running = std::async(std::launch::async, [&] {
    return pool->Step(std::vector<StepSequence>{{0, std::vector<int32_t>(2000, 5), true, 0}});
  });
  usleep(20000);
  ASSERT_EQ(kill(first_stage, SIGKILL), 0);
  auto result = running.get();
  if (result.ok()) {
    result = pool->Step(std::vector<StepSequence>{{0, {1}, true, 0}});
  }
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable) << result.status();
  ASSERT_TRUE(pool->WaitReady(absl::Seconds(60)).ok());
  EXPECT_EQ(pool->restarts(0), 1);
  EXPECT_TRUE(pool->CloseSlot(0).ok());
  ASSERT_TRUE(pool->OpenSlot(0, Greedy()).ok());
  EXPECT_TRUE(pool->Step(std::vector<StepSequence>{{0, {1, 2, 3}, true, 0}}).ok());
}

TEST(WorkerPoolTest, FrozenWorkerFailsItsHealthCheckAndIsReplaced) {
  WorkerPoolOptions o = Options(2);
  o.health_timeout = absl::Milliseconds(300);
  auto pool = MakePool(o);
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->OpenSlot(0, Greedy()).ok());
  const pid_t frozen = pool->WorkerPidsForTest()[1];
  ASSERT_EQ(kill(frozen, SIGSTOP), 0);
  // The signal takes effect asynchronously: on a loaded machine a step could otherwise slip
  // through before the stage stops.
  for (int i = 0; i < 200 && ProcState(frozen) != 'T'; ++i) usleep(10000);
  ASSERT_EQ(ProcState(frozen), 'T');
  // The step waits for the stopped stage until the supervisor kills it; then it fails.
  auto step = pool->Step(std::vector<StepSequence>{{0, {4, 5}, true, 0}});
  EXPECT_EQ(step.status().code(), absl::StatusCode::kUnavailable) << step.status();
  ASSERT_TRUE(pool->WaitReady(absl::Seconds(60)).ok());
  EXPECT_EQ(pool->restarts(1), 1);
  EXPECT_TRUE(Gone(frozen));
  EXPECT_TRUE(pool->CloseSlot(0).ok());
  ASSERT_TRUE(pool->OpenSlot(0, Greedy()).ok());
  EXPECT_TRUE(pool->Step(std::vector<StepSequence>{{0, {4, 5}, true, 0}}).ok());
}

// The alternatives to the default path: the two gRPC paths, and the channel with spinning on
// (router, workers and the activation hop).
struct StepPathCase {
  const char* name;
  StepPath path;
  absl::Duration spin;
};

class StepPathTest : public ::testing::TestWithParam<StepPathCase> {};

TEST_P(StepPathTest, GivesTheSameTokens) {
  WorkerPoolOptions o = Options(2);
  o.step_path = GetParam().path;
  o.step_spin = GetParam().spin;
  auto pool = MakePool(o);
  ASSERT_NE(pool, nullptr);
  Reference ref(2);
  ASSERT_TRUE(pool->OpenSlot(0, Greedy()).ok());
  ref.Open(0, Greedy());
  std::vector<StepSequence> step = {{0, {1, 2, 3}, true, 2}};
  for (int i = 0; i < 4; ++i) {
    auto got = pool->Step(step);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ((*got)[0].token, ref.Step(step, nullptr)[0].token);
    step = {{0, {(*got)[0].token}, true, 2}};
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, StepPathTest,
                         ::testing::Values(StepPathCase{"Stream", StepPath::kStream, absl::ZeroDuration()},
                                           StepPathCase{"Unary", StepPath::kUnary, absl::ZeroDuration()},
                                           StepPathCase{"SpinningChannel", StepPath::kChannel,
                                                        absl::Microseconds(200)}),
                         [](const ::testing::TestParamInfo<StepPathCase>& info) { return info.param.name; });

TEST(WorkerPoolTest, BadModelPathIsAClearErrorAndLeavesNoProcess) {
  WorkerPoolOptions o = Options(2);
  o.model_path = "/nonexistent/dir/model.gguf";
  auto pool = WorkerPool::Create(o);
  ASSERT_FALSE(pool.ok());
  EXPECT_THAT(std::string(pool.status().message()), HasSubstr("/nonexistent/dir/model.gguf"));
  EXPECT_THAT(std::string(pool.status().message()), HasSubstr("stage 0"));
  EXPECT_TRUE(Children().empty());
}

TEST(WorkerPoolTest, BadOptionsAndMissingBinary) {
  WorkerPoolOptions o = Options(2);
  o.stages = {{0, 4}, {5, 8}};
  EXPECT_EQ(WorkerPool::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options(2);
  o.stages = {{0, 4}, {4, 9}};  // past the model's 8 layers: the worker refuses it
  auto past = WorkerPool::Create(o);
  EXPECT_EQ(past.status().code(), absl::StatusCode::kInvalidArgument) << past.status();
  EXPECT_THAT(std::string(past.status().message()), HasSubstr("stage 1"));
  o = Options(2);
  o.worker_binary = "/nonexistent/moed-worker";
  EXPECT_EQ(WorkerPool::Create(o).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Children().empty());
}

TEST(WorkerPoolTest, AWorkerStopsWhenItsParentDies) {
  // The worker's parent is a shell that names itself as the parent and exits at once, as a
  // crashed router would (whether the worker noticed the exit or starts after it).
  char tmpl[] = "/tmp/moed-orphan-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string command = "MOED_WORKER_PARENT_PID=$$ " + std::string(MOED_BINARY_DIR) +
                              "/workers/moed-worker --listen unix:" + dir +
                              "/orphan.sock >/dev/null 2>&1 & echo $!";
  FILE* shell = popen(command.c_str(), "r");
  ASSERT_NE(shell, nullptr);
  int pid = 0;
  ASSERT_EQ(std::fscanf(shell, "%d", &pid), 1);
  pclose(shell);
  auto stopped = [pid] {
    const char state = ProcState(pid);
    return state == 0 || state == 'Z';  // gone, or exited
  };
  for (int i = 0; i < 200 && !stopped(); ++i) usleep(50000);
  EXPECT_TRUE(stopped());
  unlink((dir + "/orphan.sock").c_str());
  rmdir(dir.c_str());
}

TEST(WorkerPoolTest, ShutdownReapsEveryWorker) {
  auto pool = MakePool(Options(3));
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->OpenSlot(0, Greedy()).ok());
  ASSERT_TRUE(pool->Step(std::vector<StepSequence>{{0, {1, 2}, true, 0}}).ok());
  const std::vector<pid_t> pids = pool->WorkerPidsForTest();
  ASSERT_EQ(pids.size(), 3u);
  EXPECT_EQ(Children().size(), 3u);
  pool.reset();
  for (pid_t pid : pids) EXPECT_TRUE(Gone(pid)) << pid;
  EXPECT_TRUE(Children().empty());
}

}  // namespace
}  // namespace moed::daemon

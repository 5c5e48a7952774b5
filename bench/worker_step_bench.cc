// Router <-> worker overhead of one decode step: one token through 1 and 2 moed-worker processes
// (gRPC over Unix sockets, activations between workers over a Unix socket) against the same step
// in process (engine::Pipeline plus the last stage's sampling). Each iteration runs the pool step
// and the in-process step back to back, so both see the same machine load; the reported time is
// the pool's, and the counters give both means and their difference, and the same for medians
// (which a busy machine disturbs less):
//   overhead_us = pool_us - engine_us   (the cost of processes, RPCs and the activation socket)
//   overhead_med_us = pool_med_us - engine_med_us
// Three step paths: the step channel (framed Unix socket, what the pool uses), the gRPC Step
// stream, and one unary gRPC call per worker per step: the alternatives the channel was chosen
// over.
//
// On a virtual machine a wake-up across CPUs can cost more than the whole path (an idle vCPU
// halts; waking it takes ~20-25 us on the 2-vCPU development VM, and a step crosses CPUs two or
// three times). `taskset -c 0 worker_step_bench` keeps every process on one CPU and shows the
// path's own cost; without it the numbers follow the host's load.
//
//   build/bench/worker_step_bench --benchmark_min_time=2
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "daemon/workers/worker_pool.h"
#include "workers/engine/pipeline.h"
#include "workers/sampling/slot_sampler.h"

namespace moed {
namespace {

// $MOED_TEST_DATA_DIR and $MOED_WORKER_BINARY override the build tree's paths (running the
// benchmark on another host).
std::string Env(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : fallback;
}
const std::string kModel =
    Env("MOED_TEST_DATA_DIR", MOED_TEST_DATA_DIR) + "/qwen35moe-tiny/tiny-b/tiny-b-f32.gguf";
constexpr int kStepsPerSequence = 200;  // then the slot is refilled (outside the timing)

engine::StateCacheOptions Cache() {
  engine::StateCacheOptions c;
  c.max_slots = 2;
  c.kv_block_size = 16;
  c.kv_blocks = 64;
  return c;
}

// The in-process reference: the same stages and sampling, no processes.
struct InProcess {
  std::unique_ptr<engine::LoadedModel> model;
  std::unique_ptr<engine::Pipeline> pipeline;
  std::unique_ptr<sampling::SlotSampler> sampler;

  void Reset(const std::vector<int32_t>& prompt) {
    (void)pipeline->FreeSlot(0);
    (void)pipeline->AcquireSlot(0);
    cpu::SamplingParams greedy;
    greedy.temperature = 0.0f;
    sampler = std::make_unique<sampling::SlotSampler>(greedy);
    Step(prompt);
  }
  int32_t Step(const std::vector<int32_t>& tokens) {
    std::vector<engine::SequenceStep> step = {{0, tokens, engine::LogitsWanted::kLast}};
    std::vector<float> logits;
    (void)pipeline->Forward(step, &logits);
    sampler->Append(tokens);
    return sampler->Sample(logits, 0).token;
  }
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

void BM_DecodeStep(benchmark::State& state, daemon::StepPath path, absl::Duration spin = absl::ZeroDuration()) {
  const int n_stages = static_cast<int>(state.range(0));
  InProcess local;
  auto model = engine::LoadModel(kModel);
  if (!model.ok()) {
    state.SkipWithError(std::string(model.status().message()).c_str());
    return;
  }
  local.model = std::move(model).value();
  engine::EngineOptions engine_options;
  engine_options.threads = 1;
  engine_options.cache = Cache();
  auto pipeline = engine::Pipeline::Create(*local.model, n_stages, engine_options);
  if (!pipeline.ok()) {
    state.SkipWithError(std::string(pipeline.status().message()).c_str());
    return;
  }
  local.pipeline = std::move(pipeline).value();

  daemon::WorkerPoolOptions o;
  o.worker_binary =
      Env("MOED_WORKER_BINARY", std::string(MOED_BINARY_DIR) + "/workers/moed-worker");
  o.worker_log_level = "warning";
  o.model_path = kModel;
  o.stages = local.pipeline->ranges();
  o.cache = Cache();
  o.step_path = path;
  o.step_spin = spin;
  auto created = daemon::WorkerPool::Create(o);
  if (!created.ok()) {
    state.SkipWithError(std::string(created.status().message()).c_str());
    return;
  }
  std::unique_ptr<daemon::WorkerPool> pool = std::move(created).value();
  cpu::SamplingParams greedy;
  greedy.temperature = 0.0f;

  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8};
  int32_t pool_token = -1, local_token = -1;
  int steps = kStepsPerSequence;
  double pool_seconds = 0, local_seconds = 0;
  std::vector<double> pool_times, local_times;  // per step, for medians (robust to a busy machine)
  using Clock = std::chrono::steady_clock;
  for (auto _ : state) {
    if (steps == kStepsPerSequence) {  // refill; not timed
      (void)pool->CloseSlot(0);
      (void)pool->OpenSlot(0, greedy);
      auto first = pool->Step(std::vector<daemon::StepSequence>{{0, prompt, true, 0}});
      if (!first.ok()) {
        state.SkipWithError(std::string(first.status().message()).c_str());
        return;
      }
      pool_token = (*first)[0].token;
      local.Reset(prompt);
      steps = 0;
    }
    const auto t0 = Clock::now();
    auto got = pool->Step(std::vector<daemon::StepSequence>{{0, {pool_token}, true, 0}});
    const auto t1 = Clock::now();
    local_token = local.Step({pool_token});
    const auto t2 = Clock::now();
    if (!got.ok() || (*got)[0].token != local_token) {
      state.SkipWithError("the pool and the in-process pipeline disagree");
      return;
    }
    pool_token = (*got)[0].token;
    ++steps;
    const double pool_step = std::chrono::duration<double>(t1 - t0).count();
    const double local_step = std::chrono::duration<double>(t2 - t1).count();
    pool_seconds += pool_step;
    local_seconds += local_step;
    pool_times.push_back(pool_step);
    local_times.push_back(local_step);
    state.SetIterationTime(pool_step);
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["pool_us"] = pool_seconds / n * 1e6;
  state.counters["engine_us"] = local_seconds / n * 1e6;
  state.counters["overhead_us"] = (pool_seconds - local_seconds) / n * 1e6;
  const double pool_median = Median(pool_times), local_median = Median(local_times);
  state.counters["pool_med_us"] = pool_median * 1e6;
  state.counters["engine_med_us"] = local_median * 1e6;
  state.counters["overhead_med_us"] = (pool_median - local_median) * 1e6;
}

void BM_DecodeStepChannel(benchmark::State& state) {
  BM_DecodeStep(state, daemon::StepPath::kChannel);
}
// The channel with the router and the workers checking for data without sleeping for up to
// 200 us (WorkerPoolOptions::step_spin): what moed does when every process has a core.
void BM_DecodeStepChannelSpin(benchmark::State& state) {
  BM_DecodeStep(state, daemon::StepPath::kChannel, absl::Microseconds(200));
}
void BM_DecodeStepGrpcStream(benchmark::State& state) {
  BM_DecodeStep(state, daemon::StepPath::kStream);
}
void BM_DecodeStepGrpcUnary(benchmark::State& state) {
  BM_DecodeStep(state, daemon::StepPath::kUnary);
}

BENCHMARK(BM_DecodeStepChannel)
    ->ArgName("workers")
    ->Arg(1)
    ->Arg(2)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeStepChannelSpin)
    ->ArgName("workers")
    ->Arg(1)
    ->Arg(2)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeStepGrpcStream)
    ->ArgName("workers")
    ->Arg(1)
    ->Arg(2)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeStepGrpcUnary)
    ->ArgName("workers")
    ->Arg(1)
    ->Arg(2)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace moed

BENCHMARK_MAIN();

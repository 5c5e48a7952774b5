// Tokens/s of the CPU engine on the tiny-b fixture: prefill of a prompt (one uncached forward of
// N tokens) and cached decode (one token per step), for 1 and 2 threads.
//   build/bench/engine_bench --benchmark_counters_tabular=true
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "workers/engine/pipeline.h"

namespace moed::engine {
namespace {

std::unique_ptr<LoadedModel> Model(const std::string& type) {
  auto m = LoadModel(std::string(MOED_TEST_DATA_DIR) + "/qwen35moe-tiny/tiny-b/tiny-b-" + type + ".gguf");
  return m.ok() ? std::move(m).value() : nullptr;
}

std::unique_ptr<Pipeline> MakePipeline(const LoadedModel& model, int threads) {
  EngineOptions o;
  o.threads = threads;
  o.cache.max_slots = 2;
  o.cache.kv_blocks = 512;
  return std::move(Pipeline::Create(model, 1, o)).value();
}

std::vector<int32_t> Prompt(int n) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back((i * 7919 + 13) % 1024);
  return ids;
}

void BM_Prefill(benchmark::State& state, const std::string& type) {
  auto model = Model(type);
  if (!model) return state.SkipWithError("cannot load tiny-b");
  auto pipeline = MakePipeline(*model, static_cast<int>(state.range(1)));
  const std::vector<int32_t> ids = Prompt(static_cast<int>(state.range(0)));
  std::vector<float> logits;
  for (auto _ : state) {
    const int slot = *pipeline->AllocateSlot();
    std::vector<SequenceStep> step = {{slot, ids, LogitsWanted::kLast}};
    if (!pipeline->Forward(step, &logits).ok()) return state.SkipWithError("forward failed");
    (void)pipeline->FreeSlot(slot);
  }
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(ids.size()), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Decode(benchmark::State& state, const std::string& type) {
  auto model = Model(type);
  if (!model) return state.SkipWithError("cannot load tiny-b");
  auto pipeline = MakePipeline(*model, static_cast<int>(state.range(0)));
  int slot = *pipeline->AllocateSlot();
  std::vector<float> logits;
  std::vector<SequenceStep> prompt = {{slot, Prompt(32), LogitsWanted::kLast}};
  (void)pipeline->Forward(prompt, &logits);
  int32_t next = 1;
  for (auto _ : state) {
    if (pipeline->n_past(slot) >= 4000) {  // stay within the KV pool
      state.PauseTiming();
      (void)pipeline->FreeSlot(slot);
      slot = *pipeline->AllocateSlot();
      (void)pipeline->Forward(prompt, &logits);
      state.ResumeTiming();
    }
    std::vector<SequenceStep> step = {{slot, {next}, LogitsWanted::kLast}};
    if (!pipeline->Forward(step, &logits).ok()) return state.SkipWithError("forward failed");
    next = (next * 31 + 7) % 1024;
  }
  state.counters["tok/s"] = benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK_CAPTURE(BM_Prefill, f32, std::string("f32"))->Args({128, 1})->Args({128, 2})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Prefill, bf16, std::string("bf16"))->Args({128, 2})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Decode, f32, std::string("f32"))->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Decode, bf16, std::string("bf16"))->Arg(2)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace moed::engine

BENCHMARK_MAIN();

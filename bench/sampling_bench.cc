// Host cost of sampling one row of Qwen3.5's 248,320 logits, as the last stage's worker pays it per
// sequence and step: SlotSampler::Sample (the draw, then ComputeLogprobs) for greedy and sampled
// parameters, and cpu::TopOfLogits and cpu::DrawFromRow (what a CUDA stage computes on the device
// instead: logits_top and logits_draw, kernels/cuda/NOTES.md, sixth and seventh slices).
#include <cmath>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cpu/sampling.h"
#include "workers/sampling/slot_sampler.h"

namespace {

constexpr int64_t kVocab = 248320;

// Logits shaped like a model's: most of the mass on a few hundred tokens.
std::vector<float> Row() {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> row(kVocab);
  for (float& v : row) v = normal(rng);
  for (int i = 0; i < 300; ++i) row[(i * 7919) % kVocab] += 8.0f;
  return row;
}

void BM_Sample(benchmark::State& state, moed::cpu::SamplingParams params) {
  const std::vector<float> row = Row();
  moed::sampling::SlotSampler sampler(params);
  for (auto _ : state) benchmark::DoNotOptimize(sampler.Sample(row, 0).token);
}

moed::cpu::SamplingParams Params(float temperature, float top_p) {
  moed::cpu::SamplingParams p;
  p.temperature = temperature;
  p.top_p = top_p;
  p.seed = 1;
  return p;
}

void BM_TopOfLogits(benchmark::State& state) {
  const std::vector<float> row = Row();
  for (auto _ : state) benchmark::DoNotOptimize(moed::cpu::TopOfLogits(row, 1).best[0].first);
}

void BM_DrawFromRow(benchmark::State& state) {
  const std::vector<float> row = Row();
  moed::cpu::RowDraw draw;
  draw.u = 0.5;
  for (auto _ : state) benchmark::DoNotOptimize(moed::cpu::DrawFromRow(row, draw).id);
}

BENCHMARK_CAPTURE(BM_Sample, greedy, Params(0.0f, 1.0f))->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Sample, temperature_1, Params(1.0f, 1.0f))->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Sample, temperature_0_7_top_p_0_9, Params(0.7f, 0.9f))->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TopOfLogits)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DrawFromRow)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();

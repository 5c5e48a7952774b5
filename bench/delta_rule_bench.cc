// Throughput of the gated delta rule at the Qwen3.5-35B-A3B linear-attention shape (Hk = 16,
// Hv = 32, dk = dv = 128): the per-token recurrence against the chunked (C = 64) form, for one
// decode token and for prefills, single-threaded and on a pool of all hardware threads.
// items_per_second = tokens per second for one layer.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cpu/delta_rule.h"
#include "kernels/cpu/thread_pool.h"

namespace moed::cpu {
namespace {

constexpr DeltaRuleShape kShape{16, 32, 128, 128};

struct Data {
  std::vector<float> q, k, v, g, beta, state, out;
};

Data MakeData(int64_t n) {
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  Data d;
  auto normalised = [&](std::vector<float>& x, float scale) {
    x.resize(n * kShape.n_k_heads * kShape.dk);
    for (int64_t h = 0; h < n * kShape.n_k_heads; ++h) {
      double ss = 0.0;
      for (int64_t i = 0; i < kShape.dk; ++i)
        ss += double(x[h * kShape.dk + i] = normal(rng)) * x[h * kShape.dk + i];
      for (int64_t i = 0; i < kShape.dk; ++i)
        x[h * kShape.dk + i] *= static_cast<float>(scale / std::sqrt(ss));
    }
  };
  normalised(d.q, 1.0f / std::sqrt(128.0f));
  normalised(d.k, 1.0f);
  d.v.resize(n * kShape.n_v_heads * kShape.dv);
  for (float& x : d.v) x = normal(rng);
  d.g.resize(n * kShape.n_v_heads);
  for (float& x : d.g) x = -uni(rng);
  d.beta.resize(n * kShape.n_v_heads);
  for (float& x : d.beta) x = uni(rng);
  d.state.assign(kShape.n_v_heads * kShape.dv * kShape.dk, 0.0f);
  d.out.resize(n * kShape.n_v_heads * kShape.dv);
  return d;
}

// range(0) = tokens, range(1) = threads (0: all hardware threads).
void Run(benchmark::State& state, bool chunked) {
  const int64_t n = state.range(0);
  int threads = static_cast<int>(state.range(1));
  if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ThreadPool pool(threads);
  Data d = MakeData(n);
  for (auto _ : state) {
    if (chunked) {
      DeltaRuleChunked(kShape, n, d.q.data(), d.k.data(), d.v.data(), d.g.data(), d.beta.data(),
                       d.state.data(), d.out.data(), &pool);
    } else {
      DeltaRuleRecurrent(kShape, n, d.q.data(), d.k.data(), d.v.data(), d.g.data(), d.beta.data(),
                         d.state.data(), d.out.data(), &pool);
    }
    benchmark::DoNotOptimize(d.out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.counters["threads"] = threads;
}

void BM_DeltaRuleRecurrent(benchmark::State& state) { Run(state, false); }
void BM_DeltaRuleChunked(benchmark::State& state) { Run(state, true); }

void Args(benchmark::internal::Benchmark* b) {
  for (int64_t threads : {1, 0}) {
    for (int64_t n : {1, 64, 512}) b->Args({n, threads});
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK(BM_DeltaRuleRecurrent)->Apply(Args);
BENCHMARK(BM_DeltaRuleChunked)->Apply(Args);

}  // namespace
}  // namespace moed::cpu

BENCHMARK_MAIN();

// Throughput of the CPU MatMul on block-format weights. Decode (n_tokens = 1) is reported as GB/s
// of weight bytes read (bytes_per_second), prefill (n_tokens = 64) as GFLOP/s (the "flops"
// counter, 2 * n_in * n_out * n_tokens per product). Gaussian weights encoded by QuantizeRow, in
// two shapes: 4096 x 8192 ("big", larger than a typical last-level cache for the 8-bit types)
// and 2048 x 512 ("expert", one qwen35moe expert projection, where threading overhead shows).
// Names: BM_MatMul/<shape>/<type>/tokens:<n>/threads:<t>.
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/quants/ggml_type.h"
#include "kernels/quants/quantize.h"

namespace moed::cpu {
namespace {

struct Shape {
  const char* name;
  int64_t n_in;
  int64_t n_out;
};
constexpr Shape kShapes[] = {{"big", 4096, 8192}, {"expert", 2048, 512}};

ThreadPool& Pool(int threads) {
  static std::unique_ptr<ThreadPool> pools[9];
  if (!pools[threads]) pools[threads] = std::make_unique<ThreadPool>(threads);
  return *pools[threads];
}

const std::vector<uint8_t>& Weights(GgmlType type, const Shape& shape) {
  static std::map<std::pair<GgmlType, const Shape*>, std::vector<uint8_t>> cache;
  std::vector<uint8_t>& data = cache[{type, &shape}];
  if (data.empty()) {
    const auto row_bytes = static_cast<size_t>(RowBytes(type, shape.n_in));
    data.resize(row_bytes * static_cast<size_t>(shape.n_out));
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> row(static_cast<size_t>(shape.n_in));
    for (int64_t o = 0; o < shape.n_out; ++o) {
      for (float& v : row) v = normal(rng);
      if (!QuantizeRow(type, row.data(), data.data() + o * row_bytes, shape.n_in).ok()) std::abort();
    }
  }
  return data;
}

void BM_MatMul(benchmark::State& state, const Shape* shape, GgmlType type, int64_t n_tokens, int threads) {
  const int64_t n_in = shape->n_in, n_out = shape->n_out;
  const std::vector<uint8_t>& data = Weights(type, *shape);
  const WeightMatrix w{type, data.data(), n_in, n_out, static_cast<uint64_t>(RowBytes(type, n_in))};
  std::vector<float> x(static_cast<size_t>(n_in * n_tokens));
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (float& v : x) v = uniform(rng);
  std::vector<float> y(static_cast<size_t>(n_out * n_tokens));
  ThreadPool& pool = Pool(threads);
  for (auto _ : state) {
    const absl::Status status = MatMul(w, x.data(), n_tokens, y.data(), &pool);
    if (!status.ok()) {
      state.SkipWithError(std::string(status.message()).c_str());
      break;
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(data.size()));
  state.counters["flops"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 2.0 * static_cast<double>(n_in * n_out * n_tokens),
      benchmark::Counter::kIsRate);
}

const bool kRegistered = [] {
  for (const Shape& shape : kShapes) {
    for (const GgmlType type : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBf16, GgmlType::kQ8_0, GgmlType::kQ4_0,
                                GgmlType::kQ4_K, GgmlType::kQ5_K, GgmlType::kQ6_K, GgmlType::kIq4Xs,
                                GgmlType::kMxfp4}) {
      for (const int64_t n_tokens : {1, 64}) {
        for (const int threads : {1, 2}) {
          const std::string name = "BM_MatMul/" + std::string(shape.name) + "/" + std::string(GgmlTypeName(type)) +
                                   "/tokens:" + std::to_string(n_tokens) + "/threads:" + std::to_string(threads);
          benchmark::RegisterBenchmark(name.c_str(), BM_MatMul, &shape, type, n_tokens, threads)
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime();
        }
      }
    }
  }
  return true;
}();

}  // namespace
}  // namespace moed::cpu

BENCHMARK_MAIN();

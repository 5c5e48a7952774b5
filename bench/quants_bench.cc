// Throughput of the CPU reference (de)quantizers: DequantizeRow for every type with a CPU
// dequantizer, and QuantizeRow for the formats moed writes most (Q8_0 for activations and small
// tensors, Q4_K/Q6_K for the bulk of test models). Rows are 4096 weights, the order of a hidden
// dimension; the input is random (valid blocks for every format, as in the fixtures).
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/quants/dequantize.h"
#include "kernels/quants/ggml_type.h"
#include "kernels/quants/quantize.h"

namespace moed {
namespace {

constexpr int64_t kRow = 4096;

void BM_Dequantize(benchmark::State& state, GgmlType type) {
  const int64_t bytes = RowBytes(type, kRow);
  std::vector<uint8_t> src(static_cast<size_t>(bytes));
  std::mt19937 rng(1);
  for (uint8_t& b : src) b = static_cast<uint8_t>(rng());
  std::vector<float> dst(kRow);
  for (auto _ : state) {
    const absl::Status status = DequantizeRow(type, src.data(), dst.data(), kRow);
    if (!status.ok()) {
      state.SkipWithError(std::string(status.message()).c_str());
      break;
    }
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kRow);   // weights
  state.SetBytesProcessed(state.iterations() * bytes);  // encoded bytes read
}

void BM_Quantize(benchmark::State& state, GgmlType type) {
  std::vector<float> src(kRow);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : src) v = normal(rng);
  std::vector<uint8_t> dst(static_cast<size_t>(RowBytes(type, kRow)));
  for (auto _ : state) {
    const absl::Status status = QuantizeRow(type, src.data(), dst.data(), kRow);
    if (!status.ok()) {
      state.SkipWithError(std::string(status.message()).c_str());
      break;
    }
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kRow);
  state.SetBytesProcessed(state.iterations() * kRow * static_cast<int64_t>(sizeof(float)));
}

// One benchmark per type, named after it: BM_Dequantize/Q4_K, BM_Quantize/Q8_0, ...
const bool kRegistered = [] {
  for (const GgmlTypeTraits& t : AllGgmlTypes()) {
    if (!t.can_dequantize) continue;
    benchmark::RegisterBenchmark(("BM_Dequantize/" + std::string(t.name)).c_str(), BM_Dequantize,
                                 t.type);
  }
  for (GgmlType type : {GgmlType::kQ8_0, GgmlType::kQ4_K, GgmlType::kQ6_K}) {
    benchmark::RegisterBenchmark(("BM_Quantize/" + std::string(GgmlTypeName(type))).c_str(),
                                 BM_Quantize, type);
  }
  return true;
}();

}  // namespace
}  // namespace moed

BENCHMARK_MAIN();

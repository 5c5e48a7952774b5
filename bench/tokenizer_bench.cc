// Tokenizer encode throughput (MB/s of UTF-8 input) on the Qwen2 vocab with the qwen2 and
// qwen35 pre-tokenizers, over the llama.cpp test-tokenizer-0 inputs (English, code, CJK,
// emoji, whitespace runs) repeated to about 1 MB.
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "benchmark/benchmark.h"
#include "daemon/text/tokenizer.h"

namespace {

std::string DataPath(const std::string& name) {
  return std::string(MOED_TEST_DATA_DIR) + "/text/vocab/" + name;
}

std::string Corpus() {
  std::ifstream in(DataPath("ggml-vocab-qwen35.gguf.inp"), std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string one = ss.str();
  for (size_t p; (p = one.find("__ggml_vocab_test__")) != std::string::npos;) one.erase(p, 19);
  std::string out;
  while (!one.empty() && out.size() < (1u << 20)) out += one;
  return out;
}

void BM_Encode(benchmark::State& state, const char* vocab) {
  auto tok = moed::text::Tokenizer::FromGgufPath(DataPath(vocab));
  if (!tok.ok()) {
    state.SkipWithError(std::string(tok.status().message()).c_str());
    return;
  }
  const std::string text = Corpus();
  size_t n_tokens = 0;
  for (auto _ : state) {
    auto ids = (*tok)->Encode(text);
    n_tokens = ids.ok() ? ids->size() : 0;
    benchmark::DoNotOptimize(n_tokens);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(text.size()));
  state.counters["tokens"] = static_cast<double>(n_tokens);
}

BENCHMARK_CAPTURE(BM_Encode, qwen2, "ggml-vocab-qwen2.gguf")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, qwen35, "ggml-vocab-qwen35.gguf")->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

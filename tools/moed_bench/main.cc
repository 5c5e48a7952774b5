// moed-bench: throughput and latency of moed, printed as a markdown table.
//
//   moed-bench engine MODEL.gguf [--backend cpu|cuda] [--stages N] [--pp 512] [--tg 128]
//                                [--batched P,G,B1,B2,...] [--reps 3] [--warmup 1] [--threads T] [--device D]
//                                [--gemm f16|f32|off]  (CUDA prefill matrix products)
//   moed-bench http URL [--model NAME] [--concurrency 1,16,64] [--requests N] [--prompt-tokens P]
//                       [--max-tokens G] [--temperature T] [--api-key KEY]
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tools/moed_bench/bench.h"

int main(int argc, char** argv) {
  std::vector<std::string> argv_list(argv + 1, argv + argc);
  auto args = moed::tool::Args::Parse(argv_list, {});
  absl::Status status;
  if (!args.ok()) {
    status = args.status();
  } else if (!args->positional().empty() && args->positional()[0] == "engine") {
    status = moed::bench::RunEngineBench(*args);
  } else if (!args->positional().empty() && args->positional()[0] == "http") {
    status = moed::bench::RunHttpBench(*args);
  } else {
    std::fprintf(stderr,
                 "usage: moed-bench engine MODEL.gguf [--backend cpu|cuda] [--stages N] [--pp N,...] "
                 "[--tg N,...] [--batched P,G,B1,...] [--reps R] [--warmup 0|1]\n"
                 "       moed-bench http URL [--model NAME] [--concurrency 1,16,64] [--requests N] "
                 "[--prompt-tokens P] [--max-tokens G] [--temperature T] [--api-key KEY]\n");
    return 2;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "moed-bench: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

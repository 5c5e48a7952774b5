// moed-bench's two modes: "engine" (the stage engine in process; engine_bench.cc) and "http"
// (a concurrency sweep against a running moed; http_bench.cc).
#ifndef MOED_TOOLS_MOED_BENCH_BENCH_H_
#define MOED_TOOLS_MOED_BENCH_BENCH_H_

#include "absl/status/status.h"
#include "tools/moed_model/subcommand.h"

namespace moed::bench {

absl::Status RunEngineBench(const tool::Args& args);
absl::Status RunHttpBench(const tool::Args& args);

}  // namespace moed::bench

#endif  // MOED_TOOLS_MOED_BENCH_BENCH_H_

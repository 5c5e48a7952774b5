// moed-bench engine: the stage engine in process, measured like llama-bench (pp N: prompt
// tokens/s of one N-token prefill; tg N: tokens/s of N single-token decode steps) and like
// llama-batched-bench (B sequences each prefill P tokens, then generate G tokens together:
// prefill tokens/s and aggregate generation tokens/s). Token ids are fixed pseudo-random values;
// each decode step feeds back the argmax of its logits, taken as greedy serving takes it: from the
// row's summary (LogitsWanted::kTop), computed on the device by the CUDA backend. As llama-bench
// does, each test first runs once untimed (--warmup 0 skips it): a first run pays one-time costs
// (lazily loaded kernels, cuBLAS's first call for a shape, the capture of decode graphs).
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"
#include "tools/moed_bench/bench.h"
#include "workers/engine/pipeline.h"

namespace moed::bench {
namespace {

std::vector<int32_t> Ids(int64_t n, int64_t n_vocab, int salt) {
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 7919 + salt * 104729 + 13) % n_vocab);
  return ids;
}

struct Row {
  std::string test;
  double tokens_per_s;
  double ms;
};

class EngineBench {
 public:
  EngineBench(engine::Pipeline& p, int reps, bool warmup) : p_(p), reps_(reps), first_(warmup ? -1 : 0) {}

  // One sequence prefilling n tokens; the best of `reps` runs (run -1 is the warm-up).
  absl::StatusOr<Row> Prefill(int64_t n) {
    double best = 1e30;
    for (int r = first_; r < reps_; ++r) {
      ASSIGN_OR_RETURN(int slot, p_.AllocateSlot());
      std::vector<engine::SequenceStep> step = {{slot, Ids(n, p_.n_vocab(), r + 1), engine::LogitsWanted::kTop}};
      std::vector<float> logits;
      const absl::Time t0 = absl::Now();
      RETURN_IF_ERROR(p_.Forward(step, &logits));
      if (r >= 0) best = std::min(best, absl::ToDoubleSeconds(absl::Now() - t0));
      RETURN_IF_ERROR(p_.FreeSlot(slot));
    }
    return Row{absl::StrCat("pp", n), n / best, best * 1e3};
  }

  // B sequences prefill P tokens each (one step per sequence), then decode G steps together.
  // Returns {prefill row, generation row}; with B = 1 and P = 1 the second is llama-bench's tg G.
  absl::StatusOr<std::pair<Row, Row>> Batched(int64_t P, int64_t G, int B) {
    double best_pp = 1e30, best_tg = 1e30;
    for (int r = first_; r < reps_; ++r) {
      std::vector<int> slots;
      std::vector<int32_t> next;
      double pp = 0;
      for (int b = 0; b < B; ++b) {
        ASSIGN_OR_RETURN(int slot, p_.AllocateSlot());
        slots.push_back(slot);
        std::vector<engine::SequenceStep> step = {{slot, Ids(P, p_.n_vocab(), b + r + 1), engine::LogitsWanted::kTop}};
        std::vector<float> logits;
        const absl::Time t0 = absl::Now();
        RETURN_IF_ERROR(p_.Forward(step, &logits));
        pp += absl::ToDoubleSeconds(absl::Now() - t0);
        next.push_back(p_.tops()[0].best[0].first);
      }
      const absl::Time t0 = absl::Now();
      std::vector<float> logits;
      for (int64_t g = 0; g < G; ++g) {
        std::vector<engine::SequenceStep> step;
        for (int b = 0; b < B; ++b) step.push_back({slots[b], {next[b]}, engine::LogitsWanted::kTop});
        RETURN_IF_ERROR(p_.Forward(step, &logits));
        for (int b = 0; b < B; ++b) next[b] = p_.tops()[b].best[0].first;
      }
      if (r >= 0) {
        best_tg = std::min(best_tg, absl::ToDoubleSeconds(absl::Now() - t0));
        best_pp = std::min(best_pp, pp);
      }
      for (int slot : slots) RETURN_IF_ERROR(p_.FreeSlot(slot));
    }
    const std::string shape = absl::StrCat("P", P, " G", G, " B", B);
    return std::pair{Row{absl::StrCat(shape, " prefill"), B * P / best_pp, best_pp * 1e3},
                     Row{absl::StrCat(shape, " generate"), B * G / best_tg, best_tg * 1e3}};
  }

 private:
  engine::Pipeline& p_;
  int reps_;
  int first_;  // -1: a warm-up run first
};

absl::StatusOr<std::vector<int64_t>> IntList(const std::string& text) {
  std::vector<int64_t> out;
  for (absl::string_view piece : absl::StrSplit(Sv(text), ',', absl::SkipEmpty())) {
    int64_t v;
    if (!absl::SimpleAtoi(piece, &v) || v < 1) return absl::InvalidArgumentError(absl::StrCat("'", piece, "' is not a positive number"));
    out.push_back(v);
  }
  return out;
}

}  // namespace

absl::Status RunEngineBench(const tool::Args& args) {
  RETURN_IF_ERROR(
      args.CheckKnown({"backend", "stages", "threads", "device", "pp", "tg", "batched", "reps", "warmup", "slots", "gemm"}));
  if (args.positional().size() != 2) return absl::InvalidArgumentError("usage: moed-bench engine MODEL.gguf [flags]");
  const std::string path = args.positional()[1];
  const std::string backend = args.Get("backend").value_or("cpu");
  if (backend != "cpu" && backend != "cuda") return absl::InvalidArgumentError("--backend is cpu or cuda");
  const std::string gemm = args.Get("gemm").value_or("f16");
  if (gemm != "f16" && gemm != "f32" && gemm != "off") return absl::InvalidArgumentError("--gemm is f16, f32 or off");
  ASSIGN_OR_RETURN(int64_t stages, args.GetInt("stages", 1));
  ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads", 1));
  ASSIGN_OR_RETURN(int64_t device, args.GetInt("device", 0));
  ASSIGN_OR_RETURN(int64_t reps, args.GetInt("reps", 3));
  ASSIGN_OR_RETURN(int64_t warmup, args.GetInt("warmup", 1));
  if (reps < 1 || (warmup != 0 && warmup != 1)) return absl::InvalidArgumentError("--reps must be >= 1, --warmup 0 or 1");
  ASSIGN_OR_RETURN(std::vector<int64_t> pp, IntList(args.Get("pp").value_or("")));
  ASSIGN_OR_RETURN(std::vector<int64_t> tg, IntList(args.Get("tg").value_or("")));
  // --batched P,G,B1,B2,...
  std::vector<int64_t> batched;
  if (args.Has("batched")) {
    ASSIGN_OR_RETURN(batched, IntList(*args.Get("batched")));
    if (batched.size() < 3) return absl::InvalidArgumentError("--batched takes P,G,B1[,B2...]");
  }
  if (pp.empty() && tg.empty() && batched.empty()) pp = {512}, tg = {128};

  int64_t max_seqs = 1, max_tokens = 1;
  for (int64_t n : pp) max_tokens = std::max(max_tokens, n);
  for (int64_t n : tg) max_tokens = std::max(max_tokens, n + 1);
  if (!batched.empty()) {
    max_tokens = std::max(max_tokens, batched[0] + batched[1]);
    for (size_t i = 2; i < batched.size(); ++i) max_seqs = std::max(max_seqs, batched[i]);
  }
  ASSIGN_OR_RETURN(int64_t slots, args.GetInt("slots", max_seqs));
  engine::EngineOptions options;
  options.backend = backend == "cuda" ? engine::Backend::kCuda : engine::Backend::kCpu;
  options.device = static_cast<int>(device);
  options.cuda_gemm = gemm == "f32" ? engine::CudaGemm::kF32 : gemm == "off" ? engine::CudaGemm::kOff : engine::CudaGemm::kF16;
  options.threads = static_cast<int>(threads);
  options.cache.max_slots = static_cast<int>(slots);
  options.cache.kv_block_size = 16;
  options.cache.kv_blocks = slots * ((max_tokens + 15) / 16 + 1);

  const absl::Time load0 = absl::Now();
  ASSIGN_OR_RETURN(std::unique_ptr<engine::LoadedModel> model, engine::LoadModel(path));
  ASSIGN_OR_RETURN(std::unique_ptr<engine::Pipeline> pipeline,
                   engine::Pipeline::Create(*model, static_cast<int>(stages), options));
  std::fprintf(stderr, "loaded %s on %s (%lld stage(s)) in %.1f s\n", path.c_str(), backend.c_str(),
               static_cast<long long>(stages), absl::ToDoubleSeconds(absl::Now() - load0));

  EngineBench bench(*pipeline, static_cast<int>(reps), warmup == 1);
  std::vector<Row> rows;
  for (int64_t n : pp) {
    ASSIGN_OR_RETURN(Row r, bench.Prefill(n));
    rows.push_back(r);
  }
  for (int64_t n : tg) {
    ASSIGN_OR_RETURN(auto r, bench.Batched(1, n, 1));
    r.second.test = absl::StrCat("tg", n);
    rows.push_back(r.second);
  }
  for (size_t i = 2; i < batched.size(); ++i) {
    ASSIGN_OR_RETURN(auto r, bench.Batched(batched[0], batched[1], static_cast<int>(batched[i])));
    rows.push_back(r.first);
    rows.push_back(r.second);
  }
  std::printf("| model | backend | stages | test | tokens/s | ms |\n|---|---|---|---|---:|---:|\n");
  const std::string name = path.substr(path.find_last_of('/') + 1);
  for (const Row& r : rows) {
    std::printf("%s\n", absl::StrFormat("| %s | %s | %d | %s | %.1f | %.2f |", name, backend, stages, r.test,
                                        r.tokens_per_s, r.ms).c_str());
  }
  return absl::OkStatus();
}

}  // namespace moed::bench

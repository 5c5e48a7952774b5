// moed-model kld: how far a (quantized) model B drifts from a base model A over a token stream,
// reported the way llama-perplexity --kl-divergence does: the stream is cut into chunks of --ctx
// tokens, each run from an empty state, and the second half of every chunk is scored (the first
// half is context). Prints mean KL(A || B), top-1 agreement and the perplexity ratio PPL(B)/PPL(A).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "kernels/cpu/sampling.h"
#include "tools/moed_model/engine_args.h"

namespace moed::tool {
namespace {

// log-softmax of one row, in double.
std::vector<double> LogSoftmax(const float* x, int64_t n) {
  const float max = *std::max_element(x, x + n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - max);
  const double log_sum = std::log(sum) + max;
  std::vector<double> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] - log_sum;
  return out;
}

absl::StatusOr<std::vector<float>> ChunkLogits(EngineRun& run, const std::vector<int32_t>& ids) {
  ASSIGN_OR_RETURN(int slot, run.pipeline->AllocateSlot());
  std::vector<engine::SequenceStep> step = {{slot, ids, engine::LogitsWanted::kAll}};
  std::vector<float> logits;
  RETURN_IF_ERROR(run.pipeline->Forward(step, &logits));
  RETURN_IF_ERROR(run.pipeline->FreeSlot(slot));
  return logits;
}

absl::Status RunKld(const Args& args) {
  RETURN_IF_ERROR(args.CheckKnown({"base", "model", "ids-file", "ctx", "stages", "threads", "backend"}));
  ASSIGN_OR_RETURN(std::string base_path, args.Require("base"));
  ASSIGN_OR_RETURN(std::string model_path, args.Require("model"));
  ASSIGN_OR_RETURN(std::string ids_path, args.Require("ids-file"));
  ASSIGN_OR_RETURN(std::vector<int32_t> stream, ReadIdsFile(ids_path));
  ASSIGN_OR_RETURN(int64_t ctx, args.GetInt("ctx", 128));
  if (ctx < 4) return absl::InvalidArgumentError("--ctx must be at least 4");
  const int64_t n_chunks = static_cast<int64_t>(stream.size()) / ctx;
  if (n_chunks == 0) {
    return absl::InvalidArgumentError(absl::StrCat("the stream has ", stream.size(), " tokens, fewer than --ctx ", ctx));
  }
  ASSIGN_OR_RETURN(EngineRun base, OpenEngine(base_path, args, ctx));
  ASSIGN_OR_RETURN(EngineRun model, OpenEngine(model_path, args, ctx));
  const int64_t V = base.pipeline->n_vocab();
  if (model.pipeline->n_vocab() != V) {
    return absl::InvalidArgumentError(absl::StrCat("vocabularies differ: ", V, " vs ", model.pipeline->n_vocab()));
  }

  double kld_sum = 0, kld_sq = 0, nll_base = 0, nll_model = 0;
  int64_t scored = 0, same_top = 0;
  for (int64_t c = 0; c < n_chunks; ++c) {
    const std::vector<int32_t> ids(stream.begin() + c * ctx, stream.begin() + (c + 1) * ctx);
    ASSIGN_OR_RETURN(std::vector<float> a, ChunkLogits(base, ids));
    ASSIGN_OR_RETURN(std::vector<float> b, ChunkLogits(model, ids));
    for (int64_t i = ctx / 2; i + 1 < ctx; ++i) {
      const std::vector<double> lp = LogSoftmax(a.data() + i * V, V), lq = LogSoftmax(b.data() + i * V, V);
      double kld = 0;
      for (int64_t v = 0; v < V; ++v) kld += std::exp(lp[v]) * (lp[v] - lq[v]);
      kld_sum += kld, kld_sq += kld * kld;
      nll_base -= lp[ids[i + 1]];
      nll_model -= lq[ids[i + 1]];
      same_top += cpu::Argmax({a.data() + i * V, static_cast<size_t>(V)}) ==
                  cpu::Argmax({b.data() + i * V, static_cast<size_t>(V)});
      ++scored;
    }
  }
  const double mean = kld_sum / scored;
  const double stderr_kld = std::sqrt(std::max(0.0, kld_sq / scored - mean * mean) / scored);
  const double ppl_base = std::exp(nll_base / scored), ppl_model = std::exp(nll_model / scored);
  std::printf("chunks: %lld of %lld tokens, %lld positions scored\n", static_cast<long long>(n_chunks),
              static_cast<long long>(ctx), static_cast<long long>(scored));
  std::printf("PPL(base): %.4f\nPPL(Q): %.4f\nMean PPL(Q)/PPL(base): %.6f\n", ppl_base, ppl_model, ppl_model / ppl_base);
  std::printf("Mean KLD: %.6f ± %.6f\nSame top p: %.3f %%\n", mean, stderr_kld, 100.0 * same_top / scored);
  return absl::OkStatus();
}

MOED_SUBCOMMAND(kKld, {
    .name = "kld",
    .usage = "--base A.gguf --model B.gguf --ids-file F [--ctx N] [--stages K] [--threads N]",
    .help = "KL divergence, top-1 agreement and perplexity ratio of model B against base A over a token stream.",
    .bool_flags = {},
    .run = RunKld,
});

}  // namespace
}  // namespace moed::tool

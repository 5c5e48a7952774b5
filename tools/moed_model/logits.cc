// moed-model logits: one uncached forward of a list of token ids from an empty state; writes the
// float32 logits of every position, row-major [n_ids][n_vocab].
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "tools/moed_model/engine_args.h"

namespace moed::tool {
namespace {

absl::Status RunLogits(const Args& args) {
  RETURN_IF_ERROR(args.CheckKnown({"model", "ids", "out", "stages", "threads", "backend"}));
  ASSIGN_OR_RETURN(std::string model, args.Require("model"));
  ASSIGN_OR_RETURN(std::string ids_text, args.Require("ids"));
  ASSIGN_OR_RETURN(std::string out, args.Require("out"));
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, ParseIds(ids_text));
  ASSIGN_OR_RETURN(EngineRun run, OpenEngine(model, args, static_cast<int64_t>(ids.size())));
  ASSIGN_OR_RETURN(int slot, run.pipeline->AllocateSlot());
  std::vector<engine::SequenceStep> step = {{slot, ids, engine::LogitsWanted::kAll}};
  std::vector<float> logits;
  RETURN_IF_ERROR(run.pipeline->Forward(step, &logits));
  FILE* f = std::fopen(out.c_str(), "wb");
  if (f == nullptr) return absl::UnavailableError(absl::StrCat("cannot create ", out));
  const size_t written = std::fwrite(logits.data(), sizeof(float), logits.size(), f);
  if (std::fclose(f) != 0 || written != logits.size()) return absl::UnavailableError(absl::StrCat("writing ", out));
  std::printf("wrote %zu x %lld logits to %s\n", ids.size(), static_cast<long long>(run.pipeline->n_vocab()),
              out.c_str());
  return absl::OkStatus();
}

MOED_SUBCOMMAND(kLogits, {
    .name = "logits",
    .usage = "--model M.gguf --ids 5,17,42,... --out L.f32 [--stages K] [--threads N] [--backend cpu|cuda]",
    .help = "One uncached forward of token ids; writes float32 logits [n_ids][n_vocab].",
    .bool_flags = {},
    .run = RunLogits,
});

}  // namespace
}  // namespace moed::tool

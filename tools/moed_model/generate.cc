// moed-model generate: prefill a prompt of token ids, then N cached decode steps feeding back the
// argmax; prints the generated ids. --logits-out writes the N+1 step logits (after the prompt, then
// after each generated token), like the fixtures' decode.step_logits.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "kernels/cpu/sampling.h"
#include "tools/moed_model/engine_args.h"

namespace moed::tool {
namespace {

absl::Status RunGenerate(const Args& args) {
  RETURN_IF_ERROR(args.CheckKnown({"model", "ids", "greedy", "stages", "threads", "backend", "logits-out"}));
  ASSIGN_OR_RETURN(std::string model, args.Require("model"));
  ASSIGN_OR_RETURN(std::string ids_text, args.Require("ids"));
  ASSIGN_OR_RETURN(std::vector<int32_t> prompt, ParseIds(ids_text));
  ASSIGN_OR_RETURN(int64_t n, args.GetInt("greedy", 16));
  if (n < 0 || n > 1000000) return absl::InvalidArgumentError("--greedy must be in 0..1000000");
  ASSIGN_OR_RETURN(EngineRun run, OpenEngine(model, args, static_cast<int64_t>(prompt.size()) + n));
  ASSIGN_OR_RETURN(int slot, run.pipeline->AllocateSlot());

  FILE* logits_out = nullptr;
  if (std::optional<std::string> path = args.Get("logits-out")) {
    logits_out = std::fopen(path->c_str(), "wb");
    if (logits_out == nullptr) return absl::UnavailableError(absl::StrCat("cannot create ", *path));
  }
  std::vector<float> logits;
  std::vector<engine::SequenceStep> step = {{slot, prompt, engine::LogitsWanted::kLast}};
  std::string generated;
  absl::Status status = run.pipeline->Forward(step, &logits);
  for (int64_t i = 0; status.ok(); ++i) {
    if (logits_out != nullptr) std::fwrite(logits.data(), sizeof(float), logits.size(), logits_out);
    if (i == n) break;
    const int32_t next = cpu::Argmax(logits);
    absl::StrAppend(&generated, i ? " " : "", next);
    step = {{slot, {next}, engine::LogitsWanted::kLast}};
    status = run.pipeline->Forward(step, &logits);
  }
  if (logits_out != nullptr && std::fclose(logits_out) != 0 && status.ok()) {
    status = absl::UnavailableError("writing --logits-out");
  }
  RETURN_IF_ERROR(status);
  std::printf("%s\n", generated.c_str());
  return absl::OkStatus();
}

MOED_SUBCOMMAND(kGenerate, {
    .name = "generate",
    .usage = "--model M.gguf --ids 5,17,... --greedy N [--stages K] [--threads N] [--backend cpu|cuda] [--logits-out F.f32]",
    .help = "Prefill token ids, then N cached greedy decode steps; prints the generated ids.",
    .bool_flags = {},
    .run = RunGenerate,
});

}  // namespace
}  // namespace moed::tool

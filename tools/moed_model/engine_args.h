// Shared by the subcommands that run the engine (logits, generate, kld): token-id lists and the
// --stages / --threads / --backend options.
#ifndef MOED_TOOLS_MOED_MODEL_ENGINE_ARGS_H_
#define MOED_TOOLS_MOED_MODEL_ENGINE_ARGS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/moed_model/subcommand.h"
#include "workers/engine/pipeline.h"

namespace moed::tool {

// "5,17,42" or whitespace-separated ids. Errors name the bad entry; an empty list is an error.
absl::StatusOr<std::vector<int32_t>> ParseIds(std::string_view text);
absl::StatusOr<std::vector<int32_t>> ReadIdsFile(const std::string& path);

// A model and a pipeline over it, from --stages (default 1), --threads (default: all cores) and
// --backend (cpu, the default, or cuda).
struct EngineRun {
  std::unique_ptr<engine::LoadedModel> model;
  std::unique_ptr<engine::Pipeline> pipeline;
};
absl::StatusOr<EngineRun> OpenEngine(const std::string& path, const Args& args, int64_t max_tokens);

}  // namespace moed::tool

#endif  // MOED_TOOLS_MOED_MODEL_ENGINE_ARGS_H_

#include "tools/moed_model/engine_args.h"

#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::tool {

absl::StatusOr<std::vector<int32_t>> ParseIds(std::string_view text) {
  std::vector<int32_t> ids;
  for (absl::string_view piece : absl::StrSplit(Sv(text), absl::ByAnyChar(", \t\n\r"), absl::SkipEmpty())) {
    int32_t id;
    if (!absl::SimpleAtoi(piece, &id)) {
      return absl::InvalidArgumentError(absl::StrCat("'", piece, "' is not a token id"));
    }
    ids.push_back(id);
  }
  if (ids.empty()) return absl::InvalidArgumentError("the list of token ids is empty");
  return ids;
}

absl::StatusOr<std::vector<int32_t>> ReadIdsFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseIds(ss.str());
}

absl::StatusOr<EngineRun> OpenEngine(const std::string& path, const Args& args, int64_t max_tokens) {
  ASSIGN_OR_RETURN(int64_t stages, args.GetInt("stages", 1));
  ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads", std::max(1u, std::thread::hardware_concurrency())));
  const std::string backend = args.Get("backend").value_or("cpu");
  if (backend != "cpu" && backend != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat("--backend is cpu or cuda, not '", backend, "'"));
  }
  EngineRun run;
  ASSIGN_OR_RETURN(run.model, engine::LoadModel(path));
  engine::EngineOptions options;
  options.backend = backend == "cuda" ? engine::Backend::kCuda : engine::Backend::kCpu;
  options.threads = static_cast<int>(threads);
  options.cache.max_slots = 2;
  options.cache.kv_blocks = (max_tokens + options.cache.kv_block_size - 1) / options.cache.kv_block_size + 1;
  ASSIGN_OR_RETURN(run.pipeline, engine::Pipeline::Create(*run.model, static_cast<int>(stages), options));
  return run;
}

}  // namespace moed::tool

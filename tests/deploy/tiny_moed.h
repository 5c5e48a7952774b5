// A tiny moed deployment for the deployment tests: the `moed-model synth` tiny model (random
// weights, the real Qwen3.5 tokenizer) and a config for two CPU worker stages on a free port.
#ifndef MOED_TESTS_DEPLOY_TINY_MOED_H_
#define MOED_TESTS_DEPLOY_TINY_MOED_H_

#include <string>

#include "absl/status/statusor.h"

namespace moed::testing {

// Creates `dir` with demo.gguf and moed.yaml (admin socket in `dir`, gateway on 127.0.0.1:0);
// returns the config's path. Errors: mkdir or moed-model failed.
absl::StatusOr<std::string> PrepareTinyMoed(const std::string& dir);

// A fresh directory under the test temp dir, named after `name` and the pid. Short, because a
// Unix socket path in it must fit in sockaddr_un (108 bytes).
std::string MakeTestDir(const std::string& name);

}  // namespace moed::testing

#endif  // MOED_TESTS_DEPLOY_TINY_MOED_H_

#include "tests/deploy/tiny_moed.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace moed::testing {

std::string MakeTestDir(const std::string& name) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/", name, ".", getpid());
  std::system(absl::StrCat("rm -rf '", dir, "' && mkdir -p '", dir, "'").c_str());
  return dir;
}

absl::StatusOr<std::string> PrepareTinyMoed(const std::string& dir) {
  const std::string data = MOED_TEST_DATA_DIR;
  const std::string synth = absl::StrCat(MOED_BINARY_DIR, "/tools/moed-model synth '", dir,
                                         "/demo.gguf' --preset tiny --experts Q4_K --rest Q8_0 --vocab ", data,
                                         "/text/vocab/ggml-vocab-qwen35.gguf --chat-template ", data,
                                         "/text/templates/qwen3.5-chat-template.jinja > /dev/null");
  if (std::system(synth.c_str()) != 0) return absl::InternalError(absl::StrCat("failed: ", synth));
  const std::string config = dir + "/moed.yaml";
  std::ofstream(config) << "server:\n  listen: 127.0.0.1:0\n"
                        << "admin:\n  socket: " << dir << "/admin.sock\n"
                        << "model:\n  path: " << dir << "/demo.gguf\n  name: demo\n"
                        << "devices:\n  backends: [cpu]\n"
                        << "workers:\n  cpu_stages: 2\n  threads: 1\n  health_check_interval: 200ms\n"
                        << "scheduler:\n  max_running: 4\n  drain_timeout: 10s\n"
                        << "cache:\n  kv_block_size: 16\n  kv_blocks: 256\n";
  return config;
}

}  // namespace moed::testing

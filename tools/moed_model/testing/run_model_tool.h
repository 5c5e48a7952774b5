// The CLI tests' way to run the built `moed-model` as a program (MOED_BINARY_DIR comes from
// moed_cc_test).
#ifndef MOED_TOOLS_MOED_MODEL_TESTING_RUN_MODEL_TOOL_H_
#define MOED_TOOLS_MOED_MODEL_TESTING_RUN_MODEL_TOOL_H_

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace moed::testing {

struct ToolResult {
  int exit_code = -1;  // -1 when the tool did not exit normally
  std::string output;  // stdout, then stderr unless left out
};

// Runs a shell command line and collects its stdout.
inline ToolResult RunCommand(const std::string& command) {
  ToolResult r;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return r;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0;) r.output.append(buffer, n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Runs `moed-model <args>` (args are passed to the shell as they are).
inline ToolResult RunModelTool(const std::string& args, bool with_stderr = true) {
  return RunCommand(std::string(MOED_BINARY_DIR) + "/tools/moed-model " + args +
                    (with_stderr ? " 2>&1" : " 2>/dev/null"));
}

}  // namespace moed::testing

#endif  // MOED_TOOLS_MOED_MODEL_TESTING_RUN_MODEL_TOOL_H_

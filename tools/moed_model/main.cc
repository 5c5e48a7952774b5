// moed-model: the model-file tool. Each subcommand lives in its own file and registers itself
// (subcommand.h); this file only dispatches and turns a Status into an exit code.
#include <cstdio>
#include <string>
#include <vector>

#include "tools/moed_model/subcommand.h"

namespace {

void PrintUsage(FILE* out) {
  std::fprintf(out, "usage: moed-model <subcommand> [args]\n\nsubcommands:\n");
  for (const auto& [name, sub] : moed::tool::Subcommands()) {
    std::fprintf(out, "  %-14s %.*s\n", std::string(name).c_str(), static_cast<int>(sub.help.size()),
                 sub.help.data());
  }
  std::fprintf(out, "\n'moed-model <subcommand> --help' shows its arguments.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    PrintUsage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const auto& subs = moed::tool::Subcommands();
  auto it = subs.find(argv[1]);
  if (it == subs.end()) {
    std::fprintf(stderr, "moed-model: unknown subcommand '%s'\n\n", argv[1]);
    PrintUsage(stderr);
    return 2;
  }
  const moed::tool::Subcommand& sub = it->second;
  std::vector<std::string> rest(argv + 2, argv + argc);
  if (!rest.empty() && rest[0] == "--help") {
    std::printf("usage: moed-model %.*s %.*s\n\n%.*s\n", static_cast<int>(sub.name.size()), sub.name.data(),
                static_cast<int>(sub.usage.size()), sub.usage.data(), static_cast<int>(sub.help.size()),
                sub.help.data());
    return 0;
  }
  auto args = moed::tool::Args::Parse(rest, sub.bool_flags);
  absl::Status status = args.ok() ? sub.run(*args) : args.status();
  if (!status.ok()) {
    std::fprintf(stderr, "moed-model %s: %s\n", argv[1], std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

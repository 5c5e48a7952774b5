// moed-model chat-template: renders a conversation with a model's chat template (or a template
// file) exactly as the server does, including the ChatML fallback with its warning.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "daemon/text/chat_template.h"
#include "kernels/base/status_macros.h"
#include "loader/gguf/gguf_file.h"
#include "tools/moed_model/subcommand.h"

namespace moed::tool {
namespace {

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status RunChatTemplate(const Args& args) {
  RETURN_IF_ERROR(args.CheckKnown({"model", "template", "input"}));
  ASSIGN_OR_RETURN(std::string input_path, args.Require("input"));
  if (args.Has("model") == args.Has("template")) {
    return absl::InvalidArgumentError("give exactly one of --model M.gguf and --template T.jinja");
  }
  ASSIGN_OR_RETURN(std::string input_text, ReadWholeFile(input_path));
  auto input = nlohmann::ordered_json::parse(input_text, nullptr, false);
  if (input.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(input_path, " is not valid JSON"));
  // Also accept a test case file ({"template": ..., "input": {...}}).
  if (input.is_object() && !input.contains("messages") && input.contains("input")) {
    input = nlohmann::ordered_json(input["input"]);
  }
  std::unique_ptr<text::ChatTemplate> tmpl;
  std::string warning;
  if (args.Has("model")) {
    ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Open(*args.Get("model")));
    tmpl = text::LoadChatTemplate(*file, &warning);
  } else {
    const std::string path = *args.Get("template");
    ASSIGN_OR_RETURN(std::string source, ReadWholeFile(path));
    tmpl = text::ChatTemplateOrChatMl(source, path, {}, &warning);
  }
  ASSIGN_OR_RETURN(std::string out, tmpl->Render(input));
  std::fwrite(out.data(), 1, out.size(), stdout);
  return absl::OkStatus();
}

MOED_SUBCOMMAND(kChatTemplate,
                {"chat-template", "(--model M.gguf | --template T.jinja) --input CASE.json",
                 "render a conversation ({messages, tools?, add_generation_prompt?, enable_thinking?, ...}) "
                 "with the chat template, as the server does",
                 {},
                 RunChatTemplate});

}  // namespace
}  // namespace moed::tool

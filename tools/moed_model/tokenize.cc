// moed-model tokenize: the token ids of a text file under a model's tokenizer, space-separated.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "daemon/text/tokenizer.h"
#include "kernels/base/status_macros.h"
#include "tools/moed_model/subcommand.h"

namespace moed::tool {
namespace {

absl::Status RunTokenize(const Args& args) {
  RETURN_IF_ERROR(args.CheckKnown({"model", "text-file", "parse-special", "add-special"}));
  ASSIGN_OR_RETURN(std::string model, args.Require("model"));
  ASSIGN_OR_RETURN(std::string path, args.Require("text-file"));
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  ASSIGN_OR_RETURN(auto tokenizer, text::Tokenizer::FromGgufPath(model));
  text::EncodeOptions options;
  options.parse_special = args.Has("parse-special");
  options.add_special = args.Has("add-special");
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer->Encode(ss.str(), options));
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) absl::StrAppend(&out, i ? " " : "", ids[i]);
  out += "\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  return absl::OkStatus();
}

MOED_SUBCOMMAND(kTokenize,
                {"tokenize", "--model M.gguf --text-file F [--parse-special] [--add-special]",
                 "print the token ids of a text file, separated by spaces (control tokens in the "
                 "text are matched only with --parse-special)",
                 {"parse-special", "add-special"},
                 RunTokenize});

}  // namespace
}  // namespace moed::tool

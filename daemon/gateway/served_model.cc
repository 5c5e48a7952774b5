// Loading a model's tokenizer and chat template for the gateway (see served_model.h).
#include "daemon/gateway/served_model.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "loader/gguf/gguf_file.h"

namespace moed::gateway {

absl::StatusOr<ModelText> LoadModelText(const std::string& gguf_path,
                                        const std::string& chat_template_file) {
  ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> file, gguf::GgufFile::Open(gguf_path));
  ModelText out;
  ASSIGN_OR_RETURN(std::unique_ptr<text::Tokenizer> tokenizer, text::Tokenizer::FromGguf(*file));
  std::string warning;
  if (chat_template_file.empty()) {
    out.chat_template = text::LoadChatTemplate(*file, &warning);
  } else {
    std::ifstream in(chat_template_file, std::ios::binary);
    if (!in) {
      return absl::NotFoundError(absl::StrCat("chat template file ", chat_template_file,
                                              ": cannot open"));
    }
    std::ostringstream source;
    source << in.rdbuf();
    text::ChatTemplateOptions options;
    if (tokenizer->bos_id() >= 0) options.bos_token = tokenizer->token_text(tokenizer->bos_id());
    if (tokenizer->eos_id() >= 0) options.eos_token = tokenizer->token_text(tokenizer->eos_id());
    out.chat_template =
        text::ChatTemplateOrChatMl(source.str(), chat_template_file, options, &warning);
  }
  out.tokenizer = std::move(tokenizer);
  return out;
}

}  // namespace moed::gateway

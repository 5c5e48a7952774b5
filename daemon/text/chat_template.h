// Chat templates: renders an OpenAI-style conversation into the prompt text the way HF
// transformers' apply_chat_template does (messages, tools, add_generation_prompt, extra
// template kwargs such as enable_thinking, raise_exception and strftime_now as globals).
//
// A template the engine cannot parse is reported at load with its line and column; the
// caller can then use the built-in ChatML renderer (ChatTemplate::ChatMl) and must log that
// it did (LoadChatTemplate does both).
#ifndef MOED_DAEMON_TEXT_CHAT_TEMPLATE_H_
#define MOED_DAEMON_TEXT_CHAT_TEMPLATE_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "daemon/text/jinja/template.h"
#include "nlohmann/json.hpp"

namespace moed::gguf {
class GgufFile;
}

namespace moed::text {

struct ChatTemplateOptions {
  std::string bos_token;  // passed to the template as bos_token / eos_token, as HF does
  std::string eos_token;
  jinja::Limits limits;
};

class ChatTemplate {
 public:
  // Parses a Jinja chat template.
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Parse(std::string_view source,
                                                             ChatTemplateOptions options = {});
  // The built-in ChatML renderer (<|im_start|>role\ncontent<|im_end|>\n ...).
  static std::unique_ptr<ChatTemplate> ChatMl(ChatTemplateOptions options = {});

  // Renders {"messages": [...], "tools": [...]?, "add_generation_prompt": bool?, ...}; every
  // other top-level key is passed as a template variable (chat_template_kwargs). Tool-call
  // arguments given as JSON strings (OpenAI wire format) are parsed into objects first, since
  // templates iterate over them. Errors: kTemplateRaised (jinja::kTemplateRaised) with the
  // template's own message for raise_exception(), InvalidArgument otherwise.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& input) const;

  bool is_chatml_fallback() const { return template_ == nullptr; }

 private:
  ChatTemplate() = default;
  absl::StatusOr<std::string> RenderChatMl(const nlohmann::ordered_json& input) const;

  std::unique_ptr<jinja::Template> template_;
  ChatTemplateOptions options_;
};

// What a model load does: the GGUF's tokenizer.chat_template (bos/eos token text from the
// vocab), or ChatML with a logged warning naming the reason (no template, or the template's
// parse error with line and column). `warning` receives that reason (empty when the model's
// own template is used).
std::unique_ptr<ChatTemplate> LoadChatTemplate(const gguf::GgufFile& file, std::string* warning);

// Same for a template source (e.g. --chat-template-file); `source_name` is used in the warning.
std::unique_ptr<ChatTemplate> ChatTemplateOrChatMl(std::string_view source,
                                                   std::string_view source_name,
                                                   ChatTemplateOptions options,
                                                   std::string* warning);

}  // namespace moed::text

#endif  // MOED_DAEMON_TEXT_CHAT_TEMPLATE_H_

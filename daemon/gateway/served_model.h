// The model the gateway serves: its public id, the text stack that turns requests into tokens
// and tokens into text, and the backend that generates. Handlers hold a shared_ptr for the whole
// request, so the daemon can swap models (phase switch, reload) while requests are in flight.
#ifndef MOED_DAEMON_GATEWAY_SERVED_MODEL_H_
#define MOED_DAEMON_GATEWAY_SERVED_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "daemon/gateway/generation_backend.h"
#include "daemon/text/chat_template.h"
#include "daemon/text/reasoning_parser.h"
#include "daemon/text/tokenizer.h"

namespace moed::gateway {

struct ServedModel {
  std::string id;            // "model" in requests and /v1/models
  int64_t created = 0;       // unix seconds, for /v1/models
  int64_t context_length = 0;  // tokens per sequence (prompt + completion)
  std::shared_ptr<const text::Tokenizer> tokenizer;
  std::shared_ptr<const text::ChatTemplate> chat_template;
  text::ReasoningFormat reasoning_format = text::ReasoningFormat::kSeparate;
  std::shared_ptr<GenerationBackend> backend;
};

// The text half of a ServedModel read from a GGUF file: tokenizer, and the chat template from
// `chat_template_file` when given, else the file's tokenizer.chat_template, else ChatML (with a
// logged warning). Errors: the file's or the tokenizer's.
struct ModelText {
  std::shared_ptr<const text::Tokenizer> tokenizer;
  std::shared_ptr<const text::ChatTemplate> chat_template;
};
absl::StatusOr<ModelText> LoadModelText(const std::string& gguf_path,
                                        const std::string& chat_template_file = "");

}  // namespace moed::gateway

#endif  // MOED_DAEMON_GATEWAY_SERVED_MODEL_H_

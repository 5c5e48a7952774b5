// POST /v1/completions (the legacy text API): prompts as a string, an array of strings, an array
// of token ids or an array of such arrays (each prompt gets n choices, numbered prompt * n + j),
// and the text_completion objects and chunks, with its own logprobs shape (tokens,
// token_logprobs, top_logprobs, text_offset). echo is supported without logprobs.
#ifndef MOED_DAEMON_GATEWAY_OPENAI_COMPLETIONS_H_
#define MOED_DAEMON_GATEWAY_OPENAI_COMPLETIONS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/gateway/openai_format.h"
#include "daemon/gateway/openai_params.h"
#include "daemon/text/tokenizer.h"

namespace moed::gateway {

struct CompletionRequest {
  GenerationParams params;
  std::vector<std::vector<int32_t>> prompts;  // tokenized, non-empty, ids checked
  std::vector<std::string> prompt_texts;      // for echo (decoded when given as ids)
};

// Prompts are tokenized like HF tokenizers do (special tokens recognised, BOS when the vocab asks).
absl::StatusOr<CompletionRequest> ParseCompletionRequest(const Json& body,
                                                         const text::Tokenizer& tokenizer,
                                                         const RequestLimits& limits);

// `echo_texts[i]` is prepended to choice i's text (empty when echo is off).
std::unique_ptr<ResponseFormatter> MakeCompletionFormatter(std::string id, int64_t created,
                                                           std::string model, bool include_usage,
                                                           bool logprobs,
                                                           std::vector<std::string> echo_texts);

}  // namespace moed::gateway

#endif  // MOED_DAEMON_GATEWAY_OPENAI_COMPLETIONS_H_

// POST /v1/chat/completions: the request (messages, tools, tool_choice, response_format,
// chat_template_kwargs) checked and turned into the chat template's input, and the
// chat.completion / chat.completion.chunk objects built from the generated choices.
//
// response_format: "text"; "json_object" and "json_schema" are honoured by instruction, not by
// constrained decoding: a system message asks for one JSON object (matching the schema, which
// is quoted) and nothing else. tool_choice: "none" renders no tools and parses no calls; "auto"
// and "required" render all tools; a named function renders only that tool ("required" and a
// named function are not enforced by a grammar). parallel_tool_calls=false keeps the first call.
#ifndef MOED_DAEMON_GATEWAY_OPENAI_CHAT_H_
#define MOED_DAEMON_GATEWAY_OPENAI_CHAT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "daemon/gateway/openai_format.h"
#include "daemon/gateway/openai_params.h"

namespace moed::gateway {

struct ChatRequest {
  GenerationParams params;
  Json template_input;        // {"messages", "tools"?, "add_generation_prompt": true, kwargs...}
  Json tools;                 // the tools calls are parsed against (null: none)
  bool parse_tool_calls = false;
  bool parallel_tool_calls = true;
};

absl::StatusOr<ChatRequest> ParseChatRequest(const Json& body, const RequestLimits& limits);

// chat.completion and chat.completion.chunk objects for one request.
std::unique_ptr<ResponseFormatter> MakeChatFormatter(std::string id, int64_t created,
                                                     std::string model, bool include_usage,
                                                     bool logprobs);

}  // namespace moed::gateway

#endif  // MOED_DAEMON_GATEWAY_OPENAI_CHAT_H_

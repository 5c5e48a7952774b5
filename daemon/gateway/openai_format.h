// How a generation becomes OpenAI JSON: a ResponseFormatter per endpoint (chat.completion /
// text_completion objects, their streamed chunks and the usage chunk), shared pieces (usage,
// chat logprobs) and the SSE framing the chunks travel in.
#ifndef MOED_DAEMON_GATEWAY_OPENAI_FORMAT_H_
#define MOED_DAEMON_GATEWAY_OPENAI_FORMAT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/gateway/choice_stream.h"
#include "daemon/gateway/http_message.h"
#include "daemon/gateway/json_input.h"

namespace moed::gateway {

struct UsageTotals {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;
};

// {"prompt_tokens","completion_tokens","total_tokens","prompt_tokens_details":{"cached_tokens"}}
Json UsageJson(const UsageTotals& usage);
// Chat's {"content":[{"token","logprob","bytes","top_logprobs":[...]}]}.
Json ChatLogprobsJson(const std::vector<TokenLogprob>& logprobs);

// Builds one endpoint's response objects. Used on one executor; may keep per-choice state.
class ResponseFormatter {
 public:
  virtual ~ResponseFormatter() = default;
  // Stream: the first chunk of choice `index` (chat: the assistant role), or nullopt.
  virtual std::optional<Json> StreamStart(int index) = 0;
  // Stream: a chunk for `delta`, or nullopt when it carries nothing to send.
  virtual std::optional<Json> StreamDelta(int index, const ChoiceDelta& delta) = 0;
  // Stream: the chunk with the choice's finish_reason.
  virtual Json StreamFinish(int index, std::string_view finish_reason) = 0;
  // Stream: the last chunk when stream_options.include_usage (empty choices, usage set).
  virtual Json StreamUsage(const UsageTotals& usage) = 0;
  // The non-streamed response.
  virtual Json Response(const std::vector<ChoiceResult>& choices, const UsageTotals& usage) = 0;
};

// Server-Sent Events framing, as OpenAI streams: "data: <json>\n\n", ending "data: [DONE]\n\n".
std::string SseData(const Json& value);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";
// The head of an SSE response (200, text/event-stream, no caching or proxy buffering).
HttpResponse SseHead();

// A random id with `prefix` ("chatcmpl-", "cmpl-", "call_").
std::string RandomId(std::string_view prefix);

}  // namespace moed::gateway

#endif  // MOED_DAEMON_GATEWAY_OPENAI_FORMAT_H_

// One choice's way from sampled tokens to what the client sees: token ids -> UTF-8-safe text
// (StreamingDetokenizer) -> stop strings, reasoning and tool calls (OutputParser) -> deltas,
// with the logprobs of each token. Runs on the connection's executor, never on the scheduler
// thread.
#ifndef MOED_DAEMON_GATEWAY_CHOICE_STREAM_H_
#define MOED_DAEMON_GATEWAY_CHOICE_STREAM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/scheduler/step_executor.h"
#include "daemon/text/output_parser.h"
#include "daemon/text/tokenizer.h"

namespace moed::gateway {

struct TokenLogprob {
  std::string token;           // the token's text, invalid UTF-8 replaced by U+FFFD
  std::vector<uint8_t> bytes;  // its raw bytes
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;  // most likely alternatives, best first (their `top` is empty)
};

struct ChoiceDelta {
  std::string reasoning;
  std::string content;
  std::vector<text::ToolCall> tool_calls;
  std::vector<TokenLogprob> logprobs;

  bool empty() const {
    return reasoning.empty() && content.empty() && tool_calls.empty() && logprobs.empty();
  }
};

struct ChoiceStreamOptions {
  text::OutputParserOptions parser;
  bool logprobs = false;
  bool parallel_tool_calls = true;  // false: calls after the first are dropped
};

class ChoiceStream {
 public:
  // `tokenizer` must outlive the stream.
  ChoiceStream(const text::Tokenizer* tokenizer, ChoiceStreamOptions options);

  // Feeds one sampled token. Once a stop string matched (stopped()), later tokens are ignored.
  // OutOfRange for a token id outside the vocabulary.
  absl::StatusOr<ChoiceDelta> Push(const daemon::SampledToken& token);
  // End of generation: the text still held back. Idempotent.
  ChoiceDelta Finish();

  bool stopped() const { return parser_.stopped(); }
  int64_t tokens() const { return tokens_; }  // consumed, up to the one that stopped
  int tool_calls() const { return tool_calls_; }

 private:
  void Absorb(text::OutputDelta delta, ChoiceDelta* out);
  absl::StatusOr<TokenLogprob> Logprob(int32_t token, float logprob) const;

  const text::Tokenizer* tokenizer_;
  ChoiceStreamOptions options_;
  text::StreamingDetokenizer detokenizer_;
  text::OutputParser parser_;
  int64_t tokens_ = 0;
  int tool_calls_ = 0;
  bool finished_ = false;
};

// A choice's whole output, for non-streamed responses.
struct ChoiceResult {
  std::string reasoning;
  std::string content;
  std::vector<text::ToolCall> tool_calls;
  std::vector<TokenLogprob> logprobs;
  std::string finish_reason;  // "stop", "length", "tool_calls"

  void Append(ChoiceDelta delta);
};

}  // namespace moed::gateway

#endif  // MOED_DAEMON_GATEWAY_CHOICE_STREAM_H_

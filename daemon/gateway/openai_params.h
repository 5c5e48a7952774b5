// The request fields /v1/chat/completions and /v1/completions share: sampling (temperature,
// top_p, top_k, min_p, presence/frequency/repetition penalties, seed), max_tokens, stop, n,
// stream and stream_options, logprobs. Validated with OpenAI's error shapes (param + code).
#ifndef MOED_DAEMON_GATEWAY_OPENAI_PARAMS_H_
#define MOED_DAEMON_GATEWAY_OPENAI_PARAMS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/gateway/json_input.h"
#include "kernels/cpu/sampling.h"

namespace moed::gateway {

enum class ApiKind { kChat, kCompletions };

struct RequestLimits {
  int64_t max_tokens_limit = 32768;
  int max_choices = 16;
  int max_stop_strings = 16;
};

struct GenerationParams {
  std::string model;  // empty: the served model
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int n = 1;
  // Chat: max_completion_tokens, else max_tokens; absent: what the context leaves (capped by the
  // limit). Completions: max_tokens, OpenAI's default 16 when absent.
  std::optional<int64_t> max_tokens;
  std::vector<std::string> stop;  // non-empty strings
  cpu::SamplingParams sampling;   // seed filled per choice (ChoiceSeed)
  std::optional<uint64_t> seed;
  bool logprobs = false;  // chat: logprobs; completions: logprobs != null
  int top_logprobs = 0;   // chat: top_logprobs; completions: the logprobs integer
  bool echo = false;      // completions only
};

absl::StatusOr<GenerationParams> ParseGenerationParams(const Json& body, ApiKind kind,
                                                       const RequestLimits& limits);

// The max_tokens one choice runs with. InvalidArgument "context_length_exceeded" when the prompt
// alone fills the context, or prompt + requested max_tokens exceeds it (as OpenAI answers).
absl::StatusOr<int64_t> ResolveMaxTokens(const GenerationParams& params, ApiKind kind,
                                         int64_t prompt_tokens, int64_t context_length,
                                         int64_t limit);

// The seed of choice `index`: seed + index when the request has a seed (reproducible, choices
// still differ), else `random_base` + index.
uint64_t ChoiceSeed(const GenerationParams& params, int index, uint64_t random_base);

}  // namespace moed::gateway

#endif  // MOED_DAEMON_GATEWAY_OPENAI_PARAMS_H_

// Parsing and validation of the sampling/length fields shared by chat and completions.
#include "daemon/gateway/openai_params.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "daemon/gateway/api_error.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::gateway {
namespace {

constexpr int64_t kMaxInt = std::numeric_limits<int64_t>::max();

absl::Status Unsupported(std::string_view param, std::string_view why) {
  return ParamError(param, absl::StrCat("'", Sv(param), "' ", Sv(why)), "unsupported_parameter");
}

absl::Status ParseStop(const Json& body, const RequestLimits& limits, GenerationParams* out) {
  const Json* stop = Member(body, "stop");
  if (stop == nullptr) return absl::OkStatus();
  if (stop->is_string()) {
    if (!stop->get_ref<const std::string&>().empty()) out->stop.push_back(stop->get<std::string>());
    return absl::OkStatus();
  }
  if (!stop->is_array()) return TypeError("stop", "a string or an array of strings", *stop);
  if (stop->size() > static_cast<size_t>(limits.max_stop_strings)) {
    return ParamError("stop", absl::StrCat("At most ", limits.max_stop_strings,
                                           " stop sequences are allowed, got ", stop->size(), "."),
                      "invalid_value");
  }
  for (size_t i = 0; i < stop->size(); ++i) {
    const Json& s = (*stop)[i];
    if (!s.is_string()) return TypeError(absl::StrCat("stop[", i, "]"), "a string", s);
    if (!s.get_ref<const std::string&>().empty()) out->stop.push_back(s.get<std::string>());
  }
  return absl::OkStatus();
}

absl::Status ParseSampling(const Json& body, GenerationParams* out) {
  cpu::SamplingParams& s = out->sampling;
  ASSIGN_OR_RETURN(std::optional<double> temperature, OptionalNumber(body, "temperature", 0, 2));
  if (temperature) s.temperature = static_cast<float>(*temperature);
  ASSIGN_OR_RETURN(std::optional<double> top_p, OptionalNumber(body, "top_p", 0, 1));
  if (top_p) {
    if (*top_p <= 0) {
      return ParamError("top_p", "Invalid value for 'top_p': must be greater than 0.",
                        "invalid_value");
    }
    s.top_p = static_cast<float>(*top_p);
  }
  // top_k, min_p and repetition_penalty are the llama-server / vLLM extensions; -1 is vLLM's "off".
  ASSIGN_OR_RETURN(std::optional<int64_t> top_k, OptionalInt(body, "top_k", -1, 1 << 30));
  if (top_k) s.top_k = static_cast<int32_t>(std::max<int64_t>(0, *top_k));
  ASSIGN_OR_RETURN(std::optional<double> min_p, OptionalNumber(body, "min_p", 0, 1));
  if (min_p) s.min_p = static_cast<float>(*min_p);
  ASSIGN_OR_RETURN(std::optional<double> presence, OptionalNumber(body, "presence_penalty", -2, 2));
  if (presence) s.presence_penalty = static_cast<float>(*presence);
  ASSIGN_OR_RETURN(std::optional<double> frequency,
                   OptionalNumber(body, "frequency_penalty", -2, 2));
  if (frequency) s.frequency_penalty = static_cast<float>(*frequency);
  ASSIGN_OR_RETURN(std::optional<double> repetition,
                   OptionalNumber(body, "repetition_penalty", 0, 100));
  if (repetition) {
    if (*repetition <= 0) {
      return ParamError("repetition_penalty",
                        "Invalid value for 'repetition_penalty': must be greater than 0.",
                        "invalid_value");
    }
    s.repetition_penalty = static_cast<float>(*repetition);
  }
  if (const Json* seed = Member(body, "seed")) {
    if (seed->is_number_unsigned()) {
      out->seed = seed->get<uint64_t>();
    } else if (seed->is_number_integer()) {
      out->seed = static_cast<uint64_t>(seed->get<int64_t>());
    } else {
      return TypeError("seed", "an integer", *seed);
    }
  }
  if (const Json* bias = Member(body, "logit_bias")) {
    if (!bias->is_object()) return TypeError("logit_bias", "an object", *bias);
    if (!bias->empty()) return Unsupported("logit_bias", "is not supported by this server.");
  }
  absl::Status valid = s.Validate();
  if (!valid.ok()) return ParamError("", StdSv(valid.message()), "invalid_value");
  return absl::OkStatus();
}

absl::Status ParseLogprobs(const Json& body, ApiKind kind, GenerationParams* out) {
  if (kind == ApiKind::kChat) {
    ASSIGN_OR_RETURN(std::optional<bool> logprobs, OptionalBool(body, "logprobs"));
    out->logprobs = logprobs.value_or(false);
    ASSIGN_OR_RETURN(std::optional<int64_t> top, OptionalInt(body, "top_logprobs", 0, 20));
    if (top && !out->logprobs) {
      return ParamError("top_logprobs",
                        "'top_logprobs' requires 'logprobs' to be set to true.", "invalid_value");
    }
    out->top_logprobs = static_cast<int>(top.value_or(0));
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::optional<int64_t> logprobs, OptionalInt(body, "logprobs", 0, 20));
  out->logprobs = logprobs.has_value();
  out->top_logprobs = static_cast<int>(logprobs.value_or(0));
  ASSIGN_OR_RETURN(std::optional<bool> echo, OptionalBool(body, "echo"));
  out->echo = echo.value_or(false);
  if (out->echo && out->logprobs) {
    return Unsupported("echo", "together with 'logprobs' is not supported (no prompt logprobs).");
  }
  ASSIGN_OR_RETURN(std::optional<std::string> suffix, OptionalString(body, "suffix"));
  if (suffix && !suffix->empty()) return Unsupported("suffix", "is not supported by this server.");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GenerationParams> ParseGenerationParams(const Json& body, ApiKind kind,
                                                       const RequestLimits& limits) {
  GenerationParams out;
  ASSIGN_OR_RETURN(std::optional<std::string> model, OptionalString(body, "model"));
  out.model = model.value_or("");
  ASSIGN_OR_RETURN(std::optional<bool> stream, OptionalBool(body, "stream"));
  out.stream = stream.value_or(false);
  if (const Json* options = Member(body, "stream_options")) {
    if (!options->is_object()) return TypeError("stream_options", "an object", *options);
    if (!out.stream) {
      return ParamError("stream_options",
                        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                        "invalid_value");
    }
    ASSIGN_OR_RETURN(std::optional<bool> usage, OptionalBool(*options, "include_usage"));
    out.include_usage = usage.value_or(false);
  }
  ASSIGN_OR_RETURN(std::optional<int64_t> n, OptionalInt(body, "n", 1, limits.max_choices));
  out.n = static_cast<int>(n.value_or(1));
  if (kind == ApiKind::kCompletions) {
    ASSIGN_OR_RETURN(std::optional<int64_t> best_of, OptionalInt(body, "best_of", 1, kMaxInt));
    if (best_of && *best_of != out.n) {
      return Unsupported("best_of", "must equal 'n' (server-side best-of is not supported).");
    }
  }
  // max_tokens: at least 1 and at most the server's limit (0 and negatives are errors, as in
  // OpenAI's API; a huge value is refused rather than silently capped).
  const char* names[] = {"max_completion_tokens", "max_tokens"};
  for (const char* name : names) {
    if (kind == ApiKind::kCompletions && std::string_view(name) != "max_tokens") continue;
    ASSIGN_OR_RETURN(std::optional<int64_t> value,
                     OptionalInt(body, name, 1, limits.max_tokens_limit));
    if (value && !out.max_tokens) out.max_tokens = value;
  }
  RETURN_IF_ERROR(ParseStop(body, limits, &out));
  RETURN_IF_ERROR(ParseSampling(body, &out));
  RETURN_IF_ERROR(ParseLogprobs(body, kind, &out));
  return out;
}

absl::StatusOr<int64_t> ResolveMaxTokens(const GenerationParams& params, ApiKind kind,
                                         int64_t prompt_tokens, int64_t context_length,
                                         int64_t limit) {
  if (prompt_tokens >= context_length) {
    return ParamError(kind == ApiKind::kChat ? "messages" : "prompt",
                      absl::StrCat("This model's maximum context length is ", context_length,
                                   " tokens. However, your prompt has ", prompt_tokens,
                                   " tokens, which leaves no room for the completion."),
                      "context_length_exceeded");
  }
  const int64_t room = context_length - prompt_tokens;
  if (!params.max_tokens) {
    const int64_t wanted = kind == ApiKind::kCompletions ? 16 : limit;
    return std::min(wanted, room);
  }
  if (*params.max_tokens > room) {
    return ParamError("max_tokens",
                      absl::StrCat("This model's maximum context length is ", context_length,
                                   " tokens. However, you requested ",
                                   prompt_tokens + *params.max_tokens, " tokens (", prompt_tokens,
                                   " in the prompt, ", *params.max_tokens,
                                   " for the completion). Please reduce the prompt or the "
                                   "completion length."),
                      "context_length_exceeded");
  }
  return *params.max_tokens;
}

uint64_t ChoiceSeed(const GenerationParams& params, int index, uint64_t random_base) {
  return (params.seed ? *params.seed : random_base) + static_cast<uint64_t>(index);
}

}  // namespace moed::gateway

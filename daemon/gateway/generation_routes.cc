// The generation endpoints of Gateway: /v1/chat/completions and /v1/completions. Each request
// is checked, rendered and tokenized here, on the connection's executor, and handed to a
// CompletionJob with one GenerateRequest per choice.
#include <chrono>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "daemon/gateway/api_error.h"
#include "daemon/gateway/completion_job.h"
#include "daemon/gateway/gateway.h"
#include "daemon/gateway/openai_chat.h"
#include "daemon/gateway/openai_completions.h"
#include "daemon/text/jinja/evaluator.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::gateway {
namespace {

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint64_t RandomSeedBase() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

RequestLimits LimitsOf(const GatewayOptions& options) {
  RequestLimits limits;
  limits.max_tokens_limit = options.max_tokens_limit;
  limits.max_choices = options.max_choices;
  limits.max_stop_strings = options.max_stop_strings;
  return limits;
}

daemon::GenerateRequest BaseRequest(const GenerationParams& params, const ServedModel& model) {
  daemon::GenerateRequest request;
  request.sampling = params.sampling;
  request.stop_tokens = model.tokenizer->eog_ids();
  request.top_logprobs = params.logprobs ? params.top_logprobs : 0;
  return request;
}

}  // namespace

absl::Status Gateway::StartChat(const Json& body, std::shared_ptr<ResponseChannel> channel) {
  ASSIGN_OR_RETURN(ChatRequest chat, ParseChatRequest(body, LimitsOf(options_)));
  ASSIGN_OR_RETURN(std::shared_ptr<const ServedModel> served, ModelFor(chat.params.model));
  if (Draining(served.get())) return absl::UnavailableError("Server is draining");

  absl::StatusOr<std::string> prompt = served->chat_template->Render(chat.template_input);
  if (!prompt.ok()) {
    // raise_exception() in the template is the template refusing this conversation.
    const bool raised = prompt.status().code() == text::jinja::kTemplateRaised;
    return ParamError("messages",
                      absl::StrCat(raised ? "The chat template rejected the messages: "
                                          : "The chat template failed: ",
                                   prompt.status().message()),
                      "invalid_messages");
  }
  text::EncodeOptions encode;
  encode.parse_special = true;  // the template wrote the control tokens
  absl::StatusOr<std::vector<int32_t>> tokens = served->tokenizer->Encode(*prompt, encode);
  if (!tokens.ok()) return ParamError("messages", StdSv(tokens.status().message()), "invalid_value");
  const int64_t prompt_tokens = static_cast<int64_t>(tokens->size());
  ASSIGN_OR_RETURN(int64_t max_tokens,
                   ResolveMaxTokens(chat.params, ApiKind::kChat, prompt_tokens,
                                    served->context_length, options_.max_tokens_limit));

  ChoiceStreamOptions choice;
  choice.parser.reasoning.format = served->reasoning_format;
  choice.parser.reasoning.starts_in_reasoning =
      served->reasoning_format == text::ReasoningFormat::kSeparate &&
      text::PromptOpensReasoning(*prompt, choice.parser.reasoning);
  choice.parser.parse_tool_calls = chat.parse_tool_calls;
  choice.parser.tool_calls.tools = chat.tools;
  choice.parser.stop = chat.params.stop;
  choice.logprobs = chat.params.logprobs;
  choice.parallel_tool_calls = chat.parallel_tool_calls;

  JobSpec spec;
  spec.model = served;
  const uint64_t seed_base = RandomSeedBase();
  for (int i = 0; i < chat.params.n; ++i) {
    daemon::GenerateRequest request = BaseRequest(chat.params, *served);
    request.prompt = *tokens;
    request.max_tokens = max_tokens;
    request.sampling.seed = ChoiceSeed(chat.params, i, seed_base);
    spec.requests.push_back(std::move(request));
    spec.choice_options.push_back(choice);
  }
  spec.formatter = MakeChatFormatter(RandomId("chatcmpl-"), UnixNow(), served->id,
                                     chat.params.include_usage, chat.params.logprobs);
  spec.stream = chat.params.stream;
  spec.include_usage = chat.params.include_usage;
  spec.prompt_tokens = prompt_tokens;
  spec.choices_per_prompt = chat.params.n;
  spec.endpoint = "/v1/chat/completions";
  spec.queue_full_status = options_.queue_full_status;
  spec.retry_after_seconds = options_.retry_after_seconds;
  StartCompletionJob(std::move(spec), std::move(channel), metrics_);
  return absl::OkStatus();
}

absl::Status Gateway::StartCompletion(const Json& body, std::shared_ptr<ResponseChannel> channel) {
  ASSIGN_OR_RETURN(std::optional<std::string> model_name, OptionalString(body, "model"));
  ASSIGN_OR_RETURN(std::shared_ptr<const ServedModel> served, ModelFor(model_name.value_or("")));
  ASSIGN_OR_RETURN(CompletionRequest completion,
                   ParseCompletionRequest(body, *served->tokenizer, LimitsOf(options_)));
  if (Draining(served.get())) return absl::UnavailableError("Server is draining");
  const GenerationParams& params = completion.params;

  ChoiceStreamOptions choice;
  choice.parser.reasoning.format = text::ReasoningFormat::kRaw;  // raw text: no splitting
  choice.parser.parse_tool_calls = false;
  choice.parser.stop = params.stop;
  choice.logprobs = params.logprobs;

  JobSpec spec;
  spec.model = served;
  std::vector<std::string> echo;
  const uint64_t seed_base = RandomSeedBase();
  int index = 0;
  for (size_t p = 0; p < completion.prompts.size(); ++p) {
    const int64_t prompt_tokens = static_cast<int64_t>(completion.prompts[p].size());
    ASSIGN_OR_RETURN(int64_t max_tokens,
                     ResolveMaxTokens(params, ApiKind::kCompletions, prompt_tokens,
                                      served->context_length, options_.max_tokens_limit));
    spec.prompt_tokens += prompt_tokens;
    for (int j = 0; j < params.n; ++j, ++index) {
      daemon::GenerateRequest request = BaseRequest(params, *served);
      request.prompt = completion.prompts[p];
      request.max_tokens = max_tokens;
      request.sampling.seed = ChoiceSeed(params, index, seed_base);
      spec.requests.push_back(std::move(request));
      spec.choice_options.push_back(choice);
      echo.push_back(params.echo ? completion.prompt_texts[p] : std::string());
    }
  }
  spec.formatter = MakeCompletionFormatter(RandomId("cmpl-"), UnixNow(), served->id,
                                           params.include_usage, params.logprobs, std::move(echo));
  spec.stream = params.stream;
  spec.include_usage = params.include_usage;
  spec.choices_per_prompt = params.n;
  spec.endpoint = "/v1/completions";
  spec.queue_full_status = options_.queue_full_status;
  spec.retry_after_seconds = options_.retry_after_seconds;
  StartCompletionJob(std::move(spec), std::move(channel), metrics_);
  return absl::OkStatus();
}

}  // namespace moed::gateway

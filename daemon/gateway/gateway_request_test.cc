// Request checking without sockets: JSON limits and types, the shared sampling fields, chat and
// completions parsing, error envelopes.
#include <string>

#include "absl/strings/str_cat.h"
#include "daemon/gateway/api_error.h"
#include "daemon/gateway/json_input.h"
#include "daemon/gateway/openai_chat.h"
#include "daemon/gateway/openai_completions.h"
#include "daemon/gateway/openai_params.h"
#include "daemon/text/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moed::gateway {
namespace {

using ::testing::HasSubstr;

Json Parse(const std::string& text) {
  absl::StatusOr<Json> j = ParseJsonObject(text);
  EXPECT_TRUE(j.ok()) << j.status();
  return j.ok() ? *j : Json::object();
}

ApiError ErrorOf(const absl::Status& status) { return ErrorFromStatus(status); }

TEST(JsonInputTest, DeepNestingIsRefusedBeforeParsing) {
  // nlohmann would recurse (and its destructor overflow the stack) on this.
  std::string deep = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  absl::StatusOr<Json> j = ParseJsonObject(deep, 64);
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(ErrorOf(j.status()).http_status, 400);
  EXPECT_THAT(std::string(j.status().message()), HasSubstr("deeper than 64"));
  EXPECT_EQ(JsonNestingDepth("{\"s\":\"[[[[\\\"[[\"}", 10), 1);  // brackets inside strings
  EXPECT_TRUE(ParseJsonObject("{\"a\":[[[1]]]}", 4).ok());
  EXPECT_FALSE(ParseJsonObject("{\"a\":[[[[1]]]]}", 4).ok());
}

TEST(JsonInputTest, InvalidUtf8SyntaxAndNonObjects) {
  absl::StatusOr<Json> bad_utf8 = ParseJsonObject(std::string("{\"a\":\"\xff\xfe\"}"));
  ASSERT_FALSE(bad_utf8.ok());
  EXPECT_THAT(std::string(bad_utf8.status().message()), HasSubstr("UTF-8"));
  EXPECT_EQ(ErrorOf(bad_utf8.status()).code, "invalid_utf8");
  absl::StatusOr<Json> syntax = ParseJsonObject("{\"a\": 1,");
  ASSERT_FALSE(syntax.ok());
  EXPECT_EQ(ErrorOf(syntax.status()).code, "invalid_json");
  EXPECT_FALSE(ParseJsonObject("[1,2]").ok());
  EXPECT_FALSE(ParseJsonObject("").ok());
}

TEST(JsonInputTest, TypedReadersNameTheField) {
  Json body = Parse(R"({"t": "hot", "n": 2.5, "b": 1, "ok": 3.0})");
  absl::StatusOr<std::optional<double>> t = OptionalNumber(body, "t", 0, 2);
  ASSERT_FALSE(t.ok());
  ApiError e = ErrorOf(t.status());
  EXPECT_EQ(e.param, "t");
  EXPECT_EQ(e.code, "invalid_type");
  EXPECT_THAT(e.message, HasSubstr("expected a number, but got a string"));
  EXPECT_FALSE(OptionalInt(body, "n", 0, 10).ok());
  EXPECT_FALSE(OptionalBool(body, "b").ok());
  absl::StatusOr<std::optional<int64_t>> ok = OptionalInt(body, "ok", 0, 10);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(**ok, 3);
  absl::StatusOr<std::optional<int64_t>> absent = OptionalInt(body, "missing", 0, 10);
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());
}

TEST(ApiErrorTest, EnvelopeAndStatusMapping) {
  ApiError e = ErrorFromStatus(ParamError("messages[0].role", "bad role", "invalid_value"));
  EXPECT_EQ(e.http_status, 400);
  EXPECT_EQ(ErrorBodyText(e),
            R"({"error":{"message":"bad role","type":"invalid_request_error",)"
            R"("param":"messages[0].role","code":"invalid_value"}})");
  ApiError full = ErrorFromStatus(absl::ResourceExhaustedError("queue full"), 429, 7);
  EXPECT_EQ(full.http_status, 429);
  EXPECT_EQ(full.retry_after_seconds, 7);
  HttpResponse r = ErrorResponse(full);
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].first, "Retry-After");
  EXPECT_EQ(r.headers[0].second, "7");
  EXPECT_EQ(ErrorFromStatus(absl::ResourceExhaustedError("q"), 503, 5).http_status, 503);
  EXPECT_EQ(ErrorFromStatus(absl::UnavailableError("draining")).http_status, 503);
  EXPECT_EQ(ErrorFromStatus(absl::InternalError("boom")).http_status, 500);
  EXPECT_EQ(ErrorFromStatus(HttpError(absl::StatusCode::kNotFound, 404, "invalid_request_error",
                                      "model_not_found", "no such model"))
                .code,
            "model_not_found");
  // Null param and code stay JSON null.
  ApiError plain = ErrorFromStatus(absl::InternalError("x"));
  EXPECT_THAT(ErrorBodyText(plain), HasSubstr(R"("param":null,"code":null)"));
}

TEST(GenerationParamsTest, MaxTokensLimitsAndContext) {
  RequestLimits limits;
  limits.max_tokens_limit = 1000;
  for (const char* bad : {R"({"max_tokens": -1})", R"({"max_tokens": 0})",
                          R"({"max_tokens": 1001})", R"({"max_tokens": 1e30})",
                          R"({"max_completion_tokens": "5"})"}) {
    absl::StatusOr<GenerationParams> p = ParseGenerationParams(Parse(bad), ApiKind::kChat, limits);
    ASSERT_FALSE(p.ok()) << bad;
    EXPECT_EQ(ErrorOf(p.status()).http_status, 400) << bad;
    EXPECT_THAT(ErrorOf(p.status()).param, HasSubstr("max_")) << bad;
  }
  absl::StatusOr<GenerationParams> p = ParseGenerationParams(
      Parse(R"({"max_tokens": 10, "max_completion_tokens": 20})"), ApiKind::kChat, limits);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p->max_tokens, 20);  // max_completion_tokens wins

  // Context: 100 tokens. Prompt 90 + 20 asked: refused; absent: the 10 that are left.
  absl::StatusOr<int64_t> over = ResolveMaxTokens(*p, ApiKind::kChat, 90, 100, 1000);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(ErrorOf(over.status()).code, "context_length_exceeded");
  GenerationParams none;
  EXPECT_EQ(*ResolveMaxTokens(none, ApiKind::kChat, 90, 100, 1000), 10);
  EXPECT_EQ(*ResolveMaxTokens(none, ApiKind::kCompletions, 10, 100, 1000), 16);
  absl::StatusOr<int64_t> full = ResolveMaxTokens(none, ApiKind::kChat, 100, 100, 1000);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(ErrorOf(full.status()).param, "messages");
}

TEST(GenerationParamsTest, SamplingStopSeedAndStreamOptions) {
  RequestLimits limits;
  absl::StatusOr<GenerationParams> p = ParseGenerationParams(
      Parse(R"({"temperature":0.5,"top_p":0.9,"top_k":40,"min_p":0.05,"presence_penalty":1,
                "frequency_penalty":-1,"repetition_penalty":1.1,"seed":42,"stop":["a","","b"],
                "n":3,"stream":true,"stream_options":{"include_usage":true}})"),
      ApiKind::kChat, limits);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FLOAT_EQ(p->sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(p->sampling.top_p, 0.9f);
  EXPECT_EQ(p->sampling.top_k, 40);
  EXPECT_FLOAT_EQ(p->sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(p->sampling.presence_penalty, 1.0f);
  EXPECT_FLOAT_EQ(p->sampling.frequency_penalty, -1.0f);
  EXPECT_FLOAT_EQ(p->sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(p->stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(p->n, 3);
  EXPECT_TRUE(p->include_usage);
  EXPECT_EQ(ChoiceSeed(*p, 0, 999), 42u);
  EXPECT_EQ(ChoiceSeed(*p, 2, 999), 44u);

  for (const char* bad :
       {R"({"temperature": 3})", R"({"top_p": 0})", R"({"stop": 5})", R"({"stop": [1]})",
        R"({"n": 0})", R"({"n": 100})", R"({"stream_options": {"include_usage": true}})",
        R"({"top_logprobs": 3})", R"({"logprobs": true, "top_logprobs": 21})",
        R"({"presence_penalty": 2.5})", R"({"logit_bias": {"1": 5}})", R"({"seed": "x"})"}) {
    EXPECT_FALSE(ParseGenerationParams(Parse(bad), ApiKind::kChat, limits).ok()) << bad;
  }
  absl::StatusOr<GenerationParams> logprobs = ParseGenerationParams(
      Parse(R"({"logprobs": 3})"), ApiKind::kCompletions, limits);
  ASSERT_TRUE(logprobs.ok());
  EXPECT_TRUE(logprobs->logprobs);
  EXPECT_EQ(logprobs->top_logprobs, 3);
}

TEST(ChatRequestTest, MessagesAreCheckedAndNormalised) {
  RequestLimits limits;
  absl::StatusOr<ChatRequest> chat = ParseChatRequest(
      Parse(R"({"messages":[{"role":"developer","content":"be brief"},
                            {"role":"user","content":[{"type":"text","text":"a"},
                                                       {"type":"text","text":"b"}]},
                            {"role":"assistant","content":null,"tool_calls":[
                               {"id":"c1","type":"function",
                                "function":{"name":"f","arguments":"{\"x\":1}"}}]},
                            {"role":"tool","tool_call_id":"c1","content":"42"}],
                "chat_template_kwargs":{"enable_thinking":false}})"),
      limits);
  ASSERT_TRUE(chat.ok()) << chat.status();
  const Json& m = chat->template_input["messages"];
  EXPECT_EQ(m[0]["role"], "system");
  EXPECT_EQ(m[1]["content"], "a\nb");
  EXPECT_EQ(m[2]["content"], "");
  EXPECT_EQ(m[2]["tool_calls"][0]["function"]["name"], "f");
  EXPECT_EQ(m[3]["tool_call_id"], "c1");
  EXPECT_EQ(chat->template_input["enable_thinking"], false);
  EXPECT_EQ(chat->template_input["add_generation_prompt"], true);
  EXPECT_FALSE(chat->parse_tool_calls);

  struct Bad {
    std::string body;
    const char* param;
  };
  for (const Bad& bad : {Bad{R"({})", "messages"}, Bad{R"({"messages": "hi"})", "messages"},
                         Bad{R"({"messages": []})", "messages"},
                         Bad{R"({"messages": [{"role": "robot", "content": "x"}]})",
                             "messages[0].role"},
                         Bad{R"({"messages": [{"role": "user"}]})", "messages[0].content"},
                         Bad{R"({"messages": [{"role": "user", "content": 5}]})",
                             "messages[0].content"},
                         Bad{R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
                             "messages[0].content[0].type"},
                         Bad{R"({"messages": [{"role": "assistant", "tool_calls": [{"function":
                               {"name": "f", "arguments": ")" + std::string(10000, '[') + R"("}}]}]})",
                             "messages[0].tool_calls[0].function.arguments"}}) {
    absl::StatusOr<ChatRequest> r = ParseChatRequest(Parse(bad.body), limits);
    ASSERT_FALSE(r.ok()) << bad.body;
    EXPECT_EQ(ErrorOf(r.status()).param, bad.param) << bad.body;
  }
}

TEST(ChatRequestTest, ToolsToolChoiceAndResponseFormat) {
  RequestLimits limits;
  const std::string tools = R"("tools":[{"type":"function","function":{"name":"a","parameters":{}}},
                                        {"type":"function","function":{"name":"b"}}])";
  const std::string user = R"("messages":[{"role":"user","content":"hi"}])";
  absl::StatusOr<ChatRequest> chat = ParseChatRequest(Parse("{" + user + "," + tools + "}"), limits);
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_TRUE(chat->parse_tool_calls);
  EXPECT_EQ(chat->template_input["tools"].size(), 2u);

  chat = ParseChatRequest(Parse("{" + user + "," + tools + R"(,"tool_choice":"none"})"), limits);
  ASSERT_TRUE(chat.ok());
  EXPECT_FALSE(chat->parse_tool_calls);
  EXPECT_FALSE(chat->template_input.contains("tools"));

  chat = ParseChatRequest(
      Parse("{" + user + "," + tools +
            R"(,"tool_choice":{"type":"function","function":{"name":"b"}}, "parallel_tool_calls":false})"),
      limits);
  ASSERT_TRUE(chat.ok()) << chat.status();
  ASSERT_EQ(chat->tools.size(), 1u);
  EXPECT_EQ(chat->tools[0]["function"]["name"], "b");
  EXPECT_FALSE(chat->parallel_tool_calls);

  EXPECT_FALSE(ParseChatRequest(Parse("{" + user + "," + tools +
                                      R"(,"tool_choice":{"type":"function","function":{"name":"z"}}})"),
                                limits)
                   .ok());
  EXPECT_FALSE(ParseChatRequest(Parse("{" + user + R"(,"tools":[{"type":"function"}]})"), limits).ok());
  EXPECT_FALSE(ParseChatRequest(Parse("{" + user + R"(,"tool_choice":"required"})"), limits).ok());

  chat = ParseChatRequest(Parse("{" + user + R"(,"response_format":{"type":"json_object"}})"), limits);
  ASSERT_TRUE(chat.ok());
  EXPECT_EQ(chat->template_input["messages"][0]["role"], "system");
  EXPECT_THAT(chat->template_input["messages"][0]["content"].get<std::string>(),
              HasSubstr("JSON object"));
  chat = ParseChatRequest(
      Parse(R"({"messages":[{"role":"system","content":"S"},{"role":"user","content":"u"}],
                "response_format":{"type":"json_schema","json_schema":{"name":"x",
                  "schema":{"type":"object"}}}})"),
      limits);
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(chat->template_input["messages"].size(), 2u);
  EXPECT_THAT(chat->template_input["messages"][0]["content"].get<std::string>(),
              HasSubstr("S\n\nRespond with a single valid JSON object"));
  EXPECT_THAT(chat->template_input["messages"][0]["content"].get<std::string>(),
              HasSubstr(R"({"type":"object"})"));
  EXPECT_FALSE(
      ParseChatRequest(Parse("{" + user + R"(,"response_format":{"type":"yaml"}})"), limits).ok());
}

class CompletionRequestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto t = text::Tokenizer::FromGgufPath(std::string(MOED_TEST_DATA_DIR) +
                                           "/text/vocab/ggml-vocab-qwen35.gguf");
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = t->release();
  }
  static void TearDownTestSuite() { delete tokenizer_; }
  static text::Tokenizer* tokenizer_;
};
text::Tokenizer* CompletionRequestTest::tokenizer_ = nullptr;

TEST_F(CompletionRequestTest, PromptForms) {
  RequestLimits limits;
  absl::StatusOr<CompletionRequest> r =
      ParseCompletionRequest(Parse(R"({"prompt": "Hello world"})"), *tokenizer_, limits);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->prompts.size(), 1u);
  EXPECT_EQ(r->prompts[0], *tokenizer_->Encode("Hello world"));

  r = ParseCompletionRequest(Parse(R"({"prompt": ["a", [1, 2, 3]], "n": 2})"), *tokenizer_, limits);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->prompts.size(), 2u);
  EXPECT_EQ(r->prompts[1], (std::vector<int32_t>{1, 2, 3}));

  r = ParseCompletionRequest(Parse(R"({"prompt": [5, 6]})"), *tokenizer_, limits);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->prompts[0], (std::vector<int32_t>{5, 6}));

  for (const char* bad : {R"({})", R"({"prompt": 5})", R"({"prompt": []})", R"({"prompt": ""})",
                          R"({"prompt": [-1]})", R"({"prompt": [99999999]})",
                          R"({"prompt": ["a", 5]})", R"({"prompt": "x", "best_of": 3})",
                          R"({"prompt": "x", "suffix": "y"})",
                          R"({"prompt": "x", "echo": true, "logprobs": 1})",
                          R"({"prompt": ["a","b","c","d","e","f","g","h","i"], "n": 2})"}) {
    absl::StatusOr<CompletionRequest> e = ParseCompletionRequest(Parse(bad), *tokenizer_, limits);
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_EQ(ErrorOf(e.status()).http_status, 400) << bad;
  }
}

}  // namespace
}  // namespace moed::gateway

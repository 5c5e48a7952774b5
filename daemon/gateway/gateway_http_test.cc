// The gateway over real sockets (HttpServer + Gateway + a scripted backend that emits chosen
// tokens through the real Qwen3.5 tokenizer and chat template): OpenAI response and SSE shapes,
// stop strings, tools, n, logprobs, errors and their statuses, auth, limits, disconnects,
// pipelining, keep-alive comments, and 1,000 concurrent SSE streams on two io threads.
#include <algorithm>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/gateway/gateway.h"
#include "daemon/gateway/http_server.h"
#include "daemon/gateway/testing/http_test_client.h"
#include "daemon/gateway/testing/scripted_backend.h"
#include "daemon/metrics/moed_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moed::gateway {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ClientResponse;
using testing::FormatRequest;
using testing::HttpRequestOnce;
using testing::ScriptedBackend;
using testing::SseEvents;
using testing::TestConnection;

constexpr char kKey[] = "sk-test-key";
const std::vector<std::pair<std::string, std::string>> kAuth = {
    {"Authorization", std::string("Bearer ") + kKey}};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string ChatBody(const std::string& extra = "", const std::string& content = "Hi") {
  return absl::StrCat(R"({"model":"tiny","messages":[{"role":"user","content":")", content, "\"}]",
                      extra.empty() ? "" : ",", extra, "}");
}

class GatewayHttpTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto t = text::Tokenizer::FromGgufPath(std::string(MOED_TEST_DATA_DIR) +
                                           "/text/vocab/ggml-vocab-qwen35.gguf");
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = std::shared_ptr<const text::Tokenizer>(std::move(*t));
    auto tmpl = text::ChatTemplate::Parse(ReadFile(
        std::string(MOED_TEST_DATA_DIR) + "/text/templates/qwen3.5-chat-template.jinja"));
    ASSERT_TRUE(tmpl.ok()) << tmpl.status();
    template_ = std::shared_ptr<const text::ChatTemplate>(std::move(*tmpl));
  }
  static void TearDownTestSuite() {
    tokenizer_.reset();
    template_.reset();
  }

  static GatewayOptions DefaultOptions() {
    GatewayOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.api_keys = {kKey};
    o.max_tokens_limit = 1000;
    return o;
  }

  void SetUp() override {
    SetScript("Thinking.</think>\n\nHello world");
    backend_ = std::make_shared<ScriptedBackend>([this](const daemon::GenerateRequest&) {
      std::lock_guard<std::mutex> lock(script_mu_);
      return script_;
    });
    auto m = metrics::MoedMetrics::Create();
    ASSERT_TRUE(m.ok());
    metrics_ = std::move(*m);
    StartServer(DefaultOptions());
  }

  void TearDown() override {
    server_.reset();
    gateway_.reset();
    backend_.reset();
  }

  void StartServer(const GatewayOptions& options) {
    server_.reset();
    gateway_ = std::make_unique<Gateway>(options, metrics_.get());
    auto model = std::make_shared<ServedModel>();
    model->id = "tiny";
    model->created = 1700000000;
    model->context_length = 512;
    model->tokenizer = tokenizer_;
    model->chat_template = template_;
    model->backend = backend_;
    gateway_->SetModel(model);
    server_ = std::make_unique<HttpServer>(HttpServerOptions::FromGateway(options), gateway_.get());
    absl::StatusOr<uint16_t> port = server_->Start();
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
  }

  void SetScript(const std::string& text) {
    text::EncodeOptions o;
    o.parse_special = true;
    auto ids = tokenizer_->Encode(text, o);
    ASSERT_TRUE(ids.ok());
    std::lock_guard<std::mutex> lock(script_mu_);
    script_ = *ids;
  }

  ClientResponse Call(std::string_view method, std::string_view path, std::string_view body = "",
                      const std::vector<std::pair<std::string, std::string>>& headers = kAuth) {
    absl::StatusOr<ClientResponse> r = HttpRequestOnce(port_, method, path, body, headers);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ClientResponse();
  }

  static Json BodyJson(const ClientResponse& r) {
    Json j = Json::parse(r.body, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.body;
    return j;
  }

  // Asserts an OpenAI error envelope with `status`; returns the inner error object.
  static Json ExpectError(const ClientResponse& r, int status) {
    EXPECT_EQ(r.status, status) << r.body;
    Json j = BodyJson(r);
    EXPECT_TRUE(j.contains("error")) << r.body;
    Json e = j.value("error", Json::object());
    for (const char* key : {"message", "type", "param", "code"}) EXPECT_TRUE(e.contains(key)) << key;
    return e;
  }

  // The concatenated delta.content of a chat SSE body.
  static std::string StreamContent(const std::string& body) {
    std::string content;
    for (const std::string& e : SseEvents(body)) {
      if (e == "[DONE]") continue;
      Json chunk = Json::parse(e, nullptr, false);
      if (chunk.is_discarded() || chunk["choices"].empty()) continue;
      content += chunk["choices"][0]["delta"].value("content", "");
    }
    return content;
  }

  void ExpectHealthy() { EXPECT_EQ(Call("GET", "/health", "", {}).status, 200); }

  static std::shared_ptr<const text::Tokenizer> tokenizer_;
  static std::shared_ptr<const text::ChatTemplate> template_;
  std::mutex script_mu_;
  std::vector<int32_t> script_;
  std::shared_ptr<ScriptedBackend> backend_;
  std::unique_ptr<metrics::MoedMetrics> metrics_;
  std::unique_ptr<Gateway> gateway_;
  std::unique_ptr<HttpServer> server_;
  uint16_t port_ = 0;
};
std::shared_ptr<const text::Tokenizer> GatewayHttpTest::tokenizer_;
std::shared_ptr<const text::ChatTemplate> GatewayHttpTest::template_;

TEST_F(GatewayHttpTest, ChatNonStreamSplitsReasoningAndCountsUsage) {
  ClientResponse r = Call("POST", "/v1/chat/completions", ChatBody());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["content-type"], "application/json");
  Json j = BodyJson(r);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "tiny");
  EXPECT_THAT(j["id"].get<std::string>(), HasSubstr("chatcmpl-"));
  const Json& choice = j["choices"][0];
  EXPECT_EQ(choice["message"]["role"], "assistant");
  EXPECT_EQ(choice["message"]["content"], "Hello world");
  EXPECT_EQ(choice["message"]["reasoning_content"], "Thinking.");
  EXPECT_EQ(choice["finish_reason"], "stop");
  const auto submitted = backend_->submitted();
  ASSERT_EQ(submitted.size(), 1u);
  EXPECT_EQ(j["usage"]["prompt_tokens"], submitted[0].prompt.size());
  EXPECT_EQ(j["usage"]["completion_tokens"], script_.size());
  // The rendered prompt ends in the template's generation prompt, and EOS ends generation.
  EXPECT_THAT(*tokenizer_->Decode(submitted[0].prompt, true),
              HasSubstr("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n"));
  EXPECT_THAT(submitted[0].stop_tokens, Contains(tokenizer_->TokenId("<|im_end|>")));
  EXPECT_EQ(submitted[0].max_tokens,
            std::min<int64_t>(1000, 512 - static_cast<int64_t>(submitted[0].prompt.size())));
}

TEST_F(GatewayHttpTest, ChatStreamWithUsageHasOpenAiChunks) {
  ClientResponse r = Call("POST", "/v1/chat/completions",
                          ChatBody(R"("stream":true,"stream_options":{"include_usage":true})"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["content-type"], "text/event-stream");
  EXPECT_EQ(r.headers["transfer-encoding"], "chunked");
  std::vector<std::string> events = SseEvents(r.body);
  ASSERT_GE(events.size(), 4u) << r.body;
  EXPECT_EQ(events.back(), "[DONE]");
  std::string content, reasoning;
  std::string finish;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    Json chunk = Json::parse(events[i]);
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    ASSERT_TRUE(chunk.contains("usage")) << events[i];
    if (i + 2 == events.size()) {  // the usage chunk
      EXPECT_EQ(chunk["choices"], Json::array());
      EXPECT_EQ(chunk["usage"]["completion_tokens"], script_.size());
      EXPECT_EQ(chunk["usage"]["total_tokens"],
                chunk["usage"]["prompt_tokens"].get<int>() + static_cast<int>(script_.size()));
      continue;
    }
    EXPECT_TRUE(chunk["usage"].is_null());
    const Json& delta = chunk["choices"][0]["delta"];
    if (i == 0) {
      EXPECT_EQ(delta["role"], "assistant");
    }
    content += delta.value("content", "");
    reasoning += delta.value("reasoning_content", "");
    if (!chunk["choices"][0]["finish_reason"].is_null()) finish = chunk["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(content, "Hello world");
  EXPECT_EQ(reasoning, "Thinking.");
  EXPECT_EQ(finish, "stop");
}

TEST_F(GatewayHttpTest, StopStringCancelsAndIsNotEmitted) {
  SetScript("x</think>\n\nThe answer is 42.</stop> more tokens that must not appear");
  for (bool stream : {false, true}) {
    ClientResponse r = Call("POST", "/v1/chat/completions",
                            ChatBody(absl::StrCat(R"("stop":["</stop>"],"stream":)",
                                                  stream ? "true" : "false")));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(stream ? StreamContent(r.body)
                     : BodyJson(r)["choices"][0]["message"]["content"].get<std::string>(),
              "The answer is 42.");
    EXPECT_THAT(r.body, Not(HasSubstr("</stop")));
    EXPECT_THAT(r.body, Not(HasSubstr("must not")));
    EXPECT_THAT(r.body, HasSubstr(R"("finish_reason":"stop")"));
  }
  // Both requests were cancelled the moment the stop string matched.
  EXPECT_THAT(backend_->cancelled(), ElementsAre(1u, 2u));
}

TEST_F(GatewayHttpTest, ToolCallsInMessageAndStream) {
  SetScript(
      "x</think>\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
      "</function>\n</tool_call>");
  const std::string tools =
      R"("tools":[{"type":"function","function":{"name":"get_weather","description":"w",
          "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}])";
  ClientResponse r = Call("POST", "/v1/chat/completions", ChatBody(tools));
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = BodyJson(r);
  const Json& message = j["choices"][0]["message"];
  EXPECT_TRUE(message["content"].is_null()) << r.body;
  ASSERT_TRUE(message.contains("tool_calls")) << r.body;
  ASSERT_EQ(message["tool_calls"].size(), 1u);
  EXPECT_EQ(message["tool_calls"][0]["type"], "function");
  EXPECT_EQ(message["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(Json::parse(message["tool_calls"][0]["function"]["arguments"].get<std::string>()),
            Json::parse(R"({"city":"Paris"})"));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls");
  // The template saw the tools.
  EXPECT_THAT(*tokenizer_->Decode(backend_->submitted()[0].prompt, true), HasSubstr("get_weather"));

  ClientResponse s = Call("POST", "/v1/chat/completions", ChatBody(tools + R"(,"stream":true)"));
  ASSERT_EQ(s.status, 200);
  bool saw_call = false;
  for (const std::string& e : SseEvents(s.body)) {
    if (e == "[DONE]") continue;
    Json chunk = Json::parse(e);
    const Json& delta = chunk["choices"][0]["delta"];
    if (delta.contains("tool_calls")) {
      saw_call = true;
      EXPECT_EQ(delta["tool_calls"][0]["index"], 0);
      EXPECT_EQ(delta["tool_calls"][0]["function"]["name"], "get_weather");
    }
  }
  EXPECT_TRUE(saw_call) << s.body;
  EXPECT_THAT(s.body, HasSubstr(R"("finish_reason":"tool_calls")"));
}

TEST_F(GatewayHttpTest, NChoicesSeedsLogprobsAndLength) {
  ClientResponse r = Call("POST", "/v1/chat/completions",
                          ChatBody(R"("n":3,"seed":7,"max_tokens":3,"logprobs":true,"top_logprobs":2,
                                      "temperature":0.7,"top_k":5,"min_p":0.1,"repetition_penalty":1.2)"));
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = BodyJson(r);
  ASSERT_EQ(j["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const Json& c = j["choices"][i];
    EXPECT_EQ(c["index"], i);
    EXPECT_EQ(c["finish_reason"], "length");
    ASSERT_EQ(c["logprobs"]["content"].size(), 3u);
    EXPECT_EQ(c["logprobs"]["content"][0]["top_logprobs"].size(), 2u);
    EXPECT_TRUE(c["logprobs"]["content"][0]["bytes"].is_array());
  }
  EXPECT_EQ(j["usage"]["completion_tokens"], 9);
  std::vector<uint64_t> seeds;
  for (const auto& request : backend_->submitted()) {
    seeds.push_back(request.sampling.seed);
    EXPECT_EQ(request.top_logprobs, 2);
    EXPECT_EQ(request.max_tokens, 3);
    EXPECT_FLOAT_EQ(request.sampling.temperature, 0.7f);
    EXPECT_EQ(request.sampling.top_k, 5);
    EXPECT_FLOAT_EQ(request.sampling.min_p, 0.1f);
    EXPECT_FLOAT_EQ(request.sampling.repetition_penalty, 1.2f);
  }
  EXPECT_THAT(seeds, ElementsAre(7u, 8u, 9u));
}

TEST_F(GatewayHttpTest, CompletionsEchoStreamAndTokenPrompts) {
  SetScript(" there");
  ClientResponse r = Call("POST", "/v1/completions",
                          R"({"model":"tiny","prompt":"Hello","echo":true,"max_tokens":5})");
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = BodyJson(r);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "Hello there");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["prompt_tokens"], tokenizer_->Encode("Hello")->size());

  ClientResponse s = Call("POST", "/v1/completions",
                          R"({"prompt":[[9707],[9707]],"stream":true,"logprobs":1,
                              "stream_options":{"include_usage":true}})");
  ASSERT_EQ(s.status, 200) << s.body;
  std::vector<std::string> events = SseEvents(s.body);
  ASSERT_GE(events.size(), 3u);
  std::string text0, text1;
  for (const std::string& e : events) {
    if (e == "[DONE]") continue;
    Json chunk = Json::parse(e);
    EXPECT_EQ(chunk["object"], "text_completion");
    if (chunk["choices"].empty()) {
      EXPECT_EQ(chunk["usage"]["prompt_tokens"], 2);
      continue;
    }
    (chunk["choices"][0]["index"] == 0 ? text0 : text1) += chunk["choices"][0]["text"].get<std::string>();
  }
  EXPECT_EQ(text0, " there");
  EXPECT_EQ(text1, " there");
}

TEST_F(GatewayHttpTest, BadBodiesGetOpenAiErrors) {
  Json e = ExpectError(Call("POST", "/v1/chat/completions", "{not json"), 400);
  EXPECT_EQ(e["code"], "invalid_json");
  e = ExpectError(Call("POST", "/v1/chat/completions", R"({"messages":"hi"})"), 400);
  EXPECT_EQ(e["param"], "messages");
  EXPECT_EQ(e["code"], "invalid_type");
  e = ExpectError(Call("POST", "/v1/chat/completions", ChatBody(R"("temperature":"hot")")), 400);
  EXPECT_EQ(e["param"], "temperature");
  e = ExpectError(Call("POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\","
                                                       "\"content\":\"\xc3\x28\"}]}"),
                  400);
  EXPECT_EQ(e["code"], "invalid_utf8");
  e = ExpectError(Call("POST", "/v1/chat/completions",
                       "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}"),
                  400);
  EXPECT_EQ(e["code"], "invalid_json");
  for (const char* max : {R"("max_tokens":-1)", R"("max_tokens":1000000)",
                          R"("max_completion_tokens":0)"}) {
    e = ExpectError(Call("POST", "/v1/chat/completions", ChatBody(max)), 400);
    EXPECT_THAT(e["param"].get<std::string>(), HasSubstr("max_")) << max;
  }
  std::string long_prompt;
  for (int i = 0; i < 1100; ++i) long_prompt += "word ";
  e = ExpectError(Call("POST", "/v1/chat/completions", ChatBody("", long_prompt)), 400);
  EXPECT_EQ(e["code"], "context_length_exceeded");
  e = ExpectError(Call("POST", "/v1/chat/completions", ChatBody(R"("max_tokens":1000)", "a b c")), 400);
  EXPECT_EQ(e["code"], "context_length_exceeded");
  e = ExpectError(Call("POST", "/v1/chat/completions",
                       R"({"messages":[{"role":"assistant","content":"x"},{"role":"system","content":"late"}]})"),
                  400);
  EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("The chat template rejected the messages"));
  e = ExpectError(Call("POST", "/v1/chat/completions",
                       R"({"model":"gpt-9","messages":[{"role":"user","content":"x"}]})"),
                  404);
  EXPECT_EQ(e["code"], "model_not_found");
  EXPECT_TRUE(backend_->submitted().empty());
  ExpectHealthy();
}

TEST_F(GatewayHttpTest, TenMegabyteBodyGets413AndServerStaysUp) {
  absl::StatusOr<TestConnection> c = TestConnection::Open(port_);
  ASSERT_TRUE(c.ok());
  const std::string body = "{\"pad\":\"" + std::string(10 << 20, 'x') + "\"}";
  ASSERT_TRUE(c->Send(FormatRequest("POST", "/v1/chat/completions", body, kAuth)).ok());
  absl::StatusOr<ClientResponse> r = c->ReadResponse();
  ASSERT_TRUE(r.ok()) << r.status();
  Json e = ExpectError(*r, 413);
  EXPECT_EQ(e["code"], "request_too_large");
  EXPECT_EQ(r->headers["connection"], "close");
  ExpectHealthy();
}

TEST_F(GatewayHttpTest, AuthOnEveryEndpointButHealth) {
  for (const char* path : {"/v1/models", "/metrics", "/v1/nothing"}) {
    ClientResponse r = Call("GET", path, "", {});
    Json e = ExpectError(r, 401);
    EXPECT_EQ(e["code"], "invalid_api_key");
    EXPECT_EQ(r.headers["www-authenticate"], "Bearer");
  }
  ExpectError(Call("POST", "/v1/chat/completions", ChatBody(), {{"Authorization", "Bearer wrong"}}),
              401);
  ExpectError(Call("POST", "/v1/completions", R"({"prompt":"x"})", {{"Authorization", kKey}}), 401);
  EXPECT_EQ(Call("GET", "/v1/models", "", {{"Authorization", std::string("bearer ") + kKey}}).status,
            200);
  EXPECT_EQ(Call("GET", "/health", "", {}).status, 200);
  EXPECT_TRUE(backend_->submitted().empty());
}

TEST_F(GatewayHttpTest, RoutesModelsHealthMetricsTokenize) {
  ExpectError(Call("GET", "/v1/nothing"), 404);
  ClientResponse wrong_method = Call("GET", "/v1/chat/completions");
  ExpectError(wrong_method, 405);
  EXPECT_EQ(wrong_method.headers["allow"], "POST");

  Json models = BodyJson(Call("GET", "/v1/models"));
  EXPECT_EQ(models["object"], "list");
  EXPECT_EQ(models["data"][0]["id"], "tiny");
  EXPECT_EQ(models["data"][0]["object"], "model");
  EXPECT_EQ(BodyJson(Call("GET", "/v1/models/tiny"))["id"], "tiny");
  EXPECT_EQ(ExpectError(Call("GET", "/v1/models/other"), 404)["code"], "model_not_found");
  EXPECT_EQ(BodyJson(Call("GET", "/health", "", {}))["status"], "ok");

  Json tokens = BodyJson(Call("POST", "/tokenize", R"({"content":"Hello world"})"));
  EXPECT_EQ(tokens["tokens"].get<std::vector<int32_t>>(), *tokenizer_->Encode("Hello world"));
  Json pieces = BodyJson(Call("POST", "/tokenize", R"({"content":"Hello world","with_pieces":true})"));
  EXPECT_EQ(pieces["tokens"][0]["piece"], "Hello");
  Json text = BodyJson(Call("POST", "/detokenize", DumpJson(Json{{"tokens", tokens["tokens"]}})));
  EXPECT_EQ(text["content"], "Hello world");
  ExpectError(Call("POST", "/detokenize", R"({"tokens":[-5]})"), 400);
  ExpectError(Call("POST", "/tokenize", R"({})"), 400);

  ASSERT_EQ(Call("POST", "/v1/chat/completions", ChatBody()).status, 200);
  ClientResponse m = Call("GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_THAT(m.headers["content-type"], HasSubstr("text/plain; version=0.0.4"));
  EXPECT_THAT(m.body, HasSubstr(R"(moed_requests_total{endpoint="/v1/chat/completions",status="200"} 1)"));
  EXPECT_THAT(m.body, HasSubstr(R"(moed_requests_total{endpoint="/v1/models",status="404"} 1)"));
}

TEST_F(GatewayHttpTest, QueueFullDrainingAndLoading) {
  backend_->set_submit_error(absl::ResourceExhaustedError("queue is full"));
  ClientResponse full = Call("POST", "/v1/chat/completions", ChatBody());
  EXPECT_EQ(ExpectError(full, 429)["code"], "queue_full");
  EXPECT_EQ(full.headers["retry-after"], "5");
  backend_->set_submit_error(absl::InvalidArgumentError("token outside the vocabulary"));
  ExpectError(Call("POST", "/v1/chat/completions", ChatBody()), 400);
  backend_->set_submit_error(absl::OkStatus());

  gateway_->SetDraining(true);
  ClientResponse draining = Call("POST", "/v1/chat/completions", ChatBody());
  EXPECT_EQ(ExpectError(draining, 503)["type"], "unavailable_error");
  EXPECT_EQ(draining.headers["retry-after"], "5");
  ClientResponse health = Call("GET", "/health", "", {});
  ExpectError(health, 503);
  EXPECT_EQ(health.headers["retry-after"], "5");
  gateway_->SetDraining(false);
  backend_->set_draining(true);  // the scheduler's own drain counts too
  ExpectError(Call("GET", "/health", "", {}), 503);
  backend_->set_draining(false);
  ExpectHealthy();

  gateway_->SetModel(nullptr);
  EXPECT_THAT(ExpectError(Call("GET", "/health", "", {}), 503)["message"].get<std::string>(),
              HasSubstr("Loading"));
  ExpectError(Call("POST", "/v1/chat/completions", ChatBody()), 503);
}

TEST_F(GatewayHttpTest, ClientDisconnectCancelsAtOnce) {
  backend_->Hold(true);
  {
    absl::StatusOr<TestConnection> c = TestConnection::Open(port_);
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c->Send(FormatRequest("POST", "/v1/chat/completions", ChatBody(R"("stream":true)"),
                                      kAuth)).ok());
    absl::StatusOr<ClientResponse> head = c->ReadHead();
    ASSERT_TRUE(head.ok()) << head.status();
    EXPECT_EQ(head->status, 200);
    ASSERT_TRUE(c->ReadBodyUntil("\"role\":\"assistant\"").ok());
  }  // the client goes away mid-stream
  EXPECT_TRUE(backend_->WaitForCancel(1, absl::Seconds(30)));
  {
    absl::StatusOr<TestConnection> c = TestConnection::Open(port_);
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c->Send(FormatRequest("POST", "/v1/chat/completions", ChatBody(), kAuth)).ok());
    EXPECT_TRUE(backend_->WaitForSubmitted(2, absl::Seconds(30)));
  }  // ... and one that waits for a non-streamed answer
  EXPECT_TRUE(backend_->WaitForCancel(2, absl::Seconds(30)));
  backend_->Hold(false);
  ExpectHealthy();
}

TEST_F(GatewayHttpTest, KeepAliveAndPipelinedRequests) {
  absl::StatusOr<TestConnection> c = TestConnection::Open(port_);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Send(FormatRequest("GET", "/health", "", {}) +
                      FormatRequest("POST", "/v1/chat/completions", ChatBody(), kAuth) +
                      FormatRequest("GET", "/v1/models", "", kAuth))
                  .ok());
  absl::StatusOr<ClientResponse> a = c->ReadResponse();
  absl::StatusOr<ClientResponse> b = c->ReadResponse();
  absl::StatusOr<ClientResponse> d = c->ReadResponse();
  ASSERT_TRUE(a.ok() && b.ok() && d.ok());
  EXPECT_EQ(a->status, 200);
  EXPECT_EQ(Json::parse(b->body)["object"], "chat.completion");
  EXPECT_EQ(Json::parse(d->body)["object"], "list");
  // Then a streamed one on the same connection.
  ASSERT_TRUE(c->Send(FormatRequest("POST", "/v1/chat/completions", ChatBody(R"("stream":true)"),
                                    kAuth)).ok());
  absl::StatusOr<ClientResponse> s = c->ReadResponse();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(SseEvents(s->body).back(), "[DONE]");
  // Malformed HTTP gets a 400 envelope and the connection is closed.
  ASSERT_TRUE(c->Send("GARBAGE\r\n\r\n").ok());
  absl::StatusOr<ClientResponse> bad = c->ReadResponse();
  ASSERT_TRUE(bad.ok()) << bad.status();
  ExpectError(*bad, 400);
  EXPECT_TRUE(c->WaitClosed());
}

TEST_F(GatewayHttpTest, SseKeepAliveCommentsWhileWaiting) {
  GatewayOptions options = DefaultOptions();
  options.sse_keepalive = absl::Milliseconds(20);
  StartServer(options);
  backend_->Hold(true);
  absl::StatusOr<TestConnection> c = TestConnection::Open(port_);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Send(FormatRequest("POST", "/v1/chat/completions", ChatBody(R"("stream":true)"),
                                    kAuth)).ok());
  ASSERT_TRUE(c->ReadHead().ok());
  absl::StatusOr<std::string> body = c->ReadBodyUntil(": keep-alive\n\n");
  ASSERT_TRUE(body.ok()) << body.status();
  backend_->Hold(false);
  body = c->ReadBodyUntil("data: [DONE]");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(StreamContent(*body), "Hello world");
}

TEST_F(GatewayHttpTest, ThousandConcurrentSseStreams) {
  constexpr int kStreams = 1000;
  backend_->Hold(true);
  std::vector<TestConnection> connections;
  connections.reserve(kStreams);
  const std::string request = FormatRequest(
      "POST", "/v1/chat/completions",
      ChatBody(R"("stream":true,"max_tokens":4,"stream_options":{"include_usage":true})"), kAuth);
  for (int i = 0; i < kStreams; ++i) {
    absl::StatusOr<TestConnection> c = TestConnection::Open(port_);
    ASSERT_TRUE(c.ok()) << i << ": " << c.status();
    ASSERT_TRUE(c->Send(request).ok()) << i;
    connections.push_back(std::move(*c));
  }
  for (int i = 0; i < kStreams; ++i) {
    absl::StatusOr<ClientResponse> head = connections[i].ReadHead();
    ASSERT_TRUE(head.ok()) << i << ": " << head.status();
    ASSERT_EQ(head->status, 200) << i;
    ASSERT_TRUE(connections[i].ReadBodyUntil("\"role\":\"assistant\"").ok()) << i;
  }
  // All 1,000 are open at once, served by the two io threads.
  EXPECT_EQ(backend_->WaitForActive(kStreams, absl::Seconds(60)), kStreams);
  EXPECT_GE(server_->open_connections(), static_cast<size_t>(kStreams));
  backend_->Hold(false);
  for (int i = 0; i < kStreams; ++i) {
    absl::StatusOr<std::string> body = connections[i].ReadBodyUntil("data: [DONE]\n\n");
    ASSERT_TRUE(body.ok()) << i << ": " << body.status();
    std::vector<std::string> events = SseEvents(*body);
    ASSERT_GE(events.size(), 3u);
    Json usage = Json::parse(events[events.size() - 2]);
    EXPECT_EQ(usage["usage"]["completion_tokens"], 4) << i;
  }
}

}  // namespace
}  // namespace moed::gateway

// From sampled tokens to OpenAI JSON without sockets: ChoiceStream with the real Qwen3.5
// tokenizer (stop strings across tokens, reasoning, tool calls, logprobs) and the chat and
// completions formatters.
#include <memory>
#include <string>
#include <vector>

#include "daemon/gateway/choice_stream.h"
#include "daemon/gateway/openai_chat.h"
#include "daemon/gateway/openai_completions.h"
#include "daemon/gateway/openai_format.h"
#include "daemon/text/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moed::gateway {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class OutputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto t = text::Tokenizer::FromGgufPath(std::string(MOED_TEST_DATA_DIR) +
                                           "/text/vocab/ggml-vocab-qwen35.gguf");
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = t->release();
  }
  static void TearDownTestSuite() { delete tokenizer_; }

  std::vector<int32_t> Ids(const std::string& text) {
    text::EncodeOptions o;
    o.parse_special = true;
    auto ids = tokenizer_->Encode(text, o);
    EXPECT_TRUE(ids.ok());
    return ids.ok() ? *ids : std::vector<int32_t>();
  }

  // Feeds `text` token by token; returns everything the stream produced.
  ChoiceResult Run(ChoiceStream& stream, const std::string& text) {
    ChoiceResult out;
    for (int32_t id : Ids(text)) {
      daemon::SampledToken t;
      t.token = id;
      t.logprob = -1.0f;
      t.top = {{id, -1.0f}, {Ids("!")[0], -2.0f}};
      absl::StatusOr<ChoiceDelta> d = stream.Push(t);
      EXPECT_TRUE(d.ok()) << d.status();
      if (d.ok()) out.Append(*std::move(d));
    }
    out.Append(stream.Finish());
    return out;
  }

  static text::Tokenizer* tokenizer_;
};
text::Tokenizer* OutputTest::tokenizer_ = nullptr;

TEST_F(OutputTest, StopStringAcrossTokensIsNeverEmitted) {
  ChoiceStreamOptions o;
  o.parser.stop = {"</answer>"};
  o.parser.parse_tool_calls = false;
  ChoiceStream stream(tokenizer_, o);
  ChoiceResult r = Run(stream, "The answer is 42</answer> and more text");
  EXPECT_TRUE(stream.stopped());
  EXPECT_EQ(r.content, "The answer is 42");
  EXPECT_EQ(r.reasoning, "");
  // Tokens after the one that completed the stop string are not consumed.
  EXPECT_LT(stream.tokens(), static_cast<int64_t>(Ids("The answer is 42</answer> and more text").size()));
}

TEST_F(OutputTest, ReasoningIsSplitWhenThePromptOpensIt) {
  ChoiceStreamOptions o;
  o.parser.reasoning.starts_in_reasoning = true;
  ChoiceStream stream(tokenizer_, o);
  ChoiceResult r = Run(stream, "Let me think.\n</think>\n\nHello!");
  EXPECT_EQ(r.reasoning, "Let me think.");
  EXPECT_EQ(r.content, "Hello!");
}

TEST_F(OutputTest, ToolCallsAreParsedAndTyped) {
  ChoiceStreamOptions o;
  o.parser.tool_calls.tools = Json::parse(R"([{"type":"function","function":{"name":"get_weather",
      "parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}}}}}])");
  o.parser.tool_calls.id_seed = 7;
  const std::string call =
      "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
      "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>";
  ChoiceStream stream(tokenizer_, o);
  ChoiceResult r = Run(stream, "Checking." + call);
  EXPECT_EQ(r.content, "Checking.");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].name, "get_weather");
  EXPECT_EQ(Json::parse(r.tool_calls[0].arguments), Json::parse(R"({"city":"Paris","days":3})"));
  EXPECT_EQ(stream.tool_calls(), 1);

  o.parallel_tool_calls = false;
  ChoiceStream single(tokenizer_, o);
  ChoiceResult two = Run(single, call + "\n" + call);
  EXPECT_EQ(two.tool_calls.size(), 1u);
}

TEST_F(OutputTest, LogprobsCarryTokenTextAndBytes) {
  ChoiceStreamOptions o;
  o.logprobs = true;
  ChoiceStream stream(tokenizer_, o);
  ChoiceResult r = Run(stream, "héllo");
  ASSERT_EQ(r.logprobs.size(), Ids("héllo").size());
  std::string joined;
  for (const TokenLogprob& lp : r.logprobs) {
    joined.append(lp.bytes.begin(), lp.bytes.end());
    EXPECT_FLOAT_EQ(lp.logprob, -1.0f);
    ASSERT_EQ(lp.top.size(), 2u);
    EXPECT_EQ(lp.top[1].token, "!");
  }
  EXPECT_EQ(joined, "héllo");
  EXPECT_EQ(r.content, "héllo");
}

TEST_F(OutputTest, ChatChunksAndResponse) {
  std::unique_ptr<ResponseFormatter> f = MakeChatFormatter("chatcmpl-x", 123, "m", true, false);
  Json start = *f->StreamStart(0);
  EXPECT_EQ(start["object"], "chat.completion.chunk");
  EXPECT_EQ(start["choices"][0]["delta"], Json::parse(R"({"role":"assistant","content":""})"));
  EXPECT_TRUE(start["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(start.contains("usage"));
  EXPECT_TRUE(start["usage"].is_null());

  ChoiceDelta d;
  d.reasoning = "r";
  d.content = "c";
  EXPECT_EQ((*f->StreamDelta(1, d))["choices"][0]["delta"],
            Json::parse(R"({"reasoning_content":"r","content":"c"})"));
  EXPECT_EQ((*f->StreamDelta(1, d))["choices"][0]["index"], 1);
  EXPECT_FALSE(f->StreamDelta(0, ChoiceDelta()).has_value());
  EXPECT_EQ(f->StreamFinish(0, "length")["choices"][0]["finish_reason"], "length");
  Json usage = f->StreamUsage({10, 5, 4});
  EXPECT_EQ(usage["choices"], Json::array());
  EXPECT_EQ(usage["usage"], Json::parse(R"({"prompt_tokens":10,"completion_tokens":5,
      "total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}})"));

  ChoiceResult call;
  call.tool_calls.push_back({0, "call_1", "f", "{}"});
  call.finish_reason = "tool_calls";
  ChoiceResult text;
  text.content = "hi";
  text.reasoning = "think";
  text.finish_reason = "stop";
  Json response = f->Response({call, text}, {1, 2, 0});
  EXPECT_EQ(response["object"], "chat.completion");
  EXPECT_TRUE(response["choices"][0]["message"]["content"].is_null());
  EXPECT_EQ(response["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "f");
  EXPECT_FALSE(response["choices"][0]["message"]["tool_calls"][0].contains("index"));
  EXPECT_EQ(response["choices"][1]["message"]["reasoning_content"], "think");
  EXPECT_EQ(response["choices"][1]["finish_reason"], "stop");
  EXPECT_TRUE(response["choices"][1]["logprobs"].is_null());
  EXPECT_EQ(response["usage"]["total_tokens"], 3);
}

TEST_F(OutputTest, CompletionChunksEchoAndLogprobs) {
  std::unique_ptr<ResponseFormatter> f =
      MakeCompletionFormatter("cmpl-x", 1, "m", false, true, {"Say: ", ""});
  EXPECT_EQ((*f->StreamStart(0))["choices"][0]["text"], "Say: ");
  EXPECT_FALSE(f->StreamStart(1).has_value());
  ChoiceDelta d;
  d.content = "ab";
  d.logprobs = {{"a", {'a'}, -0.5f, {{"a", {'a'}, -0.5f, {}}}}, {"b", {'b'}, -0.25f, {}}};
  Json chunk = *f->StreamDelta(0, d);
  EXPECT_FALSE(chunk.contains("usage"));
  EXPECT_EQ(chunk["object"], "text_completion");
  EXPECT_EQ(chunk["choices"][0]["text"], "ab");
  EXPECT_EQ(chunk["choices"][0]["logprobs"]["tokens"], Json::parse(R"(["a","b"])"));
  EXPECT_EQ(chunk["choices"][0]["logprobs"]["text_offset"], Json::parse("[5,6]"));
  EXPECT_EQ(chunk["choices"][0]["logprobs"]["top_logprobs"][0]["a"], -0.5);
  ChoiceResult r;
  r.content = "xyz";
  r.finish_reason = "length";
  Json response = f->Response({r, r}, {});
  EXPECT_EQ(response["choices"][0]["text"], "Say: xyz");
  EXPECT_EQ(response["choices"][1]["text"], "xyz");
}

TEST(SseTest, Framing) {
  EXPECT_EQ(SseData(Json{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(kSseDone, "data: [DONE]\n\n");
  EXPECT_EQ(SseHead().content_type, "text/event-stream");
  EXPECT_THAT(RandomId("chatcmpl-"), HasSubstr("chatcmpl-"));
  EXPECT_NE(RandomId("x"), RandomId("x"));
}

}  // namespace
}  // namespace moed::gateway

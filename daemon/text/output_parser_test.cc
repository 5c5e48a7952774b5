// Streaming output parser tests: reasoning split (including templates that prefill <think>),
// Qwen3.5 tool calls, stop strings, and chunking independence of the combined parser.
#include "daemon/text/output_parser.h"

#include <fstream>
#include <random>
#include <sstream>

#include "daemon/text/chat_template.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moed::text {
namespace {

using Json = nlohmann::ordered_json;

struct Collected {
  std::string reasoning, content;
  std::vector<ToolCall> calls;
  std::vector<std::string> warnings;
  bool stopped = false;
  void Add(OutputDelta d) {
    reasoning += d.reasoning_content;
    content += d.content;
    for (auto& c : d.tool_calls) calls.push_back(c);
    for (auto& w : d.warnings) warnings.push_back(w);
    stopped |= d.stopped;
  }
};

// Feeds `text` in pieces of the given sizes (cycled), then finishes.
Collected Feed(OutputParserOptions o, const std::string& text, std::vector<size_t> sizes = {1}) {
  o.tool_calls.id_seed = 7;
  OutputParser p(o);
  Collected c;
  size_t pos = 0, k = 0;
  while (pos < text.size()) {
    const size_t n = std::min(sizes[k++ % sizes.size()], text.size() - pos);
    c.Add(p.Push(std::string_view(text).substr(pos, n)));
    pos += n;
  }
  c.Add(p.Finish());
  return c;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ReasoningTest, SplitsThinkBlockEvenOneByteAtATime) {
  for (std::vector<size_t> sizes : {std::vector<size_t>{1}, {3}, {100}, {2, 5, 1}}) {
    Collected c = Feed({}, "<think>\nLet me think.\n</think>\n\nThe answer is 4.", sizes);
    EXPECT_EQ(c.reasoning, "Let me think.");
    EXPECT_EQ(c.content, "The answer is 4.");
  }
}

TEST(ReasoningTest, PrefilledThinkFromTheTemplateNeverLeaksIntoContent) {
  const std::string dir = std::string(MOED_TEST_DATA_DIR) + "/text/templates/";
  const Json in = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"add_generation_prompt", true}};
  for (const char* name : {"forced-open-bare-think.jinja", "forced-open-bare-think.fixed.jinja",
                           "qwen3.5-chat-template.jinja"}) {
    SCOPED_TRACE(name);
    auto t = ChatTemplate::Parse(ReadFile(dir + name));
    ASSERT_TRUE(t.ok());
    auto prompt = (*t)->Render(in);
    ASSERT_TRUE(prompt.ok());
    OutputParserOptions o;
    o.reasoning.starts_in_reasoning = PromptOpensReasoning(*prompt);
    EXPECT_TRUE(o.reasoning.starts_in_reasoning) << *prompt;
    // The model continues after the prefill: with a bare "<think>" it starts with "\n".
    for (const char* gen : {"\nThe user says hi.\n</think>\n\nHello!", "The user says hi.\n</think>\n\nHello!",
                            "<think>\nThe user says hi.</think>Hello!"}) {
      Collected c = Feed(o, gen, {2});
      EXPECT_EQ(c.reasoning, "The user says hi.");
      EXPECT_EQ(c.content, "Hello!");
    }
  }
  // enable_thinking=false closes the block in the prompt: output is plain content.
  auto t = ChatTemplate::Parse(ReadFile(dir + "forced-open-bare-think.jinja"));
  Json off = in;
  off["enable_thinking"] = false;
  EXPECT_FALSE(PromptOpensReasoning(*(*t)->Render(off)));
}

TEST(ReasoningTest, StreamEndingInsideReasoning) {
  OutputParserOptions o;
  o.reasoning.starts_in_reasoning = true;
  Collected c = Feed(o, "still thinking </thi", {4});
  EXPECT_EQ(c.reasoning, "still thinking </thi");
  EXPECT_EQ(c.content, "");
  Collected d = Feed({}, "<think>abc", {1});
  EXPECT_EQ(d.reasoning, "abc");
}

TEST(ReasoningTest, NoThinkAndRawMode) {
  Collected c = Feed({}, "  plain <b>answer</b>", {1});
  EXPECT_EQ(c.reasoning, "");
  EXPECT_EQ(c.content, "  plain <b>answer</b>");
  Collected partial = Feed({}, "<thin", {1});
  EXPECT_EQ(partial.content, "<thin");
  OutputParserOptions raw;
  raw.reasoning.format = ReasoningFormat::kRaw;
  Collected r = Feed(raw, "<think>x</think>y", {3});
  EXPECT_EQ(r.reasoning, "");
  EXPECT_EQ(r.content, "<think>x</think>y");
}

Json WeatherTools() {
  return Json::parse(R"([{"type": "function", "function": {"name": "get_weather", "parameters": {
      "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
      "metric": {"type": "boolean"}, "ratio": {"type": "number"}, "opts": {"type": "object"},
      "tags": {"type": ["array", "null"]}}}}}])");
}

TEST(ToolCallTest, OneCallWithTypedArguments) {
  OutputParserOptions o;
  o.tool_calls.tools = WeatherTools();
  const std::string text =
      "Let me check.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nSan Francisco\n"
      "</parameter>\n<parameter=days>\n3\n</parameter>\n<parameter=metric>\nTrue\n</parameter>\n"
      "<parameter=ratio>\n0.5\n</parameter>\n<parameter=opts>\n{\"a\": [1, 2]}\n</parameter>\n"
      "<parameter=tags>\n[\"x\"]\n</parameter>\n<parameter=note>\n42\n</parameter>\n</function>\n</tool_call>";
  for (size_t step : {1, 7, 1000}) {
    Collected c = Feed(o, text, {step});
    EXPECT_EQ(c.content, "Let me check.");
    ASSERT_EQ(c.calls.size(), 1u);
    EXPECT_EQ(c.calls[0].name, "get_weather");
    EXPECT_EQ(c.calls[0].index, 0);
    EXPECT_THAT(c.calls[0].id, ::testing::StartsWith("call_"));
    EXPECT_EQ(Json::parse(c.calls[0].arguments),
              Json::parse(R"({"city": "San Francisco", "days": 3, "metric": true, "ratio": 0.5,
                              "opts": {"a": [1, 2]}, "tags": ["x"], "note": "42"})"));
    EXPECT_TRUE(c.warnings.empty());
  }
}

TEST(ToolCallTest, SeveralCallsAndOpenAiShape) {
  const std::string text =
      "<tool_call>\n<function=a>\n<parameter=x>\n1\n</parameter>\n</function>\n</tool_call>\n"
      "<tool_call>\n<function=b>\n</function>\n</tool_call>";
  Collected c = Feed({}, text, {5});
  EXPECT_EQ(c.content, "");
  ASSERT_EQ(c.calls.size(), 2u);
  EXPECT_EQ(c.calls[0].arguments, R"({"x":"1"})");  // no schema: strings
  EXPECT_EQ(c.calls[1].index, 1);
  EXPECT_EQ(c.calls[1].arguments, "{}");
  EXPECT_NE(c.calls[0].id, c.calls[1].id);
  const Json j = c.calls[1].ToOpenAi(true);
  EXPECT_EQ(j["index"], 1);
  EXPECT_EQ(j["type"], "function");
  EXPECT_EQ(j["function"]["name"], "b");
  EXPECT_EQ(j["function"]["arguments"], "{}");
}

TEST(ToolCallTest, MalformedCallsBecomeContentWithAWarning) {
  Collected bad = Feed({}, "ok <tool_call>\nnot a call\n</tool_call>", {3});
  EXPECT_TRUE(bad.calls.empty());
  EXPECT_EQ(bad.content, "ok<tool_call>\nnot a call\n</tool_call>");
  ASSERT_EQ(bad.warnings.size(), 1u);
  EXPECT_THAT(bad.warnings[0], ::testing::HasSubstr("malformed tool call"));
  Collected open = Feed({}, "x <tool_call>\n<function=f>\n<parameter=a>\n1", {2});
  EXPECT_TRUE(open.calls.empty());
  EXPECT_THAT(open.content, ::testing::HasSubstr("<tool_call>\n<function=f>"));
  ASSERT_EQ(open.warnings.size(), 1u);
  EXPECT_THAT(open.warnings[0], ::testing::HasSubstr("unterminated"));
}

TEST(ToolCallTest, AfterReasoning) {
  OutputParserOptions o;
  o.reasoning.starts_in_reasoning = true;
  Collected c = Feed(o, "need weather\n</think>\n\n<tool_call>\n<function=f>\n</function>\n</tool_call>", {4});
  EXPECT_EQ(c.reasoning, "need weather");
  EXPECT_EQ(c.content, "");
  ASSERT_EQ(c.calls.size(), 1u);
}

TEST(StopTest, StopStringAcrossTokensIsNeverEmitted) {
  StopMatcher m({"</answer>", "STOP"});
  EXPECT_EQ(m.Push("Hello <").text, "Hello ");
  EXPECT_EQ(m.Push("/ans").text, "");
  auto r = m.Push("wer> tail");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(r.matched, "</answer>");
  EXPECT_EQ(m.Push("more").text, "");
  StopMatcher n({"STOP"});
  EXPECT_EQ(n.Push("ST").text, "");
  EXPECT_EQ(n.Push("x").text, "STx");  // not a stop after all: released
  EXPECT_EQ(n.Push("S").text, "");
  EXPECT_EQ(n.Flush(), "S");
}

TEST(StopTest, CombinedParserStopsAndFinishes) {
  OutputParserOptions o;
  o.stop = {"<|user|>"};
  Collected c = Feed(o, "<think>r</think>answer<|user|>ignored", {1});
  EXPECT_TRUE(c.stopped);
  EXPECT_EQ(c.reasoning, "r");
  EXPECT_EQ(c.content, "answer");
}

TEST(OutputParserTest, ChunkingDoesNotChangeTheResult) {
  const std::string texts[] = {
      "<think>\na </think>b\n<tool_call>\n<function=f>\n<parameter=p>\nv\n</parameter>\n</function>\n</tool_call> c",
      "x<tool_call><tool_call></tool_call></think><think>",
      "\n\n<think></think>\n\n\n",
      "héllo wörld 😀 <tool_call>\n<function=é>\n</function>\n</tool_call>",
  };
  std::mt19937 rng(1);
  for (const std::string& t : texts) {
    OutputParserOptions o;
    o.stop = {"STOP"};
    const Collected whole = Feed(o, t, {t.size()});
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<size_t> sizes;
      for (int i = 0; i < 8; ++i) sizes.push_back(1 + rng() % 6);
      const Collected c = Feed(o, t, sizes);
      EXPECT_EQ(c.reasoning, whole.reasoning) << t;
      EXPECT_EQ(c.content, whole.content) << t;
      ASSERT_EQ(c.calls.size(), whole.calls.size()) << t;
      for (size_t i = 0; i < c.calls.size(); ++i) {
        EXPECT_EQ(c.calls[i].arguments, whole.calls[i].arguments);
        EXPECT_EQ(c.calls[i].name, whole.calls[i].name);
      }
    }
  }
}

// Found by text_output_parser_fuzzer: a second "<think>" inside reasoning, split mid-tag, with
// empty chunks between the pieces.
TEST(OutputParserTest, EmptyChunksAndASplitNestedThinkTag) {
  const std::string pieces[] = {"<think><", "", "", "", "think>\n</th", "ink>cal\n"};
  for (bool prefilled : {false, true}) {
    OutputParserOptions o;
    o.reasoning.starts_in_reasoning = prefilled;
    o.tool_calls.id_seed = 7;
    OutputParser p(o);
    Collected chunked;
    for (const std::string& piece : pieces) chunked.Add(p.Push(piece));
    chunked.Add(p.Finish());
    const Collected whole = Feed(o, "<think><think>\n</think>cal\n", {64});
    EXPECT_EQ(chunked.reasoning, whole.reasoning) << prefilled;
    EXPECT_EQ(chunked.content, whole.content) << prefilled;
  }
}

}  // namespace
}  // namespace moed::text

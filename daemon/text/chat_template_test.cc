// Chat template tests: every case under tests/data/text/chat_cases renders byte-identically to
// Python jinja2 configured like HF transformers (daemon/text/testing/render_oracle.py, run here
// with python3), or fails the same way; plus load-time errors and the ChatML fallback.
#include "daemon/text/chat_template.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moed::text {
namespace {

using Json = nlohmann::ordered_json;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string DataDir() { return std::string(MOED_TEST_DATA_DIR) + "/text"; }

Json RunOracle() {
  const std::string script =
      std::string(MOED_TEST_DATA_DIR) + "/../../daemon/text/testing/render_oracle.py";
  const std::string cmd = "python3 '" + script + "' '" + DataDir() + "/chat_cases' '" +
                          DataDir() + "/templates'";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return Json();
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  EXPECT_EQ(rc, 0) << "oracle failed: " << cmd;
  return Json::parse(out, nullptr, false);
}

TEST(ChatTemplateTest, MatchesJinja2OnEveryCase) {
  const Json oracle = RunOracle();
  ASSERT_TRUE(oracle.is_object()) << "python3 with jinja2 is needed (scripts/install-deps.sh)";
  ASSERT_GE(oracle.size(), 30u);
  int rendered = 0, raised = 0;
  for (const auto& [name, expected] : oracle.items()) {
    SCOPED_TRACE(name);
    const Json c = Json::parse(ReadFile(DataDir() + "/chat_cases/" + name));
    const std::string source = c.contains("template_source")
                                   ? c["template_source"].get<std::string>()
                                   : ReadFile(DataDir() + "/templates/" +
                                              c["template"].get<std::string>());
    auto t = ChatTemplate::Parse(source);
    ASSERT_TRUE(t.ok()) << t.status();
    auto out = (*t)->Render(c["input"]);
    if (expected["ok"].get<bool>()) {
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_EQ(*out, expected["output"].get<std::string>());
      ++rendered;
    } else if (expected["raised"].get<bool>()) {
      ASSERT_FALSE(out.ok());
      EXPECT_EQ(out.status().code(), jinja::kTemplateRaised) << out.status();
      EXPECT_EQ(out.status().message(), expected["error"].get<std::string>());
      ++raised;
    } else {
      EXPECT_FALSE(out.ok()) << "jinja2 failed with " << expected["error"] << " but we rendered";
    }
  }
  EXPECT_GE(rendered, 30);
  EXPECT_GE(raised, 5);
}

TEST(ChatTemplateTest, QwenGenerationPrompts) {
  auto t = ChatTemplate::Parse(ReadFile(DataDir() + "/templates/qwen3.5-chat-template.jinja"));
  ASSERT_TRUE(t.ok()) << t.status();
  Json in = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"add_generation_prompt", true}};
  EXPECT_EQ(*(*t)->Render(in), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n");
  in["enable_thinking"] = false;
  EXPECT_EQ(*(*t)->Render(in),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

TEST(ChatTemplateTest, ToolCallArgumentsGivenAsJsonStringAreParsed) {
  auto t = ChatTemplate::Parse(ReadFile(DataDir() + "/templates/qwen3.5-chat-template.jinja"));
  ASSERT_TRUE(t.ok());
  Json in = Json::parse(R"({"messages": [{"role": "user", "content": "w?"},
      {"role": "assistant", "content": "", "tool_calls": [{"type": "function",
       "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}]})");
  auto out = (*t)->Render(in);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, ::testing::HasSubstr("<parameter=city>\nParis\n</parameter>"));
}

TEST(ChatTemplateTest, UnsupportedConstructsFailAtLoadWithLineAndColumn) {
  struct Bad {
    const char* source;
    const char* message;
  };
  const Bad cases[] = {
      {"hello\n  {% include 'x.jinja' %}", "line 2 column 6: unsupported template tag 'include'"},
      {"{{ x | nosuchfilter }}", "line 1 column 8: no filter named 'nosuchfilter'"},
      {"{% if x is nosuchtest %}{% endif %}", "line 1 column 12: no test named 'nosuchtest'"},
      {"{% for x in y %}", "unexpected end of template, expected 'endfor'"},
      {"{{ 'abc }}", "line 1 column 4: unterminated string literal"},
      {"{% for x in y recursive %}{% endfor %}", "recursive for loops are not supported"},
      {"{% break %}", "'break' outside of a for loop"},
      {"{{ a $ b }}", "line 1 column 6: unexpected character '$'"},
  };
  for (const Bad& b : cases) {
    auto t = ChatTemplate::Parse(b.source);
    ASSERT_FALSE(t.ok()) << b.source;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(t.status().message()), ::testing::HasSubstr(b.message)) << b.source;
  }
}

TEST(ChatTemplateTest, FallsBackToChatMlWithAWarning) {
  std::string warning;
  auto t = ChatTemplateOrChatMl("{% extends 'base' %}", "test.jinja", {}, &warning);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->is_chatml_fallback());
  EXPECT_THAT(warning, ::testing::HasSubstr("test.jinja"));
  EXPECT_THAT(warning, ::testing::HasSubstr("line 1 column 4"));
  Json in = Json::parse(R"({"messages": [{"role": "system", "content": "s"},
      {"role": "user", "content": [{"type": "text", "text": "hi"}]}], "add_generation_prompt": true})");
  EXPECT_EQ(*t->Render(in),
            "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  warning = "x";
  auto ok = ChatTemplateOrChatMl("{{ messages[0].content }}", "ok.jinja", {}, &warning);
  EXPECT_FALSE(ok->is_chatml_fallback());
  EXPECT_TRUE(warning.empty());
}

TEST(ChatTemplateTest, HostileTemplatesHitLimitsNotTheMachine) {
  const Json in = {{"messages", Json::array()}};
  jinja::Limits small;
  small.max_output_bytes = 1 << 20;
  small.max_steps = 200000;
  const char* bombs[] = {
      "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
      "{% set ns = namespace(s='xx') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
      "{{ 'x' * 100000000 }}",
      "{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}",
      "{{ range(1000000000)|length }}",
      "{% for i in range(100000) %}{{ 'abcdefghij' * 10 }}{% endfor %}",
      "{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}",
      "{% set ns = namespace() %}{% set ns.self = ns %}{{ ns }}",
      "{% set ns = namespace() %}{% set ns.l = [ns] %}",
  };
  for (const char* src : bombs) {
    ChatTemplateOptions o;
    o.limits = small;
    auto t = ChatTemplate::Parse(src, o);
    ASSERT_TRUE(t.ok()) << src << ": " << t.status();
    auto out = (*t)->Render(in);
    EXPECT_FALSE(out.ok()) << src;
  }
  // Deep nesting is refused at parse time, not by overflowing the stack.
  std::string deep = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  EXPECT_FALSE(ChatTemplate::Parse(deep).ok());
  std::string deep_blocks;
  for (int i = 0; i < 1000; ++i) deep_blocks += "{% if true %}";
  EXPECT_FALSE(ChatTemplate::Parse(deep_blocks).ok());
  std::string neg = "{{ " + std::string(100000, '-') + "1 }}";
  EXPECT_FALSE(ChatTemplate::Parse(neg).ok());
  // Deeply nested input JSON is refused before it is converted.
  std::string deep_json = std::string(1000, '[') + std::string(1000, ']');
  Json nested = Json::parse(deep_json, nullptr, false);
  if (!nested.is_discarded()) {
    auto t = ChatTemplate::Parse("{{ messages }}");
    auto out = (*t)->Render(Json{{"messages", Json::array({nested})}});
    EXPECT_FALSE(out.ok());
    EXPECT_THAT(std::string(out.status().message()), ::testing::HasSubstr("nested deeper"));
  }
}

TEST(ChatTemplateTest, InputErrors) {
  auto t = ChatTemplate::Parse("{{ messages }}");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE((*t)->Render(Json::array()).ok());
  EXPECT_FALSE((*t)->Render(Json::object()).ok());
  EXPECT_FALSE((*t)->Render(Json{{"messages", "no"}}).ok());
}

}  // namespace
}  // namespace moed::text

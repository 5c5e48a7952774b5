// moed-model chat-template and tokenize, run as a program on the text test data.
#include <cstdio>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/moed_model/testing/run_model_tool.h"

namespace {

using moed::testing::RunModelTool;
using Result = moed::testing::ToolResult;

Result RunTool(const std::string& args) { return RunModelTool(args); }

const std::string kText = std::string(MOED_TEST_DATA_DIR) + "/text";

TEST(TextCliTest, ChatTemplateRendersACase) {
  Result r = RunTool("chat-template --template " + kText + "/templates/qwen3.5-chat-template.jinja --input " +
                 kText + "/chat_cases/q04-thinking-off.json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output,
            "<|im_start|>user\nQuick answer: capital of France?<|im_end|>\n<|im_start|>assistant\n"
            "<think>\n\n</think>\n\n");
}

TEST(TextCliTest, ChatTemplateErrorExitsOneWithTheMessage) {
  Result r = RunTool("chat-template --template " + kText + "/templates/qwen3.5-chat-template.jinja --input " +
                 kText + "/chat_cases/q18-raise-no-user.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, ::testing::HasSubstr("No user query found in messages."));
}

TEST(TextCliTest, ChatTemplateFromModel) {
  Result r = RunTool("chat-template --model " + kText + "/vocab/ggml-vocab-qwen2.gguf --input " + kText +
                 "/chat_cases/q01-single-user.json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, ::testing::HasSubstr("<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"));
}

TEST(TextCliTest, TokenizePrintsIds) {
  const std::string path = ::testing::TempDir() + "/tokenize_input.txt";
  {
    std::ofstream f(path, std::ios::binary);
    f << "ied 4 \xC2\xBD months";
  }
  Result r = RunTool("tokenize --model " + kText + "/vocab/ggml-vocab-qwen2.gguf --text-file " + path);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "1122 220 19 220 26062 3951\n");
  Result missing = RunTool("tokenize --model " + kText + "/vocab/ggml-vocab-qwen2.gguf");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.output, ::testing::HasSubstr("--text-file"));
}

}  // namespace

// moed-model info / quantize / synth / load, run as a program the way people use it: exit codes,
// what they print, and the files they write (read back with the GGUF reader).
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/moed_model/testing/run_model_tool.h"
#include "kernels/quants/ggml_type.h"
#include "loader/gguf/gguf_file.h"

namespace moed {
namespace {

using ::testing::HasSubstr;

using moed::testing::RunModelTool;
using Result = moed::testing::ToolResult;

class ModelToolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/model_tool." + std::to_string(getpid());
    ASSERT_EQ(std::system(("mkdir -p '" + dir_ + "'").c_str()), 0);
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  Result Run(const std::string& args) { return RunModelTool(args); }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  static std::string Data(const std::string& rel) { return std::string(MOED_TEST_DATA_DIR) + "/" + rel; }

  std::string dir_;
};

TEST_F(ModelToolTest, InfoDescribesTheArchitecture) {
  Result r = Run("info " + Data("qwen35moe-tiny/tiny-a/tiny-a-bf16.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("76 tensors"));
  EXPECT_THAT(r.output, HasSubstr("architecture qwen35moe: 4 layers, n_embd 64, n_vocab 1024"));
  EXPECT_THAT(r.output, HasSubstr("linear-attention"));
  EXPECT_THAT(r.output, HasSubstr("full-attention"));
  EXPECT_THAT(r.output, HasSubstr("qwen35moe.attention.recurrent_layers"));
}

TEST_F(ModelToolTest, SynthWritesADescribableModelWithTheTokenizer) {
  const std::string out = Path("tiny.gguf");
  Result r = Run("synth " + out + " --preset tiny --experts Q4_K --rest Q8_0 --vocab " +
                 Data("text/vocab/ggml-vocab-qwen35.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto f = gguf::GgufFile::Open(out);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->FindTensor("blk.0.ffn_up_exps.weight")->type, GgmlType::kQ4_K);
  EXPECT_EQ((*f)->FindTensor("blk.0.attn_qkv.weight")->type, GgmlType::kQ8_0);
  EXPECT_EQ((*f)->FindTensor("blk.0.ffn_gate_inp.weight")->type, GgmlType::kF32);
  EXPECT_EQ(*(*f)->GetString("tokenizer.ggml.pre"), "qwen35");
  // The demo model takes the vocabulary's size.
  EXPECT_EQ((*f)->FindTensor("token_embd.weight")->ne[1],
            static_cast<int64_t>((*f)->FindValue("tokenizer.ggml.tokens")->size()));
  Result info = Run("info " + out);
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_THAT(info.output, HasSubstr("architecture qwen35moe: 4 layers, n_embd 256, n_vocab 151936"));
}

TEST_F(ModelToolTest, SynthRejectsUnknownPresetsAndTypes) {
  Result preset = Run("synth " + Path("x.gguf") + " --preset 7b");
  EXPECT_EQ(preset.exit_code, 1);
  EXPECT_THAT(preset.output, HasSubstr("unknown --preset '7b'"));
  Result type = Run("synth " + Path("x.gguf") + " --preset tiny --experts Q9_K");
  EXPECT_EQ(type.exit_code, 1);
  EXPECT_THAT(type.output, HasSubstr("unknown tensor type 'Q9_K'"));
  Result flag = Run("synth " + Path("x.gguf") + " --preset tiny --expert Q4_K");
  EXPECT_EQ(flag.exit_code, 1);
  EXPECT_THAT(flag.output, HasSubstr("unknown flag --expert"));
}

TEST_F(ModelToolTest, QuantizeFollowsPerTensorRules) {
  const std::string out = Path("q8.gguf");
  Result r = Run("quantize " + Data("qwen35moe-tiny/tiny-b/tiny-b-f32.gguf") + " " + out +
                 " --type Q8_0 --tensor-type 'blk\\.[0-3]\\.attn_gate=F16'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto f = gguf::GgufFile::Open(out);
  ASSERT_TRUE(f.ok()) << f.status();
  auto type_of = [&](const char* name) { return (*f)->FindTensor(name)->type; };
  EXPECT_EQ(type_of("blk.0.attn_qkv.weight"), GgmlType::kQ8_0);
  EXPECT_EQ(type_of("blk.0.attn_gate.weight"), GgmlType::kF16);       // the override
  EXPECT_EQ(type_of("blk.4.attn_gate.weight"), GgmlType::kQ8_0);      // outside the override
  EXPECT_EQ(type_of("blk.0.ssm_out.weight"), GgmlType::kF16);         // rows of 48: no Q8_0 blocks
  EXPECT_EQ(type_of("blk.0.ffn_gate_inp.weight"), GgmlType::kF32);    // router stays F32
  EXPECT_EQ(type_of("blk.0.attn_norm.weight"), GgmlType::kF32);
  EXPECT_EQ(type_of("blk.0.ssm_conv1d.weight"), GgmlType::kF32);
  EXPECT_EQ(*(*f)->GetUint("general.file_type"), 7u);
  Result info = Run("info " + out);
  EXPECT_EQ(info.exit_code, 0) << info.output;
}

TEST_F(ModelToolTest, QuantizeReportsBadArguments) {
  Result r = Run("quantize " + Data("qwen35moe-tiny/tiny-b/tiny-b-f32.gguf") + " " + Path("o.gguf") +
                 " --type Q8_0 --tensor-type 'ffn_(=Q4_K'");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("bad regex"));
  Result missing = Run("quantize /nonexistent.gguf " + Path("o.gguf") + " --type Q8_0");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.output, HasSubstr("cannot open '/nonexistent.gguf'"));
}

TEST_F(ModelToolTest, LoadReadsOnlyTheSelectedLayers) {
  const std::string model = Data("qwen35moe-tiny/tiny-b/tiny-b-f32.gguf");
  Result r = Run("load " + model + " --layers 2-3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Two of eight layers and nothing outside the blocks: far less than the file.
  unsigned long long selected = 0, file = 0, read = 0;
  const size_t at = r.output.find("tensors, ");
  ASSERT_NE(at, std::string::npos) << r.output;
  ASSERT_EQ(std::sscanf(r.output.c_str() + at, "tensors, %llu bytes selected of a %llu-byte file; read %llu", &selected,
                        &file, &read),
            3)
      << r.output;
  EXPECT_LT(selected, file / 3);
  EXPECT_GE(read, selected);
  EXPECT_LE(read, selected + selected / 100);
}

}  // namespace
}  // namespace moed

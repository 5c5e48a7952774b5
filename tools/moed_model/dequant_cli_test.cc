// End-to-end test of `moed-model dequant`: runs the built binary on quant-block fixtures and
// compares its output file with llama.cpp's decoding byte for byte, and checks that bad input
// (partial blocks, unknown or non-decodable types, missing files) fails with a clear message.
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/moed_model/testing/run_model_tool.h"

namespace moed {
namespace {

using ::testing::HasSubstr;

using RunResult = moed::testing::ToolResult;

std::vector<char> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string Fixture(const std::string& name) {
  return std::string(MOED_TEST_DATA_DIR) + "/quant-blocks/" + name;
}

class DequantCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/dequant_cli_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  RunResult Run(const std::string& args) { return moed::testing::RunModelTool("dequant " + args); }

  std::string dir_;
};

TEST_F(DequantCliTest, MatchesFixtures) {
  for (const char* type : {"Q4_K", "Q8_0", "IQ4_XS", "MXFP4"}) {
    const std::string out = Path(std::string(type) + ".f32");
    const RunResult r = Run(std::string("--type ") + type + " '" +
                            Fixture(std::string(type) + ".bin") + "' '" + out + "'");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::vector<char> got = ReadFile(out);
    const std::vector<char> expected = ReadFile(Fixture(std::string(type) + ".f32"));
    ASSERT_FALSE(expected.empty());
    EXPECT_TRUE(got == expected) << type << ": output differs from " << type << ".f32";
  }
}

TEST_F(DequantCliTest, AcceptsLowerCaseTypeAndEmptyFile) {
  { std::ofstream(Path("empty.bin"), std::ios::binary); }
  const RunResult r = Run("--type q6_k '" + Path("empty.bin") + "' '" + Path("empty.f32") + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(ReadFile(Path("empty.f32")).empty());
}

TEST_F(DequantCliTest, RejectsPartialBlocks) {
  std::vector<char> bytes = ReadFile(Fixture("Q4_K.bin"));
  bytes.resize(144 + 10);
  std::ofstream(Path("partial.bin"), std::ios::binary).write(bytes.data(), bytes.size());
  const RunResult r = Run("--type Q4_K '" + Path("partial.bin") + "' '" + Path("out.f32") + "'");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("not a whole number of Q4_K blocks"));
}

TEST_F(DequantCliTest, RejectsBadTypesAndArguments) {
  const std::string in = "'" + Fixture("Q8_0.bin") + "' '" + Path("out.f32") + "'";
  RunResult r = Run("--type Q9_K " + in);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("unknown tensor type 'Q9_K'"));
  r = Run("--type Q8_K " + in);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("no CPU dequantizer"));
  r = Run(in);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--type"));
  r = Run("--type Q8_0 '" + Fixture("Q8_0.bin") + "'");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("IN.bin OUT.f32"));
  r = Run("--type Q8_0 '" + Path("missing.bin") + "' '" + Path("out.f32") + "'");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("cannot open"));
}

}  // namespace
}  // namespace moed

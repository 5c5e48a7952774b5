// Tests of DequantizeRow: bit-for-bit agreement with llama.cpp's decoders on the
// tests/data/quant-blocks fixtures (every fixture type, grid formats included), the hand-computed
// vectors of gguf-and-quants.md §2, and argument validation.
#include "kernels/quants/dequantize.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/quants/ggml_type.h"

namespace moed {
namespace {

using ::testing::HasSubstr;

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string FixturePath(const std::string& name) {
  return std::string(MOED_TEST_DATA_DIR) + "/quant-blocks/" + name;
}

// Decodes `blocks` (whole blocks of `type`) and returns the floats.
std::vector<float> Decode(GgmlType type, const std::vector<uint8_t>& blocks) {
  const GgmlTypeTraits* t = FindGgmlType(type);
  const int64_t n = static_cast<int64_t>(blocks.size()) / t->type_size * t->block_size;
  std::vector<float> out(static_cast<size_t>(n));
  const absl::Status status = DequantizeRow(type, blocks.data(), out.data(), n);
  EXPECT_TRUE(status.ok()) << status;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Fixtures: <TYPE>.bin decoded must equal <TYPE>.f32 bit for bit.

class FixtureTest : public ::testing::TestWithParam<const char*> {};

TEST_P(FixtureTest, MatchesLlamaCppBitForBit) {
  const std::string name = GetParam();
  const absl::StatusOr<GgmlType> type = GgmlTypeFromName(name);
  ASSERT_TRUE(type.ok()) << type.status();
  const GgmlTypeTraits* t = FindGgmlType(*type);
  const std::vector<uint8_t> blocks = ReadFile(FixturePath(name + ".bin"));
  const std::vector<uint8_t> expected_bytes = ReadFile(FixturePath(name + ".f32"));
  ASSERT_FALSE(blocks.empty());
  ASSERT_EQ(blocks.size() % t->type_size, 0u);
  const int64_t n = static_cast<int64_t>(blocks.size()) / t->type_size * t->block_size;
  ASSERT_EQ(expected_bytes.size(), static_cast<size_t>(n) * sizeof(float));

  std::vector<float> expected(static_cast<size_t>(n));
  std::memcpy(expected.data(), expected_bytes.data(), expected_bytes.size());
  std::vector<float> got(static_cast<size_t>(n), -12345.0f);
  ASSERT_TRUE(DequantizeRow(*type, blocks.data(), got.data(), n).ok());
  for (int64_t i = 0; i < n; ++i) {
    uint32_t a, b;
    std::memcpy(&a, &got[i], 4);
    std::memcpy(&b, &expected[i], 4);
    ASSERT_EQ(a, b) << name << ": first mismatch at value " << i << " (block " << i / t->block_size
                    << "): got " << got[i] << ", llama.cpp " << expected[i];
  }
}

INSTANTIATE_TEST_SUITE_P(AllFixtures, FixtureTest,
                         ::testing::Values("F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                                           "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ2_XXS",
                                           "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S",
                                           "IQ4_XS", "IQ1_M", "TQ1_0", "TQ2_0", "MXFP4", "NVFP4"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param);
                         });

// ---------------------------------------------------------------------------------------------
// Hand vectors of gguf-and-quants.md §2.

// A zeroed block of `type` with some bytes set: {offset, byte} pairs.
std::vector<uint8_t> Block(GgmlType type, std::initializer_list<std::pair<int, uint8_t>> bytes) {
  std::vector<uint8_t> b(static_cast<size_t>(FindGgmlType(type)->type_size), 0);
  for (const auto& [offset, value] : bytes) b.at(static_cast<size_t>(offset)) = value;
  return b;
}

TEST(DequantizeVectors, Bf16) {
  const std::vector<float> y = Decode(GgmlType::kBf16, {0x80, 0x3F, 0xC0, 0x40});
  EXPECT_EQ(y, (std::vector<float>{1.0f, 6.0f}));
}

TEST(DequantizeVectors, F32IsACopy) {
  const float in[3] = {1.5f, -0.0f, 3e-40f};
  std::vector<uint8_t> bytes(sizeof(in));
  std::memcpy(bytes.data(), in, sizeof(in));
  const std::vector<float> y = Decode(GgmlType::kF32, bytes);
  EXPECT_EQ(std::memcmp(y.data(), in, sizeof(in)), 0);
}

TEST(DequantizeVectors, Q8_0) {
  const auto y = Decode(
      GgmlType::kQ8_0,
      Block(GgmlType::kQ8_0, {{0, 0x00}, {1, 0x38}, {2, 0x01}, {3, 0xFE}, {4, 0x7F}, {5, 0x80}}));
  EXPECT_EQ(y[0], 0.5f);
  EXPECT_EQ(y[1], -1.0f);
  EXPECT_EQ(y[2], 63.5f);
  EXPECT_EQ(y[3], -64.0f);
  EXPECT_EQ(y[4], 0.0f);
  EXPECT_EQ(y[31], 0.0f);
}

TEST(DequantizeVectors, Q4_0) {
  const auto y = Decode(GgmlType::kQ4_0, Block(GgmlType::kQ4_0, {{1, 0x34}, {2, 0xF0}, {3, 0x88}}));
  EXPECT_EQ(y[0], -2.0f);
  EXPECT_EQ(y[16], 1.75f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[17], 0.0f);
}

TEST(DequantizeVectors, Q2_K) {
  const auto y = Decode(
      GgmlType::kQ2_K,
      Block(GgmlType::kQ2_K,
            {{0, 0x21}, {2, 0x21}, {4, 0x21}, {6, 0x21}, {16, 0xE4}, {81, 0x3C}, {83, 0x38}}));
  EXPECT_EQ(y[0], -1.0f);
  EXPECT_EQ(y[32], 0.0f);
  EXPECT_EQ(y[64], 1.0f);
  EXPECT_EQ(y[96], 2.0f);
  EXPECT_EQ(y[16], 0.0f);
}

TEST(DequantizeVectors, Q3_K) {
  std::vector<uint8_t> b = Block(GgmlType::kQ3_K, {{0, 0x01}, {32, 0x03}, {109, 0x3C}});
  for (int j = 0; j < 8; ++j) b[96 + j] = 0x11;
  for (int j = 8; j < 12; ++j) b[96 + j] = 0xAA;
  auto y = Decode(GgmlType::kQ3_K, b);
  EXPECT_EQ(y[0], 3.0f);
  EXPECT_EQ(y[32], -4.0f);
  EXPECT_EQ(y[1], -4.0f);
  b[0] = 0;
  y = Decode(GgmlType::kQ3_K, b);
  EXPECT_EQ(y[0], -1.0f);
}

TEST(DequantizeVectors, Q4_K) {
  const uint8_t head[20] = {0x00, 0x3c, 0x00, 0x38, 0x01, 0x02, 0x03, 0xc4, 0x00, 0x01,
                            0x00, 0x40, 0x05, 0x06, 0x07, 0x1f, 0x3a, 0x00, 0x00, 0x00};
  std::vector<uint8_t> b = Block(GgmlType::kQ4_K, {{117, 0xF0}});
  std::memcpy(b.data(), head, sizeof(head));
  const auto y = Decode(GgmlType::kQ4_K, b);
  EXPECT_EQ(y[0], 10.0f);
  EXPECT_EQ(y[32], 5.5f);
  EXPECT_EQ(y[197], 0.0f);
  EXPECT_EQ(y[229], 936.5f);
}

TEST(DequantizeVectors, Q5_K) {
  const auto y = Decode(
      GgmlType::kQ5_K,
      Block(GgmlType::kQ5_K, {{1, 0x3C}, {3, 0x3C}, {4, 0x01}, {8, 0x02}, {16, 0x01}, {48, 0x03}}));
  EXPECT_EQ(y[0], 17.0f);
  EXPECT_EQ(y[1], -2.0f);
  EXPECT_EQ(y[32], 0.0f);
}

TEST(DequantizeVectors, Q6_K) {
  const auto y = Decode(
      GgmlType::kQ6_K,
      Block(GgmlType::kQ6_K,
            {{0, 0x21}, {128, 0xE4}, {192, 2}, {194, 1}, {196, 0xFD}, {198, 4}, {209, 0x38}}));
  EXPECT_EQ(y[0], -31.0f);
  EXPECT_EQ(y[32], -8.0f);
  EXPECT_EQ(y[64], -3.0f);
  EXPECT_EQ(y[96], 32.0f);
}

TEST(DequantizeVectors, Iq4Xs) {
  const auto y =
      Decode(GgmlType::kIq4Xs,
             Block(GgmlType::kIq4Xs, {{1, 0x3C}, {2, 0x02}, {4, 0x01}, {8, 0xF0}, {9, 0x98}}));
  EXPECT_EQ(y[0], -127.0f);
  EXPECT_EQ(y[16], 113.0f);
  EXPECT_EQ(y[1], 1.0f);
  EXPECT_EQ(y[17], 13.0f);
  EXPECT_EQ(y[32], 4064.0f);
}

TEST(DequantizeVectors, Mxfp4) {
  std::vector<uint8_t> b = Block(GgmlType::kMxfp4, {{0, 127}, {1, 0x7F}});
  auto y = Decode(GgmlType::kMxfp4, b);
  EXPECT_EQ(y[0], -6.0f);
  EXPECT_EQ(y[16], 6.0f);
  for (int j : {1, 2, 15, 17, 31}) EXPECT_EQ(y[j], 0.0f) << j;
  b[0] = 128;
  y = Decode(GgmlType::kMxfp4, b);
  EXPECT_EQ(y[0], -12.0f);
  // e = 0 and 1 are subnormal halves: 2^-128 and 2^-127.
  b[0] = 0;
  b[1] = 0x01;
  y = Decode(GgmlType::kMxfp4, b);
  EXPECT_EQ(y[0], 0x1.0p-128f);
  b[0] = 1;
  y = Decode(GgmlType::kMxfp4, b);
  EXPECT_EQ(y[0], 0x1.0p-127f);
}

TEST(DequantizeVectors, Nvfp4) {
  const auto y = Decode(GgmlType::kNvfp4,
                        Block(GgmlType::kNvfp4, {{0, 0x38}, {1, 0x7E}, {4, 0x7F}, {12, 0x01}}));
  EXPECT_EQ(y[0], -6.0f);
  EXPECT_EQ(y[8], 6.0f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[16], 224.0f);  // sub-block 1: ds = ue4m3_half(0x7E) = 224, code 1
  EXPECT_EQ(y[32], 0.0f);
}

TEST(DequantizeVectors, Nvfp4ScaleCodes) {
  // 0x01 is the smallest subnormal (2^-9, halved); 0x7F is NaN and decodes to 0.
  auto y = Decode(GgmlType::kNvfp4, Block(GgmlType::kNvfp4, {{0, 0x01}, {4, 0x01}}));
  EXPECT_EQ(y[0], 0x1.0p-10f);
  y = Decode(GgmlType::kNvfp4, Block(GgmlType::kNvfp4, {{0, 0x7F}, {4, 0x07}}));
  EXPECT_EQ(y[0], 0.0f);
}

TEST(DequantizeVectors, Iq3A770) {
  std::vector<uint8_t> b =
      Block(GgmlType::kIq3A770, {{0, 0x01}, {32, 0x03}, {96, 0x09}, {101, 0x3C}});
  auto y = Decode(GgmlType::kIq3A770, b);
  EXPECT_EQ(y[0], 127.0f);
  EXPECT_EQ(y[1], -125.0f);
  EXPECT_EQ(y[16], -125.0f);
  EXPECT_EQ(y[32], 1000.0f);
  b[0] = 0;
  y = Decode(GgmlType::kIq3A770, b);
  EXPECT_EQ(y[0], -4.0f);
}

// ---------------------------------------------------------------------------------------------
// Dispatch and validation.

TEST(DequantizeRowTest, EveryTypeFollowsItsCanDequantizeFlag) {
  for (const GgmlTypeTraits& t : AllGgmlTypes()) {
    std::vector<uint8_t> block(static_cast<size_t>(t.type_size), 0);
    std::vector<float> out(static_cast<size_t>(t.block_size), 1.0f);
    const absl::Status status = DequantizeRow(t.type, block.data(), out.data(), t.block_size);
    if (t.can_dequantize) {
      EXPECT_TRUE(status.ok()) << t.name << ": " << status;
    } else {
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << t.name;
      EXPECT_THAT(std::string(status.message()), HasSubstr(std::string(t.name)));
      EXPECT_EQ(out[0], 1.0f) << t.name << ": dst written on error";
    }
  }
}

TEST(DequantizeRowTest, RejectsPartialBlocks) {
  std::vector<uint8_t> block(144, 0);
  std::vector<float> out(256, 7.0f);
  const absl::Status status = DequantizeRow(GgmlType::kQ4_K, block.data(), out.data(), 100);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("Q4_K"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("100"));
  EXPECT_EQ(out[0], 7.0f);
}

TEST(DequantizeRowTest, RejectsNegativeCount) {
  float out[32];
  EXPECT_EQ(DequantizeRow(GgmlType::kQ8_0, nullptr, out, -32).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DequantizeRowTest, RejectsUnknownTypeId) {
  uint8_t block[18] = {};
  float out[32];
  const absl::Status status = DequantizeRow(static_cast<GgmlType>(4), block, out, 32);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("4"));
}

TEST(DequantizeRowTest, RejectsNullBuffers) {
  float out[32];
  EXPECT_EQ(DequantizeRow(GgmlType::kQ8_0, nullptr, out, 32).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(DequantizeRow(GgmlType::kQ8_0, nullptr, nullptr, 0).ok());
}

TEST(DequantizeRowTest, DecodesManyBlocksIndependently) {
  // Two Q4_0 blocks with different scales: block 1 must not reuse block 0's scale.
  std::vector<uint8_t> b = Block(GgmlType::kQ4_0, {{1, 0x3C}, {2, 0x09}});   // d = 1, q0 = 9
  std::vector<uint8_t> b2 = Block(GgmlType::kQ4_0, {{1, 0x40}, {2, 0x09}});  // d = 2
  b.insert(b.end(), b2.begin(), b2.end());
  const auto y = Decode(GgmlType::kQ4_0, b);
  ASSERT_EQ(y.size(), 64u);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[32], 2.0f);
  EXPECT_EQ(y[48], -16.0f);
}

}  // namespace
}  // namespace moed

// Tests of the safetensors reader: the qwen35moe-tiny checkpoints, a write/read round trip, and
// corrupt files (truncation, bad offsets, bad JSON), which must fail with errors naming the
// problem.
#include "loader/safetensors.h"

#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/base/half.h"

namespace moed {
namespace {

using ::testing::HasSubstr;

std::string FixturePath(const std::string& model) {
  return std::string(MOED_TEST_DATA_DIR) + "/qwen35moe-tiny/" + model + "/model.safetensors";
}

// A file image from a header text and a data section.
std::string Image(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t len = header.size();
  std::memcpy(out.data(), &len, 8);
  return out + header + data;
}

std::string FloatBytes(std::vector<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

TEST(SafetensorsTest, OpensTinyACheckpoint) {
  auto file = SafetensorsFile::Open(FixturePath("tiny-a"));
  ASSERT_TRUE(file.ok()) << file.status();
  const auto& tensors = (*file)->tensors();
  ASSERT_EQ(tensors.size(), 160u);               // 161 header entries, one of them __metadata__
  EXPECT_EQ(tensors[0].name, "lm_head.weight");  // header order
  EXPECT_EQ((*file)->metadata().at("format"), "pt");

  const SafetensorsTensor* conv = (*file)->Find("model.layers.0.linear_attn.conv1d.weight");
  ASSERT_NE(conv, nullptr);
  EXPECT_EQ(conv->dtype, SafetensorsDtype::kF32);
  EXPECT_EQ(conv->shape, (std::vector<int64_t>{128, 1, 4}));
  EXPECT_EQ(conv->nbytes(), 128u * 4 * 4);
  EXPECT_EQ((*file)->Data(*conv).size(), conv->nbytes());
  EXPECT_EQ((*file)->Find("no.such.tensor"), nullptr);

  // The data section starts right after the header and the last tensor ends the file.
  uint64_t last_end = 0;
  for (const auto& t : tensors) last_end = std::max(last_end, t.end);
  EXPECT_EQ((*file)->data_offset() + last_end, (*file)->file_size());
}

TEST(SafetensorsTest, OpensTinyBCheckpoint) {
  auto file = SafetensorsFile::Open(FixturePath("tiny-b"));
  ASSERT_TRUE(file.ok()) << file.status();
  const SafetensorsTensor* qkv = (*file)->Find("model.layers.0.linear_attn.in_proj_qkv.weight");
  ASSERT_NE(qkv, nullptr);
  EXPECT_EQ(qkv->ShapeString(), "[240, 96]");
  EXPECT_EQ(qkv->num_elements(), 240 * 96);
}

TEST(SafetensorsTest, RoundTripsEveryFloatDtype) {
  const uint16_t h = Fp32ToFp16(1.5f);
  const uint16_t b = Fp32ToBf16(-2.0f);
  std::vector<SafetensorsWriteTensor> in = {
      {"a", SafetensorsDtype::kF32, {2, 2}, FloatBytes({1, 2, 3, 4})},
      {"b.half", SafetensorsDtype::kF16, {1}, std::string(reinterpret_cast<const char*>(&h), 2)},
      {"c.bf16",
       SafetensorsDtype::kBf16,
       {1, 1},
       std::string(reinterpret_cast<const char*>(&b), 2)},
      {"empty", SafetensorsDtype::kF32, {0, 3}, ""},
  };
  auto image = SerializeSafetensors(in, {{"format", "pt"}});
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ((image->size() - 8 - (4 * 4 + 2 + 2)) % 8, 0u);  // header padded to 8 bytes
  auto file = SafetensorsFile::FromBytes(*image);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ((*file)->tensors().size(), 4u);
  EXPECT_EQ((*file)->tensors()[1].name, "b.half");
  const SafetensorsTensor* a = (*file)->Find("a");
  ASSERT_NE(a, nullptr);
  float v[4];
  std::memcpy(v, (*file)->Data(*a).data(), 16);
  EXPECT_EQ(v[3], 4.0f);
  const SafetensorsTensor* c = (*file)->Find("c.bf16");
  uint16_t got;
  std::memcpy(&got, (*file)->Data(*c).data(), 2);
  EXPECT_EQ(Bf16ToFp32(got), -2.0f);
  EXPECT_EQ((*file)->Find("empty")->nbytes(), 0u);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
}

TEST(SafetensorsTest, SerializeRejectsWrongByteCount) {
  auto image = SerializeSafetensors({{"a", SafetensorsDtype::kF32, {3}, FloatBytes({1, 2})}});
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  auto file = SafetensorsFile::Open("/nonexistent/model.safetensors");
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, TruncatedLengthField) {
  auto file = SafetensorsFile::FromBytes(std::string("\x10\0\0", 3), "short");
  EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(file.status().message(), HasSubstr("truncated"));
}

TEST(SafetensorsTest, TruncatedHeader) {
  std::string image =
      Image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", FloatBytes({1}));
  image.resize(20);  // cut inside the JSON
  auto file = SafetensorsFile::FromBytes(image);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(file.status().message(), HasSubstr("header needs"));
}

TEST(SafetensorsTest, HugeHeaderLengthIsRejectedBeforeReading) {
  std::string image(16, '\0');
  const uint64_t len = uint64_t{1} << 40;
  std::memcpy(image.data(), &len, 8);
  auto file = SafetensorsFile::FromBytes(image);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(file.status().message(), HasSubstr("exceeds the limit"));
}

TEST(SafetensorsTest, TruncatedData) {
  std::string image =
      Image(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", FloatBytes({1, 2, 3, 4}));
  image.resize(image.size() - 4);
  auto file = SafetensorsFile::FromBytes(image);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(file.status().message(), HasSubstr("tensor 'w'"));
  EXPECT_THAT(file.status().message(), HasSubstr("past the end"));
}

TEST(SafetensorsTest, OffsetsOutOfRange) {
  auto file = SafetensorsFile::FromBytes(
      Image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[1000,1004]}})", FloatBytes({1})));
  EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(file.status().message(), HasSubstr("tensor 'w'"));
}

TEST(SafetensorsTest, OffsetsEndBeforeBegin) {
  auto file = SafetensorsFile::FromBytes(
      Image(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", FloatBytes({1})));
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(file.status().message(), HasSubstr("end before they begin"));
}

TEST(SafetensorsTest, ByteCountMustMatchDtypeAndShape) {
  auto file = SafetensorsFile::FromBytes(
      Image(R"({"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})", FloatBytes({1, 2})));
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(file.status().message(), HasSubstr("BF16 [3] needs 6"));
}

TEST(SafetensorsTest, OverlapAndGapAreRejected) {
  auto overlap = SafetensorsFile::FromBytes(Image(
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
      FloatBytes({1, 2, 3})));
  EXPECT_EQ(overlap.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(overlap.status().message(), HasSubstr("overlaps"));

  auto gap = SafetensorsFile::FromBytes(
      Image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", FloatBytes({1, 2})));
  EXPECT_EQ(gap.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(gap.status().message(), HasSubstr("gap"));

  auto leftover = SafetensorsFile::FromBytes(
      Image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", FloatBytes({1, 2})));
  EXPECT_EQ(leftover.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(leftover.status().message(), HasSubstr("cover 4 bytes of a 8-byte"));
}

TEST(SafetensorsTest, BadJsonIsInvalidArgument) {
  auto file = SafetensorsFile::FromBytes(Image(R"({"a":{"dtype":"F32",)", ""));
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(file.status().message(), HasSubstr("not valid JSON"));

  auto not_object = SafetensorsFile::FromBytes(Image("[1, 2]", ""));
  EXPECT_EQ(not_object.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(not_object.status().message(), HasSubstr("not a JSON object"));
}

TEST(SafetensorsTest, DeeplyNestedHeaderDoesNotCrash) {
  const std::string header = "{\"w\":" + std::string(200000, '[') + std::string(200000, ']') + "}";
  auto file = SafetensorsFile::FromBytes(Image(header, ""));
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(file.status().message(), HasSubstr("tensor 'w'"));
}

TEST(SafetensorsTest, BadEntriesNameTheTensor) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"w":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}})",
       "unknown safetensors dtype 'F99'"},
      {R"({"w":{"shape":[1],"data_offsets":[0,4]}})", "\"dtype\""},
      {R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "negative"},
      {R"({"w":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", "\"shape\""},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", "data_offsets"},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4.5]}})", "integer"},
      {R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})",
       "overflows"},
      {R"({"w":[1,2]})", "not an object"},
      {R"({"__metadata__":{"format":1},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
       "__metadata__"},
  };
  for (const auto& [header, expected] : cases) {
    auto file = SafetensorsFile::FromBytes(Image(header, FloatBytes({1})));
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << header;
    EXPECT_THAT(file.status().message(), HasSubstr(expected)) << header;
  }
}

TEST(SafetensorsTest, WritesAFileThatReadsBack) {
  const std::string path = ::testing::TempDir() + "/safetensors_test_write.safetensors";
  ASSERT_TRUE(
      WriteSafetensorsFile(path, {{"x", SafetensorsDtype::kF32, {2}, FloatBytes({5, 6})}}).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_NE((*file)->Find("x"), nullptr);
  float v[2];
  std::memcpy(v, (*file)->Data(*(*file)->Find("x")).data(), 8);
  EXPECT_EQ(v[1], 6.0f);
}

}  // namespace
}  // namespace moed

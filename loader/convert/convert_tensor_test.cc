// Tests of the row-by-row tensor production: source dtypes, column orders, and the arithmetic
// precision rule (F16 sources compute in F16, like torch; others in F32).
#include "loader/convert/convert_tensor.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/base/half.h"
#include "loader/safetensors.h"

namespace moed::convert {
namespace {

// A one-tensor safetensors image holding `values` as `dtype`.
std::unique_ptr<SafetensorsFile> OneTensor(SafetensorsDtype dtype, const std::vector<float>& values,
                                           std::vector<int64_t> shape) {
  std::string bytes;
  for (float v : values) {
    if (dtype == SafetensorsDtype::kF32) {
      bytes.append(reinterpret_cast<const char*>(&v), 4);
    } else {
      const uint16_t h = dtype == SafetensorsDtype::kF16 ? Fp32ToFp16(v) : Fp32ToBf16(v);
      bytes.append(reinterpret_cast<const char*>(&h), 2);
    }
  }
  auto image = SerializeSafetensors({{"t", dtype, std::move(shape), bytes}});
  EXPECT_TRUE(image.ok());
  auto file = SafetensorsFile::FromBytes(*image);
  EXPECT_TRUE(file.ok());
  return *std::move(file);
}

std::vector<float> Produce(const PlannedTensor& t) {
  std::vector<uint8_t> out(t.nbytes());
  EXPECT_TRUE(t.Fill(std::span<uint8_t>(out)).ok());
  std::vector<float> v(static_cast<size_t>(t.num_elements()));
  std::memcpy(v.data(), out.data(), out.size());
  return v;
}

PlannedTensor Identity(const HfTensorRef* ref, std::vector<int64_t> ne, ValueOp op) {
  PlannedTensor t;
  t.name = "x";
  t.type = GgmlType::kF32;
  t.ne = std::move(ne);
  t.op = op;
  t.row_source = [ref](int64_t r) { return RowRef{ref, r}; };
  return t;
}

TEST(ConvertTensorTest, AddOneRoundsToF16ForF16SourcesOnly) {
  const float x = std::ldexp(1.0f, -11);  // 1 + 2^-11 is exact in F32, a tie in F16 (-> 1.0)
  for (SafetensorsDtype dtype :
       {SafetensorsDtype::kF16, SafetensorsDtype::kBf16, SafetensorsDtype::kF32}) {
    auto file = OneTensor(dtype, {x}, {1});
    HfTensorRef ref{"t", file.get(), file->Find("t")};
    const std::vector<float> got = Produce(Identity(&ref, {1}, ValueOp::kAddOne));
    EXPECT_EQ(got[0], dtype == SafetensorsDtype::kF16 ? 1.0f : 1.0f + x)
        << SafetensorsDtypeName(dtype);
  }
}

TEST(ConvertTensorTest, NegExp) {
  auto file = OneTensor(SafetensorsDtype::kF32, {0.0f, 1.0f, -2.0f}, {3});
  HfTensorRef ref{"t", file.get(), file->Find("t")};
  const std::vector<float> got = Produce(Identity(&ref, {3}, ValueOp::kNegExp));
  EXPECT_EQ(got[0], -1.0f);
  EXPECT_FLOAT_EQ(got[1], -std::exp(1.0f));
  EXPECT_FLOAT_EQ(got[2], -std::exp(-2.0f));
}

TEST(ConvertTensorTest, RowsColumnsAndOutputTypes) {
  // A [2, 3] source: rows swapped, columns reversed, written as BF16 and F16.
  auto file = OneTensor(SafetensorsDtype::kF32, {1, 2, 3, 4, 5, 6}, {2, 3});
  HfTensorRef ref{"t", file.get(), file->Find("t")};
  PlannedTensor t = Identity(&ref, {3, 2}, ValueOp::kCopy);
  t.row_source = [&ref](int64_t r) { return RowRef{&ref, 1 - r}; };
  t.column_order = {2, 1, 0};
  EXPECT_EQ(Produce(t), (std::vector<float>{6, 5, 4, 3, 2, 1}));

  t.type = GgmlType::kBf16;
  std::vector<uint8_t> out(t.nbytes());
  ASSERT_EQ(out.size(), 12u);
  ASSERT_TRUE(t.Fill(std::span<uint8_t>(out)).ok());
  uint16_t b;
  std::memcpy(&b, out.data() + 2, 2);
  EXPECT_EQ(Bf16ToFp32(b), 5.0f);

  t.type = GgmlType::kF16;
  ASSERT_TRUE(t.Fill(std::span<uint8_t>(out)).ok());
  std::memcpy(&b, out.data() + 10, 2);
  EXPECT_EQ(Fp16ToFp32(b), 1.0f);
}

TEST(ConvertTensorTest, BadRowMappingIsAnErrorNotAnOverRead) {
  auto file = OneTensor(SafetensorsDtype::kF32, {1, 2}, {2});
  HfTensorRef ref{"t", file.get(), file->Find("t")};
  PlannedTensor t =
      Identity(&ref, {2, 2}, ValueOp::kCopy);  // asks for a second row that is not there
  std::vector<uint8_t> out(t.nbytes());
  EXPECT_EQ(t.Fill(std::span<uint8_t>(out)).code(), absl::StatusCode::kInternal);
  std::vector<uint8_t> small(4);
  EXPECT_FALSE(t.Fill(std::span<uint8_t>(small)).ok());
}

TEST(ConvertTensorTest, SourceRowsChecksDtypeAndDivisibility) {
  auto file = OneTensor(SafetensorsDtype::kF32, {1, 2, 3, 4, 5, 6}, {2, 3});
  HfTensorRef ref{"t", file.get(), file->Find("t")};
  EXPECT_EQ(*SourceRows(ref, 3), 2);
  EXPECT_EQ(SourceRows(ref, 4).status().code(), absl::StatusCode::kInvalidArgument);
  auto ints = SafetensorsFile::FromBytes(
      *SerializeSafetensors({{"i", SafetensorsDtype::kI32, {1}, std::string(4, '\0')}}));
  ASSERT_TRUE(ints.ok());
  HfTensorRef iref{"i", ints->get(), (*ints)->Find("i")};
  EXPECT_EQ(SourceRows(iref, 1).status().code(), absl::StatusCode::kUnimplemented);
}

TEST(ConvertTensorTest, CountParametersCountsExpertsOnce) {
  PlannedTensor a;
  a.name = "blk.0.ffn_up_exps.weight";
  a.ne = {4, 3, 8};
  PlannedTensor b;
  b.name = "token_embd.weight";
  b.ne = {4, 10};
  const ParameterCounts c = CountParameters({a, b});
  EXPECT_EQ(c.total, 96 + 40);
  EXPECT_EQ(c.expert, 12);
  EXPECT_EQ(c.shared, 40);
  EXPECT_EQ(c.expert_count, 8);
}

}  // namespace
}  // namespace moed::convert

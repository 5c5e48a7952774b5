// Tests of the GGUF reader and writer: files written by llama.cpp's converter parse and are
// rewritten byte for byte; malformed and hostile headers are rejected with errors that name the
// problem, never a crash or an over-read.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "loader/gguf/gguf_file.h"
#include "loader/gguf/gguf_writer.h"

namespace moed::gguf {
namespace {

using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/" + name + "." + std::to_string(getpid());
}

std::string Fixture(const std::string& model, const std::string& suffix) {
  return std::string(MOED_TEST_DATA_DIR) + "/qwen35moe-tiny/" + model + "/" + model + "-" + suffix + ".gguf";
}

// Builds raw GGUF bytes field by field, so tests can write any (also invalid) header.
class Bytes {
 public:
  Bytes& U32(uint32_t v) { return Raw(&v, 4); }
  Bytes& U64(uint64_t v) { return Raw(&v, 8); }
  Bytes& I64(int64_t v) { return Raw(&v, 8); }
  Bytes& Str(std::string_view s) {
    U64(s.size());
    return Raw(s.data(), s.size());
  }
  Bytes& Raw(const void* p, size_t n) {
    s_.append(static_cast<const char*>(p), n);
    return *this;
  }
  Bytes& PadTo(size_t alignment) {
    while (s_.size() % alignment) s_.push_back('\0');
    return *this;
  }
  Bytes& Header(int64_t n_tensors, int64_t n_kv, uint32_t version = 3) {
    return U32(0x46554747).U32(version).I64(n_tensors).I64(n_kv);
  }
  const std::string& str() const { return s_; }

 private:
  std::string s_;
};

// A valid file: one UINT32 key and one F32 tensor [8] at offset 0.
Bytes ValidFile() {
  Bytes b;
  b.Header(1, 1).Str("general.architecture").U32(8).Str("llama");
  b.Str("t").U32(1).I64(8).U32(0).U64(0).PadTo(32);
  for (int i = 0; i < 8; ++i) {
    float f = static_cast<float>(i);
    b.Raw(&f, 4);
  }
  return b;
}

absl::Status ParseError(const Bytes& b) { return GgufFile::FromBytes(b.str()).status(); }

TEST(GgufFileTest, ReadsLlamaCppConverterOutput) {
  auto file = GgufFile::Open(Fixture("tiny-a", "f32"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->version(), 3u);
  EXPECT_EQ(*(*file)->GetString("general.architecture"), "qwen35moe");
  EXPECT_EQ(*(*file)->GetUint("qwen35moe.block_count"), 4u);
  EXPECT_EQ(*(*file)->GetUint("qwen35moe.embedding_length"), 64u);
  const TensorInfo* embd = (*file)->FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->type, GgmlType::kF32);
  EXPECT_EQ(embd->ne[0], 64);
  EXPECT_EQ(embd->ne[1], 1024);
  EXPECT_EQ(embd->nbytes, 64u * 1024 * 4);
  EXPECT_EQ((*file)->TensorFileOffset(*embd) % (*file)->alignment(), 0u);
  EXPECT_EQ((*file)->FindTensor("no.such.tensor"), nullptr);
  EXPECT_THAT((*file)->GetUint("no.such.key").status().message(), HasSubstr("no.such.key"));
  EXPECT_THAT((*file)->GetUint("general.architecture").status().message(),
              HasSubstr("general.architecture"));
}

// Rewriting every key and tensor of a llama.cpp file with our writer reproduces it exactly.
void ExpectRoundTripIdentical(const std::string& path) {
  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  GgufWriter writer;
  writer.CopyMetadataFrom(**file);
  for (const TensorInfo& t : (*file)->tensors()) {
    ASSERT_TRUE(writer
                    .AddTensorBytes(t.name, t.type, std::span<const int64_t>(t.ne.data(), t.n_dims),
                                    (*file)->TensorData(t))
                    .ok());
  }
  const std::string out = TempPath("roundtrip.gguf");
  ASSERT_TRUE(writer.WriteFile(out).ok());
  const std::string original = ReadAll(path);
  const std::string rewritten = ReadAll(out);
  ASSERT_EQ(original.size(), rewritten.size()) << out;
  EXPECT_TRUE(original == rewritten) << "first difference at byte "
                                     << std::mismatch(original.begin(), original.end(), rewritten.begin()).first -
                                            original.begin();
}

TEST(GgufWriterTest, RewritesLlamaCppFilesByteForByte) {
  for (const char* model : {"tiny-a", "tiny-b"}) {
    for (const char* suffix : {"f32", "bf16"}) {
      SCOPED_TRACE(std::string(model) + "-" + suffix);
      ExpectRoundTripIdentical(Fixture(model, suffix));
    }
  }
}

TEST(GgufWriterTest, WritesEveryValueTypeAndReadsItBack) {
  GgufWriter w;
  w.SetValue("u8", Value::Uint8(200));
  w.SetValue("i8", Value::Int8(-5));
  w.SetValue("u16", Value::Uint16(65000));
  w.SetValue("i16", Value::Int16(-300));
  w.SetValue("u32", Value::Uint32(4000000000u));
  w.SetValue("i32", Value::Int32(-7));
  w.SetValue("u64", Value::Uint64(1ull << 40));
  w.SetValue("i64", Value::Int64(-(1ll << 40)));
  w.SetValue("f32", Value::Float32(1.5f));
  w.SetValue("f64", Value::Float64(-2.25));
  w.SetValue("b", Value::Bool(true));
  w.SetValue("s", Value::String("héllo"));
  w.SetValue("as", Value::StringArray({"a", "", "ccc"}));
  const int32_t ints[] = {11, 11, 10, 0};
  w.SetValue("ai", Value::Int32Array(ints));
  const bool bools[] = {false, true};
  w.SetValue("ab", Value::BoolArray(bools));
  w.SetValue("u32", Value::Uint32(7));  // replacing keeps the position
  const int64_t ne[] = {64, 2};
  std::vector<uint8_t> q8(2 * 2 * 34, 0);
  ASSERT_TRUE(w.AddTensorBytes("q", GgmlType::kQ8_0, ne, q8).ok());
  EXPECT_FALSE(w.AddTensorBytes("q", GgmlType::kQ8_0, ne, q8).ok());  // duplicate
  const int64_t bad_ne[] = {33};
  EXPECT_FALSE(w.AddTensorBytes("r", GgmlType::kQ8_0, bad_ne, q8).ok());  // not whole blocks

  const std::string path = TempPath("values.gguf");
  ASSERT_TRUE(w.WriteFile(path).ok());
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->metadata()[4].key, "u32");
  EXPECT_EQ(*(*f)->GetUint("u32"), 7u);
  EXPECT_EQ(*(*f)->FindValue("i8")->GetInt(), -5);
  EXPECT_EQ(*(*f)->GetUint("u64"), 1ull << 40);
  EXPECT_EQ(*(*f)->FindValue("i64")->GetInt(), -(1ll << 40));
  EXPECT_FALSE((*f)->GetUint("i64").ok());  // negative
  EXPECT_EQ(*(*f)->GetFloat("f32"), 1.5);
  EXPECT_EQ(*(*f)->GetFloat("f64"), -2.25);
  EXPECT_TRUE(*(*f)->GetBool("b"));
  EXPECT_EQ(*(*f)->GetString("s"), "héllo");
  auto strings = (*f)->FindValue("as")->GetStrings();
  ASSERT_TRUE(strings.ok());
  EXPECT_EQ((*strings)[2], "ccc");
  EXPECT_EQ(*(*f)->FindValue("ai")->GetIntAt(2), 10);
  EXPECT_EQ(*(*f)->FindValue("ab")->GetIntAt(1), 1);
  EXPECT_EQ((*f)->FindValue("ai")->DebugString(), "[INT32 x 4: 11, 11, 10, 0]");
  const TensorInfo* q = (*f)->FindTensor("q");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->nbytes, 136u);
  EXPECT_EQ(q->n_dims, 2u);
  std::remove(path.c_str());
}

TEST(GgufFileTest, AcceptsTheMinimalValidFile) {
  auto f = GgufFile::FromBytes(ValidFile().str());
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f.value()->TensorData(f.value()->tensors()[0]).size(), 32u);
}

TEST(GgufFileTest, EveryTruncationIsAnErrorNotACrash) {
  const std::string full = ValidFile().str();
  for (size_t n = 0; n < full.size(); ++n) {
    auto f = GgufFile::FromBytes(full.substr(0, n));
    EXPECT_FALSE(f.ok()) << "prefix of " << n << " bytes was accepted";
  }
}

TEST(GgufFileTest, RejectsMalformedHeadersWithClearErrors) {
  struct Case {
    const char* name;
    Bytes bytes;
    const char* message;
  };
  std::vector<Case> cases;
  cases.push_back({"bad magic", Bytes().U32(0x12345678).U32(3).I64(0).I64(0), "bad magic"});
  cases.push_back({"version 1", Bytes().Header(0, 0, 1), "unsupported GGUF version 1"});
  cases.push_back({"byte-swapped", Bytes().Header(0, 0, 0x03000000), "byte-swapped"});
  cases.push_back({"negative tensor count", Bytes().Header(-1, 0), "implausible tensor count"});
  cases.push_back({"huge kv count", Bytes().Header(0, 1ll << 60), "implausible key/value count"});
  cases.push_back({"huge string", Bytes().Header(0, 1).U64(1ull << 62), "exceeds the limit"});
  cases.push_back({"duplicate key", Bytes().Header(0, 2).Str("k").U32(4).U32(1).Str("k").U32(4).U32(2),
                   "duplicate key 'k'"});
  cases.push_back({"bad value type", Bytes().Header(0, 1).Str("k").U32(13), "invalid value type 13"});
  cases.push_back({"nested array", Bytes().Header(0, 1).Str("k").U32(9).U32(9).U64(1), "nested arrays"});
  cases.push_back({"huge array", Bytes().Header(0, 1).Str("k").U32(9).U32(4).U64(1ull << 40), "does not fit"});
  cases.push_back({"alignment type", Bytes().Header(0, 1).Str("general.alignment").U32(10).U64(32),
                   "general.alignment must be UINT32"});
  cases.push_back({"alignment value", Bytes().Header(0, 1).Str("general.alignment").U32(4).U32(24),
                   "not a power of two"});
  const std::string long_name(64, 'x');
  cases.push_back({"long tensor name", Bytes().Header(1, 0).Str(long_name).U32(1).I64(8).U32(0).U64(0),
                   "name length 64"});
  cases.push_back({"five dims", Bytes().Header(1, 0).Str("t").U32(5), "5 dimensions"});
  cases.push_back({"negative dim", Bytes().Header(1, 0).Str("t").U32(1).I64(-8), "negative dimension"});
  cases.push_back({"removed type", Bytes().Header(1, 0).Str("t").U32(1).I64(32).U32(4).U64(0),
                   "unknown or removed ggml type id 4"});
  cases.push_back({"partial block", Bytes().Header(1, 0).Str("t").U32(1).I64(33).U32(8).U64(0).PadTo(32),
                   "not a multiple of the Q8_0 block size"});
  cases.push_back({"offset gap", Bytes().Header(1, 0).Str("t").U32(1).I64(8).U32(0).U64(32).PadTo(32),
                   "has offset 32, expected 0"});
  cases.push_back({"element overflow",
                   Bytes().Header(1, 0).Str("t").U32(4).I64(1ll << 40).I64(1ll << 40).I64(1).I64(1).U32(0).U64(0),
                   "overflows"});
  cases.push_back({"data past EOF", Bytes().Header(1, 0).Str("t").U32(1).I64(1024).U32(0).U64(0).PadTo(32),
                   "truncated file: tensor 't'"});
  cases.push_back({"duplicate tensor",
                   Bytes().Header(2, 0).Str("t").U32(1).I64(8).U32(0).U64(0).Str("t").U32(1).I64(8).U32(0).U64(32),
                   "duplicate tensor 't'"});
  for (const Case& c : cases) {
    absl::Status s = ParseError(c.bytes);
    EXPECT_FALSE(s.ok()) << c.name;
    EXPECT_THAT(s.message(), HasSubstr(c.message)) << c.name;
  }
}

TEST(GgufFileTest, FuzzSeedsAreValidFiles) {
  for (const char* seed : {"all_value_types.gguf", "v2_empty.gguf", "twin_type42.gguf"}) {
    auto f = GgufFile::Open(std::string(MOED_TEST_DATA_DIR) + "/../fuzz/gguf/" + seed);
    EXPECT_TRUE(f.ok()) << seed << ": " << f.status();
  }
}

TEST(GgufFileTest, OpenReportsMissingAndEmptyFiles) {
  EXPECT_EQ(GgufFile::Open("/nonexistent/model.gguf").status().code(), absl::StatusCode::kNotFound);
  const std::string empty = TempPath("empty.gguf");
  std::ofstream(empty).close();
  EXPECT_THAT(GgufFile::Open(empty).status().message(), HasSubstr("is empty"));
  std::remove(empty.c_str());
}

}  // namespace
}  // namespace moed::gguf

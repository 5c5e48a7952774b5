// Tokenizer tests: llama.cpp's test-tokenizer-0 vectors for the qwen2 and qwen35 pre-tokenizers,
// special tokens, errors, and the streaming detokenizer.
#include "daemon/text/tokenizer.h"

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "daemon/text/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moed::text {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string VocabPath(const std::string& name) {
  return std::string(MOED_TEST_DATA_DIR) + "/text/vocab/" + name;
}

const Tokenizer& Qwen(const std::string& name) {
  static auto* cache = new std::map<std::string, std::unique_ptr<Tokenizer>>();
  auto& t = (*cache)[name];
  if (!t) {
    auto loaded = Tokenizer::FromGgufPath(VocabPath(name));
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    t = std::move(*loaded);
  }
  return *t;
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

// test-tokenizer-0 format: each case is followed by "\n__ggml_vocab_test__\n"; one id line each.
std::vector<Case> ReadCases(const std::string& name) {
  const std::string inp = ReadFile(VocabPath(name + ".inp"));
  const std::string out = ReadFile(VocabPath(name + ".out"));
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<Case> cases;
  size_t pos = 0;
  while (pos < inp.size()) {
    const size_t end = inp.find(sep, pos);
    if (end == std::string::npos) break;
    cases.push_back({inp.substr(pos, end - pos), {}});
    pos = end + sep.size();
  }
  std::vector<std::string> lines = absl::StrSplit(out, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  EXPECT_EQ(lines.size(), cases.size());
  for (size_t i = 0; i < cases.size() && i < lines.size(); ++i) {
    for (absl::string_view tok : absl::StrSplit(lines[i], ' ', absl::SkipEmpty())) {
      int32_t id;
      EXPECT_TRUE(absl::SimpleAtoi(tok, &id));
      cases[i].ids.push_back(id);
    }
  }
  return cases;
}

class VectorTest : public ::testing::TestWithParam<std::string> {};

TEST_P(VectorTest, EncodesToExactIdsAndDecodesBack) {
  const Tokenizer& t = Qwen(GetParam());
  const std::vector<Case> cases = ReadCases(GetParam());
  ASSERT_GE(cases.size(), 46u);
  for (size_t i = 0; i < cases.size(); ++i) {
    auto ids = t.Encode(cases[i].text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, cases[i].ids) << "case " << i << ": '" << cases[i].text << "'";
    auto text = t.Decode(*ids);
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, cases[i].text) << "case " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Qwen, VectorTest,
                         ::testing::Values("ggml-vocab-qwen2.gguf", "ggml-vocab-qwen35.gguf"));

TEST(TokenizerTest, ReadsVocabMetadata) {
  const Tokenizer& t = Qwen("ggml-vocab-qwen2.gguf");
  EXPECT_EQ(t.n_vocab(), 151936);
  EXPECT_EQ(t.pre(), "qwen2");
  EXPECT_EQ(t.eos_id(), 151643);
  EXPECT_TRUE(t.IsEog(151643));
  const int32_t im_end = t.TokenId("<|im_end|>");
  ASSERT_NE(im_end, kNoToken);
  EXPECT_TRUE(t.IsEog(im_end));
  EXPECT_FALSE(t.IsEog(t.TokenId("Hello")));
}

TEST(TokenizerTest, ControlTokensOnlyWhenParsingSpecial) {
  const Tokenizer& t = Qwen("ggml-vocab-qwen2.gguf");
  const int32_t im_start = t.TokenId("<|im_start|>");
  ASSERT_NE(im_start, kNoToken);
  auto with = t.Encode("<|im_start|>user\nhi", {.parse_special = true});
  ASSERT_TRUE(with.ok());
  ASSERT_FALSE(with->empty());
  EXPECT_EQ((*with)[0], im_start);
  auto without = t.Encode("<|im_start|>user\nhi");
  ASSERT_TRUE(without.ok());
  EXPECT_THAT(*without, ::testing::Not(::testing::Contains(im_start)));
  EXPECT_GT(without->size(), with->size());
  // Control tokens decode to nothing unless asked for.
  EXPECT_EQ(*t.Decode(*with), "user\nhi");
  EXPECT_EQ(*t.Decode(*with, /*special=*/true), "<|im_start|>user\nhi");
  EXPECT_EQ(*t.Decode(*without), "<|im_start|>user\nhi");
}

TEST(TokenizerTest, RejectsInvalidUtf8AndBadIds) {
  const Tokenizer& t = Qwen("ggml-vocab-qwen2.gguf");
  auto r = t.Encode(std::string("ab\xff", 3));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), ::testing::HasSubstr("byte offset 2"));
  EXPECT_EQ(t.TokenToPiece(-1).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(t.TokenToPiece(t.n_vocab()).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(TokenizerTest, LongRunsStayLinear) {
  const Tokenizer& t = Qwen("ggml-vocab-qwen35.gguf");
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "\xc3\xa0";  // one 40 KB word of 'à'
  text += std::string(100000, ' ');
  text += std::string(50000, '!');
  auto ids = t.Encode(text);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*t.Decode(*ids), text);
}

TEST(StreamingDetokenizerTest, HoldsBackSplitCharacters) {
  const Tokenizer& t = Qwen("ggml-vocab-qwen2.gguf");
  // "ied 4 ½ months" tokenizes with ½ split over two byte tokens.
  const std::string text = "é 😀 ½ months 你好";
  auto ids = t.Encode(text);
  ASSERT_TRUE(ids.ok());
  StreamingDetokenizer d(&t);
  std::string all;
  for (int32_t id : *ids) {
    auto s = d.Push(id);
    ASSERT_TRUE(s.ok());
    EXPECT_TRUE(IsValidUtf8(*s)) << "emitted half a character";
    all += *s;
  }
  all += d.Flush();
  EXPECT_EQ(all, text);
}

TEST(StreamingDetokenizerTest, ByteLevel) {
  StreamingDetokenizer d(nullptr);
  EXPECT_EQ(d.PushBytes("a\xF0\x9F"), "a");
  EXPECT_EQ(d.pending_bytes(), 2u);
  EXPECT_EQ(d.PushBytes("\x98"), "");
  EXPECT_EQ(d.PushBytes("\x80z"), "\xF0\x9F\x98\x80z");
  // A byte that can never start a character is replaced at once.
  EXPECT_EQ(d.PushBytes("\xFF"), "\xEF\xBF\xBD");
  // A lead byte followed by a non-continuation byte: both resolved, the lead replaced.
  EXPECT_EQ(d.PushBytes("\xE4"), "");
  EXPECT_EQ(d.PushBytes("x"), "\xEF\xBF\xBDx");
  // The stream ends inside a character.
  EXPECT_EQ(d.PushBytes("\xE4\xBD"), "");
  EXPECT_EQ(d.Flush(), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(BpeTest, ByteLevelMapRoundTrips) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(ByteLevelDecode(ByteLevelEncode(all)), all);
  EXPECT_EQ(ByteLevelEncode(" "), "\xC4\xA0");  // 'Ġ'
  EXPECT_EQ(ByteLevelEncode("\n"), "\xC4\x8A");  // 'Ċ'
}

TEST(TokenizerTest, FromVocabValidates) {
  VocabData v;
  v.model = "llama";
  EXPECT_EQ(Tokenizer::FromVocab(v).status().code(), absl::StatusCode::kUnimplemented);
  v.model = "gpt2";
  v.tokens = {"a"};
  EXPECT_EQ(Tokenizer::FromVocab(v).status().code(), absl::StatusCode::kFailedPrecondition);
  v.pre = "nope";
  EXPECT_EQ(Tokenizer::FromVocab(v).status().code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace moed::text

// Pre-tokenizer on PCRE2 (see pretokenizer.h). The patterns are llama.cpp's (src/llama-vocab.cpp),
// which are the HF tokenizer.json patterns with the case-insensitive group spelled out.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "daemon/text/pretokenizer.h"

#include <pcre2.h>

#include "absl/strings/str_cat.h"
#include "daemon/text/utf8.h"
#include "kernels/base/strings.h"

namespace moed::text {
namespace {

constexpr std::string_view kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen3.5: letters may carry combining marks, and marks never start a punctuation run.
constexpr std::string_view kQwen35 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

pcre2_code* Code(void* p) { return static_cast<pcre2_code*>(p); }

std::string Pcre2Message(int code) {
  PCRE2_UCHAR buf[256];
  const int n = pcre2_get_error_message(code, buf, sizeof(buf));
  return n < 0 ? absl::StrCat("PCRE2 error ", code) : std::string(reinterpret_cast<char*>(buf), n);
}

}  // namespace

std::string_view PreTokenizer::PatternForName(std::string_view name) {
  if (name == "qwen2" || name == "deepseek-r1-qwen") return kQwen2;
  if (name == "qwen35") return kQwen35;
  if (name == "llama3" || name == "llama-bpe" || name == "smaug-bpe") return kLlama3;
  if (name == "gpt2" || name == "default" || name == "gpt-2") return kGpt2;
  return {};
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::ForName(std::string_view name) {
  const std::string_view pattern = PatternForName(name);
  if (pattern.empty()) {
    return absl::UnimplementedError(absl::StrCat(
        "unsupported pre-tokenizer '", Sv(name), "' (supported: qwen2, qwen35, llama3, gpt2)"));
  }
  return FromPattern(pattern);
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::FromPattern(std::string_view pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error, &offset, nullptr);
  if (code == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("pre-tokenizer regex does not compile at offset ",
                                                   offset, ": ", Pcre2Message(error)));
  }
  std::unique_ptr<PreTokenizer> p(new PreTokenizer());
  p->pattern_ = std::string(pattern);
  p->code_ = code;
  p->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return p;
}

PreTokenizer::~PreTokenizer() {
  if (code_ != nullptr) pcre2_code_free(Code(code_));
}

absl::Status PreTokenizer::Split(std::string_view text, std::vector<std::string_view>* out) const {
  const size_t bad = FirstInvalidUtf8(text);
  if (bad != text.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("text is not valid UTF-8 (byte offset ", bad, ")"));
  }
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(Code(code_), nullptr);
  if (md == nullptr) return absl::ResourceExhaustedError("cannot allocate PCRE2 match data");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  size_t last_end = 0;
  absl::Status status;
  while (pos < text.size()) {
    // The subject was validated above, so PCRE2 need not re-check it on every call (which
    // would make the split quadratic).
    const int rc = jit_ ? pcre2_jit_match(Code(code_), subject, text.size(), pos,
                                          PCRE2_NO_UTF_CHECK, md, nullptr)
                        : pcre2_match(Code(code_), subject, text.size(), pos, PCRE2_NO_UTF_CHECK,
                                      md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      status = absl::ResourceExhaustedError(
          absl::StrCat("pre-tokenizer regex failed at byte ", pos, ": ", Pcre2Message(rc)));
      break;
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t start = ov[0];
    size_t end = ov[1];
    if (start > last_end) out->push_back(text.substr(last_end, start - last_end));
    if (end == start) {
      // Empty match: step one character so the loop always advances.
      char32_t cp;
      const size_t n = DecodeUtf8(text, start, &cp);
      end = start + (n == 0 ? 1 : n);
      out->push_back(text.substr(start, end - start));
    } else {
      out->push_back(text.substr(start, end - start));
    }
    last_end = end;
    pos = end;
  }
  if (status.ok() && last_end < text.size()) out->push_back(text.substr(last_end));
  pcre2_match_data_free(md);
  return status;
}

}  // namespace moed::text

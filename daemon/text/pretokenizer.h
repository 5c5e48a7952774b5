// Pre-tokenizer: splits text into the words that byte-level BPE merges within, with the regex a
// GGUF names in `tokenizer.ggml.pre`. The regexes use Unicode classes (\p{L}, \p{N}, \s), so they
// run on PCRE2 with UTF + UCP instead of hand-written category tables.
#ifndef MOED_DAEMON_TEXT_PRETOKENIZER_H_
#define MOED_DAEMON_TEXT_PRETOKENIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace moed::text {

class PreTokenizer {
 public:
  // `name` is the value of tokenizer.ggml.pre: "qwen2", "qwen35", "llama3", "gpt2"/"default".
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> ForName(std::string_view name);
  // Any PCRE2 pattern (compiled with UTF | UCP); errors carry PCRE2's message and offset.
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> FromPattern(std::string_view pattern);
  // The pattern llama.cpp uses for `name`, or empty if unknown.
  static std::string_view PatternForName(std::string_view name);

  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Appends the pieces of `text` (views into it) to `out`; together they cover `text` exactly.
  // `text` must be valid UTF-8 (InvalidArgument otherwise). Thread-safe.
  absl::Status Split(std::string_view text, std::vector<std::string_view>* out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  PreTokenizer() = default;
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*, kept opaque so users need no PCRE2 headers
  bool jit_ = false;
};

}  // namespace moed::text

#endif  // MOED_DAEMON_TEXT_PRETOKENIZER_H_

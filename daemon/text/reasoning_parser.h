// Splits a model's streamed output into reasoning ("<think>...</think>") and content, like
// llama-server's --reasoning-format: kSeparate puts the reasoning in its own field
// (reasoning_content), kRaw leaves everything in content untouched.
//
// Templates that prefill "<think>" (with or without a trailing newline) into the generation
// prompt leave the model inside the reasoning from its first token, with no start tag in the
// output; PromptOpensReasoning() detects that from the rendered prompt, so the reasoning never
// leaks into content. Tags split across tokens are held back until they resolve, and a stream
// that ends inside the reasoning returns it all as reasoning.
#ifndef MOED_DAEMON_TEXT_REASONING_PARSER_H_
#define MOED_DAEMON_TEXT_REASONING_PARSER_H_

#include <string>
#include <string_view>

namespace moed::text {

enum class ReasoningFormat {
  kSeparate,  // reasoning_content + content
  kRaw,       // everything in content, tags included
};

struct ReasoningOptions {
  ReasoningFormat format = ReasoningFormat::kSeparate;
  std::string start_tag = "<think>";
  std::string end_tag = "</think>";
  // The prompt ended inside an open reasoning block (see PromptOpensReasoning).
  bool starts_in_reasoning = false;
};

// True if `prompt` ends with an unclosed start tag, optionally followed by whitespace
// (Qwen3.5's "<think>\n", the forced-open "<think>"), i.e. generation begins in reasoning.
bool PromptOpensReasoning(std::string_view prompt, const ReasoningOptions& options = {});

class ReasoningParser {
 public:
  explicit ReasoningParser(ReasoningOptions options);

  struct Delta {
    std::string reasoning;
    std::string content;
  };
  Delta Push(std::string_view text);
  Delta Finish();
  bool in_reasoning() const { return state_ == State::kReasoning; }

 private:
  enum class State { kStart, kReasoning, kContent };
  void Process(bool final, Delta* out);

  ReasoningOptions options_;
  State state_;
  std::string pending_;
  bool reasoning_started_ = false;  // non-whitespace reasoning emitted (leading space is trimmed)
  bool repeated_start_checked_ = false;  // the repeated start tag was dropped or ruled out
  bool content_started_ = false;    // same for content after </think>
  std::string held_space_;          // reasoning whitespace that may precede </think>
};

}  // namespace moed::text

#endif  // MOED_DAEMON_TEXT_REASONING_PARSER_H_

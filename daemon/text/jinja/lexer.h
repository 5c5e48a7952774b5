// Jinja lexer: splits a template into text and the tokens inside {{ }} / {% %}, applying the
// whitespace rules HF renders chat templates with: trim_blocks and lstrip_blocks on, "-" and "+"
// modifiers, {# #} comments, {% raw %}, and one trailing newline dropped (keep_trailing_newline
// off). Newlines are normalised to "\n" as jinja2 does.
#ifndef MOED_DAEMON_TEXT_JINJA_LEXER_H_
#define MOED_DAEMON_TEXT_JINJA_LEXER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace moed::text::jinja {

struct Token {
  enum Type {
    kText,
    kVarBegin,
    kVarEnd,
    kBlockBegin,
    kBlockEnd,
    kName,
    kString,
    kInt,
    kFloat,
    kOp,
    kEof,
  };
  Type type = kEof;
  std::string value;  // text, name, unescaped string literal, operator
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
  int column = 1;
};

struct LexerOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
  bool keep_trailing_newline = false;
};

// Errors are InvalidArgument with "line L column C: ..." (unterminated tag, string, comment;
// an unexpected character; a bad escape).
absl::StatusOr<std::vector<Token>> Lex(std::string_view source, const LexerOptions& options = {});

// "line 3 column 14: " for error messages.
std::string Where(int line, int column);

}  // namespace moed::text::jinja

#endif  // MOED_DAEMON_TEXT_JINJA_LEXER_H_

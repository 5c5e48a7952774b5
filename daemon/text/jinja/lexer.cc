// Jinja lexer (see lexer.h). It follows jinja2's lexer rule by rule, because chat templates
// are whitespace-exact: the order in which the end-of-tag rule and the operators are tried, the
// lstrip rule's "only whitespace since the last newline, or at a line start" test, and the
// trailing-newline removal all change the rendered prompt.
#include "daemon/text/jinja/lexer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "daemon/text/utf8.h"
#include "kernels/base/strings.h"

namespace moed::text::jinja {
namespace {

// Python's str.isspace() for one codepoint.
bool PySpace(char32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 ||
         c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Length of the run of (Unicode) whitespace starting at `pos`.
size_t SpaceRun(std::string_view s, size_t pos) {
  size_t i = pos;
  while (i < s.size()) {
    char32_t cp;
    const size_t n = DecodeUtf8(s, i, &cp);
    if (n == 0 || !PySpace(cp)) break;
    i += n;
  }
  return i - pos;
}

// str.rstrip(): length of `s` without trailing whitespace.
size_t RstripLength(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
    char32_t cp;
    if (DecodeUtf8(s, start, &cp) != end - start || !PySpace(cp)) break;
    end = start;
  }
  return end;
}

bool AllSpace(std::string_view s) { return SpaceRun(s, 0) == s.size(); }

class Lexer {
 public:
  Lexer(std::string source, const LexerOptions& options)
      : src_(std::move(source)), options_(options) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  absl::StatusOr<std::vector<Token>> Run();

 private:
  void Position(size_t pos, int* line, int* column) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    const size_t idx = static_cast<size_t>(it - line_starts_.begin()) - 1;
    *line = static_cast<int>(idx + 1);
    *column = static_cast<int>(pos - line_starts_[idx] + 1);
  }
  absl::Status Error(size_t pos, std::string_view message) const {
    int line, column;
    Position(pos, &line, &column);
    return absl::InvalidArgumentError(absl::StrCat(Where(line, column), Sv(message)));
  }
  void Emit(Token::Type type, size_t pos, std::string value = "") {
    Token t;
    t.type = type;
    t.value = std::move(value);
    Position(pos, &t.line, &t.column);
    tokens_.push_back(std::move(t));
  }
  // Emits data text before a tag, applying "-" and lstrip_blocks.
  void EmitText(std::string_view text, size_t pos, char sign, bool lstrip_applies);
  // After a tag end: "-" strips whitespace, plain block/comment ends drop one newline.
  size_t AfterEnd(size_t pos, char sign, bool trim);
  // Lexes expression tokens up to the closing delimiter; returns the position after it.
  absl::StatusOr<size_t> LexTag(size_t pos, bool block);
  absl::StatusOr<size_t> LexString(size_t pos);
  size_t LexNumber(size_t pos);

  std::string src_;
  LexerOptions options_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
  bool line_starting_ = true;
};

void Lexer::EmitText(std::string_view text, size_t pos, char sign, bool lstrip_applies) {
  if (sign == '-') {
    text = text.substr(0, RstripLength(text));
  } else if (sign != '+' && options_.lstrip_blocks && lstrip_applies) {
    const size_t nl = text.rfind('\n');
    const size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
    if ((l_pos > 0 || line_starting_) && AllSpace(text.substr(l_pos))) text = text.substr(0, l_pos);
  }
  if (!text.empty()) Emit(Token::kText, pos, std::string(text));
}

size_t Lexer::AfterEnd(size_t pos, char sign, bool trim) {
  if (sign == '-') {
    pos += SpaceRun(src_, pos);
  } else if (sign != '+' && trim && options_.trim_blocks && pos < src_.size() && src_[pos] == '\n') {
    ++pos;
  }
  line_starting_ = pos > 0 && src_[pos - 1] == '\n';
  return pos;
}

absl::StatusOr<std::vector<Token>> Lexer::Run() {
  size_t pos = 0;
  while (pos < src_.size()) {
    // Next tag start.
    size_t tag = pos;
    char kind = 0;
    while ((tag = src_.find('{', tag)) != std::string::npos) {
      if (tag + 1 < src_.size() && (src_[tag + 1] == '{' || src_[tag + 1] == '%' ||
                                    src_[tag + 1] == '#')) {
        kind = src_[tag + 1];
        break;
      }
      ++tag;
    }
    if (kind == 0) {
      Emit(Token::kText, pos, src_.substr(pos));
      break;
    }
    const std::string_view text = std::string_view(src_).substr(pos, tag - pos);
    size_t p = tag + 2;
    char sign = 0;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
    if (kind == '{' && sign == '+') sign = 0, --p;  // "+" means nothing for {{ (a unary plus)

    if (kind == '#') {
      EmitText(text, pos, sign, true);
      const size_t end = src_.find("#}", p);
      if (end == std::string::npos) return Error(tag, "unterminated comment (missing '#}')");
      char end_sign = 0;
      if (end > p && (src_[end - 1] == '-' || src_[end - 1] == '+')) end_sign = src_[end - 1];
      pos = AfterEnd(end + 2, end_sign, true);
      continue;
    }
    if (kind == '%') {
      // {% raw %} ... {% endraw %}
      size_t q = p + SpaceRun(src_, p);
      if (src_.compare(q, 3, "raw") == 0) {
        size_t r = q + 3;
        r += SpaceRun(src_, r);
        char raw_sign = 0;
        if (r < src_.size() && src_[r] == '-') raw_sign = '-', ++r;
        if (src_.compare(r, 2, "%}") == 0) {
          EmitText(text, pos, sign, true);
          size_t body = r + 2;
          if (raw_sign == '-') body += SpaceRun(src_, body);
          line_starting_ = body > 0 && src_[body - 1] == '\n';
          // Find "{%[-+]? endraw [-+]?%}".
          size_t search = body;
          while (true) {
            const size_t s = src_.find("{%", search);
            if (s == std::string::npos) return Error(tag, "unterminated {% raw %} block");
            size_t e = s + 2;
            char es = 0;
            if (e < src_.size() && (src_[e] == '-' || src_[e] == '+')) es = src_[e++];
            e += SpaceRun(src_, e);
            if (src_.compare(e, 6, "endraw") != 0) {
              search = s + 2;
              continue;
            }
            e += 6;
            e += SpaceRun(src_, e);
            char ee = 0;
            if (e < src_.size() && (src_[e] == '-' || src_[e] == '+')) ee = src_[e++];
            if (src_.compare(e, 2, "%}") != 0) {
              search = s + 2;
              continue;
            }
            EmitText(std::string_view(src_).substr(body, s - body), body, es, true);
            pos = AfterEnd(e + 2, ee, true);
            break;
          }
          continue;
        }
      }
    }
    EmitText(text, pos, sign, kind == '%');
    Emit(kind == '%' ? Token::kBlockBegin : Token::kVarBegin, tag);
    auto end = LexTag(p, kind == '%');
    if (!end.ok()) return end.status();
    pos = *end;
  }
  Token eof;
  eof.type = Token::kEof;
  Position(src_.size(), &eof.line, &eof.column);
  tokens_.push_back(eof);
  return std::move(tokens_);
}

absl::StatusOr<size_t> Lexer::LexTag(size_t pos, bool block) {
  const char close = block ? '%' : '}';
  // Like jinja2, the end delimiter only counts outside brackets: "{{ {'a': {}} }}" is one tag.
  std::string brackets;
  while (true) {
    pos += SpaceRun(src_, pos);
    if (pos >= src_.size()) {
      return Error(pos, block ? "unexpected end of template, expected '%}'"
                              : "unexpected end of template, expected '}}'");
    }
    // The end rule is tried before the operators, as in jinja2: "-%}" ends the tag.
    char sign = 0;
    size_t q = pos;
    if (src_[q] == '-' || (block && src_[q] == '+')) sign = src_[q++];
    if (brackets.empty() && q + 1 < src_.size() && src_[q] == close && src_[q + 1] == '}') {
      Emit(block ? Token::kBlockEnd : Token::kVarEnd, pos);
      return AfterEnd(q + 2, sign, block);
    }
    const char c = src_[pos];
    if (c >= '0' && c <= '9') {
      pos = LexNumber(pos);
      continue;
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
      size_t e = pos;
      while (e < src_.size() && ((src_[e] >= 'a' && src_[e] <= 'z') ||
                                 (src_[e] >= 'A' && src_[e] <= 'Z') ||
                                 (src_[e] >= '0' && src_[e] <= '9') || src_[e] == '_')) {
        ++e;
      }
      Emit(Token::kName, pos, src_.substr(pos, e - pos));
      pos = e;
      continue;
    }
    if (c == '\'' || c == '"') {
      auto e = LexString(pos);
      if (!e.ok()) return e.status();
      pos = *e;
      continue;
    }
    static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
    bool matched = false;
    for (std::string_view op : kTwo) {
      if (src_.compare(pos, 2, op) == 0) {
        Emit(Token::kOp, pos, std::string(op));
        pos += 2;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    if (c == '(' || c == '[' || c == '{') brackets.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    if (c == ')' || c == ']' || c == '}') {
      if (brackets.empty() || brackets.back() != c) {
        return Error(pos, absl::StrCat("unexpected '", std::string(1, c), "'"));
      }
      brackets.pop_back();
    }
    if (std::string_view("+-/*%~[](){}><=.:|,;").find(c) != std::string_view::npos) {
      Emit(Token::kOp, pos, std::string(1, c));
      ++pos;
      continue;
    }
    char32_t cp = static_cast<uint8_t>(c);
    DecodeUtf8(src_, pos, &cp);
    std::string shown;
    AppendUtf8(cp, &shown);
    return Error(pos, absl::StrCat("unexpected character '", shown, "' in tag"));
  }
}

size_t Lexer::LexNumber(size_t pos) {
  auto digits = [&](size_t p) {  // \d+(_\d+)*
    size_t e = p;
    while (e < src_.size() && src_[e] >= '0' && src_[e] <= '9') {
      ++e;
      if (e + 1 < src_.size() && src_[e] == '_' && src_[e + 1] >= '0' && src_[e + 1] <= '9') ++e;
    }
    return e;
  };
  const size_t start = pos;
  size_t e = digits(pos);
  bool is_float = false;
  const bool after_dot = start > 0 && src_[start - 1] == '.';
  if (!after_dot) {
    if (e + 1 < src_.size() && src_[e] == '.' && src_[e + 1] >= '0' && src_[e + 1] <= '9') {
      e = digits(e + 1);
      is_float = true;
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t x = e + 1;
      if (x < src_.size() && (src_[x] == '+' || src_[x] == '-')) ++x;
      if (x < src_.size() && src_[x] >= '0' && src_[x] <= '9') {
        e = digits(x);
        is_float = true;
      }
    }
  }
  std::string text;
  for (size_t i = start; i < e; ++i) {
    if (src_[i] != '_') text.push_back(src_[i]);
  }
  Token t;
  Position(start, &t.line, &t.column);
  t.value = text;
  if (is_float) {
    t.type = Token::kFloat;
    t.float_value = std::strtod(text.c_str(), nullptr);
  } else {
    t.type = Token::kInt;
    errno = 0;
    const unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
    if (errno != 0 || v > static_cast<unsigned long long>(INT64_MAX)) {
      t.type = Token::kFloat;  // too large for int64: keep its magnitude
      t.float_value = std::strtod(text.c_str(), nullptr);
    } else {
      t.int_value = static_cast<int64_t>(v);
    }
  }
  tokens_.push_back(std::move(t));
  return e;
}

absl::StatusOr<size_t> Lexer::LexString(size_t pos) {
  const char quote = src_[pos];
  std::string out;
  size_t i = pos + 1;
  auto hex = [&](size_t at, int n, uint32_t* v) {
    *v = 0;
    for (int k = 0; k < n; ++k) {
      if (at + k >= src_.size()) return false;
      const char h = src_[at + k];
      int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                             : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      if (d < 0) return false;
      *v = *v * 16 + d;
    }
    return true;
  };
  while (true) {
    if (i >= src_.size()) return Error(pos, "unterminated string literal");
    const char c = src_[i];
    if (c == quote) break;
    if (c != '\\') {
      out.push_back(c);
      ++i;
      continue;
    }
    if (i + 1 >= src_.size()) return Error(pos, "unterminated string literal");
    const char e = src_[i + 1];
    i += 2;
    switch (e) {
      case '\n': break;  // line continuation
      case '\\': out.push_back('\\'); break;
      case '\'': out.push_back('\''); break;
      case '"': out.push_back('"'); break;
      case 'a': out.push_back('\a'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'v': out.push_back('\v'); break;
      case 'x':
      case 'u':
      case 'U': {
        const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        uint32_t v;
        if (!hex(i, n, &v)) return Error(i - 2, absl::StrCat("truncated \\", std::string(1, e), " escape"));
        if (v > 0x10FFFF) return Error(i - 2, "illegal Unicode character in escape");
        AppendUtf8(v, &out);
        i += n;
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          uint32_t v = e - '0';
          for (int k = 0; k < 2 && i < src_.size() && src_[i] >= '0' && src_[i] <= '7'; ++k, ++i) {
            v = v * 8 + (src_[i] - '0');
          }
          AppendUtf8(v, &out);
        } else if (e == 'N') {
          return Error(i - 2, "\\N{...} escapes are not supported");
        } else {
          out.push_back('\\');  // unknown escapes stay as written
          out.push_back(e);
        }
    }
  }
  Emit(Token::kString, pos, std::move(out));
  return i + 1;
}

}  // namespace

std::string Where(int line, int column) {
  return absl::StrCat("line ", line, " column ", column, ": ");
}

absl::StatusOr<std::vector<Token>> Lex(std::string_view source, const LexerOptions& options) {
  // Normalise newlines (\r\n and \r become \n), then drop one trailing newline.
  std::string src;
  src.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      src.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      src.push_back(source[i]);
    }
  }
  if (!options.keep_trailing_newline && !src.empty() && src.back() == '\n') src.pop_back();
  Lexer lexer(std::move(src), options);
  return lexer.Run();
}

}  // namespace moed::text::jinja

// The model-card front-matter reader (model_card.h).
#include "loader/convert/model_card.h"

#include <regex>

#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "kernels/base/strings.h"

namespace moed::convert {
namespace {

using Kind = CardValue::Kind;

size_t Indent(std::string_view line) {
  size_t i = 0;
  while (i < line.size() && line[i] == ' ') ++i;
  return i;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

bool IsBlankOrComment(std::string_view line) {
  std::string_view t = Trim(line);
  return t.empty() || t.front() == '#';
}

// PyYAML's implicit resolvers for plain scalars that are not strings.
bool ResolvesToNonString(const std::string& s) {
  static const std::regex kBool(
      "yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF");
  static const std::regex kInt(
      "[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(:["
      "0-5]?[0-9])+");
  static const std::regex kFloat(
      R"([-+]?([0-9][0-9_]*)\.[0-9_]*([eE][-+][0-9]+)?|\.[0-9_]+([eE][-+][0-9]+)?|)"
      R"([-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))");
  static const std::regex kTimestamp(
      R"([0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(\.[0-9]*)?)"
      R"(([ \t]*(Z|[-+][0-9]{1,2}(:[0-9]{2})?))?)");
  return std::regex_match(s, kBool) || std::regex_match(s, kInt) || std::regex_match(s, kFloat) ||
         std::regex_match(s, kTimestamp);
}

// One scalar (the whole of `text`, trailing comment allowed).
CardValue ParseScalar(std::string_view text) {
  CardValue v;
  text = Trim(text);
  v.kind = Kind::kOther;
  if (text.empty()) {
    v.kind = Kind::kNull;
    return v;
  }
  auto rest_is_comment = [](std::string_view rest) {
    rest = Trim(rest);
    return rest.empty() || rest.front() == '#';
  };
  if (text.front() == '"') {
    std::string out;
    for (size_t i = 1; i < text.size(); ++i) {
      const char c = text[i];
      if (c == '"') {
        if (!rest_is_comment(text.substr(i + 1))) return v;
        v.kind = Kind::kString;
        v.str = std::move(out);
        return v;
      }
      if (c == '\\' && i + 1 < text.size()) {
        const char e = text[++i];
        switch (e) {
          case 'n':
            out += '\n';
            break;
          case 't':
            out += '\t';
            break;
          case '"':
          case '\\':
          case '/':
            out += e;
            break;
          default:
            return v;  // \u escapes and friends: not needed by model cards
        }
        continue;
      }
      out += c;
    }
    return v;  // unterminated (a multi-line string)
  }
  if (text.front() == '\'') {
    std::string out;
    for (size_t i = 1; i < text.size(); ++i) {
      if (text[i] == '\'') {
        if (i + 1 < text.size() && text[i + 1] == '\'') {
          out += '\'';
          ++i;
          continue;
        }
        if (!rest_is_comment(text.substr(i + 1))) return v;
        v.kind = Kind::kString;
        v.str = std::move(out);
        return v;
      }
      out += text[i];
    }
    return v;
  }
  // Plain scalar: a " #" starts a comment; "key: value" inside would be a map.
  const size_t comment = text.find(" #");
  if (comment != std::string_view::npos) text = Trim(text.substr(0, comment));
  if (std::string_view("[]{}&*!|>%@`,").find(text.front()) != std::string_view::npos) return v;
  if (text.find(": ") != std::string_view::npos || text.back() == ':') return v;
  const std::string s(text);
  if (s == "~" || s == "null" || s == "Null" || s == "NULL") {
    v.kind = Kind::kNull;
    return v;
  }
  if (ResolvesToNonString(s)) return v;
  v.kind = Kind::kString;
  v.str = s;
  return v;
}

// "[a, 'b', c]" on one line.
CardValue ParseFlowList(std::string_view text) {
  CardValue v;
  v.kind = Kind::kOther;
  text = Trim(text);
  const size_t close = text.rfind(']');
  if (text.empty() || text.front() != '[' || close == std::string_view::npos) return v;
  std::string_view after = Trim(text.substr(close + 1));
  if (!after.empty() && after.front() != '#') return v;
  std::string_view body = text.substr(1, close - 1);
  std::vector<std::string> items;
  size_t start = 0;
  char quote = 0;
  for (size_t i = 0; i <= body.size(); ++i) {
    const char c = i < body.size() ? body[i] : ',';
    if (quote != 0) {
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '[' || c == '{') {
      return v;  // nested
    } else if (c == ',') {
      std::string_view item = Trim(body.substr(start, i - start));
      start = i + 1;
      if (item.empty()) continue;  // "[]" or a trailing comma
      CardValue s = ParseScalar(item);
      if (s.kind != Kind::kString) return v;
      items.push_back(std::move(s.str));
    }
  }
  v.kind = Kind::kList;
  v.list = std::move(items);
  return v;
}

}  // namespace

ModelCard ParseModelCard(std::string_view readme) {
  ModelCard card;
  std::vector<std::string> lines = absl::StrSplit(Sv(readme), '\n');
  for (std::string& l : lines) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
  }
  if (lines.empty() || lines[0] != "---") return card;
  std::vector<std::string> body;
  for (size_t i = 1; i < lines.size() && lines[i] != "---"; ++i) body.push_back(lines[i]);
  // metadata.py's own fix-ups before yaml.safe_load: the "Norway problem" and tab indentation.
  std::string yaml = absl::StrJoin(body, "\n") + "\n";
  yaml = absl::StrReplaceAll(yaml, {{"- no\n", "- \"no\"\n"}, {"\t", "  "}});
  lines = absl::StrSplit(yaml, '\n');

  std::string last_key;
  auto spoil_last = [&] {
    if (!last_key.empty()) card[last_key] = CardValue{Kind::kOther, "", {}};
  };
  size_t i = 0;
  while (i < lines.size()) {
    const std::string_view line = lines[i];
    if (IsBlankOrComment(line)) {
      ++i;
      continue;
    }
    if (Indent(line) > 0 || line.front() == '-') {
      spoil_last();  // a continuation this reader does not follow
      ++i;
      continue;
    }
    const size_t colon = line.find(": ");
    const bool bare = line.back() == ':' && (colon == std::string_view::npos);
    if (colon == std::string_view::npos && !bare) {
      spoil_last();
      ++i;
      continue;
    }
    std::string key(Trim(line.substr(0, bare ? line.size() - 1 : colon)));
    if (key.size() >= 2 && (key.front() == '"' || key.front() == '\'') &&
        key.back() == key.front()) {
      key = key.substr(1, key.size() - 2);
    }
    const std::string_view rest = bare ? std::string_view() : Trim(line.substr(colon + 2));
    ++i;
    last_key = key;
    CardValue value;
    if (rest.empty() || rest.front() == '#') {
      // A block below the key: a list of scalars, or something this reader does not model.
      std::vector<std::string> items;
      bool other = false;
      while (i < lines.size()) {
        const std::string_view l = lines[i];
        if (IsBlankOrComment(l)) {
          ++i;
          continue;
        }
        const std::string_view t = std::string_view(l).substr(Indent(l));
        if (t == "-" || t.substr(0, 2) == "- ") {
          CardValue item = ParseScalar(t.substr(1));
          if (item.kind == Kind::kString) {
            items.push_back(std::move(item.str));
          } else {
            other = true;
          }
          ++i;
          continue;
        }
        if (Indent(l) > 0) {
          other = true;  // a nested map
          ++i;
          continue;
        }
        break;
      }
      if (other) {
        value.kind = Kind::kOther;
      } else if (!items.empty()) {
        value.kind = Kind::kList;
        value.list = std::move(items);
      } else {
        value.kind = Kind::kNull;
      }
    } else if (rest.front() == '[') {
      value = ParseFlowList(rest);
    } else {
      value = ParseScalar(rest);
    }
    card[key] = std::move(value);
  }
  return card;
}

}  // namespace moed::convert

#include "tests/deploy/promql_names.h"

#include <cctype>

namespace moed::testing {
namespace {

bool IsNameStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':'; }
bool IsNameChar(char c) { return IsNameStart(c) || std::isdigit(static_cast<unsigned char>(c)); }

bool ConsumePrefix(std::string_view* s, std::string_view prefix) {
  if (s->substr(0, prefix.size()) != prefix) return false;
  s->remove_prefix(prefix.size());
  return true;
}

// Words that are PromQL syntax, not metrics (aggregations may be written `sum by (x) (...)`, so
// they are not always followed by "(").
const std::set<std::string, std::less<>> kKeywords = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "and", "or", "unless", "offset", "atan2", "inf", "nan", "Inf", "NaN"};
const std::set<std::string, std::less<>> kLabelListKeywords = {"by", "without", "on", "ignoring", "group_left",
                                                               "group_right"};

// Index just past the bracket that closes the one at `i` (`open`/`close`), skipping strings.
size_t SkipBalanced(std::string_view s, size_t i, char open, char close) {
  int depth = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"' || c == '\'' || c == '`') {
      for (++i; i < s.size() && s[i] != c; ++i) {
        if (s[i] == '\\' && c != '`') ++i;
      }
    } else if (c == open) {
      ++depth;
    } else if (c == close && --depth == 0) {
      return i + 1;
    }
  }
  return s.size();
}

}  // namespace

std::set<std::string> PromqlMetricNames(std::string_view expr) {
  std::set<std::string> names;
  std::string_view s = expr;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  if (ConsumePrefix(&s, "label_values(")) {  // Grafana: label_values(metric_selector, label)
    const size_t comma = s.rfind(',');
    if (comma != std::string_view::npos) s = s.substr(0, comma);
  }
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (c == '"' || c == '\'' || c == '`') {
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; ++j) {
        if (s[j] == '\\' && c != '`') ++j;
      }
      i = j + 1;
    } else if (c == '{') {
      i = SkipBalanced(s, i, '{', '}');
    } else if (c == '[') {
      i = SkipBalanced(s, i, '[', ']');
    } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
      // A number (0.95, 1e3, 0x1f) or a duration (5m): skip all of it.
      while (i < s.size() && (IsNameChar(s[i]) || s[i] == '.')) ++i;
    } else if (c == '$') {
      // A Grafana variable outside a string ($__rate_interval, $instance).
      for (++i; i < s.size() && IsNameChar(s[i]);) ++i;
    } else if (IsNameStart(c)) {
      size_t j = i;
      while (j < s.size() && IsNameChar(s[j])) ++j;
      const std::string word(s.substr(i, j - i));
      size_t k = j;
      while (k < s.size() && std::isspace(static_cast<unsigned char>(s[k]))) ++k;
      if (kLabelListKeywords.contains(word)) {
        if (k < s.size() && s[k] == '(') k = SkipBalanced(s, k, '(', ')');
        j = k;
      } else if (!kKeywords.contains(word) && !(k < s.size() && s[k] == '(')) {
        names.insert(word);
      }
      i = j;
    } else {
      ++i;
    }
  }
  return names;
}

std::set<std::string> ExposedMetricNames(std::string_view page) {
  std::set<std::string> names;
  while (!page.empty()) {
    const size_t eol = page.find('\n');
    std::string_view line = page.substr(0, eol);
    page.remove_prefix(eol == std::string_view::npos ? page.size() : eol + 1);
    if (ConsumePrefix(&line, "# TYPE ")) {  // "# TYPE <family> <type>"
      const size_t space = line.find(' ');
      if (space == std::string_view::npos) continue;
      const std::string family(line.substr(0, space));
      names.insert(family);
      if (line.substr(space + 1) == "histogram") {
        for (const char* suffix : {"_bucket", "_sum", "_count"}) names.insert(family + suffix);
      }
    } else if (!line.empty() && line[0] != '#') {
      size_t end = 0;
      while (end < line.size() && IsNameChar(line[end])) ++end;
      names.insert(std::string(line.substr(0, end)));
    }
  }
  return names;
}

}  // namespace moed::testing

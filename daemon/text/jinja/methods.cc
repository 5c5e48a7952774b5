// Python methods of str, dict and list values (s.split(), d.items(), ...) as templates call them,
// and the string helpers filters share. Mutating methods fail, as in jinja2's immutable sandbox.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "daemon/text/jinja/builtins.h"
#include "daemon/text/jinja/evaluator.h"
#include "daemon/text/utf8.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::text::jinja {
namespace {

bool PySpace(char32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 ||
         c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Simple case mapping for ASCII, Latin-1, Greek and Cyrillic (no Unicode database here).
char32_t ToLower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if ((c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= 0x391 && c <= 0x3AB && c != 0x3A2) ||
      (c >= 0x410 && c <= 0x42F)) {
    return c + 32;
  }
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}
char32_t ToUpper(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if ((c >= 0xE0 && c <= 0xFE && c != 0xF7) || (c >= 0x3B1 && c <= 0x3CB && c != 0x3C2) ||
      (c >= 0x430 && c <= 0x44F)) {
    return c - 32;
  }
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  return c;
}
bool IsLowerCp(char32_t c) { return ToUpper(c) != c; }
bool IsUpperCp(char32_t c) { return ToLower(c) != c; }
bool IsAlphaCp(char32_t c) { return IsLowerCp(c) || IsUpperCp(c) || (c >= 0x80 && !PySpace(c) && c != 0xD7 && c != 0xF7 && (c >= 0xC0)); }
bool IsDigitCp(char32_t c) { return c >= '0' && c <= '9'; }

std::string MapCase(std::string_view s, char32_t (*f)(char32_t)) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : DecodeUtf8String(s)) AppendUtf8(f(c), &out);
  return out;
}

absl::Status TypeError(std::string_view m) { return absl::InvalidArgumentError(std::string(m)); }

const Value* Arg(CallArgs& a, size_t pos, std::string_view name) {
  if (pos < a.positional.size()) return &a.positional[pos];
  for (auto& [k, v] : a.kwargs) {
    if (k == name) return &v;
  }
  return nullptr;
}

absl::StatusOr<std::string> StrArg(CallArgs& a, size_t pos, std::string_view name,
                                   std::string_view method) {
  const Value* v = Arg(a, pos, name);
  if (v == nullptr) return TypeError(absl::StrCat(Sv(method), "() missing argument '", Sv(name), "'"));
  if (!v->is_string()) {
    return TypeError(absl::StrCat(Sv(method), "() argument must be str, not ", Sv(v->TypeName())));
  }
  return v->str();
}

int64_t IntArg(CallArgs& a, size_t pos, std::string_view name, int64_t dflt) {
  const Value* v = Arg(a, pos, name);
  if (v == nullptr || v->is_none() || !(v->is_int() || v->is_bool())) return dflt;
  return v->int_value();
}

// Python str.split / rsplit.
std::vector<std::string> Split(const std::string& s, const Value* sep, int64_t maxsplit,
                               bool from_right) {
  std::vector<std::string> out;
  if (sep == nullptr || sep->is_none()) {
    std::vector<char32_t> cps = DecodeUtf8String(s);
    std::vector<std::pair<size_t, size_t>> words;  // [begin, end) in cps
    size_t i = 0;
    while (i < cps.size()) {
      while (i < cps.size() && PySpace(cps[i])) ++i;
      if (i >= cps.size()) break;
      size_t j = i;
      while (j < cps.size() && !PySpace(cps[j])) ++j;
      words.emplace_back(i, j);
      i = j;
    }
    auto piece = [&](size_t b, size_t e) {
      std::string r;
      for (size_t k = b; k < e; ++k) AppendUtf8(cps[k], &r);
      return r;
    };
    if (maxsplit < 0 || static_cast<size_t>(maxsplit) + 1 >= words.size()) {
      for (auto [b, e] : words) out.push_back(piece(b, e));
      return out;
    }
    if (!from_right) {
      for (int64_t k = 0; k < maxsplit; ++k) out.push_back(piece(words[k].first, words[k].second));
      size_t rest = words[maxsplit].first;
      size_t end = cps.size();
      while (end > rest && PySpace(cps[end - 1])) --end;
      out.push_back(piece(rest, end));
    } else {
      const size_t n = words.size();
      size_t begin = 0;
      while (begin < cps.size() && PySpace(cps[begin])) ++begin;
      out.push_back(piece(begin, words[n - maxsplit - 1].second));
      for (size_t k = n - maxsplit; k < n; ++k) out.push_back(piece(words[k].first, words[k].second));
    }
    return out;
  }
  const std::string& d = sep->str();
  if (!from_right) {
    size_t pos = 0;
    int64_t n = 0;
    while (maxsplit < 0 || n < maxsplit) {
      const size_t f = s.find(d, pos);
      if (f == std::string::npos) break;
      out.push_back(s.substr(pos, f - pos));
      pos = f + d.size();
      ++n;
    }
    out.push_back(s.substr(pos));
    return out;
  }
  size_t end = s.size();
  int64_t n = 0;
  std::vector<std::string> rev;
  while (maxsplit < 0 || n < maxsplit) {
    if (end < d.size()) break;
    const size_t f = s.rfind(d, end - d.size());
    if (f == std::string::npos) break;
    rev.push_back(s.substr(f + d.size(), end - f - d.size()));
    end = f;
    ++n;
  }
  rev.push_back(s.substr(0, end));
  out.assign(rev.rbegin(), rev.rend());
  return out;
}

std::vector<std::string> SplitLines(const std::string& s, bool keepends) {
  std::vector<std::string> out;
  std::vector<char32_t> cps = DecodeUtf8String(s);
  std::string cur;
  for (size_t i = 0; i < cps.size(); ++i) {
    const char32_t c = cps[i];
    const bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D ||
                     c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!brk) {
      AppendUtf8(c, &cur);
      continue;
    }
    if (keepends) AppendUtf8(c, &cur);
    if (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') {
      ++i;
      if (keepends) cur.push_back('\n');
    }
    out.push_back(std::move(cur));
    cur.clear();
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::string Title(std::string_view s) {
  std::string out;
  bool prev_cased = false;
  for (char32_t c : DecodeUtf8String(s)) {
    const bool cased = IsLowerCp(c) || IsUpperCp(c);
    AppendUtf8(cased ? (prev_cased ? ToLower(c) : ToUpper(c)) : c, &out);
    prev_cased = cased;
  }
  return out;
}

Value StrList(std::vector<std::string> items) {
  std::vector<Value> v;
  v.reserve(items.size());
  for (auto& s : items) v.push_back(Value::String(std::move(s)));
  return Value::List(std::move(v));
}

// str.find / index / count positions are in codepoints.
int64_t CodepointIndex(const std::string& s, size_t byte_pos) {
  return static_cast<int64_t>(Utf8Length(std::string_view(s).substr(0, byte_pos)));
}

absl::StatusOr<Value> Format(const std::string& fmt, CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '{' && i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    if (c == '}' && i + 1 < fmt.size() && fmt[i + 1] == '}') {
      out.push_back('}');
      ++i;
      continue;
    }
    if (c == '}') return TypeError("Single '}' encountered in format string");
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    const size_t close = fmt.find('}', i);
    if (close == std::string::npos) return TypeError("Single '{' encountered in format string");
    const std::string field = fmt.substr(i + 1, close - i - 1);
    if (field.find_first_of(":!.[") != std::string::npos) {
      return TypeError("str.format: format specs and conversions are not supported");
    }
    const Value* v = nullptr;
    if (field.empty()) {
      if (auto_index < args.positional.size()) v = &args.positional[auto_index];
      ++auto_index;
    } else if (std::all_of(field.begin(), field.end(), [](char d) { return d >= '0' && d <= '9'; })) {
      const size_t k = std::stoul(field.substr(0, 9));
      if (k < args.positional.size()) v = &args.positional[k];
    } else {
      for (auto& [key, value] : args.kwargs) {
        if (key == field) v = &value;
      }
    }
    if (v == nullptr) return TypeError(absl::StrCat("str.format: no argument for '{", field, "}'"));
    out += v->Str();
    i = close;
  }
  return Value::String(std::move(out));
}

Value Method(std::string name, NativeFunction fn) { return Value::Function(std::move(name), std::move(fn)); }

absl::StatusOr<Value> StringMethod(const Value& obj, std::string_view name) {
  const std::string s = obj.str();
  const std::string n(name);
  auto bind = [&](auto body) {
    return Method(n, [s, body](Evaluator& ev, CallArgs& a) -> absl::StatusOr<Value> {
      return body(ev, s, a);
    });
  };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const bool left = name != "rstrip", right = name != "lstrip";
    return bind([left, right](Evaluator&, const std::string& str, CallArgs& a) -> absl::StatusOr<Value> {
      const Value* chars = Arg(a, 0, "chars");
      return Value::String(PyStrip(str, chars ? *chars : Value::None(), left, right));
    });
  }
  if (name == "split" || name == "rsplit") {
    const bool right = name == "rsplit";
    return bind([right](Evaluator& ev, const std::string& str, CallArgs& a) -> absl::StatusOr<Value> {
      const Value* sep = Arg(a, 0, "sep");
      if (sep != nullptr && !sep->is_none() && !sep->is_string()) {
        return TypeError("must be str or None");
      }
      if (sep != nullptr && sep->is_string() && sep->str().empty()) return TypeError("empty separator");
      auto parts = Split(str, sep, IntArg(a, 1, "maxsplit", -1), right);
      RETURN_IF_ERROR(ev.CheckItems(parts.size()));
      return StrList(std::move(parts));
    });
  }
  if (name == "splitlines") {
    return bind([](Evaluator&, const std::string& str, CallArgs& a) -> absl::StatusOr<Value> {
      const Value* keep = Arg(a, 0, "keepends");
      return StrList(SplitLines(str, keep != nullptr && keep->Truthy()));
    });
  }
  if (name == "startswith" || name == "endswith") {
    const bool starts = name == "startswith";
    return bind([starts](Evaluator&, const std::string& str, CallArgs& a) -> absl::StatusOr<Value> {
      const Value* p = Arg(a, 0, "prefix");
      if (p == nullptr) return TypeError("startswith() takes at least 1 argument");
      std::vector<Value> options = p->is_tuple() ? p->list() : std::vector<Value>{*p};
      for (const Value& o : options) {
        if (!o.is_string()) return TypeError("startswith first arg must be str or a tuple of str");
        const std::string& x = o.str();
        if (x.size() <= str.size() &&
            str.compare(starts ? 0 : str.size() - x.size(), x.size(), x) == 0) {
          return Value::Bool(true);
        }
      }
      return Value::Bool(false);
    });
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize" ||
      name == "swapcase") {
    return bind([n](Evaluator&, const std::string& str, CallArgs&) -> absl::StatusOr<Value> {
      if (n == "upper") return Value::String(PyUpper(str));
      if (n == "lower") return Value::String(PyLower(str));
      if (n == "title") return Value::String(Title(str));
      std::vector<char32_t> cps = DecodeUtf8String(str);
      for (size_t i = 0; i < cps.size(); ++i) {
        if (n == "capitalize") {
          cps[i] = i == 0 ? ToUpper(cps[i]) : ToLower(cps[i]);
        } else {
          cps[i] = IsUpperCp(cps[i]) ? ToLower(cps[i]) : ToUpper(cps[i]);
        }
      }
      return Value::String(EncodeUtf8String(cps));
    });
  }
  if (name == "replace") {
    return bind([](Evaluator& ev, const std::string& str, CallArgs& a) -> absl::StatusOr<Value> {
      ASSIGN_OR_RETURN(std::string from, StrArg(a, 0, "old", "replace"));
      ASSIGN_OR_RETURN(std::string to, StrArg(a, 1, "new", "replace"));
      int64_t count = IntArg(a, 2, "count", -1);
      std::string out;
      if (from.empty()) {
        // Python inserts `to` around every character.
        std::vector<char32_t> cps = DecodeUtf8String(str);
        int64_t done = 0;
        for (char32_t c : cps) {
          if (count < 0 || done < count) out += to, ++done;
          AppendUtf8(c, &out);
          RETURN_IF_ERROR(ev.CheckSize(out.size()));
        }
        if (count < 0 || done < count) out += to;
        return Value::String(std::move(out));
      }
      size_t pos = 0;
      int64_t done = 0;
      while (count < 0 || done < count) {
        const size_t f = str.find(from, pos);
        if (f == std::string::npos) break;
        out.append(str, pos, f - pos);
        out += to;
        RETURN_IF_ERROR(ev.CheckSize(out.size()));
        pos = f + from.size();
        ++done;
      }
      out.append(str, pos, std::string::npos);
      return Value::String(std::move(out));
    });
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    return bind([n](Evaluator&, const std::string& str, CallArgs& a) -> absl::StatusOr<Value> {
      ASSIGN_OR_RETURN(std::string sub, StrArg(a, 0, "sub", n));
      if (n == "count") {
        if (sub.empty()) return Value::Int(static_cast<int64_t>(Utf8Length(str)) + 1);
        int64_t c = 0;
        for (size_t p = str.find(sub); p != std::string::npos; p = str.find(sub, p + sub.size())) ++c;
        return Value::Int(c);
      }
      const bool rev = n[0] == 'r';
      const size_t f = rev ? str.rfind(sub) : str.find(sub);
      if (f == std::string::npos) {
        if (n == "index" || n == "rindex") return TypeError("substring not found");
        return Value::Int(-1);
      }
      return Value::Int(CodepointIndex(str, f));
    });
  }
  if (name == "join") {
    return bind([](Evaluator& ev, const std::string& str, CallArgs& a) -> absl::StatusOr<Value> {
      const Value* it = Arg(a, 0, "iterable");
      if (it == nullptr) return TypeError("join() takes exactly one argument");
      ASSIGN_OR_RETURN(std::vector<Value> items, ev.Iterate(*it));
      std::string out;
      for (size_t i = 0; i < items.size(); ++i) {
        if (!items[i].is_string()) {
          return TypeError(absl::StrCat("sequence item ", i, ": expected str instance, ",
                                        Sv(items[i].TypeName()), " found"));
        }
        if (i > 0) out += str;
        out += items[i].str();
        RETURN_IF_ERROR(ev.CheckSize(out.size()));
      }
      return Value::String(std::move(out));
    });
  }
  if (name == "format") {
    return bind([](Evaluator&, const std::string& str, CallArgs& a) { return Format(str, a); });
  }
  if (name == "removeprefix" || name == "removesuffix") {
    const bool prefix = name == "removeprefix";
    return bind([prefix](Evaluator&, const std::string& str, CallArgs& a) -> absl::StatusOr<Value> {
      ASSIGN_OR_RETURN(std::string x, StrArg(a, 0, "prefix", "removeprefix"));
      if (x.size() <= str.size()) {
        if (prefix && str.compare(0, x.size(), x) == 0) return Value::String(str.substr(x.size()));
        if (!prefix && str.compare(str.size() - x.size(), x.size(), x) == 0) {
          return Value::String(str.substr(0, str.size() - x.size()));
        }
      }
      return Value::String(str);
    });
  }
  if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" ||
      name == "islower" || name == "isupper") {
    return bind([n](Evaluator&, const std::string& str, CallArgs&) -> absl::StatusOr<Value> {
      std::vector<char32_t> cps = DecodeUtf8String(str);
      if (cps.empty()) return Value::Bool(false);
      if (n == "islower" || n == "isupper") {
        bool any = false;
        for (char32_t c : cps) {
          if (n == "islower" ? IsUpperCp(c) : IsLowerCp(c)) return Value::Bool(false);
          any |= IsLowerCp(c) || IsUpperCp(c);
        }
        return Value::Bool(any);
      }
      for (char32_t c : cps) {
        bool ok = n == "isdigit"   ? IsDigitCp(c)
                  : n == "isalpha" ? IsAlphaCp(c)
                  : n == "isalnum" ? (IsAlphaCp(c) || IsDigitCp(c))
                                   : PySpace(c);
        if (!ok) return Value::Bool(false);
      }
      return Value::Bool(true);
    });
  }
  return Value::Undefined(absl::StrCat("'str object' has no attribute '", Sv(name), "'"));
}

Value Unsafe(std::string_view type, std::string_view name) {
  const std::string msg = absl::StrCat("access to attribute '", Sv(name), "' of '", Sv(type),
                                       "' object is unsafe (templates cannot modify values)");
  return Method(std::string(name), [msg](Evaluator&, CallArgs&) -> absl::StatusOr<Value> {
    return TypeError(msg);
  });
}

}  // namespace

std::string PyLower(std::string_view s) { return MapCase(s, ToLower); }
std::string PyUpper(std::string_view s) { return MapCase(s, ToUpper); }

std::string PyStrip(std::string_view s, const Value& chars, bool left, bool right) {
  std::vector<char32_t> cps = DecodeUtf8String(s);
  std::vector<char32_t> set;
  const bool whitespace = !chars.is_string();
  if (!whitespace) set = DecodeUtf8String(chars.str());
  auto strip = [&](char32_t c) {
    return whitespace ? PySpace(c) : std::find(set.begin(), set.end(), c) != set.end();
  };
  size_t b = 0, e = cps.size();
  if (left) {
    while (b < e && strip(cps[b])) ++b;
  }
  if (right) {
    while (e > b && strip(cps[e - 1])) --e;
  }
  std::string out;
  for (size_t i = b; i < e; ++i) AppendUtf8(cps[i], &out);
  return out;
}

absl::StatusOr<Value> GetMethod(const Value& obj, std::string_view name) {
  if (obj.is_string()) return StringMethod(obj, name);
  if (obj.is_dict()) {
    const Value d = obj;
    if (name == "items" || name == "keys" || name == "values") {
      const std::string n(name);
      return Method(n, [d, n](Evaluator&, CallArgs&) -> absl::StatusOr<Value> {
        std::vector<Value> out;
        for (const auto& [k, v] : d.dict().items()) {
          if (n == "items") out.push_back(Value::List({k, v}, /*tuple=*/true));
          else out.push_back(n == "keys" ? k : v);
        }
        return Value::List(std::move(out));
      });
    }
    if (name == "get") {
      return Method("get", [d](Evaluator&, CallArgs& a) -> absl::StatusOr<Value> {
        const Value* key = Arg(a, 0, "key");
        if (key == nullptr) return TypeError("get expected at least 1 argument");
        if (const Value* v = d.dict().Find(*key)) return *v;
        const Value* dflt = Arg(a, 1, "default");
        return dflt ? *dflt : Value::None();
      });
    }
    if (name == "copy") {
      return Method("copy", [d](Evaluator&, CallArgs&) -> absl::StatusOr<Value> {
        return Value::MakeDict(d.dict());
      });
    }
    if (name == "pop" || name == "popitem" || name == "setdefault" || name == "update" ||
        name == "clear") {
      return Unsafe("dict", name);
    }
    return Value::Undefined();
  }
  if (obj.is_list()) {
    const Value l = obj;
    if (name == "index" || name == "count") {
      const bool index = name == "index";
      return Method(std::string(name), [l, index](Evaluator&, CallArgs& a) -> absl::StatusOr<Value> {
        const Value* x = Arg(a, 0, "value");
        if (x == nullptr) return TypeError("expected 1 argument");
        int64_t count = 0;
        for (size_t i = 0; i < l.list().size(); ++i) {
          if (!Equals(l.list()[i], *x)) continue;
          if (index) return Value::Int(static_cast<int64_t>(i));
          ++count;
        }
        if (index) return TypeError(absl::StrCat(x->Repr(), " is not in list"));
        return Value::Int(count);
      });
    }
    if (!obj.is_tuple() && (name == "append" || name == "extend" || name == "insert" ||
                            name == "pop" || name == "remove" || name == "reverse" ||
                            name == "sort" || name == "clear")) {
      return Unsafe("list", name);
    }
  }
  return Value::Undefined();
}

}  // namespace moed::text::jinja

// Jinja values with Python semantics (see value.h).
#include "daemon/text/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "daemon/text/utf8.h"
#include "kernels/base/strings.h"

namespace moed::text::jinja {
namespace {

struct UndefinedData {
  std::string hint;
};

const std::string& EmptyString() {
  static const std::string* s = new std::string();
  return *s;
}

// Python's str.isprintable(), approximated without the Unicode database: control, format,
// private-use and separator characters (other than ' ') are not printable.
bool PyPrintable(char32_t c) {
  if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
  if ((c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) ||
      (c >= 0x205F && c <= 0x206F) || c == 0x3000 || c == 0xFEFF ||
      (c >= 0xFFF9 && c <= 0xFFFB) || (c >= 0xE000 && c <= 0xF8FF) || c == 0x1680 ||
      c == 0x180E || c >= 0xF0000) {
    return false;
  }
  return true;
}

void AppendHex(uint32_t v, int digits, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i) out->push_back(kHex[(v >> (4 * i)) & 0xF]);
}

void JsonString(std::string_view s, bool ensure_ascii, std::string* out) {
  out->push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': out->append("\\\""); ++i; continue;
      case '\\': out->append("\\\\"); ++i; continue;
      case '\n': out->append("\\n"); ++i; continue;
      case '\r': out->append("\\r"); ++i; continue;
      case '\t': out->append("\\t"); ++i; continue;
      case '\b': out->append("\\b"); ++i; continue;
      case '\f': out->append("\\f"); ++i; continue;
      default: break;
    }
    if (c < 0x20) {
      out->append("\\u00");
      AppendHex(c, 2, out);
      ++i;
      continue;
    }
    if (c < 0x80 || !ensure_ascii) {
      out->push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    char32_t cp;
    size_t n = DecodeUtf8(s, i, &cp);
    if (n == 0) {
      cp = kReplacementChar;
      n = 1;
    }
    if (cp >= 0x10000) {
      const uint32_t v = cp - 0x10000;
      out->append("\\u");
      AppendHex(0xD800 + (v >> 10), 4, out);
      out->append("\\u");
      AppendHex(0xDC00 + (v & 0x3FF), 4, out);
    } else {
      out->append("\\u");
      AppendHex(cp, 4, out);
    }
    i += n;
  }
  out->push_back('"');
}

absl::Status ToJsonImpl(const Value& v, const JsonOptions& o, int depth, std::string* out) {
  if (depth > 512) return absl::InvalidArgumentError("tojson: value nested too deeply");
  switch (v.kind()) {
    case Value::Kind::kNone: out->append("null"); return absl::OkStatus();
    case Value::Kind::kBool: out->append(v.bool_value() ? "true" : "false"); return absl::OkStatus();
    case Value::Kind::kInt: absl::StrAppend(out, v.int_value()); return absl::OkStatus();
    case Value::Kind::kFloat: {
      const double d = v.float_value();
      if (std::isnan(d)) out->append("NaN");
      else if (std::isinf(d)) out->append(d > 0 ? "Infinity" : "-Infinity");
      else out->append(PyFloatRepr(d));
      return absl::OkStatus();
    }
    case Value::Kind::kString: JsonString(v.str(), o.ensure_ascii, out); return absl::OkStatus();
    default: break;
  }
  const std::string item_sep = !o.item_separator.empty() ? o.item_separator
                               : o.indent.has_value()    ? ","
                                                         : ", ";
  auto newline = [&](int d) {
    if (!o.indent.has_value()) return;
    out->push_back('\n');
    out->append(static_cast<size_t>(std::max(0, *o.indent)) * d, ' ');
  };
  if (v.is_list()) {
    if (v.list().empty()) {
      out->append("[]");
      return absl::OkStatus();
    }
    out->push_back('[');
    bool first = true;
    for (const Value& item : v.list()) {
      if (!first) out->append(item_sep);
      first = false;
      newline(depth + 1);
      absl::Status s = ToJsonImpl(item, o, depth + 1, out);
      if (!s.ok()) return s;
    }
    newline(depth);
    out->push_back(']');
    return absl::OkStatus();
  }
  if (v.is_dict()) {
    if (v.dict().size() == 0) {
      out->append("{}");
      return absl::OkStatus();
    }
    std::vector<std::pair<std::string, const Value*>> entries;
    for (const auto& [key, value] : v.dict().items()) {
      std::string k;
      switch (key.kind()) {
        case Value::Kind::kString: k = key.str(); break;
        case Value::Kind::kNone: k = "null"; break;
        case Value::Kind::kBool: k = key.bool_value() ? "true" : "false"; break;
        case Value::Kind::kInt: k = absl::StrCat(key.int_value()); break;
        case Value::Kind::kFloat: k = PyFloatRepr(key.float_value()); break;
        default:
          return absl::InvalidArgumentError(
              absl::StrCat("tojson: keys must be str, int, float, bool or None, not ",
                           Sv(key.TypeName())));
      }
      entries.emplace_back(std::move(k), &value);
    }
    if (o.sort_keys) {
      std::stable_sort(entries.begin(), entries.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
    }
    out->push_back('{');
    bool first = true;
    for (const auto& [k, value] : entries) {
      if (!first) out->append(item_sep);
      first = false;
      newline(depth + 1);
      JsonString(k, o.ensure_ascii, out);
      out->append(o.key_separator);
      absl::Status s = ToJsonImpl(*value, o, depth + 1, out);
      if (!s.ok()) return s;
    }
    newline(depth);
    out->push_back('}');
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tojson: Object of type ", Sv(v.TypeName()), " is not JSON serializable"));
}

}  // namespace

// ---- Dict -------------------------------------------------------------------------------------

const Value* Dict::Find(const Value& key) const {
  auto k = KeyString(key);
  if (!k.ok()) return nullptr;
  auto it = index_.find(*k);
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

const Value* Dict::Find(std::string_view key) const {
  std::string k = "s";
  k.append(key);
  auto it = index_.find(k);
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

void Dict::Set(const Value& key, Value value) {
  auto k = KeyString(key);
  if (!k.ok()) return;  // callers check hashability first
  auto [it, inserted] = index_.try_emplace(*k, items_.size());
  if (inserted) {
    items_.emplace_back(key, std::move(value));
  } else {
    items_[it->second].second = std::move(value);
  }
}

absl::StatusOr<std::string> KeyString(const Value& key) {
  switch (key.kind()) {
    case Value::Kind::kString: return absl::StrCat("s", key.str());
    case Value::Kind::kNone: return std::string("n");
    // Python: True == 1 and hash(True) == hash(1), 1.0 == 1.
    case Value::Kind::kBool:
    case Value::Kind::kInt: return absl::StrCat("i", key.int_value());
    case Value::Kind::kFloat: {
      const double d = key.float_value();
      if (d == std::floor(d) && std::fabs(d) < 9.2e18) {
        return absl::StrCat("i", static_cast<int64_t>(d));
      }
      return absl::StrCat("f", PyFloatRepr(d));
    }
    case Value::Kind::kList: {
      if (!key.is_tuple()) break;
      std::string out = "t";
      for (const Value& item : key.list()) {
        auto k = KeyString(item);
        if (!k.ok()) return k.status();
        absl::StrAppend(&out, k->size(), ":", *k);
      }
      return out;
    }
    default: break;
  }
  return absl::InvalidArgumentError(absl::StrCat("unhashable type: '", Sv(key.TypeName()), "'"));
}

// ---- Value ------------------------------------------------------------------------------------

Value Value::Undefined(std::string hint) {
  Value v;
  if (!hint.empty()) v.ptr_ = std::make_shared<UndefinedData>(UndefinedData{std::move(hint)});
  return v;
}
Value Value::None() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}
Value Value::Bool(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.b_ = b;
  return v;
}
Value Value::Int(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.i_ = i;
  return v;
}
Value Value::Float(double f) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.f_ = f;
  return v;
}
Value Value::String(std::string s) {
  Value v;
  v.kind_ = Kind::kString;
  v.ptr_ = std::make_shared<std::string>(std::move(s));
  return v;
}
Value Value::List(std::vector<Value> items, bool tuple) {
  Value v;
  v.kind_ = Kind::kList;
  v.tuple_ = tuple;
  v.ptr_ = std::make_shared<std::vector<Value>>(std::move(items));
  v.ComputeNesting();
  return v;
}
Value Value::MakeDict(Dict dict) {
  Value v;
  v.kind_ = Kind::kDict;
  v.ptr_ = std::make_shared<Dict>(std::move(dict));
  v.ComputeNesting();
  return v;
}
Value Value::Namespace(Dict dict) {
  Value v = MakeDict(std::move(dict));
  v.kind_ = Kind::kNamespace;
  v.holds_namespace_ = true;
  return v;
}

void Value::ComputeNesting() {
  int d = 0;
  bool ns = false;
  auto visit = [&](const Value& c) {
    d = std::max(d, c.depth_);
    ns = ns || c.holds_namespace_;
  };
  if (kind_ == Kind::kList) {
    for (const Value& c : list()) visit(c);
  } else {
    for (const auto& [k, c] : dict().items()) {
      visit(k);
      visit(c);
    }
  }
  depth_ = d + 1;
  holds_namespace_ = ns;
}

int JsonDepth(const nlohmann::ordered_json& j, int limit) {
  if (!j.is_structured()) return 0;
  if (limit < 0) return 1;
  int d = 0;
  for (const auto& c : j) {
    d = std::max(d, JsonDepth(c, limit - 1));
    if (d > limit) break;
  }
  return d + 1;
}
Value Value::Function(std::string name, NativeFunction fn) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.ptr_ = std::make_shared<Callable>(Callable{std::move(name), std::move(fn)});
  return v;
}

Value Value::FromJson(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return None();
    case nlohmann::ordered_json::value_t::boolean: return Bool(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Int(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      return u <= static_cast<uint64_t>(INT64_MAX) ? Int(static_cast<int64_t>(u))
                                                   : Float(static_cast<double>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Float(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return String(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(FromJson(e));
      return List(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict d;
      for (const auto& [k, e] : j.items()) d.Set(String(k), FromJson(e));
      return MakeDict(std::move(d));
    }
    default: return None();
  }
}

const std::string& Value::str() const {
  if (kind_ == Kind::kString) return *static_cast<const std::string*>(ptr_.get());
  if (kind_ == Kind::kUndefined && ptr_) return static_cast<const UndefinedData*>(ptr_.get())->hint;
  return EmptyString();
}
const std::vector<Value>& Value::list() const {
  static const std::vector<Value>* empty = new std::vector<Value>();
  return kind_ == Kind::kList ? *static_cast<const std::vector<Value>*>(ptr_.get()) : *empty;
}
const Dict& Value::dict() const {
  static const Dict* empty = new Dict();
  return (kind_ == Kind::kDict || kind_ == Kind::kNamespace)
             ? *static_cast<const Dict*>(ptr_.get())
             : *empty;
}
Dict& Value::mutable_namespace() const { return *static_cast<Dict*>(ptr_.get()); }
const Callable& Value::callable() const { return *static_cast<const Callable*>(ptr_.get()); }

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool: return b_;
    case Kind::kInt: return i_ != 0;
    case Kind::kFloat: return f_ != 0.0;
    case Kind::kString: return !str().empty();
    case Kind::kList: return !list().empty();
    case Kind::kDict: return dict().size() != 0;
    default: return true;
  }
}

std::string_view Value::TypeName() const {
  switch (kind_) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return tuple_ ? "tuple" : "list";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return "Namespace";
    case Kind::kCallable: return "function";
  }
  return "object";
}

std::string Value::Str() const {
  switch (kind_) {
    case Kind::kUndefined: return "";
    case Kind::kString: return str();
    default: return Repr();
  }
}

std::string Value::Repr() const {
  switch (kind_) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "None";
    case Kind::kBool: return b_ ? "True" : "False";
    case Kind::kInt: return absl::StrCat(i_);
    case Kind::kFloat: return PyFloatRepr(f_);
    case Kind::kString: return PyStringRepr(str());
    case Kind::kList: {
      std::string out = tuple_ ? "(" : "[";
      const auto& items = list();
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out += ", ";
        out += items[i].Repr();
      }
      if (tuple_ && items.size() == 1) out += ",";
      out += tuple_ ? ")" : "]";
      return out;
    }
    case Kind::kDict:
    case Kind::kNamespace: {
      std::string out = kind_ == Kind::kNamespace ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [k, v] : dict().items()) {
        if (!first) out += ", ";
        first = false;
        out += k.Repr();
        out += ": ";
        out += v.Repr();
      }
      out += kind_ == Kind::kNamespace ? "}>" : "}";
      return out;
    }
    case Kind::kCallable: return absl::StrCat("<function ", callable().name, ">");
  }
  return "";
}

std::string PyStringRepr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp;
    size_t n = DecodeUtf8(s, i, &cp);
    if (n == 0) {
      cp = kReplacementChar;
      n = 1;
    }
    if (cp == static_cast<char32_t>(quote) || cp == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(cp));
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (!PyPrintable(cp)) {
      if (cp < 0x100) {
        out += "\\x";
        AppendHex(cp, 2, &out);
      } else if (cp < 0x10000) {
        out += "\\u";
        AppendHex(cp, 4, &out);
      } else {
        out += "\\U";
        AppendHex(cp, 8, &out);
      }
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
  out.push_back(quote);
  return out;
}

std::string PyFloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  // sci = [-]D[.DDD]e[+-]XX
  bool neg = false;
  if (sci[0] == '-') {
    neg = true;
    sci.erase(0, 1);
  }
  const size_t e = sci.find('e');
  std::string digits;
  for (size_t i = 0; i < e; ++i) {
    if (sci[i] != '.') digits.push_back(sci[i]);
  }
  const int exp = std::stoi(sci.substr(e + 1));
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out = neg ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out += "0.";
      out.append(static_cast<size_t>(-exp - 1), '0');
      out += digits;
    } else if (static_cast<size_t>(exp) + 1 >= digits.size()) {
      out += digits;
      out.append(static_cast<size_t>(exp) + 1 - digits.size(), '0');
      out += ".0";
    } else {
      out += digits.substr(0, exp + 1);
      out += ".";
      out += digits.substr(exp + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) {
    out += ".";
    out += digits.substr(1);
  }
  out += exp < 0 ? "e-" : "e+";
  const int a = exp < 0 ? -exp : exp;
  if (a < 10) out += "0";
  absl::StrAppend(&out, a);
  return out;
}

bool Equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.float_value() == b.float_value();
    return a.int_value() == b.int_value();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return true;
    case Value::Kind::kString: return a.str() == b.str();
    case Value::Kind::kList: {
      if (a.is_tuple() != b.is_tuple() || a.list().size() != b.list().size()) return false;
      for (size_t i = 0; i < a.list().size(); ++i) {
        if (!Equals(a.list()[i], b.list()[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      if (a.dict().size() != b.dict().size()) return false;
      for (const auto& [k, v] : a.dict().items()) {
        const Value* other = b.dict().Find(k);
        if (other == nullptr || !Equals(v, *other)) return false;
      }
      return true;
    }
    default: return &a.dict() == &b.dict() && a.kind() == b.kind();
  }
}

absl::StatusOr<int> Compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      const double x = a.float_value(), y = b.float_value();
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    const int64_t x = a.int_value(), y = b.int_value();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.str().compare(b.str());  // UTF-8 byte order == codepoint order
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const auto& x = a.list();
    const auto& y = b.list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (Equals(x[i], y[i])) continue;
      return Compare(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  return absl::InvalidArgumentError(absl::StrCat("'<' not supported between instances of '",
                                                 Sv(a.TypeName()), "' and '", Sv(b.TypeName()),
                                                 "'"));
}

absl::StatusOr<std::string> ToJson(const Value& v, const JsonOptions& options) {
  std::string out;
  absl::Status s = ToJsonImpl(v, options, 0, &out);
  if (!s.ok()) return s;
  return out;
}

}  // namespace moed::text::jinja

// Built-in filters, tests and global functions (jinja2's defaults plus HF's tojson), looked up by
// name when a template is parsed.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "daemon/text/jinja/builtins.h"
#include "daemon/text/jinja/evaluator.h"
#include "daemon/text/utf8.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::text::jinja {
namespace {

absl::Status TypeError(std::string_view m) { return absl::InvalidArgumentError(std::string(m)); }

const Value* Arg(CallArgs& a, size_t pos, std::string_view name) {
  if (pos < a.positional.size()) return &a.positional[pos];
  for (auto& [k, v] : a.kwargs) {
    if (k == name) return &v;
  }
  return nullptr;
}
Value ArgOr(CallArgs& a, size_t pos, std::string_view name, Value dflt) {
  const Value* v = Arg(a, pos, name);
  return v ? *v : dflt;
}

// jinja2's make_attrgetter: "a.b.0" -> getitem per part (integers index lists).
absl::StatusOr<Value> GetPath(Evaluator& ev, const Value& obj, const std::string& path) {
  Value cur = obj;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    int64_t idx;
    if (absl::SimpleAtoi(part, &idx)) {
      ASSIGN_OR_RETURN(cur, ev.GetItem(cur, Value::Int(idx)));
    } else {
      ASSIGN_OR_RETURN(cur, ev.GetItem(cur, Value::String(part)));
    }
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur;
}

absl::StatusOr<size_t> Length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return 0;
    case Value::Kind::kString: return Utf8Length(v.str());
    case Value::Kind::kList: return v.list().size();
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: return v.dict().size();
    default: return TypeError(absl::StrCat("object of type '", Sv(v.TypeName()), "' has no len()"));
  }
}

Value SortKey(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::String(PyLower(v.str()));
  return v;
}

absl::Status SortValues(std::vector<Value>* items, std::vector<Value>* keys, bool reverse) {
  std::vector<size_t> order(items->size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  absl::Status err;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (!err.ok()) return false;
    auto c = Compare((*keys)[a], (*keys)[b]);
    if (!c.ok()) {
      err = c.status();
      return false;
    }
    return reverse ? *c > 0 : *c < 0;
  });
  RETURN_IF_ERROR(err);
  std::vector<Value> sorted;
  for (size_t i : order) sorted.push_back((*items)[i]);
  *items = std::move(sorted);
  return absl::OkStatus();
}

// ---- filters ----

#define FILTER(name) absl::StatusOr<Value> name(Evaluator& ev, const Value& v, CallArgs& a)

FILTER(FAbs) {
  (void)ev, (void)a;
  if (v.is_float()) return Value::Float(std::fabs(v.float_value()));
  if (v.is_int() || v.is_bool()) {
    if (v.int_value() == INT64_MIN) return TypeError("integer overflow");
    return Value::Int(std::llabs(v.int_value()));
  }
  return TypeError(absl::StrCat("bad operand type for abs(): '", Sv(v.TypeName()), "'"));
}
FILTER(FAttr) {
  const Value* name = Arg(a, 0, "name");
  if (name == nullptr || !name->is_string()) return TypeError("attr() expects an attribute name");
  return ev.GetAttr(v, name->str());
}
FILTER(FBatch) {
  const Value* n = Arg(a, 0, "linecount");
  if (n == nullptr || !n->is_int() || n->int_value() <= 0) return TypeError("batch() expects a positive count");
  const Value* fill = Arg(a, 1, "fill_with");
  ASSIGN_OR_RETURN(std::vector<Value> items, ev.Iterate(v));
  std::vector<Value> out, cur;
  for (Value& item : items) {
    cur.push_back(std::move(item));
    if (static_cast<int64_t>(cur.size()) == n->int_value()) out.push_back(Value::List(std::move(cur))), cur.clear();
  }
  if (!cur.empty()) {
    while (fill != nullptr && !fill->is_none() && static_cast<int64_t>(cur.size()) < n->int_value()) cur.push_back(*fill);
    out.push_back(Value::List(std::move(cur)));
  }
  return Value::List(std::move(out));
}
FILTER(FCapitalize) {
  (void)ev, (void)a;
  std::vector<char32_t> cps = DecodeUtf8String(v.Str());
  std::string out;
  for (size_t i = 0; i < cps.size(); ++i) {
    std::string c;
    AppendUtf8(cps[i], &c);
    out += i == 0 ? PyUpper(c) : PyLower(c);
  }
  return Value::String(std::move(out));
}
FILTER(FCenter) {
  (void)ev;
  const int64_t width = ArgOr(a, 0, "width", Value::Int(80)).int_value();
  std::string s = v.Str();
  const int64_t len = static_cast<int64_t>(Utf8Length(s));
  if (width <= len) return Value::String(std::move(s));
  const int64_t total = std::min<int64_t>(width, 1 << 20) - len;
  const int64_t left = total / 2 + (total & width & 1);
  return Value::String(std::string(left, ' ') + s + std::string(total - left, ' '));
}
FILTER(FLength) {
  (void)ev, (void)a;
  ASSIGN_OR_RETURN(size_t n, Length(v));
  return Value::Int(static_cast<int64_t>(n));
}
FILTER(FDefault) {
  (void)ev;
  const Value dflt = ArgOr(a, 0, "default_value", Value::String(""));
  const bool boolean = ArgOr(a, 1, "boolean", Value::Bool(false)).Truthy();
  if (v.is_undefined() || (boolean && !v.Truthy())) return dflt;
  return v;
}
FILTER(FDictsort) {
  (void)ev;
  if (!v.is_dict()) return TypeError("dictsort() expects a mapping");
  const bool cs = ArgOr(a, 0, "case_sensitive", Value::Bool(false)).Truthy();
  const Value by = ArgOr(a, 1, "by", Value::String("key"));
  const bool reverse = ArgOr(a, 2, "reverse", Value::Bool(false)).Truthy();
  const bool by_value = by.is_string() && by.str() == "value";
  std::vector<Value> items, keys;
  for (const auto& [k, val] : v.dict().items()) {
    items.push_back(Value::List({k, val}, true));
    keys.push_back(SortKey(by_value ? val : k, cs));
  }
  RETURN_IF_ERROR(SortValues(&items, &keys, reverse));
  return Value::List(std::move(items));
}
FILTER(FEscape) {
  (void)ev, (void)a;
  std::string out;
  for (char c : v.Str()) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return Value::String(std::move(out));
}
FILTER(FFirst) {
  (void)a;
  ASSIGN_OR_RETURN(std::vector<Value> items, ev.Iterate(v));
  if (items.empty()) return Value::Undefined("No first item, sequence was empty.");
  return items.front();
}
FILTER(FLast) {
  (void)a;
  if (v.is_undefined()) return TypeError("last() of an undefined value");
  ASSIGN_OR_RETURN(std::vector<Value> items, ev.Iterate(v));
  if (items.empty()) return Value::Undefined("No last item, sequence was empty.");
  return items.back();
}
FILTER(FFloat) {
  (void)ev;
  const Value dflt = ArgOr(a, 0, "default", Value::Float(0.0));
  if (v.is_number()) return Value::Float(v.float_value());
  if (v.is_string()) {
    double d;
    if (absl::SimpleAtod(PyStrip(v.str(), Value::None(), true, true), &d)) return Value::Float(d);
  }
  return dflt;
}
FILTER(FInt) {
  (void)ev;
  const Value dflt = ArgOr(a, 0, "default", Value::Int(0));
  const int64_t base = ArgOr(a, 1, "base", Value::Int(10)).int_value();
  if (v.is_int() || v.is_bool()) return Value::Int(v.int_value());
  if (v.is_float()) {
    const double d = std::trunc(v.float_value());
    if (!std::isfinite(d) || std::fabs(d) > 9.2e18) return dflt;
    return Value::Int(static_cast<int64_t>(d));
  }
  if (v.is_string()) {
    const std::string s = PyStrip(v.str(), Value::None(), true, true);
    int64_t i;
    if (base == 10 && absl::SimpleAtoi(s, &i)) return Value::Int(i);
    if (base != 10 && base >= 2 && base <= 36 && !s.empty()) {
      char* end = nullptr;
      errno = 0;
      const long long r = std::strtoll(s.c_str(), &end, static_cast<int>(base));
      if (errno == 0 && end != nullptr && *end == '\0') return Value::Int(r);
    }
    double d;
    if (absl::SimpleAtod(s, &d) && std::isfinite(d) && std::fabs(d) < 9.2e18) {
      return Value::Int(static_cast<int64_t>(std::trunc(d)));
    }
  }
  return dflt;
}
FILTER(FIndent) {
  (void)ev;
  const Value w = ArgOr(a, 0, "width", Value::Int(4));
  const bool first = ArgOr(a, 1, "first", Value::Bool(false)).Truthy();
  const bool blank = ArgOr(a, 2, "blank", Value::Bool(false)).Truthy();
  const std::string ind = w.is_string() ? w.str() : std::string(std::clamp<int64_t>(w.int_value(), 0, 1024), ' ');
  std::string s = v.Str() + "\n";
  // Same line splitting as str.splitlines().
  CallArgs none;
  ASSIGN_OR_RETURN(Value method, GetMethod(Value::String(s), "splitlines"));
  ASSIGN_OR_RETURN(Value lines_v, ev.Call(method, none));
  std::vector<std::string> lines;
  for (const Value& l : lines_v.list()) lines.push_back(l.str());
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) rv += (i ? "\n" + ind : "") + lines[i];
  } else {
    rv = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) rv += "\n" + (lines[i].empty() ? "" : ind + lines[i]);
  }
  if (first) rv = ind + rv;
  RETURN_IF_ERROR(ev.CheckSize(rv.size()));
  return Value::String(std::move(rv));
}
FILTER(FItems) {
  (void)ev, (void)a;
  if (v.is_undefined()) return Value::List({});
  if (!v.is_dict()) return TypeError("Can only get item pairs from a mapping.");
  std::vector<Value> out;
  for (const auto& [k, val] : v.dict().items()) out.push_back(Value::List({k, val}, true));
  return Value::List(std::move(out));
}
FILTER(FJoin) {
  const std::string sep = ArgOr(a, 0, "d", Value::String("")).Str();
  const Value attr = ArgOr(a, 1, "attribute", Value::None());
  ASSIGN_OR_RETURN(std::vector<Value> items, ev.Iterate(v));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    Value item = items[i];
    if (!attr.is_none()) {
      ASSIGN_OR_RETURN(item, GetPath(ev, item, attr.Str()));
    }
    if (i > 0) out += sep;
    out += item.Str();
    RETURN_IF_ERROR(ev.CheckSize(out.size()));
  }
  return Value::String(std::move(out));
}
FILTER(FList) {
  (void)a;
  ASSIGN_OR_RETURN(std::vector<Value> items, ev.Iterate(v));
  return Value::List(std::move(items));
}
FILTER(FLower) {
  (void)ev, (void)a;
  return Value::String(PyLower(v.Str()));
}
FILTER(FUpper) {
  (void)ev, (void)a;
  return Value::String(PyUpper(v.Str()));
}
FILTER(FTitle) {
  (void)ev, (void)a;
  ASSIGN_OR_RETURN(Value m, GetMethod(Value::String(v.Str()), "title"));
  CallArgs none;
  return ev.Call(m, none);
}
FILTER(FMap) {
  ASSIGN_OR_RETURN(std::vector<Value> items, ev.Iterate(v));
  std::vector<Value> out;
  if (const Value* attr = Arg(a, 99, "attribute")) {
    const Value dflt = ArgOr(a, 99, "default", Value::Undefined());
    for (const Value& item : items) {
      ASSIGN_OR_RETURN(Value r, GetPath(ev, item, attr->Str()));
      out.push_back(r.is_undefined() && !dflt.is_undefined() ? dflt : r);
    }
    return Value::List(std::move(out));
  }
  if (a.positional.empty() || !a.positional[0].is_string()) return TypeError("map() expects a filter name or attribute=");
  FilterFn f = LookupFilter(a.positional[0].str());
  if (f == nullptr) return TypeError(absl::StrCat("no filter named '", a.positional[0].str(), "'"));
  CallArgs rest;
  rest.positional.assign(a.positional.begin() + 1, a.positional.end());
  rest.kwargs = a.kwargs;
  for (const Value& item : items) {
    CallArgs copy = rest;
    ASSIGN_OR_RETURN(Value r, f(ev, item, copy));
    out.push_back(std::move(r));
  }
  return Value::List(std::move(out));
}
absl::StatusOr<Value> MinMax(Evaluator& ev, const Value& v, CallArgs& a, bool max) {
  const bool cs = ArgOr(a, 0, "case_sensitive", Value::Bool(false)).Truthy();
  const Value attr = ArgOr(a, 1, "attribute", Value::None());
  ASSIGN_OR_RETURN(std::vector<Value> items, ev.Iterate(v));
  if (items.empty()) return Value::Undefined(max ? "No aggregated item, sequence was empty." : "No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key;
  for (size_t i = 0; i < items.size(); ++i) {
    Value k = items[i];
    if (!attr.is_none()) {
      ASSIGN_OR_RETURN(k, GetPath(ev, k, attr.Str()));
    }
    k = SortKey(k, cs);
    if (i == 0) {
      best_key = k;
      continue;
    }
    ASSIGN_OR_RETURN(int c, Compare(k, best_key));
    if (max ? c > 0 : c < 0) best = i, best_key = k;
  }
  return items[best];
}
FILTER(FMax) { return MinMax(ev, v, a, true); }
FILTER(FMin) { return MinMax(ev, v, a, false); }

absl::StatusOr<bool> RunTest(Evaluator& ev, const Value& item, CallArgs& a, size_t name_pos) {
  if (a.positional.size() <= name_pos) return item.Truthy();
  if (!a.positional[name_pos].is_string()) return TypeError("expected a test name");
  TestFn t = LookupTest(a.positional[name_pos].str());
  if (t == nullptr) return TypeError(absl::StrCat("no test named '", a.positional[name_pos].str(), "'"));
  CallArgs rest;
  rest.positional.assign(a.positional.begin() + name_pos + 1, a.positional.end());
  return t(ev, item, rest);
}
absl::StatusOr<Value> Select(Evaluator& ev, const Value& v, CallArgs& a, bool keep, bool by_attr) {
  ASSIGN_OR_RETURN(std::vector<Value> items, ev.Iterate(v));
  std::vector<Value> out;
  for (const Value& item : items) {
    Value subject = item;
    if (by_attr) {
      if (a.positional.empty()) return TypeError("selectattr() expects an attribute name");
      ASSIGN_OR_RETURN(subject, GetPath(ev, item, a.positional[0].Str()));
    }
    ASSIGN_OR_RETURN(bool r, RunTest(ev, subject, a, by_attr ? 1 : 0));
    if (r == keep) out.push_back(item);
  }
  return Value::List(std::move(out));
}
FILTER(FSelect) { return Select(ev, v, a, true, false); }
FILTER(FReject) { return Select(ev, v, a, false, false); }
FILTER(FSelectAttr) { return Select(ev, v, a, true, true); }
FILTER(FRejectAttr) { return Select(ev, v, a, false, true); }

FILTER(FReplace) {
  ASSIGN_OR_RETURN(Value m, GetMethod(Value::String(v.Str()), "replace"));
  return ev.Call(m, a);
}
FILTER(FReverse) {
  (void)a;
  if (v.is_string()) {
    std::vector<char32_t> cps = DecodeUtf8String(v.str());
    std::reverse(cps.begin(), cps.end());
    return Value::String(EncodeUtf8String(cps));
  }
  ASSIGN_OR_RETURN(std::vector<Value> items, ev.Iterate(v));
  std::reverse(items.begin(), items.end());
  return Value::List(std::move(items));
}
FILTER(FRound) {
  (void)ev;
  const int64_t precision = std::clamp<int64_t>(ArgOr(a, 0, "precision", Value::Int(0)).int_value(), -300, 300);
  const std::string method = ArgOr(a, 1, "method", Value::String("common")).Str();
  if (!v.is_number()) return TypeError("round() expects a number");
  const double x = v.float_value();
  if (method == "ceil" || method == "floor") {
    const double p = std::pow(10.0, static_cast<double>(precision));
    return Value::Float((method == "ceil" ? std::ceil(x * p) : std::floor(x * p)) / p);
  }
  if (method != "common") return TypeError("method must be 'common', 'ceil' or 'floor'");
  if (!std::isfinite(x) || precision < 0) return Value::Float(std::nearbyint(x));
  // Python's round(x, n): correctly rounded half-to-even on the exact binary value.
  char buf[400];
  std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(precision), x);
  return Value::Float(std::strtod(buf, nullptr));
}
FILTER(FSafe) {
  (void)ev, (void)a;
  return Value::String(v.Str());
}
FILTER(FSort) {
  const bool reverse = ArgOr(a, 0, "reverse", Value::Bool(false)).Truthy();
  const bool cs = ArgOr(a, 1, "case_sensitive", Value::Bool(false)).Truthy();
  const Value attr = ArgOr(a, 2, "attribute", Value::None());
  ASSIGN_OR_RETURN(std::vector<Value> items, ev.Iterate(v));
  std::vector<Value> keys;
  for (const Value& item : items) {
    Value k = item;
    if (!attr.is_none()) {
      ASSIGN_OR_RETURN(k, GetPath(ev, item, attr.Str()));
    }
    keys.push_back(SortKey(k, cs));
  }
  RETURN_IF_ERROR(SortValues(&items, &keys, reverse));
  return Value::List(std::move(items));
}
FILTER(FString) {
  (void)ev, (void)a;
  return Value::String(v.Str());
}
FILTER(FSum) {
  const Value attr = ArgOr(a, 0, "attribute", Value::None());
  Value total = ArgOr(a, 1, "start", Value::Int(0));
  ASSIGN_OR_RETURN(std::vector<Value> items, ev.Iterate(v));
  for (const Value& item : items) {
    Value x = item;
    if (!attr.is_none()) {
      ASSIGN_OR_RETURN(x, GetPath(ev, item, attr.Str()));
    }
    if (!x.is_number() || !total.is_number()) return TypeError("sum() expects numbers");
    if (total.is_float() || x.is_float()) {
      total = Value::Float(total.float_value() + x.float_value());
    } else {
      int64_t r;
      if (__builtin_add_overflow(total.int_value(), x.int_value(), &r)) return TypeError("integer overflow");
      total = Value::Int(r);
    }
  }
  return total;
}
FILTER(FToJson) {
  (void)ev;
  JsonOptions o;
  const Value indent = ArgOr(a, 99, "indent", Value::None());
  if (indent.is_int()) o.indent = static_cast<int>(std::clamp<int64_t>(indent.int_value(), 0, 64));
  if (a.positional.size() == 1 && a.positional[0].is_int()) {
    o.indent = static_cast<int>(std::clamp<int64_t>(a.positional[0].int_value(), 0, 64));
  }
  const Value seps = ArgOr(a, 99, "separators", Value::None());
  if (seps.is_list() && seps.list().size() == 2) {
    o.item_separator = seps.list()[0].Str();
    o.key_separator = seps.list()[1].Str();
  }
  o.sort_keys = ArgOr(a, 99, "sort_keys", Value::Bool(false)).Truthy();
  o.ensure_ascii = ArgOr(a, 99, "ensure_ascii", Value::Bool(false)).Truthy();
  ASSIGN_OR_RETURN(std::string s, ToJson(v, o));
  return Value::String(std::move(s));
}
FILTER(FTrim) {
  (void)ev;
  const Value chars = ArgOr(a, 0, "chars", Value::None());
  return Value::String(PyStrip(v.Str(), chars, true, true));
}
FILTER(FUnique) {
  const bool cs = ArgOr(a, 0, "case_sensitive", Value::Bool(false)).Truthy();
  const Value attr = ArgOr(a, 1, "attribute", Value::None());
  ASSIGN_OR_RETURN(std::vector<Value> items, ev.Iterate(v));
  std::vector<Value> out, seen;
  for (const Value& item : items) {
    Value k = item;
    if (!attr.is_none()) {
      ASSIGN_OR_RETURN(k, GetPath(ev, item, attr.Str()));
    }
    k = SortKey(k, cs);
    bool dup = false;
    for (const Value& s : seen) dup = dup || Equals(s, k);
    if (!dup) seen.push_back(k), out.push_back(item);
  }
  return Value::List(std::move(out));
}
FILTER(FWordcount) {
  (void)ev, (void)a;
  int64_t n = 0;
  bool in_word = false;
  for (char32_t c : DecodeUtf8String(v.Str())) {
    const bool w = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   c == '_' || (c >= 0xC0 && c != 0xD7 && c != 0xF7 && c != 0x3000 && !(c >= 0x2000 && c <= 0x206F));
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value::Int(n);
}
FILTER(FFormat) {
  (void)ev;
  Value args = a.positional.size() == 1 ? a.positional[0] : Value::List(a.positional, true);
  if (a.positional.size() == 1 && !a.positional[0].is_tuple()) args = Value::List({a.positional[0]}, true);
  std::string out;
  const std::string fmt = v.Str();
  size_t next = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out.push_back(fmt[i]);
      continue;
    }
    if (++i >= fmt.size()) return TypeError("incomplete format");
    if (fmt[i] == '%') {
      out.push_back('%');
      continue;
    }
    if (next >= args.list().size()) return TypeError("not enough arguments for format string");
    const Value& x = args.list()[next++];
    if (fmt[i] == 's') out += x.Str();
    else if (fmt[i] == 'r') out += x.Repr();
    else if ((fmt[i] == 'd' || fmt[i] == 'i') && x.is_number()) out += absl::StrCat(x.is_float() ? static_cast<int64_t>(x.float_value()) : x.int_value());
    else return TypeError(absl::StrCat("unsupported format character '", std::string(1, fmt[i]), "'"));
  }
  return Value::String(std::move(out));
}

#undef FILTER

// ---- tests ----

#define TEST_FN(name) absl::StatusOr<bool> name(Evaluator& ev, const Value& v, CallArgs& a)

const Value& Arg0(CallArgs& a) {
  static const Value* undefined = new Value();
  return a.positional.empty() ? *undefined : a.positional[0];
}

TEST_FN(TDefined) { (void)ev, (void)a; return !v.is_undefined(); }
TEST_FN(TUndefined) { (void)ev, (void)a; return v.is_undefined(); }
TEST_FN(TNone) { (void)ev, (void)a; return v.is_none(); }
TEST_FN(TBoolean) { (void)ev, (void)a; return v.is_bool(); }
TEST_FN(TTrue) { (void)ev, (void)a; return v.is_bool() && v.bool_value(); }
TEST_FN(TFalse) { (void)ev, (void)a; return v.is_bool() && !v.bool_value(); }
TEST_FN(TString) { (void)ev, (void)a; return v.is_string(); }
TEST_FN(TNumber) { (void)ev, (void)a; return v.is_number(); }
TEST_FN(TInteger) { (void)ev, (void)a; return v.is_int(); }
TEST_FN(TFloat) { (void)ev, (void)a; return v.is_float(); }
TEST_FN(TMapping) { (void)ev, (void)a; return v.is_dict(); }
TEST_FN(TIterable) {
  (void)ev, (void)a;
  return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
}
TEST_FN(TSequence) {
  (void)ev, (void)a;
  return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
}
TEST_FN(TCallable) { (void)ev, (void)a; return v.is_callable(); }
TEST_FN(TLower) { (void)ev, (void)a; return v.is_string() && PyLower(v.str()) == v.str(); }
TEST_FN(TUpper) { (void)ev, (void)a; return v.is_string() && PyUpper(v.str()) == v.str(); }
TEST_FN(TEscaped) {
  (void)ev, (void)a, (void)v;
  return false;
}
TEST_FN(TEven) {
  (void)ev, (void)a;
  if (!v.is_int() && !v.is_bool()) return TypeError("even test expects an integer");
  return v.int_value() % 2 == 0;
}
TEST_FN(TOdd) {
  (void)ev, (void)a;
  if (!v.is_int() && !v.is_bool()) return TypeError("odd test expects an integer");
  return v.int_value() % 2 != 0;
}
TEST_FN(TDivisibleBy) {
  (void)ev;
  const Value& d = Arg0(a);
  if (!v.is_int() || !d.is_int() || d.int_value() == 0) return TypeError("divisibleby expects non-zero integers");
  return v.int_value() % d.int_value() == 0;
}
TEST_FN(TEq) { (void)ev; return Equals(v, Arg0(a)); }
TEST_FN(TNe) { (void)ev; return !Equals(v, Arg0(a)); }
absl::StatusOr<bool> Ordered(const Value& x, const Value& y, int want_lo, int want_hi) {
  ASSIGN_OR_RETURN(int c, Compare(x, y));
  return c >= want_lo && c <= want_hi;
}
TEST_FN(TLt) { (void)ev; return Ordered(v, Arg0(a), -1, -1); }
TEST_FN(TLe) { (void)ev; return Ordered(v, Arg0(a), -1, 0); }
TEST_FN(TGt) { (void)ev; return Ordered(v, Arg0(a), 1, 1); }
TEST_FN(TGe) { (void)ev; return Ordered(v, Arg0(a), 0, 1); }
TEST_FN(TIn) { (void)ev; return Contains(Arg0(a), v); }
TEST_FN(TSameAs) {
  (void)ev;
  const Value& o = Arg0(a);
  if (v.kind() != o.kind()) return false;
  if (v.is_none() || v.is_undefined()) return true;
  if (v.is_bool()) return v.bool_value() == o.bool_value();
  if (v.is_int()) return v.int_value() == o.int_value();
  if (v.is_list()) return &v.list() == &o.list();
  if (v.is_dict() || v.is_namespace()) return &v.dict() == &o.dict();
  return false;
}
TEST_FN(TFilter) { (void)ev, (void)v; return Arg0(a).is_string() && LookupFilter(Arg0(a).str()) != nullptr; }
TEST_FN(TTest) { (void)ev, (void)v; return Arg0(a).is_string() && LookupTest(Arg0(a).str()) != nullptr; }

#undef TEST_FN

struct FilterEntry {
  std::string_view name;
  FilterFn fn;
};
constexpr FilterEntry kFilters[] = {
    {"abs", FAbs},           {"attr", FAttr},         {"batch", FBatch},
    {"capitalize", FCapitalize}, {"center", FCenter}, {"count", FLength},
    {"d", FDefault},         {"default", FDefault},   {"dictsort", FDictsort},
    {"e", FEscape},          {"escape", FEscape},     {"first", FFirst},
    {"float", FFloat},       {"forceescape", FEscape}, {"format", FFormat},
    {"indent", FIndent},     {"int", FInt},           {"items", FItems},
    {"join", FJoin},         {"last", FLast},         {"length", FLength},
    {"list", FList},         {"lower", FLower},       {"map", FMap},
    {"max", FMax},           {"min", FMin},           {"reject", FReject},
    {"rejectattr", FRejectAttr}, {"replace", FReplace}, {"reverse", FReverse},
    {"round", FRound},       {"safe", FSafe},         {"select", FSelect},
    {"selectattr", FSelectAttr}, {"sort", FSort},     {"string", FString},
    {"sum", FSum},           {"title", FTitle},       {"tojson", FToJson},
    {"trim", FTrim},         {"unique", FUnique},     {"upper", FUpper},
    {"wordcount", FWordcount},
};

struct TestEntry {
  std::string_view name;
  TestFn fn;
};
constexpr TestEntry kTests[] = {
    {"boolean", TBoolean}, {"callable", TCallable}, {"defined", TDefined},
    {"divisibleby", TDivisibleBy}, {"eq", TEq}, {"equalto", TEq}, {"==", TEq},
    {"escaped", TEscaped}, {"even", TEven}, {"false", TFalse}, {"filter", TFilter},
    {"float", TFloat}, {"ge", TGe}, {">=", TGe}, {"gt", TGt}, {">", TGt},
    {"greaterthan", TGt}, {"in", TIn}, {"integer", TInteger}, {"iterable", TIterable},
    {"le", TLe}, {"<=", TLe}, {"lower", TLower}, {"lt", TLt}, {"<", TLt},
    {"lessthan", TLt}, {"mapping", TMapping}, {"ne", TNe}, {"!=", TNe}, {"none", TNone},
    {"number", TNumber}, {"odd", TOdd}, {"sameas", TSameAs}, {"sequence", TSequence},
    {"string", TString}, {"test", TTest}, {"true", TTrue}, {"undefined", TUndefined},
    {"upper", TUpper},
};

}  // namespace

FilterFn LookupFilter(std::string_view name) {
  for (const auto& f : kFilters) {
    if (f.name == name) return f.fn;
  }
  return nullptr;
}

TestFn LookupTest(std::string_view name) {
  for (const auto& t : kTests) {
    if (t.name == name) return t.fn;
  }
  return nullptr;
}

Dict BuiltinGlobals() {
  Dict g;
  g.Set(Value::String("range"), Value::Function("range", [](Evaluator& ev, CallArgs& a) -> absl::StatusOr<Value> {
    std::vector<int64_t> n;
    for (const Value& v : a.positional) {
      if (!v.is_int() && !v.is_bool()) return TypeError("range() expects integers");
      n.push_back(v.int_value());
    }
    if (n.empty() || n.size() > 3) return TypeError("range expected 1 to 3 arguments");
    const int64_t start = n.size() == 1 ? 0 : n[0];
    const int64_t stop = n.size() == 1 ? n[0] : n[1];
    const int64_t step = n.size() == 3 ? n[2] : 1;
    if (step == 0) return TypeError("range() arg 3 must not be zero");
    const long double count = step > 0 ? (static_cast<long double>(stop) - start) / step
                                       : (static_cast<long double>(start) - stop) / -step;
    RETURN_IF_ERROR(ev.CheckItems(count > 0 ? static_cast<size_t>(std::min<long double>(count, 1e18)) : 0));
    std::vector<Value> out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      out.push_back(Value::Int(i));
      if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step)) break;
    }
    return Value::List(std::move(out));
  }));
  auto make_dict = [](bool ns) {
    return [ns](Evaluator& ev, CallArgs& a) -> absl::StatusOr<Value> {
      Dict d;
      for (const Value& p : a.positional) {
        if (p.is_dict()) {
          for (const auto& [k, v] : p.dict().items()) d.Set(k, v);
        } else {
          ASSIGN_OR_RETURN(std::vector<Value> pairs, ev.Iterate(p));
          for (const Value& kv : pairs) {
            if (!kv.is_list() || kv.list().size() != 2) return TypeError("dict() expects key/value pairs");
            RETURN_IF_ERROR(KeyString(kv.list()[0]).status());
            d.Set(kv.list()[0], kv.list()[1]);
          }
        }
      }
      for (auto& [k, v] : a.kwargs) d.Set(Value::String(k), v);
      return ns ? Value::Namespace(std::move(d)) : Value::MakeDict(std::move(d));
    };
  };
  g.Set(Value::String("namespace"), Value::Function("namespace", make_dict(true)));
  g.Set(Value::String("dict"), Value::Function("dict", make_dict(false)));
  g.Set(Value::String("joiner"), Value::Function("joiner", [](Evaluator&, CallArgs& a) -> absl::StatusOr<Value> {
    const std::string sep = ArgOr(a, 0, "sep", Value::String(", ")).Str();
    auto used = std::make_shared<bool>(false);
    return Value::Function("joiner", [sep, used](Evaluator&, CallArgs&) -> absl::StatusOr<Value> {
      if (!*used) {
        *used = true;
        return Value::String("");
      }
      return Value::String(sep);
    });
  }));
  return g;
}

}  // namespace moed::text::jinja

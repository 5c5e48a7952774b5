// Jinja evaluator (see evaluator.h): statements, expressions, operators and attribute lookup.
// Filters, tests and Python methods live in filters.cc / tests.cc / methods.cc.
#include "daemon/text/jinja/evaluator.h"

#include <cmath>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/text/jinja/builtins.h"
#include "daemon/text/jinja/lexer.h"
#include "daemon/text/utf8.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::text::jinja {
namespace {

constexpr char kBodyName[] = "\x01body";

absl::Status TypeError(std::string_view message) {
  return absl::InvalidArgumentError(std::string(message));
}

absl::Status UndefinedError(const Value& v) {
  if (!v.str().empty()) return absl::InvalidArgumentError(v.str());
  return absl::InvalidArgumentError("value is undefined");
}

std::string OperandTypes(std::string_view op, const Value& a, const Value& b) {
  return absl::StrCat("unsupported operand type(s) for ", Sv(op), ": '", Sv(a.TypeName()),
                      "' and '", Sv(b.TypeName()), "'");
}

bool AddOverflows(int64_t a, int64_t b, int64_t* r) { return __builtin_add_overflow(a, b, r); }
bool SubOverflows(int64_t a, int64_t b, int64_t* r) { return __builtin_sub_overflow(a, b, r); }
bool MulOverflows(int64_t a, int64_t b, int64_t* r) { return __builtin_mul_overflow(a, b, r); }

// Python %-formatting of `fmt % args` for the common conversions.
absl::StatusOr<std::string> PercentFormat(const std::string& fmt, const Value& args) {
  std::vector<Value> list = args.is_tuple() ? args.list() : std::vector<Value>{args};
  size_t next = 0;
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out.push_back(fmt[i]);
      continue;
    }
    if (++i >= fmt.size()) return TypeError("incomplete format");
    const char c = fmt[i];
    if (c == '%') {
      out.push_back('%');
      continue;
    }
    if (next >= list.size()) return TypeError("not enough arguments for format string");
    const Value& v = list[next++];
    if (c == 's') {
      out += v.Str();
    } else if (c == 'r') {
      out += v.Repr();
    } else if (c == 'd' || c == 'i') {
      if (!v.is_number()) return TypeError("%d format: a number is required");
      out += absl::StrCat(v.is_float() ? static_cast<int64_t>(v.float_value()) : v.int_value());
    } else {
      return TypeError(absl::StrCat("unsupported format character '", std::string(1, c), "'"));
    }
  }
  if (next < list.size()) return TypeError("not all arguments converted during string formatting");
  return out;
}

}  // namespace

const Value* Frame::Find(const std::string& name) const {
  for (const Frame* f = this; f != nullptr; f = f->parent_.get()) {
    auto it = f->vars_.find(name);
    if (it != f->vars_.end()) return &it->second;
  }
  return nullptr;
}

absl::Status Evaluator::Step() {
  if (++steps_ > limits_.max_steps) {
    return absl::ResourceExhaustedError(
        absl::StrCat("template evaluation exceeded ", limits_.max_steps, " steps"));
  }
  return absl::OkStatus();
}

absl::Status Evaluator::CheckSize(size_t bytes) const {
  if (bytes > limits_.max_output_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("template output exceeds ", limits_.max_output_bytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status Evaluator::CheckItems(size_t n) const {
  if (n > limits_.max_items) {
    return absl::ResourceExhaustedError(
        absl::StrCat("template value exceeds ", limits_.max_items, " items"));
  }
  return absl::OkStatus();
}

absl::Status Evaluator::Append(std::string* out, std::string_view s) const {
  RETURN_IF_ERROR(CheckSize(out->size() + s.size()));
  out->append(s);
  return absl::OkStatus();
}

absl::Status Evaluator::Render(const Body& body, std::string* out) {
  auto root = std::make_shared<Frame>(nullptr);
  ASSIGN_OR_RETURN(Flow flow, Exec(body, root, out));
  (void)flow;
  return absl::OkStatus();
}

absl::StatusOr<Evaluator::Flow> Evaluator::Exec(const Body& body,
                                                const std::shared_ptr<Frame>& frame,
                                                std::string* out) {
  for (const StmtPtr& s : body) {
    auto flow = ExecStmt(*s, frame, out);
    if (!flow.ok()) {
      const absl::Status& st = flow.status();
      if (st.code() == kTemplateRaised || absl::StartsWith(st.message(), "line ")) return st;
      return absl::Status(st.code(), absl::StrCat(Where(s->line, s->column), st.message()));
    }
    if (*flow != Flow::kNormal) return *flow;
  }
  return Flow::kNormal;
}

absl::StatusOr<Evaluator::Flow> Evaluator::ExecStmt(const Stmt& s,
                                                    const std::shared_ptr<Frame>& frame,
                                                    std::string* out) {
  RETURN_IF_ERROR(Step());
  switch (s.kind) {
    case Stmt::kText:
      RETURN_IF_ERROR(Append(out, s.text));
      return Flow::kNormal;
    case Stmt::kOutput: {
      ASSIGN_OR_RETURN(Value v, Eval(*s.expr, frame));
      if (v.is_string()) {
        RETURN_IF_ERROR(Append(out, v.str()));
      } else {
        RETURN_IF_ERROR(Append(out, v.Str()));
      }
      return Flow::kNormal;
    }
    case Stmt::kIf: {
      ASSIGN_OR_RETURN(Value cond, Eval(*s.expr, frame));
      return Exec(cond.Truthy() ? s.body : s.else_body, frame, out);
    }
    case Stmt::kFor:
      return ExecFor(s, frame, out);
    case Stmt::kSet: {
      ASSIGN_OR_RETURN(Value v, Eval(*s.expr, frame));
      if (!s.attr.empty()) {
        const Value* ns = frame->Find(s.targets[0]);
        if (ns == nullptr && globals_ != nullptr) ns = globals_->Find(s.targets[0]);
        if (v.holds_namespace()) {
          return TypeError("a namespace cannot hold another namespace");
        }
        if (ns == nullptr || !ns->is_namespace()) {
          return TypeError(absl::StrCat("cannot assign attribute on non-namespace object '",
                                        s.targets[0], "'"));
        }
        ns->mutable_namespace().Set(Value::String(s.attr), std::move(v));
        return Flow::kNormal;
      }
      RETURN_IF_ERROR(Assign(s.targets, v, frame.get()));
      return Flow::kNormal;
    }
    case Stmt::kSetBlock:
    case Stmt::kFilterBlock: {
      std::string captured;
      ASSIGN_OR_RETURN(Flow flow, Exec(s.body, frame, &captured));
      (void)flow;
      Value v = Value::String(std::move(captured));
      if (s.filter) {
        auto f = std::make_shared<Frame>(frame);
        f->Set(kBodyName, v);
        ASSIGN_OR_RETURN(v, Eval(*s.filter, f));
      }
      if (s.kind == Stmt::kSetBlock) {
        frame->Set(s.targets[0], std::move(v));
      } else {
        RETURN_IF_ERROR(Append(out, v.Str()));
      }
      return Flow::kNormal;
    }
    case Stmt::kMacro:
      frame->Set(s.text, MakeMacro(s, frame));
      return Flow::kNormal;
    case Stmt::kCallBlock: {
      const Expr& call = *s.expr;
      ASSIGN_OR_RETURN(Value fn, Eval(*call.args[0], frame));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(call, 1, frame));
      args.kwargs.emplace_back("caller", MakeMacro(s, frame));
      ASSIGN_OR_RETURN(Value v, Call(fn, args));
      RETURN_IF_ERROR(Append(out, v.Str()));
      return Flow::kNormal;
    }
    case Stmt::kWith: {
      auto inner = std::make_shared<Frame>(frame);
      for (size_t i = 0; i < s.targets.size(); ++i) {
        // Values see the outer frame, as in jinja2.
        ASSIGN_OR_RETURN(Value v, Eval(*s.values[i], frame));
        inner->Set(s.targets[i], std::move(v));
      }
      return Exec(s.body, inner, out);
    }
    case Stmt::kBreak: return Flow::kBreak;
    case Stmt::kContinue: return Flow::kContinue;
  }
  return Flow::kNormal;
}

absl::Status Evaluator::Assign(const std::vector<std::string>& targets, const Value& v,
                               Frame* frame) {
  if (targets.size() == 1) {
    frame->Set(targets[0], v);
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  if (items.size() != targets.size()) {
    return TypeError(absl::StrCat("cannot unpack ", items.size(), " values into ",
                                  targets.size(), " names"));
  }
  for (size_t i = 0; i < targets.size(); ++i) frame->Set(targets[i], items[i]);
  return absl::OkStatus();
}

absl::StatusOr<Evaluator::Flow> Evaluator::ExecFor(const Stmt& s,
                                                   const std::shared_ptr<Frame>& frame,
                                                   std::string* out) {
  ASSIGN_OR_RETURN(Value iterable, Eval(*s.expr, frame));
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(iterable));
  if (s.filter) {
    std::vector<Value> kept;
    for (Value& item : items) {
      auto f = std::make_shared<Frame>(frame);
      RETURN_IF_ERROR(Assign(s.targets, item, f.get()));
      ASSIGN_OR_RETURN(Value keep, Eval(*s.filter, f));
      if (keep.Truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    RETURN_IF_ERROR(Step());
    auto f = std::make_shared<Frame>(frame);
    RETURN_IF_ERROR(Assign(s.targets, items[i], f.get()));
    Dict loop;
    loop.Set(Value::String("index"), Value::Int(i + 1));
    loop.Set(Value::String("index0"), Value::Int(i));
    loop.Set(Value::String("revindex"), Value::Int(n - i));
    loop.Set(Value::String("revindex0"), Value::Int(n - i - 1));
    loop.Set(Value::String("first"), Value::Bool(i == 0));
    loop.Set(Value::String("last"), Value::Bool(i == n - 1));
    loop.Set(Value::String("length"), Value::Int(n));
    loop.Set(Value::String("depth"), Value::Int(1));
    loop.Set(Value::String("depth0"), Value::Int(0));
    if (i > 0) loop.Set(Value::String("previtem"), items[i - 1]);
    if (i + 1 < n) loop.Set(Value::String("nextitem"), items[i + 1]);
    loop.Set(Value::String("cycle"),
             Value::Function("cycle", [i](Evaluator&, CallArgs& args) -> absl::StatusOr<Value> {
               if (args.positional.empty()) return TypeError("no items for cycling given");
               return args.positional[i % args.positional.size()];
             }));
    f->Set("loop", Value::MakeDict(std::move(loop)));
    ASSIGN_OR_RETURN(Flow flow, Exec(s.body, f, out));
    if (flow == Flow::kBreak) break;
  }
  if (n == 0 && !s.else_body.empty()) {
    auto f = std::make_shared<Frame>(frame);
    ASSIGN_OR_RETURN(Flow flow, Exec(s.else_body, f, out));
    (void)flow;
  }
  return Flow::kNormal;
}

Value Evaluator::MakeMacro(const Stmt& s, const std::shared_ptr<Frame>& frame) {
  const Stmt* stmt = &s;
  std::weak_ptr<Frame> closure = frame;
  return Value::Function(s.kind == Stmt::kMacro ? s.text : "caller",
                         [stmt, closure](Evaluator& ev, CallArgs& args) {
                           return ev.CallMacro(*stmt, closure, args);
                         });
}

absl::StatusOr<Value> Evaluator::CallMacro(const Stmt& s, const std::weak_ptr<Frame>& closure,
                                           CallArgs& args) {
  std::shared_ptr<Frame> parent = closure.lock();
  if (!parent) return TypeError("macro called after the scope that defined it ended");
  if (call_depth_ >= limits_.max_call_depth) {
    return absl::ResourceExhaustedError(
        absl::StrCat("macro calls nested deeper than ", limits_.max_call_depth));
  }
  auto f = std::make_shared<Frame>(parent);
  std::vector<bool> bound(s.params.size(), false);
  std::vector<Value> varargs;
  for (size_t i = 0; i < args.positional.size(); ++i) {
    if (i < s.params.size()) {
      f->Set(s.params[i].name, args.positional[i]);
      bound[i] = true;
    } else {
      varargs.push_back(args.positional[i]);
    }
  }
  Dict kwargs;
  for (auto& [key, value] : args.kwargs) {
    bool found = false;
    for (size_t i = 0; i < s.params.size(); ++i) {
      if (s.params[i].name == key) {
        f->Set(key, value);
        bound[i] = true;
        found = true;
      }
    }
    if (key == "caller") {
      f->Set("caller", value);
    } else if (!found) {
      kwargs.Set(Value::String(key), value);
    }
  }
  for (size_t i = 0; i < s.params.size(); ++i) {
    if (bound[i]) continue;
    if (s.params[i].default_value) {
      ASSIGN_OR_RETURN(Value v, Eval(*s.params[i].default_value, f));
      f->Set(s.params[i].name, std::move(v));
    } else {
      f->Set(s.params[i].name,
             Value::Undefined(absl::StrCat("'", s.params[i].name, "' is undefined")));
    }
  }
  f->Set("varargs", Value::List(std::move(varargs), /*tuple=*/true));
  f->Set("kwargs", Value::MakeDict(std::move(kwargs)));
  ++call_depth_;
  std::string out;
  auto flow = Exec(s.body, f, &out);
  --call_depth_;
  if (!flow.ok()) return flow.status();
  return Value::String(std::move(out));
}

absl::StatusOr<Value> Evaluator::Lookup(const std::string& name,
                                        const std::shared_ptr<Frame>& frame) {
  if (const Value* v = frame->Find(name)) return *v;
  if (globals_ != nullptr) {
    if (const Value* v = globals_->Find(name)) return *v;
  }
  return Value::Undefined(absl::StrCat("'", name, "' is undefined"));
}

absl::StatusOr<CallArgs> Evaluator::EvalArgs(const Expr& e, size_t first,
                                             const std::shared_ptr<Frame>& frame) {
  CallArgs args;
  for (size_t i = first; i < e.args.size(); ++i) {
    ASSIGN_OR_RETURN(Value v, Eval(*e.args[i], frame));
    args.positional.push_back(std::move(v));
  }
  for (const auto& [key, expr] : e.kwargs) {
    ASSIGN_OR_RETURN(Value v, Eval(*expr, frame));
    args.kwargs.emplace_back(key, std::move(v));
  }
  return args;
}

absl::StatusOr<Value> Evaluator::Eval(const Expr& e, const std::shared_ptr<Frame>& frame) {
  RETURN_IF_ERROR(Step());
  auto v = EvalImpl(e, frame);
  if (v.ok() && v->depth() > limits_.max_value_depth) {
    v = absl::ResourceExhaustedError(
        absl::StrCat("value nested deeper than ", limits_.max_value_depth, " levels"));
  }
  if (!v.ok()) {
    const absl::Status& st = v.status();
    if (st.code() == kTemplateRaised || absl::StartsWith(st.message(), "line ")) return st;
    return absl::Status(st.code(), absl::StrCat(Where(e.line, e.column), st.message()));
  }
  return v;
}

absl::StatusOr<Value> Evaluator::EvalImpl(const Expr& e, const std::shared_ptr<Frame>& frame) {
  switch (e.kind) {
    case Expr::kLiteral: return e.literal;
    case Expr::kName: return Lookup(e.name, frame);
    case Expr::kGetAttr: {
      ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0], frame));
      return GetAttr(obj, e.name);
    }
    case Expr::kGetItem: {
      ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0], frame));
      ASSIGN_OR_RETURN(Value key, Eval(*e.args[1], frame));
      return GetItem(obj, key);
    }
    case Expr::kSlice: {
      ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0], frame));
      std::optional<int64_t> bounds[3];
      for (int i = 0; i < 3; ++i) {
        if (!e.args[i + 1]) continue;
        ASSIGN_OR_RETURN(Value b, Eval(*e.args[i + 1], frame));
        if (b.is_none()) continue;
        if (!b.is_int() && !b.is_bool()) {
          return TypeError("slice indices must be integers or None");
        }
        bounds[i] = b.int_value();
      }
      const int64_t step = bounds[2].value_or(1);
      if (step == 0) return TypeError("slice step cannot be zero");
      std::vector<char32_t> cps;
      const bool is_str = obj.is_string();
      if (is_str) cps = DecodeUtf8String(obj.str());
      if (!is_str && !obj.is_list()) {
        if (obj.is_undefined()) return UndefinedError(obj);
        return TypeError(absl::StrCat("'", Sv(obj.TypeName()), "' object is not subscriptable"));
      }
      const int64_t len = is_str ? static_cast<int64_t>(cps.size())
                                 : static_cast<int64_t>(obj.list().size());
      auto clamp = [&](std::optional<int64_t> b, int64_t dflt) {
        if (!b) return dflt;
        int64_t v = *b;
        if (v < 0) v += len;
        if (step > 0) return std::clamp<int64_t>(v, 0, len);
        return std::clamp<int64_t>(v, -1, len - 1);
      };
      const int64_t start = clamp(bounds[0], step > 0 ? 0 : len - 1);
      const int64_t stop = clamp(bounds[1], step > 0 ? len : -1);
      std::vector<size_t> picks;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) picks.push_back(i);
      if (is_str) {
        std::string out;
        for (size_t i : picks) AppendUtf8(cps[i], &out);
        return Value::String(std::move(out));
      }
      std::vector<Value> out;
      for (size_t i : picks) out.push_back(obj.list()[i]);
      return Value::List(std::move(out), obj.is_tuple());
    }
    case Expr::kCall: {
      ASSIGN_OR_RETURN(Value fn, Eval(*e.args[0], frame));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1, frame));
      return Call(fn, args);
    }
    case Expr::kFilter: {
      ASSIGN_OR_RETURN(Value v, Eval(*e.args[0], frame));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1, frame));
      return e.filter(*this, v, args);
    }
    case Expr::kTest: {
      ASSIGN_OR_RETURN(Value v, Eval(*e.args[0], frame));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1, frame));
      ASSIGN_OR_RETURN(bool r, e.test(*this, v, args));
      return Value::Bool(r != e.negated);
    }
    case Expr::kNeg:
    case Expr::kPos: {
      ASSIGN_OR_RETURN(Value v, Eval(*e.args[0], frame));
      if (v.is_undefined()) return UndefinedError(v);
      if (!v.is_number()) {
        return TypeError(absl::StrCat("bad operand type for unary ", e.kind == Expr::kNeg ? "-" : "+",
                                      ": '", Sv(v.TypeName()), "'"));
      }
      if (e.kind == Expr::kPos) return v.is_bool() ? Value::Int(v.int_value()) : v;
      if (v.is_float()) return Value::Float(-v.float_value());
      if (v.int_value() == std::numeric_limits<int64_t>::min()) return TypeError("integer overflow");
      return Value::Int(-v.int_value());
    }
    case Expr::kNot: {
      ASSIGN_OR_RETURN(Value v, Eval(*e.args[0], frame));
      return Value::Bool(!v.Truthy());
    }
    case Expr::kAnd: {
      ASSIGN_OR_RETURN(Value a, Eval(*e.args[0], frame));
      if (!a.Truthy()) return a;
      return Eval(*e.args[1], frame);
    }
    case Expr::kOr: {
      ASSIGN_OR_RETURN(Value a, Eval(*e.args[0], frame));
      if (a.Truthy()) return a;
      return Eval(*e.args[1], frame);
    }
    case Expr::kBinary: {
      ASSIGN_OR_RETURN(Value a, Eval(*e.args[0], frame));
      ASSIGN_OR_RETURN(Value b, Eval(*e.args[1], frame));
      return EvalBinary(e.name, a, b);
    }
    case Expr::kCompare: {
      ASSIGN_OR_RETURN(Value left, Eval(*e.args[0], frame));
      for (size_t i = 0; i < e.ops.size(); ++i) {
        ASSIGN_OR_RETURN(Value right, Eval(*e.args[i + 1], frame));
        const std::string& op = e.ops[i];
        bool r;
        if (op == "==") {
          r = Equals(left, right);
        } else if (op == "!=") {
          r = !Equals(left, right);
        } else if (op == "in" || op == "notin") {
          ASSIGN_OR_RETURN(bool c, Contains(right, left));
          r = (op == "in") == c;
        } else {
          if (left.is_undefined()) return UndefinedError(left);
          if (right.is_undefined()) return UndefinedError(right);
          ASSIGN_OR_RETURN(int c, Compare(left, right));
          r = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
        }
        if (!r) return Value::Bool(false);
        left = std::move(right);
      }
      return Value::Bool(true);
    }
    case Expr::kCondExpr: {
      ASSIGN_OR_RETURN(Value cond, Eval(*e.args[0], frame));
      if (cond.Truthy()) return Eval(*e.args[1], frame);
      if (e.args[2]) return Eval(*e.args[2], frame);
      return Value::Undefined("the inline if-expression evaluated to false and had no else");
    }
    case Expr::kList:
    case Expr::kTuple: {
      std::vector<Value> items;
      for (const ExprPtr& a : e.args) {
        ASSIGN_OR_RETURN(Value v, Eval(*a, frame));
        items.push_back(std::move(v));
      }
      return Value::List(std::move(items), e.kind == Expr::kTuple);
    }
    case Expr::kDict: {
      Dict d;
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        ASSIGN_OR_RETURN(Value k, Eval(*e.args[i], frame));
        ASSIGN_OR_RETURN(Value v, Eval(*e.args[i + 1], frame));
        RETURN_IF_ERROR(KeyString(k).status());
        d.Set(k, std::move(v));
      }
      return Value::MakeDict(std::move(d));
    }
  }
  return TypeError("unknown expression");
}

absl::StatusOr<Value> Evaluator::EvalBinary(const std::string& op, const Value& a,
                                            const Value& b) {
  if (op == "~") {
    std::string s = a.Str();
    const std::string t = b.Str();
    RETURN_IF_ERROR(CheckSize(s.size() + t.size()));
    s += t;
    return Value::String(std::move(s));
  }
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  const bool ints = (a.is_int() || a.is_bool()) && (b.is_int() || b.is_bool());
  const bool nums = a.is_number() && b.is_number();
  if (op == "+") {
    if (ints) {
      int64_t r;
      if (AddOverflows(a.int_value(), b.int_value(), &r)) return TypeError("integer overflow");
      return Value::Int(r);
    }
    if (nums) return Value::Float(a.float_value() + b.float_value());
    if (a.is_string() && b.is_string()) {
      RETURN_IF_ERROR(CheckSize(a.str().size() + b.str().size()));
      return Value::String(a.str() + b.str());
    }
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
      RETURN_IF_ERROR(CheckItems(a.list().size() + b.list().size()));
      std::vector<Value> items = a.list();
      items.insert(items.end(), b.list().begin(), b.list().end());
      return Value::List(std::move(items), a.is_tuple());
    }
    if (a.is_string()) {
      return TypeError(absl::StrCat("can only concatenate str (not \"", Sv(b.TypeName()), "\") to str"));
    }
    return TypeError(OperandTypes(op, a, b));
  }
  if (op == "*") {
    if (ints) {
      int64_t r;
      if (MulOverflows(a.int_value(), b.int_value(), &r)) return TypeError("integer overflow");
      return Value::Int(r);
    }
    if (nums) return Value::Float(a.float_value() * b.float_value());
    const Value* seq = a.is_int() || a.is_bool() ? &b : &a;
    const Value* count = seq == &a ? &b : &a;
    if ((count->is_int() || count->is_bool()) && (seq->is_string() || seq->is_list())) {
      const int64_t n = std::max<int64_t>(0, count->int_value());
      if (seq->is_string()) {
        if (n > 0 && seq->str().size() > 0) {
          RETURN_IF_ERROR(CheckSize(seq->str().size() * std::min<int64_t>(n, INT32_MAX)));
        }
        std::string out;
        for (int64_t i = 0; i < n && !seq->str().empty(); ++i) out += seq->str();
        return Value::String(std::move(out));
      }
      if (n > 0 && !seq->list().empty()) {
        RETURN_IF_ERROR(CheckItems(seq->list().size() * std::min<int64_t>(n, INT32_MAX)));
      }
      std::vector<Value> out;
      for (int64_t i = 0; i < n && !seq->list().empty(); ++i) {
        out.insert(out.end(), seq->list().begin(), seq->list().end());
      }
      return Value::List(std::move(out), seq->is_tuple());
    }
    return TypeError(OperandTypes(op, a, b));
  }
  if (op == "%" && a.is_string()) {
    ASSIGN_OR_RETURN(std::string s, PercentFormat(a.str(), b));
    return Value::String(std::move(s));
  }
  if (!nums) return TypeError(OperandTypes(op, a, b));
  if (op == "-") {
    if (ints) {
      int64_t r;
      if (SubOverflows(a.int_value(), b.int_value(), &r)) return TypeError("integer overflow");
      return Value::Int(r);
    }
    return Value::Float(a.float_value() - b.float_value());
  }
  if (op == "/") {
    if (b.float_value() == 0) return TypeError("division by zero");
    return Value::Float(a.float_value() / b.float_value());
  }
  if (op == "//" || op == "%") {
    if (ints) {
      const int64_t x = a.int_value(), y = b.int_value();
      if (y == 0) return TypeError("integer division or modulo by zero");
      if (x == std::numeric_limits<int64_t>::min() && y == -1) return TypeError("integer overflow");
      int64_t q = x / y, r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) {
        q -= 1;
        r += y;
      }
      return Value::Int(op == "//" ? q : r);
    }
    const double x = a.float_value(), y = b.float_value();
    if (y == 0) return TypeError("float division by zero");
    double r = std::fmod(x, y);
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    if (op == "%") return Value::Float(r);
    return Value::Float(std::floor(x / y));
  }
  if (op == "**") {
    if (ints && b.int_value() >= 0) {
      int64_t r = 1, base = a.int_value(), e = b.int_value();
      while (e > 0) {
        if ((e & 1) && MulOverflows(r, base, &r)) return TypeError("integer overflow");
        e >>= 1;
        if (e > 0 && MulOverflows(base, base, &base)) return TypeError("integer overflow");
      }
      return Value::Int(r);
    }
    if (a.float_value() == 0 && b.float_value() < 0) {
      return TypeError("0.0 cannot be raised to a negative power");
    }
    return Value::Float(std::pow(a.float_value(), b.float_value()));
  }
  return TypeError(absl::StrCat("unknown operator ", op));
}

absl::StatusOr<Value> Evaluator::Call(const Value& fn, CallArgs& args) {
  if (fn.is_callable()) return fn.callable().fn(*this, args);
  if (fn.is_undefined()) return UndefinedError(fn);
  return TypeError(absl::StrCat("'", Sv(fn.TypeName()), "' object is not callable"));
}

absl::StatusOr<Value> Evaluator::GetAttr(const Value& obj, std::string_view name) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined: return UndefinedError(obj);
    case Value::Kind::kNamespace: {
      if (const Value* v = obj.dict().Find(name)) return *v;
      return Value::Undefined(absl::StrCat("'Namespace' object has no attribute '", Sv(name), "'"));
    }
    case Value::Kind::kDict: {
      // Python attribute first (dict methods), then the key, as jinja2's getattr does.
      ASSIGN_OR_RETURN(Value m, GetMethod(obj, name));
      if (!m.is_undefined()) return m;
      if (const Value* v = obj.dict().Find(name)) return *v;
      return Value::Undefined(absl::StrCat("'dict object' has no attribute '", Sv(name), "'"));
    }
    case Value::Kind::kString:
    case Value::Kind::kList: {
      ASSIGN_OR_RETURN(Value m, GetMethod(obj, name));
      if (!m.is_undefined()) return m;
      break;
    }
    default: break;
  }
  return Value::Undefined(
      absl::StrCat("'", Sv(obj.TypeName()), " object' has no attribute '", Sv(name), "'"));
}

absl::StatusOr<Value> Evaluator::GetItem(const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined: return UndefinedError(obj);
    case Value::Kind::kDict: {
      if (const Value* v = obj.dict().Find(key)) return *v;
      if (key.is_string()) {
        ASSIGN_OR_RETURN(Value m, GetMethod(obj, key.str()));
        if (!m.is_undefined()) return m;
      }
      return Value::Undefined(absl::StrCat("'dict object' has no attribute ", key.Repr()));
    }
    case Value::Kind::kNamespace:
      if (key.is_string()) return GetAttr(obj, key.str());
      break;
    case Value::Kind::kList:
    case Value::Kind::kString: {
      if (key.is_int() || key.is_bool()) {
        int64_t i = key.int_value();
        if (obj.is_list()) {
          const int64_t n = static_cast<int64_t>(obj.list().size());
          if (i < 0) i += n;
          if (i >= 0 && i < n) return obj.list()[i];
        } else {
          const std::string& s = obj.str();
          bool ascii = true;
          for (char c : s) {
            if (static_cast<uint8_t>(c) >= 0x80) {
              ascii = false;
              break;
            }
          }
          if (ascii) {
            const int64_t n = static_cast<int64_t>(s.size());
            if (i < 0) i += n;
            if (i >= 0 && i < n) return Value::String(std::string(1, s[i]));
          } else {
            const std::vector<char32_t> cps = DecodeUtf8String(s);
            const int64_t n = static_cast<int64_t>(cps.size());
            if (i < 0) i += n;
            if (i >= 0 && i < n) {
              std::string out;
              AppendUtf8(cps[i], &out);
              return Value::String(std::move(out));
            }
          }
        }
        return Value::Undefined(absl::StrCat("index ", key.int_value(), " is out of range"));
      }
      if (key.is_string()) return GetAttr(obj, key.str());
      break;
    }
    default: break;
  }
  return Value::Undefined(absl::StrCat("'", Sv(obj.TypeName()), " object' has no attribute ",
                                       key.Repr()));
}

absl::StatusOr<std::vector<Value>> Evaluator::Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return std::vector<Value>();
    case Value::Kind::kList: return v.list();
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      for (const auto& [k, val] : v.dict().items()) keys.push_back(k);
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      for (char32_t c : DecodeUtf8String(v.str())) {
        std::string s;
        AppendUtf8(c, &s);
        chars.push_back(Value::String(std::move(s)));
      }
      return chars;
    }
    default:
      return TypeError(absl::StrCat("'", Sv(v.TypeName()), "' object is not iterable"));
  }
}

absl::StatusOr<bool> Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined: return false;
    case Value::Kind::kString:
      if (!item.is_string()) {
        return TypeError(absl::StrCat("'in <string>' requires string as left operand, not ",
                                      Sv(item.TypeName())));
      }
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& v : container.list()) {
        if (Equals(v, item)) return true;
      }
      return false;
    case Value::Kind::kDict: {
      RETURN_IF_ERROR(KeyString(item).status());
      return container.dict().Find(item) != nullptr;
    }
    default:
      return TypeError(absl::StrCat("argument of type '", Sv(container.TypeName()),
                                    "' is not iterable"));
  }
}

}  // namespace moed::text::jinja

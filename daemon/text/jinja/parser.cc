// Jinja parser (see parser.h). The expression grammar and its precedence follow jinja2's
// parser.py function by function (condexpr > or > and > not > compare > math1 (+ -) > concat (~)
// > math2 (* / // %) > pow > unary > primary/postfix/filters), because precedence quirks such as
// "-x|abs" == "(-x)|abs" are observable in rendered output.
#include "daemon/text/jinja/parser.h"

#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "daemon/text/jinja/builtins.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::text::jinja {
namespace {

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : t_(tokens) {}

  absl::StatusOr<Body> ParseTemplate() {
    Body body;
    std::string end;
    RETURN_IF_ERROR(ParseBody({}, &body, &end));
    return body;
  }

 private:
  // ---- token helpers ----
  const Token& Cur() const { return t_[pos_]; }
  const Token& Peek(size_t k = 1) const { return t_[std::min(pos_ + k, t_.size() - 1)]; }
  void Next() {
    if (pos_ + 1 < t_.size()) ++pos_;
  }
  bool IsOp(std::string_view op) const { return Cur().type == Token::kOp && Cur().value == op; }
  bool IsName(std::string_view n) const { return Cur().type == Token::kName && Cur().value == n; }
  bool SkipOp(std::string_view op) {
    if (!IsOp(op)) return false;
    Next();
    return true;
  }
  bool SkipName(std::string_view n) {
    if (!IsName(n)) return false;
    Next();
    return true;
  }
  static std::string Describe(const Token& t) {
    switch (t.type) {
      case Token::kText: return "text";
      case Token::kVarBegin: return "'{{'";
      case Token::kVarEnd: return "'}}'";
      case Token::kBlockBegin: return "'{%'";
      case Token::kBlockEnd: return "'%}'";
      case Token::kName: return absl::StrCat("'", t.value, "'");
      case Token::kString: return "string literal";
      case Token::kInt:
      case Token::kFloat: return absl::StrCat("number ", t.value);
      case Token::kOp: return absl::StrCat("'", t.value, "'");
      case Token::kEof: return "end of template";
    }
    return "token";
  }
  absl::Status Error(const Token& t, std::string_view message) const {
    return absl::InvalidArgumentError(absl::StrCat(Where(t.line, t.column), Sv(message)));
  }
  absl::Status Expected(std::string_view what) const {
    return Error(Cur(), absl::StrCat("expected ", Sv(what), ", got ", Describe(Cur())));
  }
  absl::Status ExpectOp(std::string_view op) {
    if (!SkipOp(op)) return Expected(absl::StrCat("'", Sv(op), "'"));
    return absl::OkStatus();
  }
  absl::Status ExpectBlockEnd() {
    if (Cur().type != Token::kBlockEnd) return Expected("'%}'");
    Next();
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Cur().type != Token::kName) return Expected("a name");
    std::string n = Cur().value;
    Next();
    return n;
  }
  ExprPtr Node(Expr::Kind kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->column = at.column;
    return e;
  }

  // Depth guard for recursion (nested brackets, unary chains, nested blocks).
  struct DepthGuard {
    explicit DepthGuard(int* d) : d_(d) { ++*d_; }
    ~DepthGuard() { --*d_; }
    int* d_;
  };
  absl::Status CheckDepth() const {
    if (depth_ > kMaxParseDepth) {
      return Error(Cur(), absl::StrCat("template nested deeper than ", kMaxParseDepth, " levels"));
    }
    return absl::OkStatus();
  }

  // ---- statements ----
  absl::Status ParseBody(std::initializer_list<std::string_view> end_tags, Body* body,
                         std::string* end_tag);
  absl::StatusOr<StmtPtr> ParseStatement(const Token& tag);
  absl::Status ParseFor(Stmt* s);
  absl::Status ParseIf(Stmt* s);
  absl::Status ParseSet(Stmt* s);
  absl::Status ParseMacroParams(std::vector<MacroParam>* params);
  absl::StatusOr<ExprPtr> ParseFilterChain(ExprPtr base);

  // ---- expressions ----
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr, bool explicit_parens,
                                     std::string_view extra_end = "");
  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr = true);
  absl::StatusOr<ExprPtr> ParseOr();
  absl::StatusOr<ExprPtr> ParseAnd();
  absl::StatusOr<ExprPtr> ParseNot();
  absl::StatusOr<ExprPtr> ParseCompare();
  absl::StatusOr<ExprPtr> ParseMath1();
  absl::StatusOr<ExprPtr> ParseConcat();
  absl::StatusOr<ExprPtr> ParseMath2();
  absl::StatusOr<ExprPtr> ParsePow();
  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter);
  absl::StatusOr<ExprPtr> ParsePrimary();
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node, const Token& at);
  absl::Status ParseCallArgs(Expr* call);

  const std::vector<Token>& t_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

absl::Status Parser::ParseBody(std::initializer_list<std::string_view> end_tags, Body* body,
                               std::string* end_tag) {
  DepthGuard guard(&depth_);
  RETURN_IF_ERROR(CheckDepth());
  while (true) {
    const Token& tok = Cur();
    switch (tok.type) {
      case Token::kEof:
        if (end_tags.size() == 0) return absl::OkStatus();
        return Error(tok, absl::StrCat("unexpected end of template, expected '",
                                       Sv(*end_tags.begin()), "'"));
      case Token::kText: {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::kText;
        s->line = tok.line;
        s->column = tok.column;
        s->text = tok.value;
        body->push_back(std::move(s));
        Next();
        break;
      }
      case Token::kVarBegin: {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::kOutput;
        s->line = tok.line;
        s->column = tok.column;
        Next();
        ASSIGN_OR_RETURN(s->expr, ParseTuple(true, false));
        if (Cur().type != Token::kVarEnd) return Expected("'}}'");
        Next();
        body->push_back(std::move(s));
        break;
      }
      case Token::kBlockBegin: {
        Next();
        const Token& name = Cur();
        if (name.type != Token::kName) return Expected("a statement name");
        for (std::string_view e : end_tags) {
          if (name.value == e) {
            *end_tag = name.value;
            Next();
            return absl::OkStatus();
          }
        }
        ASSIGN_OR_RETURN(StmtPtr s, ParseStatement(name));
        if (s) body->push_back(std::move(s));
        break;
      }
      default:
        return Error(tok, absl::StrCat("unexpected ", Describe(tok)));
    }
  }
}

absl::StatusOr<StmtPtr> Parser::ParseStatement(const Token& tag) {
  auto s = std::make_unique<Stmt>();
  s->line = tag.line;
  s->column = tag.column;
  const std::string name = tag.value;
  Next();
  std::string end;
  if (name == "if") {
    RETURN_IF_ERROR(ParseIf(s.get()));
  } else if (name == "for") {
    RETURN_IF_ERROR(ParseFor(s.get()));
  } else if (name == "set") {
    RETURN_IF_ERROR(ParseSet(s.get()));
  } else if (name == "macro") {
    s->kind = Stmt::kMacro;
    ASSIGN_OR_RETURN(s->text, ExpectName());
    RETURN_IF_ERROR(ExpectOp("("));
    RETURN_IF_ERROR(ParseMacroParams(&s->params));
    RETURN_IF_ERROR(ExpectBlockEnd());
    const int saved = loop_depth_;
    loop_depth_ = 0;
    RETURN_IF_ERROR(ParseBody({"endmacro"}, &s->body, &end));
    loop_depth_ = saved;
    if (Cur().type == Token::kName && Cur().value == s->text) Next();
    RETURN_IF_ERROR(ExpectBlockEnd());
  } else if (name == "call") {
    s->kind = Stmt::kCallBlock;
    if (SkipOp("(")) RETURN_IF_ERROR(ParseMacroParams(&s->params));
    ASSIGN_OR_RETURN(s->expr, ParseExpression());
    if (s->expr->kind != Expr::kCall) return Error(tag, "{% call %} expects a macro call");
    RETURN_IF_ERROR(ExpectBlockEnd());
    const int saved = loop_depth_;
    loop_depth_ = 0;
    RETURN_IF_ERROR(ParseBody({"endcall"}, &s->body, &end));
    loop_depth_ = saved;
    RETURN_IF_ERROR(ExpectBlockEnd());
  } else if (name == "filter") {
    s->kind = Stmt::kFilterBlock;
    auto base = Node(Expr::kName, tag);
    base->name = "\x01body";
    ASSIGN_OR_RETURN(s->filter, ParseFilterChain(std::move(base)));
    RETURN_IF_ERROR(ExpectBlockEnd());
    RETURN_IF_ERROR(ParseBody({"endfilter"}, &s->body, &end));
    RETURN_IF_ERROR(ExpectBlockEnd());
  } else if (name == "with" || name == "generation") {
    // {% generation %} is HF's marker for assistant-token masks; it renders its body.
    s->kind = Stmt::kWith;
    while (name == "with" && Cur().type != Token::kBlockEnd) {
      if (!s->targets.empty()) RETURN_IF_ERROR(ExpectOp(","));
      ASSIGN_OR_RETURN(std::string target, ExpectName());
      RETURN_IF_ERROR(ExpectOp("="));
      ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
      s->targets.push_back(std::move(target));
      s->values.push_back(std::move(value));
    }
    RETURN_IF_ERROR(ExpectBlockEnd());
    RETURN_IF_ERROR(ParseBody({name == "with" ? "endwith" : "endgeneration"}, &s->body, &end));
    RETURN_IF_ERROR(ExpectBlockEnd());
  } else if (name == "break" || name == "continue") {
    if (loop_depth_ == 0) return Error(tag, absl::StrCat("'", name, "' outside of a for loop"));
    s->kind = name == "break" ? Stmt::kBreak : Stmt::kContinue;
    RETURN_IF_ERROR(ExpectBlockEnd());
  } else {
    return Error(tag, absl::StrCat("unsupported template tag '", name, "'"));
  }
  return s;
}

absl::Status Parser::ParseIf(Stmt* s) {
  s->kind = Stmt::kIf;
  ASSIGN_OR_RETURN(s->expr, ParseTuple(false, false));
  RETURN_IF_ERROR(ExpectBlockEnd());
  std::string end;
  RETURN_IF_ERROR(ParseBody({"elif", "else", "endif"}, &s->body, &end));
  if (end == "elif") {
    auto nested = std::make_unique<Stmt>();
    nested->line = Cur().line;
    nested->column = Cur().column;
    RETURN_IF_ERROR(ParseIf(nested.get()));
    s->else_body.push_back(std::move(nested));
    return absl::OkStatus();
  }
  if (end == "else") {
    RETURN_IF_ERROR(ExpectBlockEnd());
    RETURN_IF_ERROR(ParseBody({"endif"}, &s->else_body, &end));
  }
  return ExpectBlockEnd();
}

absl::Status Parser::ParseFor(Stmt* s) {
  s->kind = Stmt::kFor;
  bool parens = SkipOp("(");
  do {
    ASSIGN_OR_RETURN(std::string target, ExpectName());
    s->targets.push_back(std::move(target));
  } while (SkipOp(","));
  if (parens) RETURN_IF_ERROR(ExpectOp(")"));
  if (!SkipName("in")) return Expected("'in'");
  ASSIGN_OR_RETURN(s->expr, ParseTuple(false, false, "recursive"));
  if (SkipName("if")) {
    ASSIGN_OR_RETURN(s->filter, ParseExpression());
  }
  if (IsName("recursive")) return Error(Cur(), "recursive for loops are not supported");
  RETURN_IF_ERROR(ExpectBlockEnd());
  ++loop_depth_;
  std::string end;
  absl::Status st = ParseBody({"endfor", "else"}, &s->body, &end);
  --loop_depth_;
  RETURN_IF_ERROR(st);
  if (end == "else") {
    RETURN_IF_ERROR(ExpectBlockEnd());
    RETURN_IF_ERROR(ParseBody({"endfor"}, &s->else_body, &end));
  }
  return ExpectBlockEnd();
}

absl::Status Parser::ParseSet(Stmt* s) {
  s->kind = Stmt::kSet;
  ASSIGN_OR_RETURN(std::string first, ExpectName());
  s->targets.push_back(first);
  if (IsOp(".") && Peek().type == Token::kName) {
    Next();
    s->attr = Cur().value;
    Next();
  } else {
    while (SkipOp(",")) {
      ASSIGN_OR_RETURN(std::string target, ExpectName());
      s->targets.push_back(std::move(target));
    }
  }
  if (SkipOp("=")) {
    ASSIGN_OR_RETURN(s->expr, ParseTuple(true, false));
    return ExpectBlockEnd();
  }
  if (s->targets.size() != 1 || !s->attr.empty()) return Expected("'='");
  s->kind = Stmt::kSetBlock;
  if (IsOp("|")) {
    auto base = Node(Expr::kName, Cur());
    base->name = "\x01body";
    ASSIGN_OR_RETURN(s->filter, ParseFilterChain(std::move(base)));
  }
  RETURN_IF_ERROR(ExpectBlockEnd());
  std::string end;
  RETURN_IF_ERROR(ParseBody({"endset"}, &s->body, &end));
  return ExpectBlockEnd();
}

absl::Status Parser::ParseMacroParams(std::vector<MacroParam>* params) {
  while (!SkipOp(")")) {
    if (!params->empty()) RETURN_IF_ERROR(ExpectOp(","));
    if (SkipOp(")")) break;  // trailing comma
    MacroParam p;
    ASSIGN_OR_RETURN(p.name, ExpectName());
    if (SkipOp("=")) {
      ASSIGN_OR_RETURN(p.default_value, ParseExpression());
    }
    params->push_back(std::move(p));
  }
  return absl::OkStatus();
}

absl::StatusOr<ExprPtr> Parser::ParseFilterChain(ExprPtr base) {
  // A filter block's chain: "name(args) | name2 ...".
  if (!IsOp("|")) {
    // {% filter upper %}: no leading pipe.
    const Token at = Cur();
    ASSIGN_OR_RETURN(std::string name, ExpectName());
    auto f = Node(Expr::kFilter, at);
    f->name = name;
    f->filter = LookupFilter(name);
    if (f->filter == nullptr) return Error(at, absl::StrCat("no filter named '", name, "'"));
    f->args.push_back(std::move(base));
    if (IsOp("(")) {
      Next();
      RETURN_IF_ERROR(ParseCallArgs(f.get()));
    }
    base = std::move(f);
  }
  return ParseFilterExpr(std::move(base));
}

// ---- expressions ----

absl::StatusOr<ExprPtr> Parser::ParseTuple(bool with_condexpr, bool explicit_parens,
                                           std::string_view extra_end) {
  const Token at = Cur();
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  while (true) {
    if (!items.empty()) RETURN_IF_ERROR(ExpectOp(","));
    const Token& c = Cur();
    if (c.type == Token::kVarEnd || c.type == Token::kBlockEnd || IsOp(")") ||
        (!extra_end.empty() && IsName(extra_end)) || (!items.empty() && IsName("if"))) {
      break;
    }
    ASSIGN_OR_RETURN(ExprPtr e, ParseExpression(with_condexpr));
    items.push_back(std::move(e));
    if (IsOp(",")) {
      is_tuple = true;
    } else {
      break;
    }
  }
  if (!is_tuple) {
    if (!items.empty()) return std::move(items[0]);
    if (!explicit_parens) return Error(at, absl::StrCat("expected an expression, got ", Describe(at)));
  }
  auto t = Node(Expr::kTuple, at);
  t->args = std::move(items);
  return t;
}

absl::StatusOr<ExprPtr> Parser::ParseExpression(bool with_condexpr) {
  DepthGuard guard(&depth_);
  RETURN_IF_ERROR(CheckDepth());
  if (!with_condexpr) return ParseOr();
  ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
  while (IsName("if")) {
    const Token at = Cur();
    Next();
    ASSIGN_OR_RETURN(ExprPtr cond, ParseOr());
    ExprPtr otherwise;
    if (SkipName("else")) {
      ASSIGN_OR_RETURN(otherwise, ParseExpression(true));
    }
    auto c = Node(Expr::kCondExpr, at);
    c->args.push_back(std::move(cond));
    c->args.push_back(std::move(expr));
    c->args.push_back(std::move(otherwise));
    expr = std::move(c);
  }
  return expr;
}

absl::StatusOr<ExprPtr> Parser::ParseOr() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
  while (IsName("or")) {
    const Token at = Cur();
    Next();
    ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
    auto n = Node(Expr::kOr, at);
    n->args.push_back(std::move(left));
    n->args.push_back(std::move(right));
    left = std::move(n);
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseAnd() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
  while (IsName("and")) {
    const Token at = Cur();
    Next();
    ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
    auto n = Node(Expr::kAnd, at);
    n->args.push_back(std::move(left));
    n->args.push_back(std::move(right));
    left = std::move(n);
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseNot() {
  if (IsName("not")) {
    DepthGuard guard(&depth_);
    RETURN_IF_ERROR(CheckDepth());
    const Token at = Cur();
    Next();
    ASSIGN_OR_RETURN(ExprPtr inner, ParseNot());
    auto n = Node(Expr::kNot, at);
    n->args.push_back(std::move(inner));
    return n;
  }
  return ParseCompare();
}

absl::StatusOr<ExprPtr> Parser::ParseCompare() {
  const Token at = Cur();
  ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
  ExprPtr cmp;
  while (true) {
    std::string op;
    if (Cur().type == Token::kOp && (Cur().value == "==" || Cur().value == "!=" ||
                                     Cur().value == "<" || Cur().value == "<=" ||
                                     Cur().value == ">" || Cur().value == ">=")) {
      op = Cur().value;
      Next();
    } else if (IsName("in")) {
      op = "in";
      Next();
    } else if (IsName("not") && Peek().type == Token::kName && Peek().value == "in") {
      op = "notin";
      Next();
      Next();
    } else {
      break;
    }
    if (!cmp) {
      cmp = Node(Expr::kCompare, at);
      cmp->args.push_back(std::move(first));
    }
    ASSIGN_OR_RETURN(ExprPtr right, ParseMath1());
    cmp->ops.push_back(op);
    cmp->args.push_back(std::move(right));
  }
  return cmp ? std::move(cmp) : std::move(first);
}

absl::StatusOr<ExprPtr> Parser::ParseMath1() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseConcat());
  while (IsOp("+") || IsOp("-")) {
    const Token at = Cur();
    Next();
    ASSIGN_OR_RETURN(ExprPtr right, ParseConcat());
    auto n = Node(Expr::kBinary, at);
    n->name = at.value;
    n->args.push_back(std::move(left));
    n->args.push_back(std::move(right));
    left = std::move(n);
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseConcat() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseMath2());
  while (IsOp("~")) {
    const Token at = Cur();
    Next();
    ASSIGN_OR_RETURN(ExprPtr right, ParseMath2());
    auto n = Node(Expr::kBinary, at);
    n->name = "~";
    n->args.push_back(std::move(left));
    n->args.push_back(std::move(right));
    left = std::move(n);
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseMath2() {
  ASSIGN_OR_RETURN(ExprPtr left, ParsePow());
  while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
    const Token at = Cur();
    Next();
    ASSIGN_OR_RETURN(ExprPtr right, ParsePow());
    auto n = Node(Expr::kBinary, at);
    n->name = at.value;
    n->args.push_back(std::move(left));
    n->args.push_back(std::move(right));
    left = std::move(n);
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParsePow() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseUnary(true));
  while (IsOp("**")) {
    const Token at = Cur();
    Next();
    ASSIGN_OR_RETURN(ExprPtr right, ParseUnary(true));
    auto n = Node(Expr::kBinary, at);
    n->name = "**";
    n->args.push_back(std::move(left));
    n->args.push_back(std::move(right));
    left = std::move(n);
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseUnary(bool with_filter) {
  DepthGuard guard(&depth_);
  RETURN_IF_ERROR(CheckDepth());
  ExprPtr node;
  if (IsOp("-") || IsOp("+")) {
    const Token at = Cur();
    Next();
    ASSIGN_OR_RETURN(ExprPtr inner, ParseUnary(false));
    node = Node(at.value == "-" ? Expr::kNeg : Expr::kPos, at);
    node->args.push_back(std::move(inner));
  } else {
    ASSIGN_OR_RETURN(node, ParsePrimary());
  }
  ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
  if (with_filter) {
    ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
  }
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParsePrimary() {
  const Token at = Cur();
  switch (at.type) {
    case Token::kName: {
      Next();
      auto n = Node(Expr::kLiteral, at);
      if (at.value == "true" || at.value == "True") {
        n->literal = Value::Bool(true);
      } else if (at.value == "false" || at.value == "False") {
        n->literal = Value::Bool(false);
      } else if (at.value == "none" || at.value == "None") {
        n->literal = Value::None();
      } else {
        n->kind = Expr::kName;
        n->name = at.value;
      }
      return n;
    }
    case Token::kString: {
      std::string s;
      while (Cur().type == Token::kString) {  // adjacent literals concatenate
        s += Cur().value;
        Next();
      }
      auto n = Node(Expr::kLiteral, at);
      n->literal = Value::String(std::move(s));
      return n;
    }
    case Token::kInt:
    case Token::kFloat: {
      Next();
      auto n = Node(Expr::kLiteral, at);
      n->literal = at.type == Token::kInt ? Value::Int(at.int_value) : Value::Float(at.float_value);
      return n;
    }
    case Token::kOp:
      if (at.value == "(") {
        Next();
        ASSIGN_OR_RETURN(ExprPtr e, ParseTuple(true, true));
        RETURN_IF_ERROR(ExpectOp(")"));
        return e;
      }
      if (at.value == "[" || at.value == "{") {
        const bool is_list = at.value == "[";
        Next();
        auto n = Node(is_list ? Expr::kList : Expr::kDict, at);
        const std::string close = is_list ? "]" : "}";
        while (!SkipOp(close)) {
          if (!n->args.empty()) {
            RETURN_IF_ERROR(ExpectOp(","));
            if (SkipOp(close)) break;
          }
          ASSIGN_OR_RETURN(ExprPtr e, ParseExpression());
          n->args.push_back(std::move(e));
          if (!is_list) {
            RETURN_IF_ERROR(ExpectOp(":"));
            ASSIGN_OR_RETURN(ExprPtr v, ParseExpression());
            n->args.push_back(std::move(v));
          }
        }
        return n;
      }
      break;
    default: break;
  }
  return Error(at, absl::StrCat("unexpected ", Describe(at)));
}

absl::StatusOr<ExprPtr> Parser::ParsePostfix(ExprPtr node) {
  while (true) {
    const Token at = Cur();
    if (IsOp(".")) {
      Next();
      if (Cur().type == Token::kName) {
        auto n = Node(Expr::kGetAttr, at);
        n->name = Cur().value;
        Next();
        n->args.push_back(std::move(node));
        node = std::move(n);
      } else if (Cur().type == Token::kInt) {
        auto n = Node(Expr::kGetItem, at);
        auto idx = Node(Expr::kLiteral, Cur());
        idx->literal = Value::Int(Cur().int_value);
        Next();
        n->args.push_back(std::move(node));
        n->args.push_back(std::move(idx));
        node = std::move(n);
      } else {
        return Expected("an attribute name");
      }
    } else if (IsOp("[")) {
      Next();
      ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node), at));
    } else if (IsOp("(")) {
      Next();
      auto n = Node(Expr::kCall, at);
      n->args.push_back(std::move(node));
      RETURN_IF_ERROR(ParseCallArgs(n.get()));
      node = std::move(n);
    } else {
      return node;
    }
  }
}

absl::StatusOr<ExprPtr> Parser::ParseSubscript(ExprPtr node, const Token& at) {
  // After '[': index or slice.
  ExprPtr parts[3];
  int part = 0;
  bool is_slice = false;
  while (true) {
    if (IsOp("]")) {
      Next();
      break;
    }
    if (IsOp(":")) {
      Next();
      is_slice = true;
      if (++part > 2) return Error(at, "too many ':' in slice");
      continue;
    }
    if (parts[part]) return Expected("']'");
    ASSIGN_OR_RETURN(parts[part], ParseExpression());
  }
  if (!is_slice) {
    if (!parts[0]) return Error(at, "empty subscript");
    auto n = Node(Expr::kGetItem, at);
    n->args.push_back(std::move(node));
    n->args.push_back(std::move(parts[0]));
    return n;
  }
  auto n = Node(Expr::kSlice, at);
  n->args.push_back(std::move(node));
  for (auto& p : parts) n->args.push_back(std::move(p));
  return n;
}

absl::Status Parser::ParseCallArgs(Expr* call) {
  // After '('.
  bool first = true;
  while (!SkipOp(")")) {
    if (!first) {
      RETURN_IF_ERROR(ExpectOp(","));
      if (SkipOp(")")) break;
    }
    first = false;
    if (IsOp("*") || IsOp("**")) return Error(Cur(), "*args and **kwargs in calls are not supported");
    if (Cur().type == Token::kName && Peek().type == Token::kOp && Peek().value == "=") {
      std::string key = Cur().value;
      Next();
      Next();
      ASSIGN_OR_RETURN(ExprPtr v, ParseExpression());
      call->kwargs.emplace_back(std::move(key), std::move(v));
    } else {
      if (!call->kwargs.empty()) return Error(Cur(), "positional argument follows keyword argument");
      ASSIGN_OR_RETURN(ExprPtr v, ParseExpression());
      call->args.push_back(std::move(v));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ExprPtr> Parser::ParseFilterExpr(ExprPtr node) {
  while (true) {
    if (IsOp("|")) {
      Next();
      const Token at = Cur();
      ASSIGN_OR_RETURN(std::string name, ExpectName());
      auto f = Node(Expr::kFilter, at);
      f->name = name;
      f->filter = LookupFilter(name);
      if (f->filter == nullptr) return Error(at, absl::StrCat("no filter named '", name, "'"));
      f->args.push_back(std::move(node));
      if (IsOp("(")) {
        Next();
        RETURN_IF_ERROR(ParseCallArgs(f.get()));
      }
      node = std::move(f);
    } else if (IsName("is")) {
      Next();
      const bool negated = SkipName("not");
      const Token at = Cur();
      ASSIGN_OR_RETURN(std::string name, ExpectName());
      auto t = Node(Expr::kTest, at);
      t->name = name;
      t->negated = negated;
      t->test = LookupTest(name);
      if (t->test == nullptr) return Error(at, absl::StrCat("no test named '", name, "'"));
      t->args.push_back(std::move(node));
      if (IsOp("(")) {
        Next();
        RETURN_IF_ERROR(ParseCallArgs(t.get()));
      } else if ((Cur().type == Token::kName || Cur().type == Token::kString ||
                  Cur().type == Token::kInt || Cur().type == Token::kFloat || IsOp("[") ||
                  IsOp("{")) &&
                 !IsName("else") && !IsName("or") && !IsName("and") && !IsName("is") &&
                 !IsName("if") && !IsName("in") && !IsName("not")) {
        // "is divisibleby 3", "is sameas false": one argument without parentheses.
        ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
        ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
        t->args.push_back(std::move(arg));
      }
      node = std::move(t);
    } else if (IsOp("(")) {
      const Token at = Cur();
      Next();
      auto n = Node(Expr::kCall, at);
      n->args.push_back(std::move(node));
      RETURN_IF_ERROR(ParseCallArgs(n.get()));
      node = std::move(n);
    } else {
      return node;
    }
  }
}

}  // namespace

absl::StatusOr<Body> Parse(const std::vector<Token>& tokens) {
  if (tokens.empty() || tokens.back().type != Token::kEof) {
    return absl::InvalidArgumentError("token stream does not end with end-of-template");
  }
  Parser parser(tokens);
  return parser.ParseTemplate();
}

}  // namespace moed::text::jinja

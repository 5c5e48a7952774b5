// Jinja syntax tree: expressions and statements as the parser builds them. Filter and test
// names are resolved to functions at parse time, so an unknown one fails at template load.
#ifndef MOED_DAEMON_TEXT_JINJA_AST_H_
#define MOED_DAEMON_TEXT_JINJA_AST_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "daemon/text/jinja/value.h"

namespace moed::text::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

// A filter: value | name(args). A test: value is name(args). Both get the evaluator (tests
// and map/select call other filters and tests) and evaluated arguments.
using FilterFn = absl::StatusOr<Value> (*)(Evaluator&, const Value&, CallArgs&);
using TestFn = absl::StatusOr<bool> (*)(Evaluator&, const Value&, CallArgs&);

struct Expr {
  enum Kind {
    kLiteral,   // literal
    kName,      // name
    kGetAttr,   // args[0].name
    kGetItem,   // args[0][args[1]]
    kSlice,     // args[0][args[1]:args[2]:args[3]] (null children are omitted bounds)
    kCall,      // args[0](args[1:], kwargs)
    kFilter,    // args[0] | name(args[1:], kwargs)
    kTest,      // args[0] is [not] name(args[1:], kwargs)
    kNeg,       // -args[0]
    kPos,       // +args[0]
    kNot,       // not args[0]
    kBinary,    // args[0] op args[1]: + - * / // % ** ~
    kAnd,
    kOr,
    kCompare,   // args[0] ops[0] args[1] ops[1] args[2] ...
    kCondExpr,  // args[1] if args[0] else args[2] (args[2] may be null)
    kList,
    kTuple,
    kDict,  // args = k0, v0, k1, v1, ...
  };
  Kind kind = kLiteral;
  int line = 0;
  int column = 0;
  Value literal;
  std::string name;  // name, attribute, operator, filter or test name
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;  // kCompare: "==", "!=", "<", "<=", ">", ">=", "in", "notin"
  bool negated = false;          // kTest: "is not"
  FilterFn filter = nullptr;
  TestFn test = nullptr;
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // may be null
};

struct Stmt {
  enum Kind {
    kText,         // text
    kOutput,       // {{ expr }}
    kIf,           // if expr: body, else: else_body (elif chains nest in else_body)
    kFor,          // for targets in expr [if filter]: body, else: else_body
    kSet,          // set targets = expr (or ns.attr = expr when attr is set)
    kSetBlock,     // set target %} body {% endset (optional filter applied to the body)
    kMacro,        // macro name(params): body
    kCallBlock,    // {% call(params) expr %} body {% endcall %}
    kFilterBlock,  // filter expr(body output) (the filter chain is in expr)
    kWith,         // with targets = values: body
    kBreak,
    kContinue,
  };
  Kind kind = kText;
  int line = 0;
  int column = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;  // kFor: loop filter; kSetBlock/kFilterBlock: filter chain over a placeholder
  std::vector<std::string> targets;
  std::string attr;  // kSet: namespace attribute
  std::vector<ExprPtr> values;  // kWith
  Body body;
  Body else_body;
  std::vector<MacroParam> params;  // kMacro, kCallBlock
};

}  // namespace moed::text::jinja

#endif  // MOED_DAEMON_TEXT_JINJA_AST_H_

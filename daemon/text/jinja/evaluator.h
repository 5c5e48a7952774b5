// Jinja evaluator: runs a parsed template against a context with jinja2's scoping (a for-loop
// iteration, a macro call and a with-block each get a fresh frame; if-blocks do not), and with
// hard limits so a hostile template or input cannot hang the server or exhaust memory.
#ifndef MOED_DAEMON_TEXT_JINJA_EVALUATOR_H_
#define MOED_DAEMON_TEXT_JINJA_EVALUATOR_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/text/jinja/ast.h"
#include "daemon/text/jinja/value.h"

namespace moed::text::jinja {

struct Limits {
  size_t max_output_bytes = 64u << 20;  // also bounds every intermediate string
  size_t max_items = 1u << 22;          // elements of one list (range(), list * n, ...)
  int64_t max_steps = 50'000'000;       // evaluated nodes per render
  int max_call_depth = 64;              // nested macro calls
  int max_value_depth = 128;            // lists / dicts nested in one value
};

// raise_exception() fails the render with this code and exactly the template's message;
// every other render error is InvalidArgument (or ResourceExhausted for a limit) and starts
// with "line L column C: ".
inline constexpr absl::StatusCode kTemplateRaised = absl::StatusCode::kAborted;

class Frame {
 public:
  explicit Frame(std::shared_ptr<Frame> parent) : parent_(std::move(parent)) {}
  const Value* Find(const std::string& name) const;
  void Set(const std::string& name, Value value) { vars_[name] = std::move(value); }

 private:
  absl::flat_hash_map<std::string, Value> vars_;
  std::shared_ptr<Frame> parent_;
};

class Evaluator {
 public:
  // `globals` (context variables and global functions) must outlive the evaluator.
  Evaluator(const Limits& limits, const Dict* globals) : limits_(limits), globals_(globals) {}

  absl::Status Render(const Body& body, std::string* out);

  // Used by filters, tests and callables.
  absl::StatusOr<Value> Call(const Value& fn, CallArgs& args);
  absl::StatusOr<Value> GetAttr(const Value& obj, std::string_view name);
  absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
  // Elements a for-loop visits: list items, dict keys, string characters; none for undefined.
  absl::StatusOr<std::vector<Value>> Iterate(const Value& v);
  absl::Status CheckSize(size_t bytes) const;
  absl::Status CheckItems(size_t n) const;
  const Limits& limits() const { return limits_; }

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  absl::StatusOr<Flow> Exec(const Body& body, const std::shared_ptr<Frame>& frame,
                            std::string* out);
  absl::StatusOr<Flow> ExecStmt(const Stmt& s, const std::shared_ptr<Frame>& frame,
                                std::string* out);
  absl::StatusOr<Flow> ExecFor(const Stmt& s, const std::shared_ptr<Frame>& frame,
                               std::string* out);
  absl::StatusOr<Value> Eval(const Expr& e, const std::shared_ptr<Frame>& frame);
  absl::StatusOr<Value> EvalImpl(const Expr& e, const std::shared_ptr<Frame>& frame);
  absl::StatusOr<Value> EvalBinary(const std::string& op, const Value& a, const Value& b);
  absl::StatusOr<CallArgs> EvalArgs(const Expr& e, size_t first, const std::shared_ptr<Frame>& frame);
  absl::StatusOr<Value> Lookup(const std::string& name, const std::shared_ptr<Frame>& frame);
  Value MakeMacro(const Stmt& s, const std::shared_ptr<Frame>& frame);
  absl::StatusOr<Value> CallMacro(const Stmt& s, const std::weak_ptr<Frame>& closure,
                                  CallArgs& args);
  absl::Status Assign(const std::vector<std::string>& targets, const Value& v, Frame* frame);
  absl::Status Step();
  absl::Status Append(std::string* out, std::string_view s) const;

  Limits limits_;
  const Dict* globals_;
  int64_t steps_ = 0;
  int call_depth_ = 0;
};

// Python's "x in y".
absl::StatusOr<bool> Contains(const Value& container, const Value& item);

}  // namespace moed::text::jinja

#endif  // MOED_DAEMON_TEXT_JINJA_EVALUATOR_H_

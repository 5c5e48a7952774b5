// Values of the Jinja engine and the Python semantics templates rely on: truthiness, str() and
// repr(), ==, ordering, and json.dumps as HF's tojson calls it. Containers are shared
// (reference semantics, like Python objects); only namespaces are mutated after creation.
#ifndef MOED_DAEMON_TEXT_JINJA_VALUE_H_
#define MOED_DAEMON_TEXT_JINJA_VALUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace moed::text::jinja {

class Value;
class Evaluator;

class Dict;
struct CallArgs;
struct Callable;
using NativeFunction = std::function<absl::StatusOr<Value>(Evaluator&, CallArgs&)>;

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,  // list or tuple
    kDict,
    kNamespace,  // jinja2's namespace(): attributes settable with {% set ns.x = ... %}
    kCallable,
  };

  Value() = default;  // undefined
  static Value Undefined(std::string hint = "");
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double f);
  static Value String(std::string s);
  static Value List(std::vector<Value> items, bool tuple = false);
  static Value MakeDict(Dict dict);
  static Value Namespace(Dict dict);
  static Value Function(std::string name, NativeFunction fn);
  // REQUIRES: `j` nested at most a few hundred levels (JsonDepth() checks it).
  static Value FromJson(const nlohmann::ordered_json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  // Python numbers: bool counts as an int.
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_tuple() const { return kind_ == Kind::kList && tuple_; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_callable() const { return kind_ == Kind::kCallable; }

  bool bool_value() const { return b_; }
  int64_t int_value() const { return is_bool() ? (b_ ? 1 : 0) : i_; }
  double float_value() const { return is_float() ? f_ : static_cast<double>(int_value()); }
  const std::string& str() const;  // kString; undefined-hint for kUndefined
  const std::vector<Value>& list() const;
  const Dict& dict() const;  // kDict and kNamespace
  Dict& mutable_namespace() const;
  const Callable& callable() const;

  // Containers nested inside this value (0 for scalars), and whether a namespace is among them.
  // Both are computed at construction, so limits are O(1) to check.
  int depth() const { return depth_; }
  bool holds_namespace() const { return holds_namespace_; }

  bool Truthy() const;
  // Python str(): what {{ x }} prints. Undefined prints as "".
  std::string Str() const;
  // Python repr().
  std::string Repr() const;
  // Python type name for error messages ("str", "dict", "NoneType", "undefined").
  std::string_view TypeName() const;

 private:
  void ComputeNesting();

  Kind kind_ = Kind::kUndefined;
  bool tuple_ = false;
  bool holds_namespace_ = false;
  int depth_ = 0;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<void> ptr_;
};

// Insertion-ordered dictionary (Python 3.7+ dicts keep insertion order, and templates print
// tools and arguments in that order).
class Dict {
 public:
  const Value* Find(const Value& key) const;
  const Value* Find(std::string_view key) const;
  void Set(const Value& key, Value value);
  size_t size() const { return items_.size(); }
  const std::vector<std::pair<Value, Value>>& items() const { return items_; }

 private:
  std::vector<std::pair<Value, Value>> items_;
  absl::flat_hash_map<std::string, size_t> index_;  // by KeyString(key)
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> kwargs;
};



struct Callable {
  std::string name;
  NativeFunction fn;
};

// Nesting depth of a JSON value, counting at most up to `limit + 1` (so deep input is cheap).
int JsonDepth(const nlohmann::ordered_json& j, int limit);

// Python ==.
bool Equals(const Value& a, const Value& b);
// Python <, as -1/0/1; TypeError-like InvalidArgument for unorderable types.
absl::StatusOr<int> Compare(const Value& a, const Value& b);
// The dict-index key of a hashable value; InvalidArgument for unhashable ones.
absl::StatusOr<std::string> KeyString(const Value& key);

// Python float repr ("1.0", "0.1", "1e+20", "inf", "nan").
std::string PyFloatRepr(double d);
// Python repr() of a str.
std::string PyStringRepr(std::string_view s);

struct JsonOptions {
  std::optional<int> indent;        // None: one line
  std::string item_separator;       // default ", " (or "," with indent)
  std::string key_separator = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;
};
// json.dumps(value, ...). Fails (naming the type) for undefined, callables and namespaces.
absl::StatusOr<std::string> ToJson(const Value& v, const JsonOptions& options);

}  // namespace moed::text::jinja

#endif  // MOED_DAEMON_TEXT_JINJA_VALUE_H_

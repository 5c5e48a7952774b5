// Registries of the built-in filters, tests and global functions, and the Python methods of
// str, dict and list values (split, startswith, items, get, ...) that templates call.
#ifndef MOED_DAEMON_TEXT_JINJA_BUILTINS_H_
#define MOED_DAEMON_TEXT_JINJA_BUILTINS_H_

#include <string_view>

#include "daemon/text/jinja/ast.h"
#include "daemon/text/jinja/value.h"

namespace moed::text::jinja {

// nullptr if there is no such filter / test.
FilterFn LookupFilter(std::string_view name);
TestFn LookupTest(std::string_view name);

// Global functions every template sees: range, namespace, dict, cycler, joiner (HF adds
// raise_exception and strftime_now; chat_template.cc adds those).
Dict BuiltinGlobals();

// obj.name for str / dict / list values: a bound method, or Undefined if there is none.
// Mutating methods (append, update, ...) yield an error, as in jinja2's immutable sandbox.
absl::StatusOr<Value> GetMethod(const Value& obj, std::string_view name);

// Python string helpers shared by filters and methods.
std::string PyStrip(std::string_view s, const Value& chars, bool left, bool right);
std::string PyLower(std::string_view s);
std::string PyUpper(std::string_view s);

}  // namespace moed::text::jinja

#endif  // MOED_DAEMON_TEXT_JINJA_BUILTINS_H_

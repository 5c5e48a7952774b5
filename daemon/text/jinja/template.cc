// Template facade (see template.h).
#include "daemon/text/jinja/template.h"

#include "daemon/text/jinja/builtins.h"
#include "daemon/text/jinja/parser.h"
#include "kernels/base/status_macros.h"

namespace moed::text::jinja {

absl::StatusOr<std::unique_ptr<Template>> Template::Parse(std::string_view source,
                                                          const LexerOptions& options) {
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Lex(source, options));
  std::unique_ptr<Template> t(new Template());
  ASSIGN_OR_RETURN(t->body_, jinja::Parse(tokens));
  return t;
}

absl::StatusOr<std::string> Template::Render(const Dict& context, const Limits& limits) const {
  Dict globals = BuiltinGlobals();
  for (const auto& [k, v] : context.items()) globals.Set(k, v);
  Evaluator evaluator(limits, &globals);
  std::string out;
  RETURN_IF_ERROR(evaluator.Render(body_, &out));
  return out;
}

}  // namespace moed::text::jinja

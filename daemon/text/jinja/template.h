// A parsed Jinja template: Template::Parse checks the whole source up front (syntax, tags,
// filter and test names) and Render evaluates it against a context. Output matches Python's
// jinja2 configured like HF transformers (trim_blocks, lstrip_blocks, loop controls, tojson
// without HTML escaping); see daemon/text/README.md for the supported subset.
#ifndef MOED_DAEMON_TEXT_JINJA_TEMPLATE_H_
#define MOED_DAEMON_TEXT_JINJA_TEMPLATE_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "daemon/text/jinja/ast.h"
#include "daemon/text/jinja/evaluator.h"
#include "daemon/text/jinja/lexer.h"
#include "daemon/text/jinja/value.h"

namespace moed::text::jinja {

class Template {
 public:
  // InvalidArgument "line L column C: ..." for anything that does not parse or is unsupported.
  static absl::StatusOr<std::unique_ptr<Template>> Parse(std::string_view source,
                                                         const LexerOptions& options = {});

  // `context` holds the template's variables; built-in globals (range, namespace, ...) are
  // added underneath. Errors: kTemplateRaised for raise_exception(), InvalidArgument with a
  // location for evaluation errors, ResourceExhausted for limits.
  absl::StatusOr<std::string> Render(const Dict& context, const Limits& limits = {}) const;

 private:
  Template() = default;
  Body body_;
};

}  // namespace moed::text::jinja

#endif  // MOED_DAEMON_TEXT_JINJA_TEMPLATE_H_

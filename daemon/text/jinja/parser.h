// Jinja parser: tokens -> statements. Anything outside the supported subset (extends, include,
// import, block, recursive loops, unknown filters or tests, ...) fails here with the template
// line and column, so a model's template is rejected at load and not halfway through a request.
#ifndef MOED_DAEMON_TEXT_JINJA_PARSER_H_
#define MOED_DAEMON_TEXT_JINJA_PARSER_H_

#include <vector>

#include "absl/status/statusor.h"
#include "daemon/text/jinja/ast.h"
#include "daemon/text/jinja/lexer.h"

namespace moed::text::jinja {

inline constexpr int kMaxParseDepth = 128;

absl::StatusOr<Body> Parse(const std::vector<Token>& tokens);

}  // namespace moed::text::jinja

#endif  // MOED_DAEMON_TEXT_JINJA_PARSER_H_

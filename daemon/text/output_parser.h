// The whole path from generated text to an OpenAI response delta: stop strings first (on the
// raw text), then reasoning / content splitting, then tool calls in the content. Feed it the
// valid UTF-8 that StreamingDetokenizer produces, token by token.
#ifndef MOED_DAEMON_TEXT_OUTPUT_PARSER_H_
#define MOED_DAEMON_TEXT_OUTPUT_PARSER_H_

#include <string>
#include <string_view>
#include <vector>

#include "daemon/text/reasoning_parser.h"
#include "daemon/text/stop_matcher.h"
#include "daemon/text/tool_call_parser.h"

namespace moed::text {

struct OutputParserOptions {
  ReasoningOptions reasoning;
  bool parse_tool_calls = true;
  ToolCallOptions tool_calls;
  std::vector<std::string> stop;
};

struct OutputDelta {
  std::string reasoning_content;
  std::string content;
  std::vector<ToolCall> tool_calls;
  std::vector<std::string> warnings;
  bool stopped = false;  // a stop string matched; generation should end
  std::string stop_string;

  bool empty() const {
    return reasoning_content.empty() && content.empty() && tool_calls.empty() && !stopped;
  }
};

class OutputParser {
 public:
  explicit OutputParser(OutputParserOptions options);
  OutputDelta Push(std::string_view text);
  // End of generation (EOS, length, or after a stop): everything still held back.
  OutputDelta Finish();
  bool stopped() const { return stop_.stopped(); }

 private:
  void Feed(std::string_view text, OutputDelta* out);
  void Drain(OutputDelta* out);

  OutputParserOptions options_;
  StopMatcher stop_;
  ReasoningParser reasoning_;
  ToolCallParser tools_;
  bool finished_ = false;
};

}  // namespace moed::text

#endif  // MOED_DAEMON_TEXT_OUTPUT_PARSER_H_

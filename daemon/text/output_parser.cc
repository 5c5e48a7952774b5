// Output pipeline (see output_parser.h).
#include "daemon/text/output_parser.h"

#include "kernels/base/log.h"

namespace moed::text {

OutputParser::OutputParser(OutputParserOptions options)
    : options_(std::move(options)),
      stop_(options_.stop),
      reasoning_(options_.reasoning),
      tools_(options_.tool_calls) {}

void OutputParser::Feed(std::string_view text, OutputDelta* out) {
  ReasoningParser::Delta r = reasoning_.Push(text);
  out->reasoning_content += r.reasoning;
  if (!options_.parse_tool_calls) {
    out->content += r.content;
    return;
  }
  ToolCallParser::Event e = tools_.Push(r.content);
  out->content += e.content;
  for (auto& c : e.tool_calls) out->tool_calls.push_back(std::move(c));
  for (auto& w : e.warnings) out->warnings.push_back(std::move(w));
}

void OutputParser::Drain(OutputDelta* out) {
  if (finished_) return;
  finished_ = true;
  ReasoningParser::Delta r = reasoning_.Finish();
  out->reasoning_content += r.reasoning;
  if (!options_.parse_tool_calls) {
    out->content += r.content;
    return;
  }
  ToolCallParser::Event e = tools_.Push(r.content);
  ToolCallParser::Event f = tools_.Finish();
  out->content += e.content + f.content;
  for (auto* ev : {&e, &f}) {
    for (auto& c : ev->tool_calls) out->tool_calls.push_back(std::move(c));
    for (auto& w : ev->warnings) out->warnings.push_back(std::move(w));
  }
  for (const auto& w : out->warnings) MOED_LOG(WARNING) << w;
}

OutputDelta OutputParser::Push(std::string_view text) {
  OutputDelta out;
  if (finished_) return out;
  StopMatcher::Result s = stop_.Push(text);
  Feed(s.text, &out);
  if (s.stopped) {
    out.stopped = true;
    out.stop_string = s.matched;
    Drain(&out);
  } else {
    for (const auto& w : out.warnings) MOED_LOG(WARNING) << w;
  }
  return out;
}

OutputDelta OutputParser::Finish() {
  OutputDelta out;
  if (finished_) return out;
  Feed(stop_.Flush(), &out);
  Drain(&out);
  return out;
}

}  // namespace moed::text

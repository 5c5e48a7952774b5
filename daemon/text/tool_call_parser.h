// Qwen3.5 / Qwen3-Coder tool calls in streamed content, turned into OpenAI tool_calls:
//
//   <tool_call>
//   <function=get_weather>
//   <parameter=city>
//   Paris
//   </parameter>
//   </function>
//   </tool_call>
//
// A call is emitted once its </tool_call> arrives (one delta carrying id, name and the whole
// arguments JSON, so a malformed call can still be returned as content instead of a broken
// call). Parameter values are typed with the request's tool schemas (integer, number, boolean,
// object, array; strings and unknown parameters stay strings). Text outside calls is content;
// whitespace around calls is dropped.
#ifndef MOED_DAEMON_TEXT_TOOL_CALL_PARSER_H_
#define MOED_DAEMON_TEXT_TOOL_CALL_PARSER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nlohmann/json.hpp"

namespace moed::text {

struct ToolCall {
  int index = 0;
  std::string id;
  std::string name;
  std::string arguments;  // JSON object text
  // {"index":..,"id":..,"type":"function","function":{"name":..,"arguments":..}}
  nlohmann::ordered_json ToOpenAi(bool with_index) const;
};

struct ToolCallOptions {
  nlohmann::ordered_json tools;  // the request's "tools" (OpenAI format); may be null
  std::string id_prefix = "call_";
  uint64_t id_seed = 0;  // 0: random ids; otherwise deterministic (tests)
};

class ToolCallParser {
 public:
  explicit ToolCallParser(ToolCallOptions options = {});

  struct Event {
    std::string content;
    std::vector<ToolCall> tool_calls;  // completed in this step
    std::vector<std::string> warnings;
  };
  Event Push(std::string_view text);
  // End of stream: an unterminated call is returned as content with a warning.
  Event Finish();

  const std::vector<ToolCall>& calls() const { return calls_; }

 private:
  void Process(bool final, Event* out);
  // Parses the text between <tool_call> and </tool_call>; false if it is not a valid call.
  bool ParseCall(std::string_view body, ToolCall* call, std::string* error) const;
  nlohmann::ordered_json TypedValue(const std::string& function, const std::string& param,
                                    const std::string& raw) const;
  std::string NextId();

  ToolCallOptions options_;
  std::string pending_;
  bool in_call_ = false;
  std::string held_space_;  // content whitespace that may precede a <tool_call>
  bool after_call_ = false;  // whitespace right after a call is dropped
  std::vector<ToolCall> calls_;
  uint64_t rng_;
};

}  // namespace moed::text

#endif  // MOED_DAEMON_TEXT_TOOL_CALL_PARSER_H_

// libFuzzer target: the streaming output parser (stop strings, <think> splitting, Qwen3.5 tool
// calls). The input is split into chunks at 0xFF bytes; whatever the chunking, the collected
// reasoning, content and tool calls must equal those of the unchunked text.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/text/output_parser.h"

namespace {

struct Out {
  std::string reasoning, content, calls;
};

Out Run(const std::vector<std::string_view>& chunks, bool prefilled) {
  moed::text::OutputParserOptions o;
  o.stop = {"<|im_end|>", "STOP"};
  o.reasoning.starts_in_reasoning = prefilled;
  o.tool_calls.id_seed = 1;
  o.tool_calls.tools = nlohmann::ordered_json::parse(
      R"([{"type":"function","function":{"name":"f","parameters":{"properties":{
          "n":{"type":"integer"},"o":{"type":"object"},"b":{"type":"boolean"}}}}}])");
  moed::text::OutputParser p(o);
  Out out;
  auto add = [&](const moed::text::OutputDelta& d) {
    out.reasoning += d.reasoning_content;
    out.content += d.content;
    for (const auto& c : d.tool_calls) out.calls += c.name + "(" + c.arguments + ")";
  };
  for (std::string_view c : chunks) add(p.Push(c));
  add(p.Finish());
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> chunks;
  std::string whole;
  size_t start = 0;
  for (size_t i = 0; i <= in.size(); ++i) {
    if (i == in.size() || static_cast<uint8_t>(in[i]) == 0xFF) {
      chunks.push_back(in.substr(start, i - start));
      whole.append(in.substr(start, i - start));
      start = i + 1;
    }
  }
  for (bool prefilled : {false, true}) {
    const Out a = Run(chunks, prefilled);
    const Out b = Run({whole}, prefilled);
    if (a.reasoning != b.reasoning || a.content != b.content || a.calls != b.calls) std::abort();
  }
  return 0;
}

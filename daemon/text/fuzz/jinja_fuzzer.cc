// libFuzzer target: the template engine on an arbitrary template source and context. Input:
// TEMPLATE, optionally followed by "\n--ctx--\n" and a JSON object (the chat input). Parsing and
// rendering may fail, but must do so with a status, within the limits, without crashing.
#include <cstdint>
#include <string>
#include <string_view>

#include "daemon/text/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  constexpr std::string_view kSep = "\n--ctx--\n";
  const size_t sep = in.find(kSep);
  const std::string_view source = in.substr(0, sep);
  nlohmann::ordered_json ctx = {
      {"messages", {{{"role", "system"}, {"content", "s"}},
                    {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "hi"}}}}},
                    {{"role", "assistant"}, {"content", "a"}, {"reasoning_content", "r"},
                     {"tool_calls", {{{"function", {{"name", "f"}, {"arguments", {{"x", 1}}}}}}}}},
                    {{"role", "tool"}, {"content", "t"}}}},
      {"tools", {{{"type", "function"}, {"function", {{"name", "f"}}}}}},
      {"add_generation_prompt", true}};
  if (sep != std::string_view::npos) {
    const std::string_view json = in.substr(sep + kSep.size());
    // Bound nesting before nlohmann sees it (its recursion is not bounded).
    int depth = 0, max_depth = 0;
    for (char c : json) {
      if (c == '[' || c == '{') max_depth = std::max(max_depth, ++depth);
      if (c == ']' || c == '}') --depth;
    }
    if (max_depth > 200) return 0;
    auto parsed = nlohmann::ordered_json::parse(json, nullptr, false);
    if (!parsed.is_discarded()) ctx = std::move(parsed);
  }
  moed::text::ChatTemplateOptions options;
  options.limits.max_steps = 200000;
  options.limits.max_output_bytes = 1 << 20;
  options.limits.max_items = 1 << 16;
  auto t = moed::text::ChatTemplate::Parse(source, options);
  if (!t.ok()) return 0;
  auto out = (*t)->Render(ctx);
  (void)out;
  return 0;
}

// Chat template rendering (see chat_template.h).
#include "daemon/text/chat_template.h"

#include <ctime>

#include "absl/strings/str_cat.h"
#include "kernels/base/log.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"
#include "loader/gguf/gguf_file.h"

namespace moed::text {
namespace {

using Json = nlohmann::ordered_json;
using jinja::JsonDepth;
using jinja::Value;

// OpenAI clients send tool-call arguments as a JSON string; templates expect an object.
Json NormalizeToolCalls(const Json& messages) {
  Json out = messages;
  for (Json& m : out) {
    if (!m.is_object() || !m.contains("tool_calls") || !m["tool_calls"].is_array()) continue;
    for (Json& call : m["tool_calls"]) {
      Json* fn = call.is_object() && call.contains("function") ? &call["function"] : &call;
      if (!fn->is_object() || !fn->contains("arguments") || !(*fn)["arguments"].is_string()) continue;
      Json parsed = Json::parse((*fn)["arguments"].get<std::string>(), nullptr, false);
      if (!parsed.is_discarded() && parsed.is_object()) (*fn)["arguments"] = std::move(parsed);
    }
  }
  return out;
}

std::string ContentText(const Json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string out;
  if (content.is_array()) {
    for (const Json& part : content) {
      if (part.is_object() && part.contains("text") && part["text"].is_string()) {
        out += part["text"].get<std::string>();
      }
    }
  }
  return out;
}

Value RaiseException() {
  return Value::Function("raise_exception", [](jinja::Evaluator&, jinja::CallArgs& a)
                                                 -> absl::StatusOr<Value> {
    const std::string msg = a.positional.empty() ? std::string("raise_exception() called")
                                                 : a.positional[0].Str();
    return absl::Status(jinja::kTemplateRaised, msg);
  });
}

Value StrftimeNow() {
  return Value::Function("strftime_now", [](jinja::Evaluator&, jinja::CallArgs& a)
                                              -> absl::StatusOr<Value> {
    if (a.positional.empty() || !a.positional[0].is_string()) {
      return absl::InvalidArgumentError("strftime_now() expects a format string");
    }
    const std::string fmt = a.positional[0].str().substr(0, 256);
    std::time_t now = std::time(nullptr);
    std::tm tm;
    localtime_r(&now, &tm);
    char buf[1024];
    const size_t n = std::strftime(buf, sizeof(buf), fmt.c_str(), &tm);
    return Value::String(std::string(buf, n));
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Parse(std::string_view source,
                                                                  ChatTemplateOptions options) {
  std::unique_ptr<ChatTemplate> t(new ChatTemplate());
  ASSIGN_OR_RETURN(t->template_, jinja::Template::Parse(source));
  t->options_ = std::move(options);
  return t;
}

std::unique_ptr<ChatTemplate> ChatTemplate::ChatMl(ChatTemplateOptions options) {
  std::unique_ptr<ChatTemplate> t(new ChatTemplate());
  t->options_ = std::move(options);
  return t;
}

absl::StatusOr<std::string> ChatTemplate::Render(const Json& input) const {
  if (!input.is_object()) return absl::InvalidArgumentError("chat input must be a JSON object");
  if (!input.contains("messages") || !input["messages"].is_array()) {
    return absl::InvalidArgumentError("chat input needs a \"messages\" array");
  }
  constexpr int kMaxInputDepth = 64;
  if (JsonDepth(input, kMaxInputDepth) > kMaxInputDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("chat input is nested deeper than ", kMaxInputDepth, " levels"));
  }
  const Json messages = NormalizeToolCalls(input["messages"]);
  if (template_ == nullptr) {
    Json copy = input;
    copy["messages"] = messages;
    return RenderChatMl(copy);
  }
  jinja::Dict context;
  // HF passes tools and documents as None when absent, and add_generation_prompt=False.
  context.Set(Value::String("tools"), Value::None());
  context.Set(Value::String("documents"), Value::None());
  context.Set(Value::String("add_generation_prompt"), Value::Bool(false));
  context.Set(Value::String("bos_token"), Value::String(options_.bos_token));
  context.Set(Value::String("eos_token"), Value::String(options_.eos_token));
  context.Set(Value::String("raise_exception"), RaiseException());
  context.Set(Value::String("strftime_now"), StrftimeNow());
  for (const auto& [key, value] : input.items()) {
    context.Set(Value::String(key), key == "messages" ? Value::FromJson(messages)
                                                      : Value::FromJson(value));
  }
  return template_->Render(context, options_.limits);
}

absl::StatusOr<std::string> ChatTemplate::RenderChatMl(const Json& input) const {
  std::string out;
  const Json& tools = input.contains("tools") ? input["tools"] : Json();
  bool tools_done = !tools.is_array() || tools.empty();
  auto tools_text = [&]() {
    std::string s = "# Tools\n\nYou may call one or more functions. Function signatures:\n<tools>";
    for (const Json& t : tools) s += "\n" + t.dump(-1, ' ', false, Json::error_handler_t::replace);
    s += "\n</tools>\nReturn each call as <tool_call>\n{\"name\": ..., \"arguments\": ...}\n</tool_call>";
    return s;
  };
  for (const Json& m : input["messages"]) {
    if (!m.is_object()) return absl::InvalidArgumentError("each message must be a JSON object");
    const std::string role = m.contains("role") && m["role"].is_string() ? m["role"].get<std::string>() : "user";
    std::string content = m.contains("content") ? ContentText(m["content"]) : "";
    if (!tools_done && role == "system") {
      content += "\n\n" + tools_text();
      tools_done = true;
    } else if (!tools_done) {
      out += "<|im_start|>system\n" + tools_text() + "<|im_end|>\n";
      tools_done = true;
    }
    out += "<|im_start|>" + role + "\n" + content;
    if (m.contains("tool_calls") && m["tool_calls"].is_array()) {
      for (const Json& call : m["tool_calls"]) {
        const Json& fn = call.contains("function") ? call["function"] : call;
        Json c = {{"name", fn.value("name", "")}, {"arguments", fn.contains("arguments") ? fn["arguments"] : Json::object()}};
        out += "\n<tool_call>\n" + c.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n</tool_call>";
      }
    }
    out += "<|im_end|>\n";
  }
  if (!tools_done) out += "<|im_start|>system\n" + tools_text() + "<|im_end|>\n";
  if (input.value("add_generation_prompt", false)) out += "<|im_start|>assistant\n";
  return out;
}

std::unique_ptr<ChatTemplate> ChatTemplateOrChatMl(std::string_view source,
                                                   std::string_view source_name,
                                                   ChatTemplateOptions options,
                                                   std::string* warning) {
  warning->clear();
  auto t = ChatTemplate::Parse(source, options);
  if (t.ok()) return std::move(*t);
  *warning = absl::StrCat("chat template ", Sv(source_name), " is not supported (",
                          t.status().message(), "); using the built-in ChatML template");
  MOED_LOG(WARNING) << *warning;
  return ChatTemplate::ChatMl(std::move(options));
}

std::unique_ptr<ChatTemplate> LoadChatTemplate(const gguf::GgufFile& file, std::string* warning) {
  ChatTemplateOptions options;
  auto token_text = [&](std::string_view key) -> std::string {
    auto id = file.GetUint(key);
    const gguf::Value* tokens = file.FindValue("tokenizer.ggml.tokens");
    if (!id.ok() || tokens == nullptr) return "";
    auto strings = tokens->GetStrings();
    if (!strings.ok() || *id >= strings->size()) return "";
    return (*strings)[*id];
  };
  options.bos_token = token_text("tokenizer.ggml.bos_token_id");
  options.eos_token = token_text("tokenizer.ggml.eos_token_id");
  auto source = file.GetString("tokenizer.chat_template");
  if (!source.ok()) {
    *warning = absl::StrCat(file.path(), " has no tokenizer.chat_template; using the built-in ChatML template");
    MOED_LOG(WARNING) << *warning;
    return ChatTemplate::ChatMl(std::move(options));
  }
  return ChatTemplateOrChatMl(*source, absl::StrCat(file.path(), " tokenizer.chat_template"),
                              std::move(options), warning);
}

}  // namespace moed::text

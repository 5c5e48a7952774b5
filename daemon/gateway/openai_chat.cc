// Chat completions: request checking, template input, response objects (see openai_chat.h).
#include "daemon/gateway/openai_chat.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "daemon/gateway/api_error.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::gateway {
namespace {

// Text parts joined by newlines (vLLM's "string" content format); images and audio refused.
absl::StatusOr<std::string> FlattenContent(const Json& content, const std::string& param) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return TypeError(param, "a string or an array of content parts", content);
  std::string out;
  for (size_t i = 0; i < content.size(); ++i) {
    const Json& part = content[i];
    const std::string part_param = absl::StrCat(param, "[", i, "]");
    if (!part.is_object()) return TypeError(part_param, "an object", part);
    ASSIGN_OR_RETURN(std::optional<std::string> type, OptionalString(part, "type"));
    if (type.value_or("text") != "text") {
      return ParamError(absl::StrCat(part_param, ".type"),
                        absl::StrCat("Content parts of type '", *type,
                                     "' are not supported; this model takes text only."),
                        "unsupported_content");
    }
    ASSIGN_OR_RETURN(std::optional<std::string> text, OptionalString(part, "text"));
    if (!text) {
      return ParamError(absl::StrCat(part_param, ".text"), "A text part needs a 'text' string.",
                        "missing_required_parameter");
    }
    if (!out.empty()) out += "\n";
    out += *text;
  }
  return out;
}

absl::StatusOr<Json> CheckToolCalls(const Json& calls, const std::string& param) {
  if (!calls.is_array()) return TypeError(param, "an array", calls);
  Json out = Json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    const Json& call = calls[i];
    const std::string p = absl::StrCat(param, "[", i, "]");
    if (!call.is_object()) return TypeError(p, "an object", call);
    const Json* function = Member(call, "function");
    if (function == nullptr || !function->is_object()) {
      return ParamError(absl::StrCat(p, ".function"), "A tool call needs a 'function' object.",
                        "missing_required_parameter");
    }
    ASSIGN_OR_RETURN(std::optional<std::string> name, OptionalString(*function, "name"));
    if (!name) {
      return ParamError(absl::StrCat(p, ".function.name"), "A tool call needs a function name.",
                        "missing_required_parameter");
    }
    const Json* arguments = Member(*function, "arguments");
    if (arguments != nullptr && !arguments->is_string() && !arguments->is_object()) {
      return TypeError(absl::StrCat(p, ".function.arguments"), "a string", *arguments);
    }
    // The template parses argument strings as JSON: the same nesting limit as the body applies.
    if (arguments != nullptr && arguments->is_string() &&
        JsonNestingDepth(arguments->get_ref<const std::string&>(), kDefaultMaxJsonDepth) >
            kDefaultMaxJsonDepth) {
      return ParamError(absl::StrCat(p, ".function.arguments"),
                        absl::StrCat("The arguments nest deeper than ", kDefaultMaxJsonDepth,
                                     " levels."),
                        "invalid_value");
    }
    out.push_back(call);
  }
  return out;
}

absl::StatusOr<Json> CheckMessages(const Json& body) {
  const Json* messages = Member(body, "messages");
  if (messages == nullptr) {
    return ParamError("messages", "Missing required parameter: 'messages'.",
                      "missing_required_parameter");
  }
  if (!messages->is_array()) return TypeError("messages", "an array", *messages);
  if (messages->empty()) {
    return ParamError("messages", "'messages' must contain at least one message.",
                      "invalid_value");
  }
  Json out = Json::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    const Json& m = (*messages)[i];
    const std::string p = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return TypeError(p, "an object", m);
    ASSIGN_OR_RETURN(std::optional<std::string> role, OptionalString(m, "role"));
    if (!role) {
      return ParamError(p + ".role", "Missing required parameter: 'role'.",
                        "missing_required_parameter");
    }
    if (*role == "developer") role = "system";  // OpenAI's newer name; templates know "system"
    if (*role != "system" && *role != "user" && *role != "assistant" && *role != "tool") {
      return ParamError(p + ".role",
                        absl::StrCat("Invalid value: '", *role,
                                     "'. Supported values are: 'system', 'developer', 'user', "
                                     "'assistant', and 'tool'."),
                        "invalid_value");
    }
    Json message;
    message["role"] = *role;
    const Json* content = Member(m, "content");
    const Json* tool_calls = Member(m, "tool_calls");
    if (content != nullptr) {
      ASSIGN_OR_RETURN(message["content"], FlattenContent(*content, p + ".content"));
    } else if (*role == "assistant") {
      message["content"] = "";  // a pure tool-call turn
    } else {
      return ParamError(p + ".content", "Missing required parameter: 'content'.",
                        "missing_required_parameter");
    }
    if (tool_calls != nullptr) {
      if (*role != "assistant") {
        return ParamError(p + ".tool_calls", "Only assistant messages carry tool_calls.",
                          "invalid_value");
      }
      ASSIGN_OR_RETURN(message["tool_calls"], CheckToolCalls(*tool_calls, p + ".tool_calls"));
    }
    for (const char* key : {"name", "tool_call_id", "reasoning_content"}) {
      ASSIGN_OR_RETURN(std::optional<std::string> value, OptionalString(m, key));
      if (value) message[key] = *value;
    }
    out.push_back(std::move(message));
  }
  return out;
}

absl::StatusOr<Json> CheckTools(const Json& body) {
  const Json* tools = Member(body, "tools");
  if (tools == nullptr) return Json();
  if (!tools->is_array()) return TypeError("tools", "an array", *tools);
  for (size_t i = 0; i < tools->size(); ++i) {
    const Json& tool = (*tools)[i];
    const std::string p = absl::StrCat("tools[", i, "]");
    if (!tool.is_object()) return TypeError(p, "an object", tool);
    ASSIGN_OR_RETURN(std::optional<std::string> type, OptionalString(tool, "type"));
    if (type.value_or("function") != "function") {
      return ParamError(p + ".type", "Only tools of type 'function' are supported.",
                        "invalid_value");
    }
    const Json* function = Member(tool, "function");
    if (function == nullptr) {
      return ParamError(p + ".function", "Missing required parameter: 'function'.",
                        "missing_required_parameter");
    }
    if (!function->is_object()) return TypeError(p + ".function", "an object", *function);
    ASSIGN_OR_RETURN(std::optional<std::string> name, OptionalString(*function, "name"));
    if (!name || name->empty()) {
      return ParamError(p + ".function.name", "Missing required parameter: 'name'.",
                        "missing_required_parameter");
    }
    ASSIGN_OR_RETURN(std::optional<std::string> description,
                     OptionalString(*function, "description"));
    const Json* parameters = Member(*function, "parameters");
    if (parameters != nullptr && !parameters->is_object()) {
      return TypeError(p + ".function.parameters", "an object", *parameters);
    }
  }
  return tools->empty() ? Json() : *tools;
}

// Applies tool_choice to the tools: which tools the template sees and whether calls are parsed.
absl::Status ApplyToolChoice(const Json& body, ChatRequest* out) {
  const Json* choice = Member(body, "tool_choice");
  Json& tools = out->tools;
  out->parse_tool_calls = !tools.is_null();
  if (choice == nullptr) return absl::OkStatus();
  if (choice->is_string()) {
    const std::string& mode = choice->get_ref<const std::string&>();
    if (mode == "none") {
      tools = Json();
      out->parse_tool_calls = false;
      return absl::OkStatus();
    }
    if (mode == "auto") return absl::OkStatus();
    if (mode == "required") {
      if (tools.is_null()) {
        return ParamError("tool_choice", "tool_choice 'required' needs 'tools'.", "invalid_value");
      }
      return absl::OkStatus();
    }
    return ParamError("tool_choice",
                      absl::StrCat("Invalid value: '", mode,
                                   "'. Supported values are: 'none', 'auto', and 'required'."),
                      "invalid_value");
  }
  if (!choice->is_object()) return TypeError("tool_choice", "a string or an object", *choice);
  const Json* function = Member(*choice, "function");
  std::optional<std::string> name;
  if (function != nullptr && function->is_object()) {
    ASSIGN_OR_RETURN(name, OptionalString(*function, "name"));
  }
  if (!name) {
    return ParamError("tool_choice.function.name", "Missing required parameter: 'name'.",
                      "missing_required_parameter");
  }
  Json kept = Json::array();
  for (const Json& tool : tools.is_array() ? tools : Json::array()) {
    const Json* f = Member(tool, "function");
    if (f != nullptr && Member(*f, "name") != nullptr && (*f)["name"] == *name) kept.push_back(tool);
  }
  if (kept.empty()) {
    return ParamError("tool_choice",
                      absl::StrCat("tool_choice names function '", *name,
                                   "', which is not in 'tools'."),
                      "invalid_value");
  }
  tools = std::move(kept);
  return absl::OkStatus();
}

// response_format: the instruction that asks for JSON, or "" for plain text.
absl::StatusOr<std::string> JsonInstruction(const Json& body) {
  const Json* format = Member(body, "response_format");
  if (format == nullptr) return std::string();
  if (!format->is_object()) return TypeError("response_format", "an object", *format);
  ASSIGN_OR_RETURN(std::optional<std::string> type, OptionalString(*format, "type"));
  const std::string t = type.value_or("text");
  if (t == "text") return std::string();
  if (t == "json_object") {
    return std::string("Respond with a single valid JSON object and nothing else.");
  }
  if (t == "json_schema") {
    const Json* schema_holder = Member(*format, "json_schema");
    if (schema_holder == nullptr || !schema_holder->is_object()) {
      return ParamError("response_format.json_schema",
                        "Missing required parameter: 'response_format.json_schema'.",
                        "missing_required_parameter");
    }
    const Json* schema = Member(*schema_holder, "schema");
    return absl::StrCat("Respond with a single valid JSON object and nothing else. It must match "
                        "this JSON schema:\n",
                        schema != nullptr ? DumpJson(*schema) : std::string("{}"));
  }
  return ParamError("response_format.type",
                    absl::StrCat("Invalid value: '", t,
                                 "'. Supported values are: 'text', 'json_object' and "
                                 "'json_schema'."),
                    "invalid_value");
}

void AddSystemInstruction(const std::string& instruction, Json* messages) {
  if (!messages->empty() && (*messages)[0]["role"] == "system") {
    Json& first = (*messages)[0];
    std::string content = first["content"].get<std::string>();
    first["content"] = content.empty() ? instruction : absl::StrCat(content, "\n\n", instruction);
    return;
  }
  messages->insert(messages->begin(), Json{{"role", "system"}, {"content", instruction}});
}

class ChatFormatter final : public ResponseFormatter {
 public:
  ChatFormatter(std::string id, int64_t created, std::string model, bool include_usage)
      : id_(std::move(id)), created_(created), model_(std::move(model)),
        include_usage_(include_usage) {}

  std::optional<Json> StreamStart(int index) override {
    Json delta;
    delta["role"] = "assistant";
    delta["content"] = "";
    return Chunk(index, std::move(delta), Json(), Json());
  }

  std::optional<Json> StreamDelta(int index, const ChoiceDelta& d) override {
    if (d.empty()) return std::nullopt;
    Json delta = Json::object();
    if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
    if (!d.content.empty()) delta["content"] = d.content;
    if (!d.tool_calls.empty()) {
      Json calls = Json::array();
      for (const text::ToolCall& call : d.tool_calls) calls.push_back(call.ToOpenAi(true));
      delta["tool_calls"] = std::move(calls);
    }
    Json logprobs = d.logprobs.empty() ? Json() : ChatLogprobsJson(d.logprobs);
    return Chunk(index, std::move(delta), std::move(logprobs), Json());
  }

  Json StreamFinish(int index, std::string_view finish_reason) override {
    return Chunk(index, Json::object(), Json(), Json(std::string(finish_reason)));
  }

  Json StreamUsage(const UsageTotals& usage) override {
    Json chunk = Head("chat.completion.chunk");
    chunk["choices"] = Json::array();
    chunk["usage"] = UsageJson(usage);
    return chunk;
  }

  Json Response(const std::vector<ChoiceResult>& choices, const UsageTotals& usage) override {
    Json out = Head("chat.completion");
    Json list = Json::array();
    for (size_t i = 0; i < choices.size(); ++i) {
      const ChoiceResult& c = choices[i];
      Json message;
      message["role"] = "assistant";
      message["content"] =
          c.content.empty() && !c.tool_calls.empty() ? Json() : Json(c.content);
      if (!c.reasoning.empty()) message["reasoning_content"] = c.reasoning;
      if (!c.tool_calls.empty()) {
        Json calls = Json::array();
        for (const text::ToolCall& call : c.tool_calls) calls.push_back(call.ToOpenAi(false));
        message["tool_calls"] = std::move(calls);
      }
      Json choice;
      choice["index"] = i;
      choice["message"] = std::move(message);
      choice["logprobs"] = logprobs_requested_ ? ChatLogprobsJson(c.logprobs) : Json();
      choice["finish_reason"] = c.finish_reason;
      list.push_back(std::move(choice));
    }
    out["choices"] = std::move(list);
    out["usage"] = UsageJson(usage);
    return out;
  }

  void set_logprobs(bool on) { logprobs_requested_ = on; }

 private:
  Json Head(const char* object) const {
    Json out;
    out["id"] = id_;
    out["object"] = object;
    out["created"] = created_;
    out["model"] = model_;
    return out;
  }

  Json Chunk(int index, Json delta, Json logprobs, Json finish_reason) const {
    Json chunk = Head("chat.completion.chunk");
    Json choice;
    choice["index"] = index;
    choice["delta"] = std::move(delta);
    choice["logprobs"] = std::move(logprobs);
    choice["finish_reason"] = std::move(finish_reason);
    chunk["choices"] = Json::array({std::move(choice)});
    if (include_usage_) chunk["usage"] = Json();
    return chunk;
  }

  std::string id_;
  int64_t created_;
  std::string model_;
  bool include_usage_;
  bool logprobs_requested_ = false;
};

}  // namespace

absl::StatusOr<ChatRequest> ParseChatRequest(const Json& body, const RequestLimits& limits) {
  ChatRequest out;
  ASSIGN_OR_RETURN(out.params, ParseGenerationParams(body, ApiKind::kChat, limits));
  ASSIGN_OR_RETURN(Json messages, CheckMessages(body));
  ASSIGN_OR_RETURN(out.tools, CheckTools(body));
  RETURN_IF_ERROR(ApplyToolChoice(body, &out));
  ASSIGN_OR_RETURN(std::optional<bool> parallel, OptionalBool(body, "parallel_tool_calls"));
  out.parallel_tool_calls = parallel.value_or(true);
  ASSIGN_OR_RETURN(std::string instruction, JsonInstruction(body));
  if (!instruction.empty()) AddSystemInstruction(instruction, &messages);

  Json input = Json::object();
  if (const Json* kwargs = Member(body, "chat_template_kwargs")) {
    if (!kwargs->is_object()) return TypeError("chat_template_kwargs", "an object", *kwargs);
    for (const auto& [key, value] : kwargs->items()) {
      if (key == "messages" || key == "tools" || key == "add_generation_prompt") continue;
      input[key] = value;
    }
  }
  input["messages"] = std::move(messages);
  if (!out.tools.is_null()) input["tools"] = out.tools;
  input["add_generation_prompt"] = true;
  out.template_input = std::move(input);
  return out;
}

std::unique_ptr<ResponseFormatter> MakeChatFormatter(std::string id, int64_t created,
                                                     std::string model, bool include_usage,
                                                     bool logprobs) {
  auto formatter = std::make_unique<ChatFormatter>(std::move(id), created, std::move(model),
                                                   include_usage);
  formatter->set_logprobs(logprobs);
  return formatter;
}

}  // namespace moed::gateway

// Qwen3.5 tool-call parser (see tool_call_parser.h).
#include "daemon/text/tool_call_parser.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/strings.h"

namespace moed::text {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kOpen = "<tool_call>";
constexpr std::string_view kClose = "</tool_call>";
constexpr size_t kMaxCallBytes = 4u << 20;  // a call body larger than this is not a call

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

size_t PartialTagSuffix(std::string_view s, std::string_view tag) {
  const size_t max = std::min(tag.size() - 1, s.size());
  for (size_t k = max; k > 0; --k) {
    if (s.substr(s.size() - k) == tag.substr(0, k)) return k;
  }
  return 0;
}

uint64_t SplitMix(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The schema type of a parameter, or "" if the tools do not say.
std::string SchemaType(const Json& tools, const std::string& function, const std::string& param) {
  if (!tools.is_array()) return "";
  for (const Json& t : tools) {
    if (!t.is_object()) continue;
    const Json& fn = t.contains("function") && t["function"].is_object() ? t["function"] : t;
    if (!fn.contains("name") || !fn["name"].is_string() || fn["name"].get<std::string>() != function) continue;
    if (!fn.contains("parameters") || !fn["parameters"].is_object()) return "";
    const Json& params = fn["parameters"];
    if (!params.contains("properties") || !params["properties"].is_object()) return "";
    const Json& props = params["properties"];
    if (!props.contains(param) || !props[param].is_object()) return "";
    const Json& p = props[param];
    if (!p.contains("type")) return "";
    const Json& type = p["type"];
    if (type.is_string()) return type.get<std::string>();
    if (type.is_array()) {
      for (const Json& x : type) {
        if (x.is_string() && x.get<std::string>() != "null") return x.get<std::string>();
      }
    }
    return "";
  }
  return "";
}

}  // namespace

Json ToolCall::ToOpenAi(bool with_index) const {
  Json j;
  if (with_index) j["index"] = index;
  j["id"] = id;
  j["type"] = "function";
  j["function"] = {{"name", name}, {"arguments", arguments}};
  return j;
}

ToolCallParser::ToolCallParser(ToolCallOptions options) : options_(std::move(options)) {
  rng_ = options_.id_seed != 0 ? options_.id_seed : (static_cast<uint64_t>(std::random_device()()) << 32) ^ std::random_device()();
}

std::string ToolCallParser::NextId() {
  static constexpr char kAlnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string id = options_.id_prefix;
  for (int i = 0; i < 24; ++i) id.push_back(kAlnum[SplitMix(&rng_) % 62]);
  return id;
}

ToolCallParser::Event ToolCallParser::Push(std::string_view text) {
  Event out;
  pending_.append(text);
  Process(false, &out);
  return out;
}

ToolCallParser::Event ToolCallParser::Finish() {
  Event out;
  Process(true, &out);
  return out;
}

void ToolCallParser::Process(bool final, Event* out) {
  // Content is emitted with its trailing whitespace held back: dropped if a call follows (or
  // the stream ends after calls), released if more content follows.
  auto emit = [&](std::string_view text) {
    std::string t = held_space_;
    t.append(text);
    held_space_.clear();
    if (after_call_) {
      size_t i = 0;
      while (i < t.size() && IsSpace(t[i])) ++i;
      t.erase(0, i);
      if (!t.empty()) after_call_ = false;
    }
    size_t keep = t.size();
    while (keep > 0 && IsSpace(t[keep - 1])) --keep;
    held_space_ = t.substr(keep);
    t.resize(keep);
    out->content += t;
  };
  while (true) {
    if (!in_call_) {
      const size_t f = pending_.find(kOpen);
      if (f != std::string::npos) {
        emit(std::string_view(pending_).substr(0, f));
        held_space_.clear();
        pending_.erase(0, f + kOpen.size());
        in_call_ = true;
        continue;
      }
      const size_t hold = final ? 0 : PartialTagSuffix(pending_, kOpen);
      emit(std::string_view(pending_).substr(0, pending_.size() - hold));
      pending_.erase(0, pending_.size() - hold);
      if (final) {
        if (calls_.empty()) out->content += held_space_;
        held_space_.clear();
      }
      return;
    }
    const size_t f = pending_.find(kClose);
    if (f == std::string::npos) {
      if (final || pending_.size() > kMaxCallBytes) {
        out->warnings.push_back(final ? "unterminated tool call returned as content"
                                      : "tool call too large; returned as content");
        out->content += held_space_ + std::string(kOpen) + pending_;
        held_space_.clear();
        pending_.clear();
        in_call_ = false;
        if (final) return;
      }
      return;
    }
    ToolCall call;
    std::string error;
    const std::string_view body = std::string_view(pending_).substr(0, f);
    if (ParseCall(body, &call, &error)) {
      call.index = static_cast<int>(calls_.size());
      call.id = NextId();
      calls_.push_back(call);
      out->tool_calls.push_back(std::move(call));
      after_call_ = true;
    } else {
      out->warnings.push_back(absl::StrCat("malformed tool call returned as content: ", error));
      out->content += absl::StrCat(Sv(kOpen), Sv(body), Sv(kClose));
    }
    pending_.erase(0, f + kClose.size());
    in_call_ = false;
  }
}

bool ToolCallParser::ParseCall(std::string_view s, ToolCall* call, std::string* error) const {
  size_t pos = 0;
  auto skip_space = [&] {
    while (pos < s.size() && IsSpace(s[pos])) ++pos;
  };
  auto starts = [&](std::string_view p) { return s.substr(pos, p.size()) == p; };
  skip_space();
  if (!starts("<function=")) {
    *error = "expected <function=NAME>";
    return false;
  }
  pos += 10;
  const size_t gt = s.find('>', pos);
  if (gt == std::string_view::npos || gt == pos || s.substr(pos, gt - pos).find('\n') != std::string_view::npos) {
    *error = "bad function name";
    return false;
  }
  call->name = std::string(absl::StripAsciiWhitespace(Sv(s.substr(pos, gt - pos))));
  pos = gt + 1;
  Json args = Json::object();
  while (true) {
    skip_space();
    if (pos >= s.size() || starts("</function>")) {
      if (pos < s.size()) pos += 11;
      skip_space();
      if (pos != s.size()) {
        *error = "text after </function>";
        return false;
      }
      break;
    }
    if (!starts("<parameter=")) {
      *error = absl::StrCat("unexpected text in call to ", call->name);
      return false;
    }
    pos += 11;
    const size_t pgt = s.find('>', pos);
    if (pgt == std::string_view::npos || pgt == pos) {
      *error = "bad parameter name";
      return false;
    }
    const std::string param(absl::StripAsciiWhitespace(Sv(s.substr(pos, pgt - pos))));
    const size_t vstart = pgt + 1;
    size_t vend = s.size(), next = s.size();
    for (std::string_view stop : {std::string_view("</parameter>"), std::string_view("<parameter="),
                                  std::string_view("</function>")}) {
      const size_t e = s.find(stop, vstart);
      if (e != std::string_view::npos && e < vend) {
        vend = e;
        next = stop == "</parameter>" ? e + stop.size() : e;
      }
    }
    std::string value(s.substr(vstart, vend - vstart));
    if (!value.empty() && value.front() == '\n') value.erase(0, 1);
    if (!value.empty() && value.back() == '\n') value.pop_back();
    args[param] = TypedValue(call->name, param, value);
    pos = next;
  }
  call->arguments = args.dump(-1, ' ', false, Json::error_handler_t::replace);
  return true;
}

Json ToolCallParser::TypedValue(const std::string& function, const std::string& param,
                                const std::string& raw) const {
  const std::string type = SchemaType(options_.tools, function, param);
  if (type.empty() || type == "string") return raw;
  const std::string t(absl::StripAsciiWhitespace(raw));
  if (t == "null" || t == "None") return nullptr;
  if (type == "integer") {
    int64_t i;
    if (absl::SimpleAtoi(t, &i)) return i;
  } else if (type == "number") {
    int64_t i;
    double d;
    if (t.find_first_of(".eE") == std::string::npos && absl::SimpleAtoi(t, &i)) return i;
    if (absl::SimpleAtod(t, &d) && std::isfinite(d)) return d;
  } else if (type == "boolean") {
    const std::string l = absl::AsciiStrToLower(t);
    if (l == "true") return true;
    if (l == "false") return false;
  } else {
    Json parsed = Json::parse(t, nullptr, false);
    if (!parsed.is_discarded()) return parsed;
  }
  return raw;  // not what the schema says: keep the model's text
}

}  // namespace moed::text

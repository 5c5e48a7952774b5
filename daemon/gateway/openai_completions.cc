// Legacy completions: prompt forms, tokenization, text_completion objects (see
// openai_completions.h).
#include "daemon/gateway/openai_completions.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "daemon/gateway/api_error.h"
#include "daemon/text/utf8.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::gateway {
namespace {

absl::StatusOr<std::vector<int32_t>> TokenArray(const Json& ids, const std::string& param,
                                                const text::Tokenizer& tokenizer) {
  std::vector<int32_t> out;
  out.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const Json& id = ids[i];
    const std::string p = absl::StrCat(param, "[", i, "]");
    if (!id.is_number_integer()) return TypeError(p, "an integer token id", id);
    const int64_t v = id.get<int64_t>();
    if (v < 0 || v >= tokenizer.n_vocab()) {
      return ParamError(p, absl::StrCat("Token id ", v, " is outside the vocabulary [0, ",
                                        tokenizer.n_vocab(), ")."),
                        "invalid_value");
    }
    out.push_back(static_cast<int32_t>(v));
  }
  return out;
}

absl::Status AddTextPrompt(const std::string& prompt, const std::string& param,
                           const text::Tokenizer& tokenizer, CompletionRequest* out) {
  text::EncodeOptions options;
  options.add_special = true;
  options.parse_special = true;
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(prompt, options);
  if (!ids.ok()) return ParamError(param, StdSv(ids.status().message()), "invalid_value");
  out->prompts.push_back(*std::move(ids));
  out->prompt_texts.push_back(prompt);
  return absl::OkStatus();
}

absl::Status AddIdPrompt(const Json& ids, const std::string& param,
                         const text::Tokenizer& tokenizer, CompletionRequest* out) {
  ASSIGN_OR_RETURN(std::vector<int32_t> tokens, TokenArray(ids, param, tokenizer));
  absl::StatusOr<std::string> text = tokenizer.Decode(tokens, /*special=*/true);
  out->prompt_texts.push_back(text.ok() ? text::SanitizeUtf8(*text) : std::string());
  out->prompts.push_back(std::move(tokens));
  return absl::OkStatus();
}

absl::Status ParsePrompts(const Json& body, const text::Tokenizer& tokenizer,
                          CompletionRequest* out) {
  const Json* prompt = Member(body, "prompt");
  if (prompt == nullptr) {
    return ParamError("prompt", "Missing required parameter: 'prompt'.",
                      "missing_required_parameter");
  }
  if (prompt->is_string()) return AddTextPrompt(prompt->get<std::string>(), "prompt", tokenizer, out);
  if (!prompt->is_array()) {
    return TypeError("prompt", "a string, an array of strings or an array of token ids", *prompt);
  }
  if (prompt->empty()) {
    return ParamError("prompt", "'prompt' must not be empty.", "invalid_value");
  }
  if ((*prompt)[0].is_number()) return AddIdPrompt(*prompt, "prompt", tokenizer, out);
  for (size_t i = 0; i < prompt->size(); ++i) {
    const Json& item = (*prompt)[i];
    const std::string p = absl::StrCat("prompt[", i, "]");
    if (item.is_string()) {
      RETURN_IF_ERROR(AddTextPrompt(item.get<std::string>(), p, tokenizer, out));
    } else if (item.is_array()) {
      RETURN_IF_ERROR(AddIdPrompt(item, p, tokenizer, out));
    } else {
      return TypeError(p, "a string or an array of token ids", item);
    }
  }
  return absl::OkStatus();
}

class CompletionFormatter final : public ResponseFormatter {
 public:
  CompletionFormatter(std::string id, int64_t created, std::string model, bool include_usage,
                      bool logprobs, std::vector<std::string> echo_texts)
      : id_(std::move(id)), created_(created), model_(std::move(model)),
        include_usage_(include_usage), logprobs_(logprobs), echo_(std::move(echo_texts)),
        offsets_(echo_.size(), 0) {
    for (size_t i = 0; i < echo_.size(); ++i) offsets_[i] = static_cast<int64_t>(echo_[i].size());
  }

  std::optional<Json> StreamStart(int index) override {
    if (Echo(index).empty()) return std::nullopt;
    return Chunk(index, Echo(index), Json(), Json());
  }

  std::optional<Json> StreamDelta(int index, const ChoiceDelta& d) override {
    if (d.empty()) return std::nullopt;
    return Chunk(index, d.reasoning + d.content, Logprobs(index, d.logprobs), Json());
  }

  Json StreamFinish(int index, std::string_view finish_reason) override {
    return Chunk(index, "", Json(), Json(std::string(finish_reason)));
  }

  Json StreamUsage(const UsageTotals& usage) override {
    Json chunk = Head();
    chunk["choices"] = Json::array();
    chunk["usage"] = UsageJson(usage);
    return chunk;
  }

  Json Response(const std::vector<ChoiceResult>& choices, const UsageTotals& usage) override {
    Json out = Head();
    Json list = Json::array();
    for (size_t i = 0; i < choices.size(); ++i) {
      const ChoiceResult& c = choices[i];
      Json choice;
      choice["text"] = Echo(static_cast<int>(i)) + c.reasoning + c.content;
      choice["index"] = i;
      choice["logprobs"] = Logprobs(static_cast<int>(i), c.logprobs);
      choice["finish_reason"] = c.finish_reason;
      list.push_back(std::move(choice));
    }
    out["choices"] = std::move(list);
    out["usage"] = UsageJson(usage);
    return out;
  }

 private:
  const std::string& Echo(int index) const {
    static const std::string kEmpty;
    return static_cast<size_t>(index) < echo_.size() ? echo_[index] : kEmpty;
  }

  Json Head() const {
    Json out;
    out["id"] = id_;
    out["object"] = "text_completion";
    out["created"] = created_;
    out["model"] = model_;
    return out;
  }

  Json Chunk(int index, std::string text, Json logprobs, Json finish_reason) const {
    Json chunk = Head();
    Json choice;
    choice["text"] = std::move(text);
    choice["index"] = index;
    choice["logprobs"] = std::move(logprobs);
    choice["finish_reason"] = std::move(finish_reason);
    chunk["choices"] = Json::array({std::move(choice)});
    if (include_usage_) chunk["usage"] = Json();
    return chunk;
  }

  // {"tokens","token_logprobs","top_logprobs","text_offset"}; offsets run on per choice.
  Json Logprobs(int index, const std::vector<TokenLogprob>& lps) {
    if (!logprobs_) return Json();
    if (static_cast<size_t>(index) >= offsets_.size()) offsets_.resize(index + 1, 0);
    Json tokens = Json::array(), values = Json::array(), tops = Json::array(),
         offsets = Json::array();
    for (const TokenLogprob& lp : lps) {
      tokens.push_back(lp.token);
      values.push_back(lp.logprob);
      Json top = Json::object();
      for (const TokenLogprob& alt : lp.top) top[alt.token] = alt.logprob;
      tops.push_back(std::move(top));
      offsets.push_back(offsets_[index]);
      offsets_[index] += static_cast<int64_t>(lp.bytes.size());
    }
    return Json{{"tokens", std::move(tokens)},
                {"token_logprobs", std::move(values)},
                {"top_logprobs", std::move(tops)},
                {"text_offset", std::move(offsets)}};
  }

  std::string id_;
  int64_t created_;
  std::string model_;
  bool include_usage_;
  bool logprobs_;
  std::vector<std::string> echo_;
  std::vector<int64_t> offsets_;
};

}  // namespace

absl::StatusOr<CompletionRequest> ParseCompletionRequest(const Json& body,
                                                         const text::Tokenizer& tokenizer,
                                                         const RequestLimits& limits) {
  CompletionRequest out;
  ASSIGN_OR_RETURN(out.params, ParseGenerationParams(body, ApiKind::kCompletions, limits));
  RETURN_IF_ERROR(ParsePrompts(body, tokenizer, &out));
  for (size_t i = 0; i < out.prompts.size(); ++i) {
    if (out.prompts[i].empty()) {
      return ParamError(out.prompts.size() == 1 ? "prompt" : absl::StrCat("prompt[", i, "]"),
                        "The prompt is empty (no tokens).", "invalid_value");
    }
  }
  const int64_t choices = static_cast<int64_t>(out.prompts.size()) * out.params.n;
  if (choices > limits.max_choices) {
    return ParamError("n", absl::StrCat("prompts x n = ", choices, " exceeds the limit of ",
                                        limits.max_choices, " choices per request."),
                      "invalid_value");
  }
  return out;
}

std::unique_ptr<ResponseFormatter> MakeCompletionFormatter(std::string id, int64_t created,
                                                           std::string model, bool include_usage,
                                                           bool logprobs,
                                                           std::vector<std::string> echo_texts) {
  return std::make_unique<CompletionFormatter>(std::move(id), created, std::move(model),
                                               include_usage, logprobs, std::move(echo_texts));
}

}  // namespace moed::gateway

// Shared OpenAI response pieces and SSE framing (see openai_format.h).
#include "daemon/gateway/openai_format.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "kernels/base/strings.h"

namespace moed::gateway {
namespace {

Json LogprobEntry(const TokenLogprob& lp) {
  Json entry;
  entry["token"] = lp.token;
  entry["logprob"] = lp.logprob;
  entry["bytes"] = lp.bytes;
  return entry;
}

}  // namespace

Json UsageJson(const UsageTotals& usage) {
  Json out;
  out["prompt_tokens"] = usage.prompt_tokens;
  out["completion_tokens"] = usage.completion_tokens;
  out["total_tokens"] = usage.prompt_tokens + usage.completion_tokens;
  out["prompt_tokens_details"] = Json{{"cached_tokens", usage.cached_tokens}};
  return out;
}

Json ChatLogprobsJson(const std::vector<TokenLogprob>& logprobs) {
  Json content = Json::array();
  for (const TokenLogprob& lp : logprobs) {
    Json entry = LogprobEntry(lp);
    Json top = Json::array();
    for (const TokenLogprob& alt : lp.top) top.push_back(LogprobEntry(alt));
    entry["top_logprobs"] = std::move(top);
    content.push_back(std::move(entry));
  }
  return Json{{"content", std::move(content)}};
}

std::string SseData(const Json& value) { return absl::StrCat("data: ", DumpJson(value), "\n\n"); }

HttpResponse SseHead() {
  HttpResponse head;
  head.status = 200;
  head.content_type = "text/event-stream";
  head.headers = {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}};
  return head;
}

std::string RandomId(std::string_view prefix) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id(prefix);
  for (int i = 0; i < 24; ++i) id.push_back(kAlphabet[rng() % (sizeof(kAlphabet) - 1)]);
  return id;
}

}  // namespace moed::gateway

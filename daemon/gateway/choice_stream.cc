// Per-choice detokenization, output parsing and logprobs (see choice_stream.h).
#include "daemon/gateway/choice_stream.h"

#include <utility>

#include "daemon/text/utf8.h"
#include "kernels/base/status_macros.h"

namespace moed::gateway {

ChoiceStream::ChoiceStream(const text::Tokenizer* tokenizer, ChoiceStreamOptions options)
    : tokenizer_(tokenizer),
      options_(std::move(options)),
      detokenizer_(tokenizer, /*special=*/false),
      parser_(options_.parser) {}

absl::StatusOr<TokenLogprob> ChoiceStream::Logprob(int32_t token, float logprob) const {
  TokenLogprob out;
  ASSIGN_OR_RETURN(std::string piece, tokenizer_->TokenToPiece(token, /*special=*/true));
  out.bytes.assign(piece.begin(), piece.end());
  out.token = text::SanitizeUtf8(piece);
  out.logprob = logprob;
  return out;
}

void ChoiceStream::Absorb(text::OutputDelta delta, ChoiceDelta* out) {
  out->reasoning += delta.reasoning_content;
  out->content += delta.content;
  for (text::ToolCall& call : delta.tool_calls) {
    if (!options_.parallel_tool_calls && tool_calls_ >= 1) continue;
    ++tool_calls_;
    out->tool_calls.push_back(std::move(call));
  }
}

absl::StatusOr<ChoiceDelta> ChoiceStream::Push(const daemon::SampledToken& token) {
  ChoiceDelta out;
  if (parser_.stopped() || finished_) return out;
  ++tokens_;
  if (options_.logprobs) {
    ASSIGN_OR_RETURN(TokenLogprob entry, Logprob(token.token, token.logprob));
    for (const auto& [id, lp] : token.top) {
      ASSIGN_OR_RETURN(TokenLogprob alt, Logprob(id, lp));
      entry.top.push_back(std::move(alt));
    }
    out.logprobs.push_back(std::move(entry));
  }
  ASSIGN_OR_RETURN(std::string text, detokenizer_.Push(token.token));
  if (!text.empty()) Absorb(parser_.Push(text), &out);
  return out;
}

ChoiceDelta ChoiceStream::Finish() {
  ChoiceDelta out;
  if (finished_) return out;
  finished_ = true;
  if (!parser_.stopped()) {
    const std::string rest = detokenizer_.Flush();
    if (!rest.empty()) Absorb(parser_.Push(rest), &out);
  }
  Absorb(parser_.Finish(), &out);
  return out;
}

void ChoiceResult::Append(ChoiceDelta delta) {
  reasoning += delta.reasoning;
  content += delta.content;
  for (text::ToolCall& call : delta.tool_calls) tool_calls.push_back(std::move(call));
  for (TokenLogprob& lp : delta.logprobs) logprobs.push_back(std::move(lp));
}

}  // namespace moed::gateway

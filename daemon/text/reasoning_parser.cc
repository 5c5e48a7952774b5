// Reasoning / content splitter (see reasoning_parser.h).
#include "daemon/text/reasoning_parser.h"

#include <algorithm>

namespace moed::text {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

size_t FirstNonSpace(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && IsSpace(s[i])) ++i;
  return i;
}

// Longest suffix of `s` that is a proper prefix of `tag`.
size_t PartialTagSuffix(std::string_view s, std::string_view tag) {
  const size_t max = std::min(tag.size() - 1, s.size());
  for (size_t k = max; k > 0; --k) {
    if (s.substr(s.size() - k) == tag.substr(0, k)) return k;
  }
  return 0;
}

}  // namespace

bool PromptOpensReasoning(std::string_view prompt, const ReasoningOptions& options) {
  size_t end = prompt.size();
  while (end > 0 && IsSpace(prompt[end - 1])) --end;
  const std::string_view trimmed = prompt.substr(0, end);
  return trimmed.size() >= options.start_tag.size() &&
         trimmed.substr(trimmed.size() - options.start_tag.size()) == options.start_tag;
}

ReasoningParser::ReasoningParser(ReasoningOptions options)
    : options_(std::move(options)),
      state_(options_.starts_in_reasoning ? State::kReasoning : State::kStart) {
  if (options_.start_tag.empty()) options_.start_tag = "<think>";
  if (options_.end_tag.empty()) options_.end_tag = "</think>";
}

ReasoningParser::Delta ReasoningParser::Push(std::string_view text) {
  Delta out;
  if (options_.format == ReasoningFormat::kRaw) {
    out.content = std::string(text);
    return out;
  }
  pending_.append(text);
  Process(false, &out);
  return out;
}

ReasoningParser::Delta ReasoningParser::Finish() {
  Delta out;
  if (options_.format == ReasoningFormat::kRaw) return out;
  Process(true, &out);
  return out;
}

void ReasoningParser::Process(bool final, Delta* out) {
  const std::string& start = options_.start_tag;
  const std::string& end = options_.end_tag;
  // Appends reasoning text: leading whitespace of the block and whitespace right before the end
  // tag are trimmed (held until something else follows).
  auto emit_reasoning = [&](std::string_view text, bool closing) {
    std::string t = held_space_;
    t.append(text);
    held_space_.clear();
    if (!reasoning_started_) t.erase(0, FirstNonSpace(t));
    size_t keep = t.size();
    while (keep > 0 && IsSpace(t[keep - 1])) --keep;
    if (!closing) held_space_ = t.substr(keep);
    t.resize(keep);
    if (!t.empty()) reasoning_started_ = true;
    out->reasoning += t;
  };
  while (true) {
    switch (state_) {
      case State::kStart: {
        const size_t i = FirstNonSpace(pending_);
        if (i == pending_.size()) {
          if (final) {
            out->content += pending_;
            pending_.clear();
          }
          return;
        }
        const std::string_view rest = std::string_view(pending_).substr(i);
        if (rest.substr(0, start.size()) == start) {
          pending_.erase(0, i + start.size());
          state_ = State::kReasoning;
          continue;
        }
        if (!final && std::string_view(start).substr(0, rest.size()) == rest) return;
        state_ = State::kContent;
        content_started_ = true;
        continue;
      }
      case State::kReasoning: {
        if (!repeated_start_checked_) {
          // A model may repeat the start tag the template already put in the prompt: drop it once.
          // Decided once, so that how the text is chunked cannot drop a second one.
          const size_t i = FirstNonSpace(pending_);
          const std::string_view rest = std::string_view(pending_).substr(i);
          if (rest.substr(0, start.size()) == start) {
            pending_.erase(0, i + start.size());
          } else if (!final && std::string_view(start).substr(0, rest.size()) == rest) {
            return;  // not enough text yet to tell
          }
          repeated_start_checked_ = true;
        }
        const size_t f = pending_.find(end);
        if (f != std::string::npos) {
          emit_reasoning(std::string_view(pending_).substr(0, f), true);
          pending_.erase(0, f + end.size());
          state_ = State::kContent;
          content_started_ = false;
          continue;
        }
        const size_t hold = final ? 0 : PartialTagSuffix(pending_, end);
        emit_reasoning(std::string_view(pending_).substr(0, pending_.size() - hold), final);
        pending_.erase(0, pending_.size() - hold);
        return;
      }
      case State::kContent: {
        if (!content_started_) {
          const size_t i = FirstNonSpace(pending_);
          if (i == pending_.size()) {
            pending_.clear();  // whitespace after </think> is dropped until content begins
            return;
          }
          pending_.erase(0, i);
          content_started_ = true;
        }
        out->content += pending_;
        pending_.clear();
        return;
      }
    }
  }
}

}  // namespace moed::text

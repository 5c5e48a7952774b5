// Stop strings over a text stream (see stop_matcher.h).
#include "daemon/text/stop_matcher.h"

#include <algorithm>

namespace moed::text {

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (auto& s : stops) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

StopMatcher::Result StopMatcher::Push(std::string_view text) {
  Result r;
  if (stopped_) return r;
  pending_.append(text);
  // Earliest complete match (the longest one at that position).
  size_t best = std::string::npos;
  const std::string* which = nullptr;
  for (const std::string& s : stops_) {
    const size_t f = pending_.find(s);
    if (f != std::string::npos &&
        (f < best || (f == best && which != nullptr && s.size() > which->size()))) {
      best = f;
      which = &s;
    }
  }
  if (which != nullptr) {
    r.text = pending_.substr(0, best);
    r.stopped = true;
    r.matched = *which;
    stopped_ = true;
    pending_.clear();
    return r;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    const size_t max = std::min(s.size() - 1, pending_.size());
    for (size_t k = max; k > hold; --k) {
      if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  r.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return r;
}

std::string StopMatcher::Flush() {
  std::string out = stopped_ ? std::string() : std::move(pending_);
  pending_.clear();
  return out;
}

}  // namespace moed::text

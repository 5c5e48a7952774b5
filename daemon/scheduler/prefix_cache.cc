// LRU index of kept prompt snapshots; see prefix_cache.h.
#include "daemon/scheduler/prefix_cache.h"

#include <algorithm>
#include <utility>

namespace moed::daemon {

std::optional<PrefixCache::Match> PrefixCache::Lookup(std::span<const int32_t> prompt) {
  Entry* best = nullptr;
  for (Entry& e : entries_) {
    if (e.prompt.size() >= prompt.size()) continue;
    if (best != nullptr && e.prompt.size() <= best->prompt.size()) continue;
    if (std::equal(e.prompt.begin(), e.prompt.end(), prompt.begin())) best = &e;
  }
  if (best == nullptr) return std::nullopt;
  best->last_used = ++clock_;
  return Match{best->snapshot_id, static_cast<int64_t>(best->prompt.size())};
}

bool PrefixCache::Contains(std::span<const int32_t> prompt) {
  for (Entry& e : entries_) {
    if (std::equal(e.prompt.begin(), e.prompt.end(), prompt.begin(), prompt.end())) {
      e.last_used = ++clock_;
      return true;
    }
  }
  return false;
}

std::vector<int64_t> PrefixCache::Insert(std::vector<int32_t> prompt, int64_t snapshot_id) {
  std::vector<int64_t> evicted;
  if (capacity_ <= 0) {
    evicted.push_back(snapshot_id);
    return evicted;
  }
  while (static_cast<int>(entries_.size()) >= capacity_) {
    auto oldest = std::min_element(entries_.begin(), entries_.end(),
                                   [](const Entry& a, const Entry& b) { return a.last_used < b.last_used; });
    evicted.push_back(oldest->snapshot_id);
    entries_.erase(oldest);
  }
  entries_.push_back(Entry{std::move(prompt), snapshot_id, ++clock_});
  return evicted;
}

void PrefixCache::Erase(int64_t snapshot_id) {
  std::erase_if(entries_, [snapshot_id](const Entry& e) { return e.snapshot_id == snapshot_id; });
}

}  // namespace moed::daemon

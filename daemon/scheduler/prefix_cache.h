// The scheduler's index of kept prompt snapshots: which prompts (token sequences) have their
// end-of-prompt state saved in the executor, under which snapshot id, and which to forget first
// (least recently used). The states themselves live in the executor; this holds only tokens and
// ids, so the scheduler drops the evicted ids there.
//
// A recurrent model's state cannot be truncated, so only a whole kept prompt can be reused, and
// only by a longer prompt that starts with it (the last prompt token must still be run to get
// logits to sample from).
//
// Thread-compatible: owned by the scheduler thread.
#ifndef MOED_DAEMON_SCHEDULER_PREFIX_CACHE_H_
#define MOED_DAEMON_SCHEDULER_PREFIX_CACHE_H_

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace moed::daemon {

class PrefixCache {
 public:
  struct Match {
    int64_t snapshot_id = -1;
    int64_t length = 0;  // tokens of the new prompt the snapshot covers
  };

  // Keeps at most `capacity` prompts; 0 keeps none.
  explicit PrefixCache(int capacity) : capacity_(capacity) {}

  // The longest kept prompt that is a proper prefix of `prompt` (shorter than it), marked as
  // just used; nullopt when none.
  std::optional<Match> Lookup(std::span<const int32_t> prompt);
  // Whether exactly `prompt` is kept (marks it as just used).
  bool Contains(std::span<const int32_t> prompt);
  // Keeps `prompt` under `snapshot_id` (REQUIRES: not kept yet, capacity > 0). Returns the ids
  // evicted to stay within capacity, for the caller to drop.
  std::vector<int64_t> Insert(std::vector<int32_t> prompt, int64_t snapshot_id);
  // Forgets the entry with this id (no-op when unknown).
  void Erase(int64_t snapshot_id);

  int size() const { return static_cast<int>(entries_.size()); }
  int capacity() const { return capacity_; }

 private:
  struct Entry {
    std::vector<int32_t> prompt;
    int64_t snapshot_id;
    uint64_t last_used;
  };
  const int capacity_;
  uint64_t clock_ = 0;
  std::vector<Entry> entries_;  // few (tens): linear scans beat a trie here
};

}  // namespace moed::daemon

#endif  // MOED_DAEMON_SCHEDULER_PREFIX_CACHE_H_

// Per-sequence state of one pipeline stage, in slots: the KV cache of its full-attention layers in
// fixed-size blocks (paged, one block table per slot shared by all layers) and the conv window and
// delta-rule state of its linear-attention layers. Slots are allocated, freed, snapshotted and
// restored; a snapshot at a position is what prefix caching of a recurrent model keeps, since the
// recurrent state cannot be truncated.
//
// Thread-compatible: the stage's step thread owns it.
#ifndef MOED_WORKERS_ENGINE_STATE_CACHE_H_
#define MOED_WORKERS_ENGINE_STATE_CACHE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/attention.h"
#include "loader/model/model_description.h"
#include "loader/model/qwen35moe.h"

namespace moed::engine {

struct StateCacheOptions {
  int max_slots = 8;
  int64_t kv_block_size = 16;   // tokens per KV block
  int64_t kv_blocks = 1024;     // blocks in the pool, shared by all slots
  // False: bookkeeping only (slots, positions, block tables); the state itself lives elsewhere
  // (a GPU), and the row and state accessors, Snapshot and Restore must not be called.
  bool host_storage = true;
};

// A copy of one slot's state at its current position.
struct SlotSnapshot {
  int64_t n_past = 0;
  std::vector<std::vector<float>> recurrent;  // per linear layer: conv window then delta-rule state
  std::vector<std::vector<float>> keys;       // per full layer: n_past K rows
  std::vector<std::vector<float>> values;     // per full layer: n_past V rows
};

class StateCache {
 public:
  // `kinds` lists the stage's layers in order.
  StateCache(const Qwen35MoeHparams& hp, std::vector<LayerKind> kinds, const StateCacheOptions& options);

  // The lowest free slot, without taking it. Errors: ResourceExhausted when every slot is in use.
  absl::StatusOr<int> FindFreeSlot() const;
  // Takes a specific free slot (the router chooses slot ids). Errors: InvalidArgument for a slot
  // out of range or in use.
  absl::Status AcquireSlot(int slot);
  // Frees the slot and its KV blocks. Errors: InvalidArgument for a slot not in use.
  absl::Status FreeSlot(int slot);
  absl::Status CheckSlot(int slot) const;
  int free_slots() const;
  int64_t free_kv_blocks() const { return static_cast<int64_t>(free_blocks_.size()); }

  int64_t n_past(int slot) const { return slots_[slot].n_past; }
  // Makes room for n more tokens. Errors: ResourceExhausted when the KV pool is out of blocks
  // (blocks taken so far stay with the slot and are reused by its next tokens).
  absl::Status Reserve(int slot, int64_t n);
  void Advance(int slot, int64_t n) { slots_[slot].n_past += n; }
  // Empties the slot's KV blocks and makes room for n_past tokens at positions [0, n_past), which
  // the caller fills (a snapshot restore). Errors: those of Reserve.
  absl::Status ResetTo(int slot, int64_t n_past);
  // The slot's KV block table: position p lives in block blocks(slot)[p / kv_block_size].
  const std::vector<int32_t>& blocks(int slot) const { return slots_[slot].blocks; }
  const StateCacheOptions& options() const { return options_; }
  // Whether the stage has full-attention layers (otherwise it needs no KV blocks).
  bool has_kv() const { return has_kv_; }

  // `layer` is the index within the stage.
  float* KeyRow(int slot, int layer, int64_t pos);
  float* ValueRow(int slot, int layer, int64_t pos);
  // A view for cpu::AttentionPaged; `block_ptrs` is scratch the view points into.
  cpu::PagedKv KvView(int slot, int layer, std::vector<const float*>& k_ptrs, std::vector<const float*>& v_ptrs);
  float* ConvState(int slot, int layer);  // (d_conv - 1) x conv_dim, oldest first
  float* DeltaState(int slot, int layer); // Hv x dv x dk

  absl::StatusOr<SlotSnapshot> Snapshot(int slot) const;
  // Replaces the slot's state with the snapshot's (the slot must be in use).
  absl::Status Restore(int slot, const SlotSnapshot& snapshot);

 private:
  struct Slot {
    bool in_use = false;
    int64_t n_past = 0;
    std::vector<int32_t> blocks;  // block table
    std::vector<std::vector<float>> recurrent;  // per layer (empty for full layers)
  };
  int64_t KvRowFloats(bool key) const { return n_kv_heads_ * (key ? head_dim_k_ : head_dim_v_); }
  float* Row(int slot, int layer, int64_t pos, bool key);

  std::vector<LayerKind> kinds_;
  StateCacheOptions options_;
  int64_t n_kv_heads_, head_dim_k_, head_dim_v_;
  int64_t conv_floats_, delta_floats_;
  std::vector<std::vector<float>> k_pool_, v_pool_;  // per layer (empty for linear layers)
  bool has_kv_ = false;
  std::vector<int32_t> free_blocks_;
  std::vector<Slot> slots_;
};

}  // namespace moed::engine

#endif  // MOED_WORKERS_ENGINE_STATE_CACHE_H_

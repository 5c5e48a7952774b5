#include "workers/engine/state_cache.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"

namespace moed::engine {

StateCache::StateCache(const Qwen35MoeHparams& hp, std::vector<LayerKind> kinds, const StateCacheOptions& options)
    : kinds_(std::move(kinds)),
      options_(options),
      n_kv_heads_(hp.n_head_kv),
      head_dim_k_(hp.head_dim_k),
      head_dim_v_(hp.head_dim_v),
      conv_floats_((hp.ssm_d_conv - 1) * hp.ssm_conv_dim()),
      delta_floats_(hp.ssm_dt_rank * hp.ssm_head_v_dim() * hp.ssm_d_state) {
  k_pool_.resize(kinds_.size());
  v_pool_.resize(kinds_.size());
  for (size_t l = 0; l < kinds_.size(); ++l) {
    if (kinds_[l] != LayerKind::kFullAttention) continue;
    has_kv_ = true;
    if (!options_.host_storage) continue;
    k_pool_[l].assign(options_.kv_blocks * options_.kv_block_size * KvRowFloats(true), 0.0f);
    v_pool_[l].assign(options_.kv_blocks * options_.kv_block_size * KvRowFloats(false), 0.0f);
  }
  // A stage without attention layers needs no KV blocks at all.
  if (has_kv_) {
    for (int64_t b = options_.kv_blocks - 1; b >= 0; --b) free_blocks_.push_back(static_cast<int32_t>(b));
  }
  slots_.resize(options_.max_slots);
}

absl::StatusOr<int> StateCache::FindFreeSlot() const {
  for (size_t s = 0; s < slots_.size(); ++s) {
    if (!slots_[s].in_use) return static_cast<int>(s);
  }
  return absl::ResourceExhaustedError(absl::StrCat("all ", slots_.size(), " sequence slots are in use"));
}

absl::Status StateCache::AcquireSlot(int slot) {
  if (slot < 0 || slot >= static_cast<int>(slots_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " is out of range [0, ", slots_.size(), ")"));
  }
  Slot& s = slots_[slot];
  if (s.in_use) return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " is already in use"));
  s = Slot{};
  s.in_use = true;
  s.recurrent.resize(kinds_.size());
  for (size_t l = 0; l < kinds_.size() && options_.host_storage; ++l) {
    if (kinds_[l] == LayerKind::kLinearAttention) s.recurrent[l].assign(conv_floats_ + delta_floats_, 0.0f);
  }
  return absl::OkStatus();
}

absl::Status StateCache::CheckSlot(int slot) const {
  if (slot < 0 || slot >= static_cast<int>(slots_.size()) || !slots_[slot].in_use) {
    return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " is not allocated"));
  }
  return absl::OkStatus();
}

absl::Status StateCache::FreeSlot(int slot) {
  RETURN_IF_ERROR(CheckSlot(slot));
  Slot& s = slots_[slot];
  free_blocks_.insert(free_blocks_.end(), s.blocks.rbegin(), s.blocks.rend());
  s = Slot{};
  return absl::OkStatus();
}

int StateCache::free_slots() const {
  return static_cast<int>(std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.in_use; }));
}

absl::Status StateCache::Reserve(int slot, int64_t n) {
  RETURN_IF_ERROR(CheckSlot(slot));
  Slot& s = slots_[slot];
  if (!has_kv_) return absl::OkStatus();
  const int64_t need = (s.n_past + n + options_.kv_block_size - 1) / options_.kv_block_size;
  while (static_cast<int64_t>(s.blocks.size()) < need) {
    if (free_blocks_.empty()) {
      return absl::ResourceExhaustedError(absl::StrCat("KV cache full: slot ", slot, " needs ", need, " blocks of ",
                                                       options_.kv_block_size, " tokens; the pool has ",
                                                       options_.kv_blocks));
    }
    s.blocks.push_back(free_blocks_.back());
    free_blocks_.pop_back();
  }
  return absl::OkStatus();
}

absl::Status StateCache::ResetTo(int slot, int64_t n_past) {
  RETURN_IF_ERROR(CheckSlot(slot));
  Slot& s = slots_[slot];
  free_blocks_.insert(free_blocks_.end(), s.blocks.rbegin(), s.blocks.rend());
  s.blocks.clear();
  s.n_past = 0;
  RETURN_IF_ERROR(Reserve(slot, n_past));
  s.n_past = n_past;
  return absl::OkStatus();
}

float* StateCache::Row(int slot, int layer, int64_t pos, bool key) {
  const Slot& s = slots_[slot];
  const int64_t block = s.blocks[pos / options_.kv_block_size];
  const int64_t row = block * options_.kv_block_size + pos % options_.kv_block_size;
  return (key ? k_pool_ : v_pool_)[layer].data() + row * KvRowFloats(key);
}

float* StateCache::KeyRow(int slot, int layer, int64_t pos) { return Row(slot, layer, pos, true); }
float* StateCache::ValueRow(int slot, int layer, int64_t pos) { return Row(slot, layer, pos, false); }

cpu::PagedKv StateCache::KvView(int slot, int layer, std::vector<const float*>& k_ptrs,
                                std::vector<const float*>& v_ptrs) {
  const Slot& s = slots_[slot];
  k_ptrs.clear();
  v_ptrs.clear();
  for (int32_t b : s.blocks) {
    k_ptrs.push_back(k_pool_[layer].data() + b * options_.kv_block_size * KvRowFloats(true));
    v_ptrs.push_back(v_pool_[layer].data() + b * options_.kv_block_size * KvRowFloats(false));
  }
  return cpu::PagedKv{k_ptrs.data(), v_ptrs.data(), options_.kv_block_size, n_kv_heads_, head_dim_k_, head_dim_v_};
}

float* StateCache::ConvState(int slot, int layer) { return slots_[slot].recurrent[layer].data(); }
float* StateCache::DeltaState(int slot, int layer) { return slots_[slot].recurrent[layer].data() + conv_floats_; }

absl::StatusOr<SlotSnapshot> StateCache::Snapshot(int slot) const {
  RETURN_IF_ERROR(CheckSlot(slot));
  const Slot& s = slots_[slot];
  SlotSnapshot snap;
  snap.n_past = s.n_past;
  snap.recurrent = s.recurrent;
  snap.keys.resize(kinds_.size());
  snap.values.resize(kinds_.size());
  auto* self = const_cast<StateCache*>(this);
  for (size_t l = 0; l < kinds_.size(); ++l) {
    if (kinds_[l] != LayerKind::kFullAttention) continue;
    for (int64_t p = 0; p < s.n_past; ++p) {
      const float* k = self->KeyRow(slot, static_cast<int>(l), p);
      const float* v = self->ValueRow(slot, static_cast<int>(l), p);
      snap.keys[l].insert(snap.keys[l].end(), k, k + KvRowFloats(true));
      snap.values[l].insert(snap.values[l].end(), v, v + KvRowFloats(false));
    }
  }
  return snap;
}

absl::Status StateCache::Restore(int slot, const SlotSnapshot& snap) {
  RETURN_IF_ERROR(CheckSlot(slot));
  if (snap.recurrent.size() != kinds_.size() || snap.keys.size() != kinds_.size()) {
    return absl::InvalidArgumentError("snapshot was taken from a stage with other layers");
  }
  RETURN_IF_ERROR(ResetTo(slot, snap.n_past));
  slots_[slot].recurrent = snap.recurrent;
  for (size_t l = 0; l < kinds_.size(); ++l) {
    if (kinds_[l] != LayerKind::kFullAttention) continue;
    for (int64_t p = 0; p < snap.n_past; ++p) {
      std::memcpy(KeyRow(slot, static_cast<int>(l), p), snap.keys[l].data() + p * KvRowFloats(true),
                  KvRowFloats(true) * sizeof(float));
      std::memcpy(ValueRow(slot, static_cast<int>(l), p), snap.values[l].data() + p * KvRowFloats(false),
                  KvRowFloats(false) * sizeof(float));
    }
  }
  return absl::OkStatus();
}

}  // namespace moed::engine

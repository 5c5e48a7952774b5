#include "workers/engine/pipeline.h"

#include <algorithm>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "loader/model/layer_partition.h"

namespace moed::engine {

absl::Status InProcessTransport::Send(std::vector<float> hidden) {
  queue_.push_back(std::move(hidden));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> InProcessTransport::Receive() {
  if (queue_.empty()) return absl::FailedPreconditionError("no activations were sent");
  std::vector<float> hidden = std::move(queue_.front());
  queue_.pop_front();
  return hidden;
}

absl::StatusOr<std::vector<std::pair<int, int>>> SplitLayers(const ModelDescription& model, int n_stages) {
  const int n = model.n_layer;
  if (n_stages < 1 || n_stages > n) {
    return absl::InvalidArgumentError(absl::StrCat("cannot cut ", n, " layers into ", n_stages, " stages"));
  }
  // Cost of a layer: its weights, plus the embedding on the first layer and the head on the last.
  std::vector<uint64_t> cost(n);
  for (int l = 0; l < n; ++l) cost[l] = model.layers[l].weight_bytes;
  auto global = [&](const char* name) -> uint64_t {
    auto it = model.global_tensors.find(name);
    return it == model.global_tensors.end() ? 0 : it->second->nbytes;
  };
  cost[0] += global("token_embd.weight");
  cost[n - 1] += global("output.weight") + global("output_norm.weight");
  return PartitionLayers(cost, n_stages);
}

absl::StatusOr<std::unique_ptr<Pipeline>> Pipeline::Create(const LoadedModel& model, int n_stages,
                                                           const EngineOptions& options) {
  auto p = std::make_unique<Pipeline>();
  ASSIGN_OR_RETURN(p->ranges_, SplitLayers(model.description, n_stages));
  for (const auto& [first, last] : p->ranges_) {
    ASSIGN_OR_RETURN(std::unique_ptr<StageEngine> stage, StageEngine::Create(model, first, last, options));
    p->stages_.push_back(std::move(stage));
  }
  for (int i = 0; i + 1 < n_stages; ++i) p->links_.push_back(std::make_unique<InProcessTransport>());
  return p;
}

absl::StatusOr<int> Pipeline::AllocateSlot() {
  ASSIGN_OR_RETURN(int slot, stages_[0]->AllocateSlot());
  for (size_t i = 1; i < stages_.size(); ++i) {
    ASSIGN_OR_RETURN(int other, stages_[i]->AllocateSlot());
    if (other != slot) return absl::InternalError("pipeline stages disagree on slot allocation");
  }
  return slot;
}

absl::Status Pipeline::AcquireSlot(int slot) {
  for (size_t i = 0; i < stages_.size(); ++i) {
    absl::Status s = stages_[i]->AcquireSlot(slot);
    if (!s.ok()) {
      for (size_t j = 0; j < i; ++j) (void)stages_[j]->FreeSlot(slot);
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status Pipeline::FreeSlot(int slot) {
  for (auto& stage : stages_) RETURN_IF_ERROR(stage->FreeSlot(slot));
  return absl::OkStatus();
}

absl::Status Pipeline::Forward(std::span<const SequenceStep> sequences, std::vector<float>* logits) {
  std::vector<float> hidden;
  for (size_t i = 0; i < stages_.size(); ++i) {
    if (i > 0) {
      ASSIGN_OR_RETURN(hidden, links_[i - 1]->Receive());
    }
    std::vector<float> out;
    RETURN_IF_ERROR(stages_[i]->Forward(sequences, hidden, &out, logits));
    if (i + 1 < stages_.size()) RETURN_IF_ERROR(links_[i]->Send(std::move(out)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SlotSnapshot>> Pipeline::Snapshot(int slot) const {
  std::vector<SlotSnapshot> out;
  for (const auto& stage : stages_) {
    ASSIGN_OR_RETURN(SlotSnapshot s, stage->Snapshot(slot));
    out.push_back(std::move(s));
  }
  return out;
}

absl::Status Pipeline::Restore(int slot, const std::vector<SlotSnapshot>& snapshot) {
  if (snapshot.size() != stages_.size()) return absl::InvalidArgumentError("snapshot has another number of stages");
  for (size_t i = 0; i < stages_.size(); ++i) RETURN_IF_ERROR(stages_[i]->Restore(slot, snapshot[i]));
  return absl::OkStatus();
}

}  // namespace moed::engine

// StepExecutor over an in-process engine::Pipeline; see in_process_executor.h.
#include "daemon/scheduler/in_process_executor.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"

namespace moed::daemon {

absl::StatusOr<std::unique_ptr<InProcessExecutor>> InProcessExecutor::Create(const engine::LoadedModel& model,
                                                                             int n_stages,
                                                                             const engine::EngineOptions& options) {
  const engine::StateCacheOptions& cache = options.cache;
  if (cache.max_slots < 1 || cache.kv_block_size < 1 || cache.kv_blocks < cache.max_slots) {
    return absl::InvalidArgumentError(absl::StrCat("state cache of ", cache.max_slots, " slots and ", cache.kv_blocks,
                                                   " KV blocks of ", cache.kv_block_size,
                                                   " tokens leaves a slot no KV room"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<engine::Pipeline> pipeline, engine::Pipeline::Create(model, n_stages, options));
  ExecutorInfo info;
  info.slot_capacity = cache.max_slots;
  info.context_length = (cache.kv_blocks / cache.max_slots) * cache.kv_block_size;
  const int64_t n_ctx_train = model.hparams().n_ctx_train;
  if (n_ctx_train > 0) info.context_length = std::min(info.context_length, n_ctx_train);
  info.n_vocab = pipeline->n_vocab();
  info.n_stages = pipeline->n_stages();
  return std::unique_ptr<InProcessExecutor>(new InProcessExecutor(std::move(pipeline), info));
}

InProcessExecutor::InProcessExecutor(std::unique_ptr<engine::Pipeline> pipeline, const ExecutorInfo& info)
    : pipeline_(std::move(pipeline)), info_(info), slots_(static_cast<size_t>(info.slot_capacity)) {}

absl::Status InProcessExecutor::CheckOpen(int slot) const {
  if (slot < 0 || slot >= info_.slot_capacity) {
    return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " is outside [0, ", info_.slot_capacity, ")"));
  }
  if (!slots_[static_cast<size_t>(slot)].open) return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " is not open"));
  return absl::OkStatus();
}

absl::Status InProcessExecutor::OpenSlot(int slot, const cpu::SamplingParams& params) {
  if (slot < 0 || slot >= info_.slot_capacity) {
    return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " is outside [0, ", info_.slot_capacity, ")"));
  }
  Slot& s = slots_[static_cast<size_t>(slot)];
  if (s.open) return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " is already open"));
  RETURN_IF_ERROR(params.Validate());
  RETURN_IF_ERROR(pipeline_->AcquireSlot(slot));
  s.open = true;
  s.sampler.emplace(params);
  return absl::OkStatus();
}

absl::Status InProcessExecutor::CloseSlot(int slot) {
  RETURN_IF_ERROR(CheckOpen(slot));
  Slot& s = slots_[static_cast<size_t>(slot)];
  s.open = false;
  s.sampler.reset();
  return pipeline_->FreeSlot(slot);
}

absl::Status InProcessExecutor::ValidateStep(std::span<const StepSequence> sequences) const {
  absl::flat_hash_set<int> seen;
  for (const StepSequence& seq : sequences) {
    RETURN_IF_ERROR(CheckOpen(seq.slot));
    if (!seen.insert(seq.slot).second) {
      return absl::InvalidArgumentError(absl::StrCat("slot ", seq.slot, " appears twice in one step"));
    }
    if (seq.tokens.empty()) return absl::InvalidArgumentError(absl::StrCat("slot ", seq.slot, " has no tokens in the step"));
    if (seq.top_logprobs < 0 || seq.top_logprobs > sampling::kMaxTopLogprobs) {
      return absl::InvalidArgumentError(
          absl::StrCat("top_logprobs = ", seq.top_logprobs, " is outside [0, ", sampling::kMaxTopLogprobs, "]"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SampledToken>> InProcessExecutor::Step(std::span<const StepSequence> sequences) {
  RETURN_IF_ERROR(ValidateStep(sequences));
  std::vector<SampledToken> out;
  if (sequences.empty()) return out;
  std::vector<engine::SequenceStep> steps;
  steps.reserve(sequences.size());
  for (const StepSequence& seq : sequences) {
    engine::SequenceStep& step = steps.emplace_back();
    step.slot = seq.slot, step.tokens = seq.tokens, step.logits = engine::LogitsWanted::kNone;
    if (!seq.sample) continue;
    // Many rows need only their summary (and a draw where the row is): SlotSampler::Prepare.
    sampling::SlotSampler::RowNeeds needs = slots_[static_cast<size_t>(seq.slot)].sampler->Prepare(
        info_.n_vocab, seq.top_logprobs);
    step.logits = needs.summary_only ? engine::LogitsWanted::kTop : engine::LogitsWanted::kLast;
    step.top_n = needs.top_n, step.draw = needs.draw;
  }
  std::vector<float> logits;
  RETURN_IF_ERROR(pipeline_->Forward(steps, &logits));
  const auto V = static_cast<size_t>(info_.n_vocab);
  size_t row = 0, top = 0;
  for (size_t i = 0; i < sequences.size(); ++i) {
    const StepSequence& seq = sequences[i];
    sampling::SlotSampler& sampler = *slots_[static_cast<size_t>(seq.slot)].sampler;
    sampler.Append(seq.tokens);
    if (!seq.sample) continue;
    sampling::SampledChoice choice;
    if (steps[i].logits == engine::LogitsWanted::kTop) {
      if (top >= pipeline_->tops().size() || top >= pipeline_->draws().size()) {
        return absl::InternalError("the pipeline returned too few row summaries");
      }
      const cpu::Drawn* drawn = steps[i].draw.has_value() ? &pipeline_->draws()[top] : nullptr;
      choice = sampler.SampleFromSummary(pipeline_->tops()[top++], drawn, seq.top_logprobs);
    } else {
      if ((row + 1) * V > logits.size()) {
        return absl::InternalError(absl::StrCat("the pipeline returned ", logits.size() / V, " logits rows for ",
                                                row + 1, " or more sampled sequences"));
      }
      choice = sampler.Sample(std::span<const float>(logits.data() + row++ * V, V), seq.top_logprobs);
    }
    out.push_back(SampledToken{seq.slot, choice.token, choice.logprob, std::move(choice.top)});
  }
  return out;
}

absl::Status InProcessExecutor::SaveSnapshot(int slot, int64_t snapshot_id) {
  RETURN_IF_ERROR(CheckOpen(slot));
  ASSIGN_OR_RETURN(std::vector<engine::SlotSnapshot> state, pipeline_->Snapshot(slot));
  snapshots_[snapshot_id] = Snapshot{std::move(state), slots_[static_cast<size_t>(slot)].sampler->history()};
  return absl::OkStatus();
}

absl::Status InProcessExecutor::RestoreSnapshot(int slot, int64_t snapshot_id) {
  RETURN_IF_ERROR(CheckOpen(slot));
  auto it = snapshots_.find(snapshot_id);
  if (it == snapshots_.end()) return absl::NotFoundError(absl::StrCat("no snapshot ", snapshot_id));
  RETURN_IF_ERROR(pipeline_->Restore(slot, it->second.state));
  slots_[static_cast<size_t>(slot)].sampler->set_history(it->second.history);
  return absl::OkStatus();
}

absl::Status InProcessExecutor::DropSnapshot(int64_t snapshot_id) {
  if (snapshots_.erase(snapshot_id) == 0) return absl::NotFoundError(absl::StrCat("no snapshot ", snapshot_id));
  return absl::OkStatus();
}

}  // namespace moed::daemon

// The StepExecutor over worker processes: validation, slot and snapshot bookkeeping per pipeline
// generation, and the fan-out of each step to every stage.
#include "daemon/workers/worker_pool.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "daemon/metrics/moed_metrics.h"
#include "kernels/base/log.h"
#include "kernels/base/status_macros.h"

namespace moed::daemon {
namespace {

constexpr int kMaxTopLogprobs = 20;

// Errors a stage returns for a request it refused without harm; anything else means the stage
// or the link to it is broken and the pipeline must be rebuilt.
bool IsRequestError(const absl::Status& s) {
  return absl::IsInvalidArgument(s) || absl::IsResourceExhausted(s) || absl::IsNotFound(s) ||
         absl::IsOutOfRange(s);
}

absl::Status InStage(int stage, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat("worker stage ", stage, ": ", s.message()));
}

absl::Status Broken(const absl::Status& s) {
  return absl::UnavailableError(
      absl::StrCat("the worker pipeline failed (it is being restarted): ", s.message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Create(const WorkerPoolOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<Supervisor> supervisor, Supervisor::Start(options));
  return std::unique_ptr<WorkerPool>(new WorkerPool(std::move(supervisor), options));
}

WorkerPool::WorkerPool(std::unique_ptr<Supervisor> supervisor, const WorkerPoolOptions& options)
    : supervisor_(std::move(supervisor)), options_(options) {
  const PipelineFacts& f = supervisor_->facts();
  info_.slot_capacity = f.slot_capacity;
  info_.context_length = f.context_length;
  info_.n_vocab = f.n_vocab;
  info_.n_stages = supervisor_->stage_count();
  slots_.resize(static_cast<size_t>(f.slot_capacity));
  if (options_.metrics != nullptr) {
    for (int i = 0; i < info_.n_stages; ++i) {
      step_histograms_.push_back(&options_.metrics->WorkerStep(absl::StrCat(i)));
      idle_gauges_.push_back(&options_.metrics->WorkerIdle(absl::StrCat(i)));
    }
    stage_busy_us_.assign(static_cast<size_t>(info_.n_stages), 0);
    options_.metrics->kv_blocks_capacity().Set(static_cast<double>(options_.cache.kv_blocks));
    options_.metrics->kv_blocks_used().Set(0);
  }
}

void WorkerPool::ReportKvBlocks() const {
  if (options_.metrics == nullptr) return;
  const int64_t block = std::max<int64_t>(1, options_.cache.kv_block_size);
  int64_t used = 0;
  for (const Slot& slot : slots_) {
    if (slot.open) used += (slot.n_past + block - 1) / block;
  }
  options_.metrics->kv_blocks_used().Set(static_cast<double>(used));
}

WorkerPool::~WorkerPool() = default;

void WorkerPool::NoteFailure(uint64_t generation, const absl::Status& status) {
  if (!IsRequestError(status)) supervisor_->ReportBroken(generation, status);
}

absl::Status WorkerPool::CheckSlot(int slot, uint64_t generation) const {
  if (slot < 0 || slot >= static_cast<int>(slots_.size()) || !slots_[slot].open) {
    return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " is not open"));
  }
  if (slots_[slot].generation != generation) {
    return absl::UnavailableError(absl::StrCat(
        "slot ", slot, " was lost when the workers restarted; close it and open it again"));
  }
  return absl::OkStatus();
}

absl::Status WorkerPool::Validate(std::span<const StepSequence> sequences,
                                  uint64_t generation) const {
  if (sequences.empty()) return absl::InvalidArgumentError("a step needs at least one sequence");
  std::vector<bool> seen(slots_.size(), false);
  for (const StepSequence& s : sequences) {
    RETURN_IF_ERROR(CheckSlot(s.slot, generation));
    if (slots_[s.slot].in_flight)
      return absl::InvalidArgumentError(absl::StrCat("slot ", s.slot, " is in a step still in flight"));
    if (seen[s.slot])
      return absl::InvalidArgumentError(
          absl::StrCat("slot ", s.slot, " appears twice in one step"));
    seen[s.slot] = true;
    if (s.tokens.empty())
      return absl::InvalidArgumentError(absl::StrCat("slot ", s.slot, ": no tokens"));
    for (int32_t id : s.tokens) {
      if (id < 0 || id >= info_.n_vocab) {
        return absl::InvalidArgumentError(absl::StrCat("slot ", s.slot, ": token id ", id,
                                                       " is outside the vocabulary [0, ",
                                                       info_.n_vocab, ")"));
      }
    }
    if (s.top_logprobs < 0 || s.top_logprobs > kMaxTopLogprobs) {
      return absl::InvalidArgumentError(absl::StrCat("slot ", s.slot, ": top_logprobs ",
                                                     s.top_logprobs, " is outside [0, ",
                                                     kMaxTopLogprobs, "]"));
    }
    const int64_t n_past = slots_[s.slot].n_past;
    const auto n = static_cast<int64_t>(s.tokens.size());
    if (n_past + n > info_.context_length) {
      return absl::ResourceExhaustedError(absl::StrCat("slot ", s.slot, " would hold ", n_past + n,
                                                       " tokens; its context holds ",
                                                       info_.context_length));
    }
  }
  return absl::OkStatus();
}

absl::Status WorkerPool::OpenSlot(int slot, const cpu::SamplingParams& params) {
  if (slot < 0 || slot >= static_cast<int>(slots_.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("slot ", slot, " is out of range [0, ", slots_.size(), ")"));
  }
  if (slots_[slot].open)
    return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " is already open"));
  RETURN_IF_ERROR(params.Validate());
  ASSIGN_OR_RETURN(std::shared_ptr<const WorkerPipeline> pipeline, supervisor_->Current());
  for (size_t i = 0; i < pipeline->stages.size(); ++i) {
    absl::Status s = pipeline->stages[i]->OpenSlot(slot, params, options_.rpc_timeout);
    if (s.ok()) continue;
    for (size_t j = 0; j < i; ++j) (void)pipeline->stages[j]->CloseSlot(slot, options_.rpc_timeout);
    NoteFailure(pipeline->generation, s);
    return IsRequestError(s) ? InStage(static_cast<int>(i), s)
                             : Broken(InStage(static_cast<int>(i), s));
  }
  slots_[slot] = {true, pipeline->generation, 0};
  return absl::OkStatus();
}

absl::Status WorkerPool::CloseSlot(int slot) {
  if (slot < 0 || slot >= static_cast<int>(slots_.size()) || !slots_[slot].open) {
    return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " is not open"));
  }
  const Slot closed = slots_[slot];
  slots_[slot] = Slot{};
  ReportKvBlocks();
  auto pipeline = supervisor_->Current();
  if (!pipeline.ok() || (*pipeline)->generation != closed.generation)
    return absl::OkStatus();  // state gone
  for (size_t i = 0; i < (*pipeline)->stages.size(); ++i) {
    absl::Status s = (*pipeline)->stages[i]->CloseSlot(slot, options_.rpc_timeout);
    if (s.ok()) continue;
    // The router forgets the slot either way; a stage that cannot free it is broken.
    MOED_LOG(WARNING) << "closing slot " << slot << ": " << InStage(static_cast<int>(i), s);
    NoteFailure((*pipeline)->generation, s);
  }
  return absl::OkStatus();
}

int WorkerPool::max_steps_in_flight() const {
  // Each stage works on a different step; the unary step path carries one at a time.
  return options_.step_path == StepPath::kUnary ? 1 : info_.n_stages;
}

absl::StatusOr<std::vector<SampledToken>> WorkerPool::Step(std::span<const StepSequence> sequences) {
  RETURN_IF_ERROR(StartStep(sequences));
  return FinishStep();
}

absl::Status WorkerPool::StartStep(std::span<const StepSequence> sequences) {
  ASSIGN_OR_RETURN(std::shared_ptr<const WorkerPipeline> pipeline, supervisor_->Current());
  RETURN_IF_ERROR(Validate(sequences, pipeline->generation));
  InFlight step;
  step.step_id = ++step_id_;
  step.pipeline = pipeline;
  for (const StepSequence& s : sequences) {
    step.advance.emplace_back(s.slot, static_cast<int64_t>(s.tokens.size()));
    step.samples += s.sample ? 1 : 0;
    slots_[s.slot].in_flight = true;
  }
  // Fan out; the replies are collected by FinishStep. The first transport failure is reported
  // at once: the supervisor cancels every stage's step path, so no wait outlasts it.
  const int k = static_cast<int>(pipeline->stages.size());
  for (; step.started < k; ++step.started) {
    absl::Status s = pipeline->stages[step.started]->StartStep(step.step_id, sequences);
    if (!s.ok()) {
      step.failure = InStage(step.started, s);
      supervisor_->ReportBroken(pipeline->generation, step.failure);
      break;
    }
  }
  if (in_flight_.empty()) busy_since_ = absl::Now();
  in_flight_.push_back(std::move(step));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SampledToken>> WorkerPool::FinishStep() {
  if (in_flight_.empty()) return absl::FailedPreconditionError("FinishStep without a step in flight");
  InFlight step = std::move(in_flight_.front());
  in_flight_.pop_front();
  for (const auto& [slot, tokens] : step.advance) slots_[slot].in_flight = false;
  const auto& stages = step.pipeline->stages;
  const int k = static_cast<int>(stages.size());
  const uint64_t generation = step.pipeline->generation;

  // The last stage answers last; waiting for it first means one wake-up of this thread per step,
  // and the earlier stages' answers are then read without waiting.
  absl::Status failure = step.failure;
  std::vector<WorkerStepReply> replies(k);
  for (int i = step.started - 1; i >= 0; --i) {
    auto reply = stages[i]->FinishStep();
    if (reply.ok()) {
      replies[i] = std::move(reply).value();
    } else if (failure.ok()) {
      failure = InStage(i, reply.status());
      supervisor_->ReportBroken(generation, failure);
    }
  }
  NoteBusy(replies);
  if (!failure.ok()) return Broken(failure);

  // The stage where the step failed first; the stages after it only relayed its error.
  int failed = -1;
  for (int i = 0; i < k && failed < 0; ++i) {
    if (!replies[i].status.ok() && !replies[i].upstream_failed) failed = i;
  }
  for (int i = 0; i < k && failed < 0; ++i) {
    if (!replies[i].status.ok()) failed = i;
  }
  if (failed >= 0) {
    const absl::Status s = InStage(failed, replies[failed].status);
    if (!IsRequestError(s)) {
      supervisor_->ReportBroken(generation, s);
      return Broken(s);
    }
    if (failed == 0) return s;  // refused before any stage changed anything
    return absl::InternalError(
        absl::StrCat("the step's slots are in an unknown state: ", s.message()));
  }

  for (const auto& [slot, tokens] : step.advance) {
    if (slots_[slot].open && slots_[slot].generation == generation) slots_[slot].n_past += tokens;
  }
  ReportKvBlocks();
  for (size_t i = 0; i < step_histograms_.size(); ++i) {
    step_histograms_[i]->Observe(static_cast<double>(replies[i].forward_us) * 1e-6);
  }
  std::vector<SampledToken> sampled = std::move(replies[k - 1].sampled);
  if (sampled.size() != step.samples) {
    return absl::InternalError(
        absl::StrCat("the last stage sampled ", sampled.size(), " tokens, expected ", step.samples));
  }
  return sampled;
}

void WorkerPool::NoteBusy(const std::vector<WorkerStepReply>& replies) {
  if (idle_gauges_.empty()) return;
  for (size_t i = 0; i < replies.size() && i < stage_busy_us_.size(); ++i) stage_busy_us_[i] += replies[i].forward_us;
  if (!in_flight_.empty()) return;  // the pipeline is still busy: its time is counted when it empties
  const absl::Time now = absl::Now();
  window_ += now - busy_since_;
  busy_since_ = now;
  if (window_ < absl::Seconds(1)) return;
  const double window_us = absl::ToDoubleMicroseconds(window_);
  for (size_t i = 0; i < idle_gauges_.size(); ++i) {
    idle_gauges_[i]->Set(std::clamp(1.0 - static_cast<double>(stage_busy_us_[i]) / window_us, 0.0, 1.0));
    stage_busy_us_[i] = 0;
  }
  window_ = absl::ZeroDuration();
}

absl::Status WorkerPool::SaveSnapshot(int slot, int64_t snapshot_id) {
  ASSIGN_OR_RETURN(std::shared_ptr<const WorkerPipeline> pipeline, supervisor_->Current());
  RETURN_IF_ERROR(CheckSlot(slot, pipeline->generation));
  for (size_t i = 0; i < pipeline->stages.size(); ++i) {
    absl::Status s = pipeline->stages[i]->SaveSnapshot(slot, snapshot_id, options_.rpc_timeout);
    if (s.ok()) continue;
    for (size_t j = 0; j < i; ++j)
      (void)pipeline->stages[j]->DropSnapshot(snapshot_id, options_.rpc_timeout);
    snapshots_.erase(snapshot_id);  // a copy kept before under this id is gone from stages < i
    NoteFailure(pipeline->generation, s);
    return IsRequestError(s) ? InStage(static_cast<int>(i), s)
                             : Broken(InStage(static_cast<int>(i), s));
  }
  snapshots_[snapshot_id] = {pipeline->generation, slots_[slot].n_past};
  return absl::OkStatus();
}

absl::Status WorkerPool::RestoreSnapshot(int slot, int64_t snapshot_id) {
  ASSIGN_OR_RETURN(std::shared_ptr<const WorkerPipeline> pipeline, supervisor_->Current());
  RETURN_IF_ERROR(CheckSlot(slot, pipeline->generation));
  auto it = snapshots_.find(snapshot_id);
  if (it == snapshots_.end() || it->second.generation != pipeline->generation) {
    return absl::NotFoundError(absl::StrCat("no snapshot with id ", snapshot_id));
  }
  const int64_t n_past = it->second.n_past;
  for (size_t i = 0; i < pipeline->stages.size(); ++i) {
    absl::Status s = pipeline->stages[i]->RestoreSnapshot(slot, snapshot_id, options_.rpc_timeout);
    if (s.ok()) continue;
    NoteFailure(pipeline->generation, s);
    if (!IsRequestError(s)) return Broken(InStage(static_cast<int>(i), s));
    if (i == 0) return InStage(0, s);
    return absl::InternalError(absl::StrCat(
        "slot ", slot, " is in an unknown state: ", InStage(static_cast<int>(i), s).message()));
  }
  slots_[slot].n_past = n_past;
  ReportKvBlocks();
  return absl::OkStatus();
}

absl::Status WorkerPool::DropSnapshot(int64_t snapshot_id) {
  auto it = snapshots_.find(snapshot_id);
  if (it == snapshots_.end())
    return absl::NotFoundError(absl::StrCat("no snapshot with id ", snapshot_id));
  const uint64_t generation = it->second.generation;
  snapshots_.erase(it);
  auto pipeline = supervisor_->Current();
  if (!pipeline.ok() || (*pipeline)->generation != generation)
    return absl::OkStatus();  // gone with the workers
  for (size_t i = 0; i < (*pipeline)->stages.size(); ++i) {
    absl::Status s = (*pipeline)->stages[i]->DropSnapshot(snapshot_id, options_.rpc_timeout);
    if (s.ok()) continue;
    MOED_LOG(WARNING) << "dropping snapshot " << snapshot_id << ": "
                      << InStage(static_cast<int>(i), s);
    NoteFailure((*pipeline)->generation, s);
  }
  return absl::OkStatus();
}

}  // namespace moed::daemon

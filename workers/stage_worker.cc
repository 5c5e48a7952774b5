// One pipeline stage in a worker process: load/reset, slots, the step protocol with its one frame
// in and one frame out per step, and sampling on the last stage.
#include "workers/stage_worker.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/log.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::worker {
namespace {

bool SameVariants(const VariantOptions& a, const VariantOptions& b) {
  return a.variant == b.variant && a.budget_mb == b.budget_mb;
}

int64_t ResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  long long pages_total = 0, pages_resident = 0;
  const int n = std::fscanf(f, "%lld %lld", &pages_total, &pages_resident);
  std::fclose(f);
  return n == 2 ? pages_resident * sysconf(_SC_PAGESIZE) : 0;
}

}  // namespace

StageWorker::StageWorker() : interrupt_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

StageWorker::~StageWorker() {
  // The links go first: their options refer to the interrupt descriptor.
  listener_.reset();
  DropUpstream();
  DropDownstream();
  if (interrupt_fd_ >= 0) close(interrupt_fd_);
}

void StageWorker::Interrupt() {
  const uint64_t one = 1;
  ssize_t ignored = write(interrupt_fd_, &one, sizeof(one));
  (void)ignored;
}

absl::Status StageWorker::CheckLoaded() const {
  if (!loaded_.load())
    return absl::FailedPreconditionError("the worker has no stage loaded (call Load first)");
  return absl::OkStatus();
}

absl::StatusOr<StageFacts> StageWorker::Load(const StageConfig& c) {
  // Whatever happens below, the previous stage state is gone, and so is any interrupt.
  uint64_t drained;
  while (read(interrupt_fd_, &drained, sizeof(drained)) > 0) {
  }
  loaded_ = false;
  // The device links go before the engine: they abort their communicators on the device.
  DropUpstream();
  DropDownstream();
  engine_.reset();
  listener_.reset();
  samplers_.clear();
  sampling_pool_.reset();
  snapshots_.clear();
  slots_in_use_ = 0;

  if (c.stage_count < 1 || c.stage_index < 0 || c.stage_index >= c.stage_count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stage index ", c.stage_index, " is not within a pipeline of ", c.stage_count, " stages"));
  }
  if (c.engine.cache.max_slots < 1 || c.engine.cache.kv_block_size < 1 ||
      c.engine.cache.kv_blocks < c.engine.cache.max_slots) {
    return absl::InvalidArgumentError(absl::StrCat(
        "state cache of ", c.engine.cache.max_slots, " slots and ", c.engine.cache.kv_blocks,
        " KV blocks of ", c.engine.cache.kv_block_size, " tokens leaves a slot no KV room"));
  }
  if (c.activation_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the activation timeout must be positive");
  }
  if (c.device_links && c.engine.backend != engine::Backend::kCuda) {
    return absl::InvalidArgumentError(absl::StrCat("stage ", c.stage_index, ": NCCL activation links need the cuda "
                                                   "backend, not ", std::string(engine::BackendName(c.engine.backend))));
  }
  StageFacts facts;
  facts.reused_weights = model_ != nullptr && c.model_path == config_.model_path &&
                         SameVariants(c.variants, config_.variants);
  if (!facts.reused_weights) {
    model_.reset();
    auto model = engine::LoadModel(c.model_path, c.variants);
    if (!model.ok()) {
      return absl::Status(model.status().code(), absl::StrCat("loading model ", c.model_path, ": ",
                                                              model.status().message()));
    }
    model_ = std::move(model).value();
  }
  config_ = c;
  const int n_layer = model_->description.n_layer;
  auto engine = engine::StageEngine::Create(*model_, c.first_layer, c.last_layer, c.engine);
  if (!engine.ok()) {
    model_.reset();
    return engine.status();
  }
  if ((c.first_layer == 0) != c.activation_listen.empty() ||
      (c.last_layer == n_layer) != c.activation_next.empty()) {
    model_.reset();
    return absl::InvalidArgumentError(absl::StrCat(
        "stage ", c.stage_index, " (layers [", c.first_layer, ", ", c.last_layer, ") of ", n_layer,
        "): activation_listen must be set unless the stage starts at layer 0, and activation_next "
        "unless it ends at "
        "the last layer"));
  }
  engine_ = std::move(engine).value();
  absl::Status links = OpenLinks();
  if (!links.ok()) {
    engine_.reset();
    model_.reset();
    return links;
  }
  samplers_.resize(static_cast<size_t>(c.engine.cache.max_slots));
  if (engine_->is_last()) sampling_pool_ = std::make_unique<cpu::ThreadPool>(std::max(1, c.engine.threads));

  facts.n_vocab = engine_->n_vocab();
  facts.n_embd = engine_->n_embd();
  facts.n_layer = n_layer;
  const engine::StateCacheOptions& cache = c.engine.cache;
  facts.context_length = (cache.kv_blocks / cache.max_slots) * cache.kv_block_size;
  const int64_t n_ctx_train = model_->hparams().n_ctx_train;
  if (n_ctx_train > 0) facts.context_length = std::min(facts.context_length, n_ctx_train);
  facts.slot_capacity = cache.max_slots;
  loaded_ = true;
  MOED_LOG(INFO) << "stage " << c.stage_index << "/" << c.stage_count << ": layers ["
                 << c.first_layer << ", " << c.last_layer << ") of " << Sv(c.model_path)
                 << (facts.reused_weights ? " (reset)" : " loaded");
  return facts;
}

absl::Status StageWorker::OpenLinks() {
  if (config_.activation_listen.empty()) return absl::OkStatus();
  transport::UnixSocketOptions options;
  options.timeout = config_.activation_timeout;
  options.interrupt_fd = interrupt_fd_;
  options.spin = config_.step_spin;
  // A frame is at most every token of a step; bound it by what the KV cache could ever hold
  // plus one token per slot (a stage without attention layers still has no larger step).
  const int64_t max_tokens = config_.engine.cache.kv_blocks * config_.engine.cache.kv_block_size +
                             config_.engine.cache.max_slots;
  options.max_frame_bytes =
      static_cast<uint64_t>(max_tokens) * static_cast<uint64_t>(engine_->n_embd()) * sizeof(float);
  ASSIGN_OR_RETURN(listener_,
                   transport::UnixSocketListener::Listen(config_.activation_listen, options));
  return absl::OkStatus();
}

absl::Status StageWorker::OpenSlot(int slot, const cpu::SamplingParams& params) {
  RETURN_IF_ERROR(CheckLoaded());
  if (is_last()) RETURN_IF_ERROR(params.Validate());
  RETURN_IF_ERROR(engine_->AcquireSlot(slot));
  if (is_last())
    samplers_[static_cast<size_t>(slot)] = std::make_unique<sampling::SlotSampler>(params);
  ++slots_in_use_;
  return absl::OkStatus();
}

absl::Status StageWorker::CloseSlot(int slot) {
  RETURN_IF_ERROR(CheckLoaded());
  RETURN_IF_ERROR(engine_->FreeSlot(slot));
  samplers_[static_cast<size_t>(slot)].reset();
  --slots_in_use_;
  return absl::OkStatus();
}

void StageWorker::DropUpstream() {
  upstream_device_.reset();
  upstream_.reset();
}

void StageWorker::DropDownstream() {
  downstream_device_.reset();
  downstream_.reset();
}

absl::StatusOr<StageWorker::Activations> StageWorker::ReceiveActivations() {
  if (upstream_ == nullptr && upstream_device_ == nullptr) {
    auto accepted = listener_->Accept();
    if (accepted.ok() && config_.device_links) {
      transport::UnixSocketOptions options;
      options.timeout = config_.activation_timeout;
      options.interrupt_fd = interrupt_fd_;
      auto link = transport::NcclLink::Accept(std::move(accepted).value(), config_.engine.device, options);
      if (link.ok()) {
        upstream_device_ = std::move(link).value();
      } else {
        accepted = link.status();
      }
    } else if (accepted.ok()) {
      upstream_ = std::move(accepted).value();
    }
    if (!accepted.ok()) {
      const auto code = absl::IsCancelled(accepted.status()) ? absl::StatusCode::kCancelled
                                                             : absl::StatusCode::kUnavailable;
      return absl::Status(code, absl::StrCat("stage ", config_.stage_index,
                                             ": the previous stage did not connect: ",
                                             accepted.status().message()));
    }
  }
  Activations in;
  if (upstream_device_ != nullptr) {
    ASSIGN_OR_RETURN(transport::NcclLink::Rows rows, upstream_device_->Receive());
    in.device = {rows.data, static_cast<int64_t>(rows.floats)};
  } else {
    ASSIGN_OR_RETURN(in.host, upstream_->Receive());
  }
  return in;
}

absl::Status StageWorker::SendDownstream(Activations hidden, const absl::Status& failure) {
  if (downstream_ == nullptr && downstream_device_ == nullptr) {
    transport::UnixSocketOptions options;
    options.timeout = config_.activation_timeout;
    options.interrupt_fd = interrupt_fd_;
    auto connected = transport::UnixSocketTransport::Connect(config_.activation_next, options);
    absl::Status status = connected.status();
    if (connected.ok() && config_.device_links) {
      auto link = transport::NcclLink::Offer(std::move(connected).value(), config_.engine.device, options);
      status = link.status();
      if (link.ok()) downstream_device_ = std::move(link).value();
    } else if (connected.ok()) {
      downstream_ = std::move(connected).value();
    }
    if (!status.ok()) {
      const auto code = absl::IsCancelled(status) ? absl::StatusCode::kCancelled : absl::StatusCode::kUnavailable;
      return absl::Status(code, absl::StrCat("stage ", config_.stage_index,
                                             ": cannot reach the next stage: ", status.message()));
    }
  }
  absl::Status sent;
  if (downstream_device_ != nullptr) {
    sent = failure.ok() ? downstream_device_->Send(hidden.device.data, static_cast<uint64_t>(hidden.device.floats))
                        : downstream_device_->SendError(failure);
  } else {
    sent = failure.ok() ? downstream_->Send(std::move(hidden.host)) : downstream_->SendError(failure);
  }
  if (!sent.ok()) {
    DropDownstream();  // the link is broken; the router rebuilds the pipeline
    return absl::UnavailableError(
        absl::StrCat("stage ", config_.stage_index, ": ", sent.message()));
  }
  return absl::OkStatus();
}

absl::Status StageWorker::RunStage(std::span<const WorkerSequence> sequences, Activations hidden_in,
                                   Activations* hidden_out, StepOutcome* outcome) {
  std::vector<engine::SequenceStep> steps;
  steps.reserve(sequences.size());
  for (const WorkerSequence& s : sequences) {
    if (s.top_logprobs < 0 || s.top_logprobs > sampling::kMaxTopLogprobs) {
      return absl::InvalidArgumentError(absl::StrCat("slot ", s.slot, ": top_logprobs ",
                                                     s.top_logprobs, " is outside [0, ",
                                                     sampling::kMaxTopLogprobs, "]"));
    }
    engine::SequenceStep& step = steps.emplace_back();
    step.slot = s.slot, step.tokens = s.tokens, step.logits = engine::LogitsWanted::kNone;
    if (!is_last() || !s.sample) continue;
    // Many rows need only their summary (and a draw), made on the device: SlotSampler::Prepare.
    sampling::SlotSampler::RowNeeds needs =
        samplers_[static_cast<size_t>(s.slot)]->Prepare(engine_->n_vocab(), s.top_logprobs);
    step.logits = needs.summary_only ? engine::LogitsWanted::kTop : engine::LogitsWanted::kLast;
    step.top_n = needs.top_n, step.draw = needs.draw;
  }
  const absl::Time start = absl::Now();
  std::vector<float> logits;
  if (config_.device_links) {
    RETURN_IF_ERROR(engine_->ForwardOnDevice(steps, hidden_in.device, &hidden_out->device, &logits));
  } else {
    RETURN_IF_ERROR(engine_->Forward(steps, hidden_in.host, &hidden_out->host, &logits));
  }
  if (is_last()) {
    // Sampled sequence i reads logits row source[i], or (kTop) the engine's tops()[source[i]] and
    // draws()[source[i]].
    std::vector<size_t> rows;  // the sampled sequences' indices
    std::vector<std::pair<bool, size_t>> source;  // (from tops, index)
    size_t n_rows = 0, n_tops = 0;
    for (size_t i = 0; i < sequences.size(); ++i) {
      const WorkerSequence& s = sequences[i];
      samplers_[static_cast<size_t>(s.slot)]->Append(s.tokens);
      if (!s.sample) continue;
      rows.push_back(i);
      const bool top = steps[i].logits == engine::LogitsWanted::kTop;
      source.emplace_back(top, top ? n_tops++ : n_rows++);
    }
    const auto n_vocab = static_cast<size_t>(engine_->n_vocab());
    if (logits.size() != n_rows * n_vocab || engine_->tops().size() != n_tops || engine_->draws().size() != n_tops) {
      return absl::InternalError(absl::StrCat("the engine returned ", logits.size() / n_vocab, " logits rows and ",
                                              engine_->tops().size(), " summaries for ", n_rows, " and ", n_tops));
    }
    // Each row has its own slot's sampler (a slot appears once per step): rows are independent.
    outcome->sampled.resize(rows.size());
    sampling_pool_->ParallelFor(static_cast<int64_t>(rows.size()), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const size_t seq = rows[static_cast<size_t>(i)];
        const WorkerSequence& s = sequences[seq];
        sampling::SlotSampler& sampler = *samplers_[static_cast<size_t>(s.slot)];
        const auto [top, at] = source[static_cast<size_t>(i)];
        const cpu::Drawn* drawn = steps[seq].draw.has_value() ? &engine_->draws()[at] : nullptr;
        outcome->sampled[static_cast<size_t>(i)] = {
            s.slot, top ? sampler.SampleFromSummary(engine_->tops()[at], drawn, s.top_logprobs)
                        : sampler.Sample(std::span<const float>(logits.data() + at * n_vocab, n_vocab),
                                         s.top_logprobs)};
      }
    });
  }
  outcome->forward_us = static_cast<uint64_t>(absl::ToInt64Microseconds(absl::Now() - start));
  return absl::OkStatus();
}

StepOutcome StageWorker::Step(std::span<const WorkerSequence> sequences) {
  StepOutcome outcome;
  if (absl::Status s = CheckLoaded(); !s.ok()) {
    outcome.status = s;
    return outcome;
  }
  step_started_ns_ = absl::GetCurrentTimeNanos();
  Activations hidden_in;
  if (!engine_->is_first()) {
    auto received = ReceiveActivations();
    if (received.ok()) {
      hidden_in = std::move(received).value();
    } else {
      outcome.status = received.status();
      outcome.upstream_failed = transport::IsPeerError(received.status());
      if (!outcome.upstream_failed) DropUpstream();  // broken link
    }
  }
  Activations hidden_out;
  if (outcome.status.ok())
    outcome.status = RunStage(sequences, std::move(hidden_in), &hidden_out, &outcome);
  if (!is_last()) {
    absl::Status sent = SendDownstream(std::move(hidden_out), outcome.status);
    if (outcome.status.ok()) outcome.status = sent;
  }
  step_started_ns_ = 0;
  ++steps_;
  return outcome;
}

absl::Status StageWorker::SaveSnapshot(int slot, int64_t snapshot_id) {
  RETURN_IF_ERROR(CheckLoaded());
  Snapshot snap;
  ASSIGN_OR_RETURN(snap.state, engine_->Snapshot(slot));
  if (is_last()) snap.history = samplers_[static_cast<size_t>(slot)]->history();
  snapshots_[snapshot_id] = std::move(snap);
  return absl::OkStatus();
}

absl::Status StageWorker::RestoreSnapshot(int slot, int64_t snapshot_id) {
  RETURN_IF_ERROR(CheckLoaded());
  RETURN_IF_ERROR(engine_->CheckSlot(slot));
  auto it = snapshots_.find(snapshot_id);
  if (it == snapshots_.end())
    return absl::NotFoundError(absl::StrCat("no snapshot with id ", snapshot_id));
  RETURN_IF_ERROR(engine_->Restore(slot, it->second.state));
  if (is_last()) samplers_[static_cast<size_t>(slot)]->set_history(it->second.history);
  return absl::OkStatus();
}

absl::Status StageWorker::DropSnapshot(int64_t snapshot_id) {
  RETURN_IF_ERROR(CheckLoaded());
  if (snapshots_.erase(snapshot_id) == 0) {
    return absl::NotFoundError(absl::StrCat("no snapshot with id ", snapshot_id));
  }
  return absl::OkStatus();
}

WorkerHealth StageWorker::Health() const {
  WorkerHealth h;
  h.loaded = loaded_.load();
  h.slots_in_use = slots_in_use_.load();
  const int64_t started = step_started_ns_.load();
  if (started != 0)
    h.step_running_ms = std::max<int64_t>(0, (absl::GetCurrentTimeNanos() - started) / 1000000);
  h.steps = steps_.load();
  h.rss_bytes = ResidentBytes();
  return h;
}

}  // namespace moed::worker

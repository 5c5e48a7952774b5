// Continuous batching on one thread; see scheduler.h. Everything below Impl's "scheduler thread"
// marker is touched by that thread only, so none of it is locked: callers reach it through the
// TaskQueue (the only locking code, task_queue.cc).
//
// Choices worth knowing:
// - A stop token ends the request with OnFinish(kStop) and is not delivered as a token (as with
//   OpenAI, EOS is not part of the text), but it counts in completion_tokens (the model generated
//   it; llama-server and vLLM count it too). A stop token wins over max_tokens when both apply.
// - Sink events of an iteration are delivered after the iteration's state is published, so a
//   sink that sees OnFinish also sees Stats()/Idle() without that request.
// - A failed Step fails the requests of that step, whatever the error: a validation error would
//   otherwise repeat forever on the same batch.
#include "daemon/scheduler/scheduler.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "daemon/metrics/moed_metrics.h"
#include "daemon/scheduler/prefix_cache.h"
#include "daemon/scheduler/task_queue.h"
#include "kernels/base/log.h"
#include "kernels/base/status_macros.h"
#include "workers/sampling/slot_sampler.h"

namespace moed::daemon {
namespace {

double Seconds(SchedulerClock::duration d) { return std::chrono::duration<double>(d).count(); }

// A sink call waiting for the end of the iteration.
struct Event {
  enum class Kind { kToken, kFinish, kError };
  std::shared_ptr<RequestSink> sink;
  Kind kind = Kind::kToken;
  SampledToken token;
  FinishReason reason = FinishReason::kStop;
  Usage usage;
  absl::Status status;
};

}  // namespace

struct Scheduler::Impl {
  Impl(std::unique_ptr<StepExecutor> executor_in, const SchedulerOptions& options_in, metrics::MoedMetrics* metrics_in)
      : executor(std::move(executor_in)),
        options(options_in),
        metrics(metrics_in),
        info(executor != nullptr ? executor->info() : ExecutorInfo{}),
        queue(options_in.queue_capacity),
        prefix_cache(std::max(options_in.prefix_cache_entries, 0)) {}

  absl::Status ValidateOptions() const;
  absl::Status ValidateRequest(const GenerateRequest& request) const;

  // --- Scheduler thread -------------------------------------------------------------------
  struct Waiting {
    RequestId id;
    GenerateRequest request;
    std::shared_ptr<RequestSink> sink;
    SchedulerClock::time_point submitted;
  };
  struct Running {
    RequestId id;
    GenerateRequest request;
    std::shared_ptr<RequestSink> sink;
    SchedulerClock::time_point submitted;
    SchedulerClock::time_point last_token_at;
    int slot = -1;
    int64_t prefilled = 0;  // prompt tokens in the slot's state (restored ones included)
    int64_t cached = 0;     // prompt tokens restored from the prefix cache
    int64_t completion = 0;
    int32_t last_token = -1;
    bool decoding = false;
    bool finished = false;
    bool in_flight = false;  // in a started step: its slot stays open until the step finishes
  };
  // A step started on the executor and not yet finished.
  struct StepInFlight {
    std::vector<StepSequence> batch;
    std::vector<RequestId> owners;  // batch[i] belongs to owners[i]
  };

  void Loop();
  void Handle(SchedulerCommand& command);
  void Cancel(RequestId id);
  void Admit();
  void LookupPrefix(Running& r);
  // Starts steps while the executor takes more in flight and sequences are free, then finishes
  // the oldest. With one step in flight at a time this is plain continuous batching.
  void RunSteps();
  // Starts a step of up to an even share of the free sequences; false if there were none.
  bool StartStep();
  void FinishStep();
  Running* FindRunning(RequestId id);
  void SavePrefix(const Running& r);
  void OnSampled(Running& r, const SampledToken& token);
  void Finish(Running& r, FinishReason reason);
  void Fail(Running& r, const absl::Status& status);
  void RemoveFinished();
  void FailEverything(const absl::Status& status);
  void PublishAndDeliver();
  int FreeSlot() const;
  Usage UsageOf(const Running& r) const {
    return Usage{static_cast<int64_t>(r.request.prompt.size()), r.cached, r.completion};
  }

  std::unique_ptr<StepExecutor> executor;
  const SchedulerOptions options;
  metrics::MoedMetrics* const metrics;
  const ExecutorInfo info;
  TaskQueue queue;
  std::thread thread;
  bool started = false;  // the owner's thread (Start, destructor)

  std::deque<Waiting> waiting;
  std::vector<Running> running;  // in admission order: prefills are served first come, first served
  std::vector<bool> slot_used;
  PrefixCache prefix_cache;
  int64_t next_snapshot_id = 1;
  int left_waiting = 0;  // since the last publish
  uint64_t steps = 0, prefix_lookups = 0, prefix_hits = 0;
  std::vector<Event> outbox;
  std::deque<StepInFlight> in_flight;
  const int max_in_flight =
      executor != nullptr && options.pipeline ? std::max(1, executor->max_steps_in_flight()) : 1;
};

absl::Status Scheduler::Impl::ValidateOptions() const {
  if (executor == nullptr) return absl::InvalidArgumentError("the scheduler has no step executor");
  if (options.max_running < 1 || options.max_running > info.slot_capacity) {
    return absl::InvalidArgumentError(absl::StrCat("scheduler max_running = ", options.max_running,
                                                   " is outside [1, ", info.slot_capacity,
                                                   "] (the executor's slot capacity)"));
  }
  if (options.max_batch_tokens < options.max_running) {
    return absl::InvalidArgumentError(absl::StrCat("scheduler max_batch_tokens = ", options.max_batch_tokens,
                                                   " is below max_running = ", options.max_running,
                                                   ": every running sequence must fit one decode token a step"));
  }
  if (options.prefill_chunk < 1) {
    return absl::InvalidArgumentError(absl::StrCat("scheduler prefill_chunk = ", options.prefill_chunk, " must be at least 1"));
  }
  if (options.queue_capacity < 1) {
    return absl::InvalidArgumentError(absl::StrCat("scheduler queue_capacity = ", options.queue_capacity, " must be at least 1"));
  }
  if (options.prefix_cache_entries < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("scheduler prefix_cache_entries = ", options.prefix_cache_entries, " is negative (0 turns it off)"));
  }
  return absl::OkStatus();
}

absl::Status Scheduler::Impl::ValidateRequest(const GenerateRequest& request) const {
  if (request.prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  for (size_t i = 0; i < request.prompt.size(); ++i) {
    const int32_t t = request.prompt[i];
    if (t < 0 || t >= info.n_vocab) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token ", t, " at position ", i,
                                                     " is outside the vocabulary [0, ", info.n_vocab, ")"));
    }
  }
  if (request.max_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens = ", request.max_tokens, " must be at least 1"));
  }
  const auto prompt_len = static_cast<int64_t>(request.prompt.size());
  if (prompt_len > info.context_length || request.max_tokens > info.context_length - prompt_len) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt (", prompt_len, " tokens) plus max_tokens (",
                                                   request.max_tokens, ") exceeds the context length (",
                                                   info.context_length, " tokens)"));
  }
  RETURN_IF_ERROR(request.sampling.Validate());
  if (request.top_logprobs < 0 || request.top_logprobs > sampling::kMaxTopLogprobs) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_logprobs = ", request.top_logprobs, " is outside [0, ", sampling::kMaxTopLogprobs, "]"));
  }
  for (const int32_t t : request.stop_tokens) {
    if (t < 0 || t >= info.n_vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop token ", t, " is outside the vocabulary [0, ", info.n_vocab, ")"));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Scheduler thread.

void Scheduler::Impl::Loop() {
  for (;;) {
    const bool busy = !waiting.empty() || !running.empty();
    TakenCommands taken = queue.Take(/*wait=*/!busy);
    for (SchedulerCommand& command : taken.commands) Handle(command);
    if (taken.stopping) {
      while (!in_flight.empty()) FinishStep();
      FailEverything(absl::UnavailableError("the scheduler stopped"));
      PublishAndDeliver();
      return;
    }
    Admit();
    // Published before the step too, so that Stats() and the queue's capacity check see the
    // admitted requests as running while a long step runs.
    PublishAndDeliver();
    if (!running.empty()) RunSteps();
    PublishAndDeliver();
  }
}

void Scheduler::Impl::Handle(SchedulerCommand& command) {
  if (auto* submit = std::get_if<SubmitCommand>(&command)) {
    waiting.push_back(Waiting{submit->id, std::move(submit->request), std::move(submit->sink), submit->submitted});
  } else {
    Cancel(std::get<CancelCommand>(command).id);
  }
}

void Scheduler::Impl::Cancel(RequestId id) {
  for (auto it = waiting.begin(); it != waiting.end(); ++it) {
    if (it->id != id) continue;
    Event e;
    e.sink = std::move(it->sink);
    e.kind = Event::Kind::kFinish;
    e.reason = FinishReason::kCancelled;
    e.usage.prompt_tokens = static_cast<int64_t>(it->request.prompt.size());
    outbox.push_back(std::move(e));
    waiting.erase(it);
    ++left_waiting;
    return;
  }
  for (Running& r : running) {
    if (r.id != id || r.finished) continue;
    Finish(r, FinishReason::kCancelled);
    RemoveFinished();  // frees the slot now, before this iteration admits
    return;
  }
  // Unknown or already finished: nothing to do (the client may cancel after the end).
}

int Scheduler::Impl::FreeSlot() const {
  for (size_t i = 0; i < slot_used.size(); ++i) {
    if (!slot_used[i]) return static_cast<int>(i);
  }
  return -1;
}

void Scheduler::Impl::Admit() {
  while (!waiting.empty() && static_cast<int>(running.size()) < options.max_running) {
    const int slot = FreeSlot();
    if (slot < 0) return;
    Waiting w = std::move(waiting.front());
    waiting.pop_front();
    ++left_waiting;
    absl::Status s = executor->OpenSlot(slot, w.request.sampling);
    if (!s.ok()) {
      Event e;
      e.sink = std::move(w.sink);
      e.kind = Event::Kind::kError;
      e.status = s;
      outbox.push_back(std::move(e));
      continue;
    }
    slot_used[static_cast<size_t>(slot)] = true;
    Running r;
    r.id = w.id;
    r.request = std::move(w.request);
    r.sink = std::move(w.sink);
    r.submitted = w.submitted;
    r.slot = slot;
    LookupPrefix(r);
    running.push_back(std::move(r));
  }
}

void Scheduler::Impl::LookupPrefix(Running& r) {
  if (!r.request.use_prefix_cache || prefix_cache.capacity() == 0) return;
  ++prefix_lookups;
  if (metrics != nullptr) metrics->prefix_cache_lookups().Increment();
  const std::optional<PrefixCache::Match> match = prefix_cache.Lookup(r.request.prompt);
  if (!match) return;
  absl::Status s = executor->RestoreSnapshot(r.slot, match->snapshot_id);
  if (s.ok()) {
    r.prefilled = r.cached = match->length;
    ++prefix_hits;
    if (metrics != nullptr) metrics->prefix_cache_hits().Increment();
    return;
  }
  // The snapshot is unusable: forget it, and start the slot over from an empty state (a failed
  // restore may have written part of it).
  MOED_LOG(WARNING) << "prefix cache: restoring snapshot " << match->snapshot_id << " failed: " << s;
  prefix_cache.Erase(match->snapshot_id);
  (void)executor->DropSnapshot(match->snapshot_id);
  s = executor->CloseSlot(r.slot);
  if (s.ok()) s = executor->OpenSlot(r.slot, r.request.sampling);
  if (!s.ok()) Fail(r, s);
}

void Scheduler::Impl::RunSteps() {
  while (static_cast<int>(in_flight.size()) < max_in_flight && StartStep()) {
  }
  if (in_flight.empty()) {
    RemoveFinished();
    return;
  }
  FinishStep();
}

Scheduler::Impl::Running* Scheduler::Impl::FindRunning(RequestId id) {
  for (Running& r : running) {
    if (r.id == id) return &r;
  }
  return nullptr;
}

bool Scheduler::Impl::StartStep() {
  // Decodes first, then prefill chunks in admission order, within the token budget. With steps
  // in flight, a step takes an even share of the free sequences, so that the steps a pipeline
  // works on at once are of a size.
  std::vector<Running*> free_decodes, free_prefills;
  for (Running& r : running) {
    if (r.finished || r.in_flight) continue;
    (r.decoding ? free_decodes : free_prefills).push_back(&r);
  }
  const size_t n_free = free_decodes.size() + free_prefills.size();
  if (n_free == 0) return false;
  const size_t slots_left = static_cast<size_t>(max_in_flight) - in_flight.size();
  const size_t share = (n_free + slots_left - 1) / slots_left;
  StepInFlight step;
  int64_t budget = options.max_batch_tokens;
  for (Running* r : free_decodes) {
    if (step.batch.size() == share) break;
    step.batch.push_back(StepSequence{r->slot, {r->last_token}, true, r->request.top_logprobs});
    step.owners.push_back(r->id);
    --budget;
  }
  for (Running* r : free_prefills) {
    if (budget <= 0 || step.batch.size() == share) break;
    const auto remaining = static_cast<int64_t>(r->request.prompt.size()) - r->prefilled;
    const int64_t chunk = std::min({remaining, options.prefill_chunk, budget});
    const auto begin = r->request.prompt.begin() + r->prefilled;
    step.batch.push_back(StepSequence{r->slot, std::vector<int32_t>(begin, begin + chunk), chunk == remaining,
                                      r->request.top_logprobs});
    step.owners.push_back(r->id);
    budget -= chunk;
  }
  if (step.batch.empty()) return false;
  ++steps;
  if (absl::Status s = executor->StartStep(step.batch); !s.ok()) {
    MOED_LOG(WARNING) << "scheduler: a step of " << step.batch.size() << " sequences failed: " << s;
    for (RequestId id : step.owners) Fail(*FindRunning(id), s);
    return false;
  }
  for (RequestId id : step.owners) FindRunning(id)->in_flight = true;
  in_flight.push_back(std::move(step));
  return true;
}

void Scheduler::Impl::FinishStep() {
  StepInFlight step = std::move(in_flight.front());
  in_flight.pop_front();
  absl::StatusOr<std::vector<SampledToken>> result = executor->FinishStep();
  const auto sampled = static_cast<size_t>(
      std::count_if(step.batch.begin(), step.batch.end(), [](const StepSequence& s) { return s.sample; }));
  if (result.ok() && result->size() != sampled) {
    result = absl::InternalError(absl::StrCat("the executor returned ", result->size(), " tokens for ", sampled,
                                              " sampled sequences"));
  }
  if (!result.ok()) {
    MOED_LOG(WARNING) << "scheduler: a step of " << step.batch.size() << " sequences failed: " << result.status();
  }
  size_t next = 0;
  for (size_t i = 0; i < step.batch.size(); ++i) {
    Running& r = *FindRunning(step.owners[i]);  // in flight: never removed before this
    r.in_flight = false;
    if (!result.ok()) {
      if (!r.finished) Fail(r, result.status());
      continue;
    }
    const SampledToken* token = step.batch[i].sample ? &(*result)[next++] : nullptr;
    if (r.finished) continue;  // cancelled while in flight
    if (!r.decoding) {
      r.prefilled += static_cast<int64_t>(step.batch[i].tokens.size());
      if (r.prefilled == static_cast<int64_t>(r.request.prompt.size())) {
        r.decoding = true;
        if (metrics != nullptr) metrics->prompt_tokens().Increment(static_cast<double>(r.request.prompt.size()));
        SavePrefix(r);
      }
    }
    if (token != nullptr) OnSampled(r, *token);
  }
  RemoveFinished();
}

// Keeps the end-of-prompt state, before the first decode changes it.
void Scheduler::Impl::SavePrefix(const Running& r) {
  if (!r.request.use_prefix_cache || prefix_cache.capacity() == 0) return;
  if (prefix_cache.Contains(r.request.prompt)) return;
  const int64_t id = next_snapshot_id++;
  if (absl::Status s = executor->SaveSnapshot(r.slot, id); !s.ok()) {
    MOED_LOG(WARNING) << "prefix cache: saving the prompt state of slot " << r.slot << " failed: " << s;
    return;
  }
  for (const int64_t evicted : prefix_cache.Insert(r.request.prompt, id)) {
    if (absl::Status s = executor->DropSnapshot(evicted); !s.ok()) {
      MOED_LOG(WARNING) << "prefix cache: dropping snapshot " << evicted << " failed: " << s;
    }
  }
}

void Scheduler::Impl::OnSampled(Running& r, const SampledToken& token) {
  const SchedulerClock::time_point now = SchedulerClock::now();
  if (metrics != nullptr) {
    metrics->generation_tokens().Increment();
    if (r.completion == 0) {
      metrics->time_to_first_token().Observe(Seconds(now - r.submitted));
    } else {
      metrics->inter_token_latency().Observe(Seconds(now - r.last_token_at));
    }
  }
  r.last_token_at = now;
  ++r.completion;
  const auto& stops = r.request.stop_tokens;
  if (std::find(stops.begin(), stops.end(), token.token) != stops.end()) {
    Finish(r, FinishReason::kStop);
    return;
  }
  Event e;
  e.sink = r.sink;
  e.kind = Event::Kind::kToken;
  e.token = token;
  outbox.push_back(std::move(e));
  if (r.completion >= r.request.max_tokens) {
    Finish(r, FinishReason::kLength);
  } else {
    r.last_token = token.token;
  }
}

void Scheduler::Impl::Finish(Running& r, FinishReason reason) {
  if (metrics != nullptr && reason != FinishReason::kCancelled) {
    metrics->e2e_request_latency().Observe(Seconds(SchedulerClock::now() - r.submitted));
  }
  Event e;
  e.sink = r.sink;
  e.kind = Event::Kind::kFinish;
  e.reason = reason;
  e.usage = UsageOf(r);
  outbox.push_back(std::move(e));
  r.finished = true;
}

void Scheduler::Impl::Fail(Running& r, const absl::Status& status) {
  Event e;
  e.sink = r.sink;
  e.kind = Event::Kind::kError;
  e.status = status;
  outbox.push_back(std::move(e));
  r.finished = true;
}

// Closes the slots of finished requests and forgets them.
void Scheduler::Impl::RemoveFinished() {
  for (const Running& r : running) {
    if (!r.finished || r.in_flight) continue;
    if (absl::Status s = executor->CloseSlot(r.slot); !s.ok()) {
      // The executor lost the slot (a worker died); it is the executor's to rebuild, and the
      // scheduler's view is that the slot is free again.
      MOED_LOG(WARNING) << "scheduler: closing slot " << r.slot << " failed: " << s;
    }
    slot_used[static_cast<size_t>(r.slot)] = false;
  }
  std::erase_if(running, [](const Running& r) { return r.finished && !r.in_flight; });
}

void Scheduler::Impl::FailEverything(const absl::Status& status) {
  for (Waiting& w : waiting) {
    Event e;
    e.sink = std::move(w.sink);
    e.kind = Event::Kind::kError;
    e.status = status;
    outbox.push_back(std::move(e));
    ++left_waiting;
  }
  waiting.clear();
  for (Running& r : running) {
    if (!r.finished) Fail(r, status);
  }
  RemoveFinished();
}

void Scheduler::Impl::PublishAndDeliver() {
  SchedulerStats stats;
  stats.running = static_cast<int>(running.size());
  stats.slot_capacity = info.slot_capacity;
  stats.steps = steps;
  stats.prefix_lookups = prefix_lookups;
  stats.prefix_hits = prefix_hits;
  const int waiting_now = queue.Publish(left_waiting, stats);
  left_waiting = 0;
  if (metrics != nullptr) {
    metrics->queue_length().Set(waiting_now);
    metrics->running_sequences().Set(static_cast<double>(running.size()));
    metrics->slots_used().Set(static_cast<double>(std::count(slot_used.begin(), slot_used.end(), true)));
  }
  std::vector<Event> events;
  events.swap(outbox);
  for (Event& e : events) {
    switch (e.kind) {
      case Event::Kind::kToken:
        e.sink->OnToken(e.token);
        break;
      case Event::Kind::kFinish:
        e.sink->OnFinish(e.reason, e.usage);
        break;
      case Event::Kind::kError:
        e.sink->OnError(e.status);
        break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Caller threads.

Scheduler::Scheduler(std::unique_ptr<StepExecutor> executor, const SchedulerOptions& options,
                     metrics::MoedMetrics* metrics)
    : impl_(std::make_unique<Impl>(std::move(executor), options, metrics)) {}

Scheduler::~Scheduler() {
  impl_->queue.Stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

absl::Status Scheduler::Start() {
  if (impl_->started) return absl::FailedPreconditionError("the scheduler is already started");
  RETURN_IF_ERROR(impl_->ValidateOptions());
  impl_->slot_used.assign(static_cast<size_t>(impl_->info.slot_capacity), false);
  if (impl_->metrics != nullptr) {
    impl_->metrics->queue_capacity().Set(impl_->options.queue_capacity);
    impl_->metrics->slots_capacity().Set(impl_->info.slot_capacity);
  }
  SchedulerStats stats;
  stats.slot_capacity = impl_->info.slot_capacity;
  impl_->queue.Publish(0, stats);
  impl_->started = true;
  impl_->queue.Open();
  impl_->thread = std::thread([impl = impl_.get()] { impl->Loop(); });
  return absl::OkStatus();
}

absl::StatusOr<RequestId> Scheduler::Submit(GenerateRequest request, std::shared_ptr<RequestSink> sink) {
  if (sink == nullptr) return absl::InvalidArgumentError("the request has no sink");
  RETURN_IF_ERROR(impl_->ValidateRequest(request));
  return impl_->queue.Submit(std::move(request), std::move(sink));
}

void Scheduler::Cancel(RequestId id) { impl_->queue.Cancel(id); }

void Scheduler::Drain() { impl_->queue.Drain(); }

bool Scheduler::Idle() const { return impl_->queue.Idle(); }

SchedulerStats Scheduler::Stats() const { return impl_->queue.Stats(); }

}  // namespace moed::daemon

// The scheduler over the real in-process executor on the tiny-b fixture. A Probe executor wraps
// the real one to record what the scheduler asks of it (steps, slots, snapshots), to fail a step,
// or to hold a step while the test acts; it never replaces the model.
#include "daemon/scheduler/scheduler.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "daemon/metrics/moed_metrics.h"
#include "daemon/scheduler/in_process_executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/sampling.h"
#include "workers/engine/loaded_model.h"
#include "workers/engine/pipeline.h"

namespace moed::daemon {
namespace {

using ::testing::HasSubstr;

constexpr int kSlots = 8;

engine::EngineOptions Options() {
  engine::EngineOptions o;
  o.threads = 2;
  o.cache.max_slots = kSlots;
  o.cache.kv_block_size = 16;
  o.cache.kv_blocks = kSlots * 32;  // 512 tokens per slot
  return o;
}

std::vector<int32_t> Ids(int n, int salt) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back((i * 37 + salt * 101 + 5) % 1024);
  return ids;
}

cpu::SamplingParams Greedy() {
  cpu::SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

cpu::SamplingParams Seeded(uint64_t seed) {
  cpu::SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = 50;
  p.top_p = 0.95f;
  p.repetition_penalty = 1.2f;
  p.seed = seed;
  return p;
}

GenerateRequest Req(std::vector<int32_t> prompt, int64_t max_tokens, cpu::SamplingParams sampling = Greedy()) {
  GenerateRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling = sampling;
  return r;
}

// Records a request's events; `done` fires on the terminal one.
class Collector : public RequestSink {
 public:
  void OnToken(const SampledToken& t) override {
    if (terminal_ > 0) ++after_terminal_;
    tokens.push_back(t.token);
    if (on_token) on_token(t);
  }
  void OnFinish(FinishReason r, const Usage& u) override {
    reason = r;
    usage = u;
    Terminal();
  }
  void OnError(const absl::Status& s) override {
    error = s;
    Terminal();
  }
  // Checked once `done` fired.
  int terminal_events() const { return terminal_ + after_terminal_; }

  std::vector<int32_t> tokens;
  std::optional<FinishReason> reason;
  Usage usage;
  absl::Status error;
  absl::Notification done;
  std::function<void(const SampledToken&)> on_token;

 private:
  void Terminal() {
    if (++terminal_ == 1) done.Notify();
  }
  int terminal_ = 0;
  int after_terminal_ = 0;
};

// What the Probe saw. A stream is one OpenSlot..CloseSlot of a slot: the chunks it was fed.
struct Stream {
  int slot = -1;
  bool restored = false;
  std::vector<StepSequence> chunks;
};

struct ProbeLog {
  std::vector<std::vector<StepSequence>> steps;  // every Step call, failed ones included
  std::vector<Stream> streams;
  std::vector<int> failed_slots;
  int saves = 0, restores = 0, drops = 0;
  // Set before Start.
  int fail_on_step = 0;  // 1-based; 0: never
  int hook_on_step = 0;
  std::function<void()> hook;  // runs on the scheduler thread at the start of that step

  Stream* Open(int slot) {
    for (auto it = streams.rbegin(); it != streams.rend(); ++it) {
      if (it->slot == slot) return &*it;
    }
    return nullptr;
  }
};

class Probe : public StepExecutor {
 public:
  Probe(std::unique_ptr<StepExecutor> inner, std::shared_ptr<ProbeLog> log) : inner_(std::move(inner)), log_(log) {}

  ExecutorInfo info() const override { return inner_->info(); }
  absl::Status OpenSlot(int slot, const cpu::SamplingParams& params) override {
    log_->streams.push_back(Stream{slot, false, {}});
    return inner_->OpenSlot(slot, params);
  }
  absl::Status CloseSlot(int slot) override { return inner_->CloseSlot(slot); }
  absl::StatusOr<std::vector<SampledToken>> Step(std::span<const StepSequence> sequences) override {
    log_->steps.emplace_back(sequences.begin(), sequences.end());
    const int n = static_cast<int>(log_->steps.size());
    if (n == log_->hook_on_step && log_->hook) log_->hook();
    if (n == log_->fail_on_step) {
      for (const StepSequence& s : sequences) log_->failed_slots.push_back(s.slot);
      return absl::UnavailableError("worker 1 died");
    }
    for (const StepSequence& s : sequences) log_->Open(s.slot)->chunks.push_back(s);
    return inner_->Step(sequences);
  }
  absl::Status SaveSnapshot(int slot, int64_t id) override {
    ++log_->saves;
    return inner_->SaveSnapshot(slot, id);
  }
  absl::Status RestoreSnapshot(int slot, int64_t id) override {
    ++log_->restores;
    log_->Open(slot)->restored = true;
    return inner_->RestoreSnapshot(slot, id);
  }
  absl::Status DropSnapshot(int64_t id) override {
    ++log_->drops;
    return inner_->DropSnapshot(id);
  }

 private:
  std::unique_ptr<StepExecutor> inner_;
  std::shared_ptr<ProbeLog> log_;
};

// Takes two steps in flight, as a two-stage worker pool does, and checks the scheduler's side of
// that contract: no slot in two steps in flight, no slot closed while its step is in flight.
// The steps themselves run on the inner executor when they are finished.
class Pipelined : public StepExecutor {
 public:
  struct Seen {
    std::atomic<int> most_in_flight{0};
    std::atomic<int> violations{0};
  };
  Pipelined(std::unique_ptr<StepExecutor> inner, std::shared_ptr<Seen> seen) : inner_(std::move(inner)), seen_(seen) {}

  ExecutorInfo info() const override { return inner_->info(); }
  int max_steps_in_flight() const override { return 2; }
  absl::Status OpenSlot(int slot, const cpu::SamplingParams& params) override {
    return inner_->OpenSlot(slot, params);
  }
  absl::Status CloseSlot(int slot) override {
    if (InFlight(slot)) ++seen_->violations;
    return inner_->CloseSlot(slot);
  }
  absl::Status StartStep(std::span<const StepSequence> sequences) override {
    for (const StepSequence& s : sequences) {
      if (InFlight(s.slot)) ++seen_->violations;
    }
    started_.emplace_back(sequences.begin(), sequences.end());
    seen_->most_in_flight = std::max(seen_->most_in_flight.load(), static_cast<int>(started_.size()));
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<SampledToken>> FinishStep() override {
    const std::vector<StepSequence> step = std::move(started_.front());
    started_.pop_front();
    return inner_->Step(step);
  }
  absl::StatusOr<std::vector<SampledToken>> Step(std::span<const StepSequence> sequences) override {
    return inner_->Step(sequences);
  }
  absl::Status SaveSnapshot(int slot, int64_t id) override { return inner_->SaveSnapshot(slot, id); }
  absl::Status RestoreSnapshot(int slot, int64_t id) override { return inner_->RestoreSnapshot(slot, id); }
  absl::Status DropSnapshot(int64_t id) override { return inner_->DropSnapshot(id); }

 private:
  bool InFlight(int slot) const {
    for (const auto& step : started_) {
      for (const StepSequence& s : step) {
        if (s.slot == slot) return true;
      }
    }
    return false;
  }
  std::unique_ptr<StepExecutor> inner_;
  std::shared_ptr<Seen> seen_;
  std::deque<std::vector<StepSequence>> started_;
};

class SchedulerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = engine::LoadModel(std::string(MOED_TEST_DATA_DIR) + "/qwen35moe-tiny/tiny-b/tiny-b-f32.gguf");
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(m).value().release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }

  // A started scheduler over a fresh 2-stage in-process executor, wrapped by a Probe when `log`,
  // and taking two steps in flight when `pipelined`.
  std::unique_ptr<Scheduler> Make(const SchedulerOptions& options, std::shared_ptr<ProbeLog> log = nullptr,
                                  metrics::MoedMetrics* metrics = nullptr,
                                  std::shared_ptr<Pipelined::Seen> pipelined = nullptr) {
    auto exec = InProcessExecutor::Create(*model_, 2, Options());
    EXPECT_TRUE(exec.ok()) << exec.status();
    if (!exec.ok()) return nullptr;
    std::unique_ptr<StepExecutor> e = std::move(exec).value();
    if (log != nullptr) e = std::make_unique<Probe>(std::move(e), log);
    if (pipelined != nullptr) e = std::make_unique<Pipelined>(std::move(e), pipelined);
    auto s = std::make_unique<Scheduler>(std::move(e), options, metrics);
    absl::Status started = s->Start();
    EXPECT_TRUE(started.ok()) << started;
    return s;
  }

  static std::shared_ptr<Collector> Submit(Scheduler& s, GenerateRequest r, RequestId* id = nullptr) {
    auto c = std::make_shared<Collector>();
    auto submitted = s.Submit(std::move(r), c);
    EXPECT_TRUE(submitted.ok()) << submitted.status();
    if (!submitted.ok()) c->OnError(submitted.status());
    if (id != nullptr && submitted.ok()) *id = *submitted;
    return c;
  }

  // Runs `r` alone on `s` and waits for its end.
  static std::shared_ptr<Collector> RunAlone(Scheduler& s, GenerateRequest r) {
    std::shared_ptr<Collector> c = Submit(s, std::move(r));
    c->done.WaitForNotification();
    return c;
  }

  // Greedy decoding done directly on an engine::Pipeline.
  std::vector<int32_t> PipelineGreedy(const std::vector<int32_t>& prompt, int n) {
    auto pipeline = engine::Pipeline::Create(*model_, 1, Options());
    EXPECT_TRUE(pipeline.ok());
    EXPECT_TRUE((*pipeline)->AcquireSlot(0).ok());
    std::vector<int32_t> out;
    std::vector<engine::SequenceStep> step = {{0, prompt, engine::LogitsWanted::kLast}};
    for (int i = 0; i < n; ++i) {
      std::vector<float> logits;
      EXPECT_TRUE((*pipeline)->Forward(step, &logits).ok());
      out.push_back(cpu::Argmax(logits));
      step[0].tokens = {out.back()};
    }
    return out;
  }

  static engine::LoadedModel* model_;
};

engine::LoadedModel* SchedulerTest::model_ = nullptr;

TEST_F(SchedulerTest, GreedyTokensEqualThePipelinesGreedyDecoding) {
  auto metrics = metrics::MoedMetrics::Create();
  ASSERT_TRUE(metrics.ok());
  SchedulerOptions o;
  o.prefill_chunk = 7;  // the prompt goes in three chunks
  auto s = Make(o, nullptr, metrics->get());
  const std::vector<int32_t> prompt = Ids(19, 4);
  auto c = RunAlone(*s, Req(prompt, 20));
  ASSERT_TRUE(c->error.ok()) << c->error;
  EXPECT_EQ(c->tokens, PipelineGreedy(prompt, 20));
  EXPECT_EQ(c->reason, FinishReason::kLength);
  EXPECT_EQ(c->usage.prompt_tokens, 19);
  EXPECT_EQ(c->usage.completion_tokens, 20);
  EXPECT_EQ(c->usage.cached_prompt_tokens, 0);
  EXPECT_EQ(c->terminal_events(), 1);
  EXPECT_TRUE(s->Idle());
  EXPECT_EQ((*metrics)->generation_tokens().Value(), 20);
  EXPECT_EQ((*metrics)->prompt_tokens().Value(), 19);
  EXPECT_EQ((*metrics)->time_to_first_token().Read().count, 1u);
  EXPECT_EQ((*metrics)->inter_token_latency().Read().count, 19u);
  EXPECT_EQ((*metrics)->e2e_request_latency().Read().count, 1u);
  EXPECT_EQ((*metrics)->slots_capacity().Value(), kSlots);
  EXPECT_EQ((*metrics)->running_sequences().Value(), 0);
}

TEST_F(SchedulerTest, StopTokenEndsTheRequestWithoutBeingDelivered) {
  const std::vector<int32_t> prompt = Ids(20, 6);
  const std::vector<int32_t> greedy = PipelineGreedy(prompt, 16);
  size_t k = 3;  // a token whose first occurrence is at k
  while (k < greedy.size() && std::find(greedy.begin(), greedy.begin() + k, greedy[k]) != greedy.begin() + k) ++k;
  ASSERT_LT(k, greedy.size());
  auto s = Make({});
  GenerateRequest r = Req(prompt, 16);
  r.stop_tokens = {1023, greedy[k]};
  auto c = RunAlone(*s, r);
  EXPECT_EQ(c->reason, FinishReason::kStop);
  EXPECT_EQ(c->tokens, std::vector<int32_t>(greedy.begin(), greedy.begin() + k));
  EXPECT_EQ(c->usage.completion_tokens, static_cast<int64_t>(k) + 1);  // the stop token counts
}

TEST_F(SchedulerTest, ConcurrentRequestsGetTheirCountsAndTheirSoloTokens) {
  std::vector<GenerateRequest> requests;
  for (int i = 0; i < 16; ++i) {
    const int len = 1 + (i * 29) % 70;
    const int64_t max_tokens = 1 + (i * 7) % 24;
    requests.push_back(Req(Ids(len, i), max_tokens, i % 2 == 0 ? Greedy() : Seeded(1000 + i)));
    requests.back().top_logprobs = i % 3;
  }
  SchedulerOptions solo_options;
  solo_options.prefix_cache_entries = 0;
  auto solo = Make(solo_options);
  std::vector<std::vector<int32_t>> want;
  for (const GenerateRequest& r : requests) want.push_back(RunAlone(*solo, r)->tokens);

  SchedulerOptions o;
  o.max_running = kSlots;
  o.max_batch_tokens = 64;
  o.prefill_chunk = 24;
  auto s = Make(o);
  std::vector<std::shared_ptr<Collector>> got;
  for (const GenerateRequest& r : requests) got.push_back(Submit(*s, r));
  for (size_t i = 0; i < got.size(); ++i) {
    got[i]->done.WaitForNotification();
    ASSERT_TRUE(got[i]->error.ok()) << got[i]->error;
    EXPECT_EQ(got[i]->reason, FinishReason::kLength) << i;
    EXPECT_EQ(static_cast<int64_t>(got[i]->tokens.size()), requests[i].max_tokens) << i;
    EXPECT_EQ(got[i]->usage.completion_tokens, requests[i].max_tokens) << i;
    EXPECT_EQ(got[i]->tokens, want[i]) << "request " << i;
  }
  EXPECT_TRUE(s->Idle());
  EXPECT_EQ(s->Stats().running, 0);
  EXPECT_EQ(s->Stats().queue_length, 0);
}

TEST_F(SchedulerTest, StepsRespectTheTokenBudgetAndThePrefillChunk) {
  auto log = std::make_shared<ProbeLog>();
  SchedulerOptions o;
  o.max_running = 4;
  o.max_batch_tokens = 24;
  o.prefill_chunk = 10;
  o.prefix_cache_entries = 0;
  auto s = Make(o, log);
  const std::vector<int> lengths = {37, 5, 23, 50, 1, 12};
  std::vector<std::shared_ptr<Collector>> got;
  for (size_t i = 0; i < lengths.size(); ++i) got.push_back(Submit(*s, Req(Ids(lengths[i], i), 6)));
  for (auto& c : got) c->done.WaitForNotification();
  s.reset();  // joins the scheduler thread: the log is ours now

  bool full_chunk = false;
  for (const auto& step : log->steps) {
    int64_t total = 0;
    std::vector<int> slots;
    for (const StepSequence& seq : step) {
      EXPECT_LE(static_cast<int64_t>(seq.tokens.size()), o.prefill_chunk);
      full_chunk |= static_cast<int64_t>(seq.tokens.size()) == o.prefill_chunk;
      total += static_cast<int64_t>(seq.tokens.size());
      slots.push_back(seq.slot);
    }
    EXPECT_LE(total, o.max_batch_tokens);
    EXPECT_LE(static_cast<int>(step.size()), o.max_running);
    std::sort(slots.begin(), slots.end());
    EXPECT_EQ(std::adjacent_find(slots.begin(), slots.end()), slots.end()) << "a slot twice in one step";
  }
  EXPECT_TRUE(full_chunk);
  // Each request's stream: its prompt in chunks, sampling only after the last one, then one
  // decode token per step feeding back what was sampled.
  ASSERT_EQ(log->streams.size(), lengths.size());
  for (size_t i = 0; i < lengths.size(); ++i) {
    const Stream& st = log->streams[i];
    std::vector<int32_t> fed;
    size_t c = 0;
    for (; fed.size() < static_cast<size_t>(lengths[i]) && c < st.chunks.size(); ++c) {
      fed.insert(fed.end(), st.chunks[c].tokens.begin(), st.chunks[c].tokens.end());
      EXPECT_EQ(st.chunks[c].sample, fed.size() == static_cast<size_t>(lengths[i])) << "request " << i;
    }
    EXPECT_EQ(fed, Ids(lengths[i], i)) << "request " << i;
    ASSERT_EQ(st.chunks.size() - c, 5u) << "request " << i;  // 6 tokens: 5 fed back
    for (size_t d = 0; d < 5; ++d) {
      EXPECT_EQ(st.chunks[c + d].tokens, std::vector<int32_t>{got[i]->tokens[d]});
      EXPECT_TRUE(st.chunks[c + d].sample);
    }
  }
}

TEST_F(SchedulerTest, SameSeedSameTokensWhateverIsBatchedAlongside) {
  const GenerateRequest target = Req(Ids(33, 9), 24, Seeded(77));
  auto s = Make({});
  const std::vector<int32_t> alone = RunAlone(*s, target)->tokens;
  ASSERT_EQ(alone.size(), 24u);
  // Alongside seven others (two of them the same request, one with another seed), twice.
  for (int round = 0; round < 2; ++round) {
    std::vector<std::shared_ptr<Collector>> got;
    for (int i = 0; i < 8; ++i) {
      if (i == 2 || i == 5 || i == 7) {
        got.push_back(Submit(*s, target));
      } else if (i == 3) {
        got.push_back(Submit(*s, Req(target.prompt, 24, Seeded(78))));
      } else {
        got.push_back(Submit(*s, Req(Ids(5 + i * 11 + round, 20 + i), 10 + i, Greedy())));
      }
    }
    for (auto& c : got) c->done.WaitForNotification();
    EXPECT_EQ(got[2]->tokens, alone);
    EXPECT_EQ(got[5]->tokens, alone);
    EXPECT_EQ(got[7]->tokens, alone);
    EXPECT_NE(got[3]->tokens, alone);  // the seed matters
  }
}

TEST_F(SchedulerTest, PipelinedStepsKeepSlotsApartAndDecodeAsAlone) {
  auto seen = std::make_shared<Pipelined::Seen>();
  SchedulerOptions o;
  o.prefill_chunk = 5;
  auto s = Make(o, nullptr, nullptr, seen);
  std::vector<std::shared_ptr<Collector>> runs;
  for (int i = 0; i < 6; ++i) runs.push_back(Submit(*s, Req(Ids(6 + i, i), 10)));
  // One more, cancelled after its second token, while steps are in flight.
  absl::Notification id_known;
  std::atomic<RequestId> cancel_id{0};
  auto cancelled = std::make_shared<Collector>();
  Scheduler* sched = s.get();
  cancelled->on_token = [&](const SampledToken&) {
    if (cancelled->tokens.size() != 2) return;
    id_known.WaitForNotification();
    sched->Cancel(cancel_id.load());
  };
  auto submitted = s->Submit(Req(Ids(9, 7), 50), cancelled);
  ASSERT_TRUE(submitted.ok());
  cancel_id = *submitted;
  id_known.Notify();
  for (int i = 0; i < 6; ++i) {
    runs[i]->done.WaitForNotification();
    EXPECT_EQ(runs[i]->reason, FinishReason::kLength);
    EXPECT_EQ(runs[i]->tokens, PipelineGreedy(Ids(6 + i, i), 10)) << "request " << i;
  }
  cancelled->done.WaitForNotification();
  EXPECT_EQ(cancelled->reason, FinishReason::kCancelled);
  s.reset();
  EXPECT_EQ(seen->most_in_flight.load(), 2);
  EXPECT_EQ(seen->violations.load(), 0);
}

TEST_F(SchedulerTest, CancellingFreesTheSlotForAQueuedRequest) {
  auto log = std::make_shared<ProbeLog>();
  SchedulerOptions o;
  o.max_running = 1;
  auto s = Make(o, log);
  absl::Notification id_known;
  std::atomic<RequestId> a_id{0};
  auto a = std::make_shared<Collector>();
  Scheduler* sched = s.get();
  a->on_token = [&](const SampledToken&) {
    id_known.WaitForNotification();
    sched->Cancel(a_id.load());  // the client goes away after its first token
  };
  auto submitted = s->Submit(Req(Ids(10, 1), 400), a);
  ASSERT_TRUE(submitted.ok());
  a_id = *submitted;
  id_known.Notify();
  auto b = Submit(*s, Req(Ids(12, 2), 5));
  a->done.WaitForNotification();
  b->done.WaitForNotification();
  EXPECT_EQ(a->reason, FinishReason::kCancelled);
  EXPECT_EQ(a->tokens.size(), 1u);
  EXPECT_EQ(a->usage.completion_tokens, 1);
  EXPECT_EQ(b->reason, FinishReason::kLength);
  EXPECT_EQ(b->tokens.size(), 5u);
  s->Cancel(*submitted);  // after the end: nothing happens
  s->Cancel(12345);       // unknown: nothing happens
  s.reset();
  ASSERT_EQ(log->streams.size(), 2u);
  EXPECT_EQ(log->streams[1].slot, log->streams[0].slot);  // B got A's slot
  EXPECT_EQ(a->terminal_events(), 1);
}

TEST_F(SchedulerTest, CancellingAQueuedRequestFinishesItWithoutRunningIt) {
  auto log = std::make_shared<ProbeLog>();
  absl::Notification reached, release;
  log->hook_on_step = 1;
  log->hook = [&] {
    reached.Notify();
    release.WaitForNotification();
  };
  SchedulerOptions o;
  o.max_running = 1;
  auto s = Make(o, log);
  auto a = Submit(*s, Req(Ids(8, 1), 3));
  RequestId b_id = 0;
  auto b = Submit(*s, Req(Ids(9, 2), 3), &b_id);
  reached.WaitForNotification();
  s->Cancel(b_id);
  release.Notify();
  a->done.WaitForNotification();
  b->done.WaitForNotification();
  EXPECT_EQ(a->reason, FinishReason::kLength);
  EXPECT_EQ(b->reason, FinishReason::kCancelled);
  EXPECT_TRUE(b->tokens.empty());
  EXPECT_EQ(b->usage.prompt_tokens, 9);
  EXPECT_EQ(b->usage.completion_tokens, 0);
  s.reset();
  EXPECT_EQ(log->streams.size(), 1u);  // B never got a slot
}

TEST_F(SchedulerTest, AFullQueueIsResourceExhausted) {
  auto log = std::make_shared<ProbeLog>();
  absl::Notification reached, release;
  log->hook_on_step = 1;
  log->hook = [&] {
    reached.Notify();
    release.WaitForNotification();
  };
  SchedulerOptions o;
  o.max_running = 1;
  o.queue_capacity = 2;
  auto s = Make(o, log);
  auto a = Submit(*s, Req(Ids(8, 1), 3));
  reached.WaitForNotification();  // A is running: the queue is empty
  auto b = Submit(*s, Req(Ids(8, 2), 3));
  auto c = Submit(*s, Req(Ids(8, 3), 3));
  EXPECT_EQ(s->Stats().queue_length, 2);
  EXPECT_EQ(s->Stats().running, 1);
  auto full = s->Submit(Req(Ids(8, 4), 3), std::make_shared<Collector>());
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), HasSubstr("queue is full"));
  release.Notify();
  for (auto* x : {&a, &b, &c}) {
    (*x)->done.WaitForNotification();
    EXPECT_EQ((*x)->reason, FinishReason::kLength);
  }
  auto d = RunAlone(*s, Req(Ids(8, 4), 3));  // room again
  EXPECT_EQ(d->reason, FinishReason::kLength);
}

TEST_F(SchedulerTest, InvalidRequestsAreRejectedNamingTheProblem) {
  auto s = Make({});
  auto sink = std::make_shared<Collector>();
  auto expect = [&](GenerateRequest r, const std::string& message) {
    auto id = s->Submit(std::move(r), sink);
    EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(id.status().message(), HasSubstr(message));
  };
  expect(Req({}, 4), "prompt is empty");
  expect(Req({1, 2, 1024}, 4), "prompt token 1024 at position 2 is outside the vocabulary");
  expect(Req({-1}, 4), "prompt token -1 at position 0");
  expect(Req({1}, 0), "max_tokens = 0 must be at least 1");
  expect(Req(Ids(500, 1), 13), "exceeds the context length (512 tokens)");
  expect(Req({1}, int64_t{1} << 62), "exceeds the context length");
  cpu::SamplingParams bad;
  bad.top_p = 1.5f;
  expect(Req({1}, 4, bad), "top_p");
  GenerateRequest logprobs = Req({1}, 4);
  logprobs.top_logprobs = 21;
  expect(logprobs, "top_logprobs = 21");
  GenerateRequest stop = Req({1}, 4);
  stop.stop_tokens = {5000};
  expect(stop, "stop token 5000");
  EXPECT_THAT(s->Submit(Req({1}, 4), nullptr).status().message(), HasSubstr("no sink"));
  EXPECT_FALSE(sink->done.HasBeenNotified());
  EXPECT_TRUE(s->Idle());
  EXPECT_EQ(s->Start().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SchedulerTest, OptionsTheExecutorCannotServeAreRejected) {
  auto start = [&](SchedulerOptions o) {
    auto exec = InProcessExecutor::Create(*model_, 1, Options());
    EXPECT_TRUE(exec.ok());
    Scheduler s(std::move(exec).value(), o, nullptr);
    return s.Start();
  };
  SchedulerOptions o;
  o.max_running = kSlots + 1;
  EXPECT_THAT(start(o).message(), HasSubstr("max_running = 9 is outside [1, 8]"));
  o = {};
  o.max_batch_tokens = 4;
  EXPECT_THAT(start(o).message(), HasSubstr("max_batch_tokens = 4 is below max_running = 8"));
  o = {};
  o.prefill_chunk = 0;
  EXPECT_THAT(start(o).message(), HasSubstr("prefill_chunk"));
  o = {};
  o.queue_capacity = 0;
  EXPECT_THAT(start(o).message(), HasSubstr("queue_capacity"));
  o = {};
  o.prefix_cache_entries = -1;
  EXPECT_THAT(start(o).message(), HasSubstr("prefix_cache_entries"));
  Scheduler none(nullptr, {}, nullptr);
  EXPECT_THAT(none.Start().message(), HasSubstr("no step executor"));
  // Not started: nothing is accepted.
  auto exec = InProcessExecutor::Create(*model_, 1, Options());
  ASSERT_TRUE(exec.ok());
  Scheduler idle(std::move(exec).value(), {}, nullptr);
  EXPECT_EQ(idle.Submit(Req({1}, 4), std::make_shared<Collector>()).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(SchedulerTest, DrainFinishesQueuedAndRunningRequestsAndRefusesNewOnes) {
  auto log = std::make_shared<ProbeLog>();
  absl::Notification reached, release;
  log->hook_on_step = 1;
  log->hook = [&] {
    reached.Notify();
    release.WaitForNotification();
  };
  SchedulerOptions o;
  o.max_running = 2;
  auto s = Make(o, log);
  std::vector<std::shared_ptr<Collector>> got;
  for (int i = 0; i < 3; ++i) got.push_back(Submit(*s, Req(Ids(6 + i, i), 4 + i)));
  reached.WaitForNotification();
  s->Drain();
  auto refused = s->Submit(Req({1}, 4), std::make_shared<Collector>());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(refused.status().message(), HasSubstr("draining"));
  EXPECT_TRUE(s->Stats().draining);
  EXPECT_FALSE(s->Idle());
  release.Notify();
  for (int i = 0; i < 3; ++i) {
    got[i]->done.WaitForNotification();
    EXPECT_EQ(got[i]->reason, FinishReason::kLength);
    EXPECT_EQ(got[i]->tokens.size(), static_cast<size_t>(4 + i));
  }
  EXPECT_TRUE(s->Idle());  // published before the last OnFinish was delivered
  const SchedulerStats stats = s->Stats();
  EXPECT_EQ(stats.running, 0);
  EXPECT_EQ(stats.queue_length, 0);
  EXPECT_TRUE(stats.draining);
}

TEST_F(SchedulerTest, StoppingFailsWhatIsLeftWithUnavailable) {
  auto log = std::make_shared<ProbeLog>();
  absl::Notification drained, reached;
  Scheduler* sched = nullptr;
  log->hook_on_step = 2;
  log->hook = [&] {
    // Hold the step until the destructor has stopped the queue (Submit then says so).
    reached.Notify();
    drained.WaitForNotification();
    for (;;) {
      auto r = sched->Submit(Req({1}, 1), std::make_shared<Collector>());
      if (absl::IsUnavailable(r.status()) && absl::StrContains(r.status().message(), "stopped")) break;
      std::this_thread::yield();
    }
  };
  SchedulerOptions o;
  o.max_running = 1;
  auto s = Make(o, log);
  sched = s.get();
  auto a = Submit(*s, Req(Ids(10, 1), 50));
  auto b = Submit(*s, Req(Ids(10, 2), 50));
  s->Drain();
  drained.Notify();
  reached.WaitForNotification();  // A is in its second step
  s.reset();
  for (auto* x : {&a, &b}) {
    ASSERT_TRUE((*x)->done.HasBeenNotified());
    EXPECT_EQ((*x)->error.code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ((*x)->terminal_events(), 1);
  }
  EXPECT_EQ(a->tokens.size(), 2u);  // steps 1 and 2 ran
  EXPECT_TRUE(b->tokens.empty());
}

TEST_F(SchedulerTest, APrefixCacheHitGivesTheColdTokensAndReportsCachedTokens) {
  auto metrics = metrics::MoedMetrics::Create();
  ASSERT_TRUE(metrics.ok());
  auto log = std::make_shared<ProbeLog>();
  SchedulerOptions o;
  o.prefill_chunk = 16;
  auto s = Make(o, log, metrics->get());
  const std::vector<int32_t> head = Ids(30, 3);
  std::vector<int32_t> whole = head;
  for (int32_t t : Ids(11, 4)) whole.push_back(t);

  auto first = RunAlone(*s, Req(head, 8, Seeded(5)));
  EXPECT_EQ(first->usage.cached_prompt_tokens, 0);
  auto warm = RunAlone(*s, Req(whole, 12, Seeded(6)));
  EXPECT_EQ(warm->usage.cached_prompt_tokens, 30);
  EXPECT_EQ(warm->usage.prompt_tokens, 41);
  auto same = RunAlone(*s, Req(head, 8, Seeded(5)));  // a prompt is never its own prefix
  EXPECT_EQ(same->usage.cached_prompt_tokens, 0);
  EXPECT_EQ(same->tokens, first->tokens);
  const SchedulerStats stats = s->Stats();
  EXPECT_EQ(stats.prefix_lookups, 3u);
  EXPECT_EQ(stats.prefix_hits, 1u);
  EXPECT_EQ((*metrics)->prefix_cache_lookups().Value(), 3);
  EXPECT_EQ((*metrics)->prefix_cache_hits().Value(), 1);
  s.reset();
  EXPECT_EQ(log->restores, 1);
  EXPECT_EQ(log->saves, 2);  // head and whole; head again was already kept
  // The warm request fed only the 11 new prompt tokens before decoding.
  EXPECT_TRUE(log->streams[1].restored);
  EXPECT_EQ(log->streams[1].chunks.front().tokens, Ids(11, 4));

  SchedulerOptions cold_options = o;
  cold_options.prefix_cache_entries = 0;
  auto cold_s = Make(cold_options);
  auto cold = RunAlone(*cold_s, Req(whole, 12, Seeded(6)));
  EXPECT_EQ(cold->usage.cached_prompt_tokens, 0);
  EXPECT_EQ(warm->tokens, cold->tokens);
  EXPECT_EQ(cold_s->Stats().prefix_lookups, 0u);
}

TEST_F(SchedulerTest, ThePrefixCacheEvictsTheLeastRecentlyUsedPrompt) {
  auto log = std::make_shared<ProbeLog>();
  SchedulerOptions o;
  o.prefix_cache_entries = 1;
  auto s = Make(o, log);
  const std::vector<int32_t> p1 = Ids(12, 1), p2 = Ids(12, 2);
  auto extend = [](std::vector<int32_t> p) {
    p.push_back(7);
    p.push_back(8);
    return p;
  };
  RunAlone(*s, Req(p1, 2));
  RunAlone(*s, Req(p2, 2));  // evicts p1
  EXPECT_EQ(RunAlone(*s, Req(extend(p2), 2))->usage.cached_prompt_tokens, 12);
  EXPECT_EQ(RunAlone(*s, Req(extend(p1), 2))->usage.cached_prompt_tokens, 0);
  GenerateRequest opted_out = Req(extend(extend(p1)), 2);
  opted_out.use_prefix_cache = false;
  EXPECT_EQ(RunAlone(*s, opted_out)->usage.cached_prompt_tokens, 0);
  EXPECT_EQ(s->Stats().prefix_lookups, 4u);
  s.reset();
  EXPECT_EQ(log->saves, 4);
  EXPECT_EQ(log->drops, 3);  // one entry kept: every save after the first evicted one
}

TEST_F(SchedulerTest, AnExecutorErrorFailsExactlyTheRequestsOfThatStep) {
  auto log = std::make_shared<ProbeLog>();
  log->fail_on_step = 1;
  SchedulerOptions o;
  o.max_running = 2;
  o.max_batch_tokens = 8;
  o.prefill_chunk = 8;
  o.prefix_cache_entries = 0;
  auto s = Make(o, log);
  // Step 1 holds A's whole prompt (8 tokens: the budget), so B waits for step 2; C is queued.
  auto a = Submit(*s, Req(Ids(8, 1), 5));
  auto b = Submit(*s, Req(Ids(30, 2), 5));
  auto c = Submit(*s, Req(Ids(5, 3), 5));
  for (auto* x : {&a, &b, &c}) (*x)->done.WaitForNotification();
  EXPECT_EQ(a->error.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(a->error.message(), HasSubstr("worker 1 died"));
  EXPECT_EQ(a->terminal_events(), 1);
  EXPECT_EQ(b->reason, FinishReason::kLength);
  EXPECT_EQ(c->reason, FinishReason::kLength);
  EXPECT_TRUE(s->Idle());
  s.reset();
  EXPECT_EQ(log->failed_slots, std::vector<int>{log->streams[0].slot});

  auto solo = Make({});
  EXPECT_EQ(b->tokens, RunAlone(*solo, Req(Ids(30, 2), 5))->tokens);
  EXPECT_EQ(c->tokens, RunAlone(*solo, Req(Ids(5, 3), 5))->tokens);
}

}  // namespace
}  // namespace moed::daemon

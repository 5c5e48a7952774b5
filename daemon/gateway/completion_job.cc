// The per-request generation driver (see completion_job.h). Every method of CompletionJob runs on
// the connection's executor; the sinks only post to it, so the scheduler thread never blocks on
// text processing or socket writes.
#include "daemon/gateway/completion_job.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "daemon/gateway/api_error.h"
#include "daemon/metrics/moed_metrics.h"
#include "kernels/base/log.h"

namespace moed::gateway {
namespace {

class CompletionJob : public std::enable_shared_from_this<CompletionJob> {
 public:
  CompletionJob(JobSpec spec, std::shared_ptr<ResponseChannel> channel,
                metrics::MoedMetrics* metrics)
      : spec_(std::move(spec)), channel_(std::move(channel)), metrics_(metrics) {}

  void Start();
  void OnToken(int index, const daemon::SampledToken& token);
  void OnFinish(int index, daemon::FinishReason reason, const daemon::Usage& usage);
  void OnError(int index, const absl::Status& status);
  void OnClientGone();

 private:
  struct Choice {
    daemon::RequestId id = 0;
    bool submitted = false;
    bool done = false;  // the backend's terminal event arrived
    std::unique_ptr<ChoiceStream> stream;
    ChoiceResult result;
    daemon::Usage usage;
  };

  void Emit(int index, ChoiceDelta delta);
  void CancelRunning();
  void Fail(const absl::Status& status);
  void MaybeComplete();
  void Count(int http_status);
  UsageTotals Totals() const;

  JobSpec spec_;
  std::shared_ptr<ResponseChannel> channel_;
  metrics::MoedMetrics* metrics_;
  std::vector<Choice> choices_;
  bool streaming_ = false;  // SSE head sent
  bool closed_ = false;     // answered, failed, or the client left
};

// Posts each event onto the connection's executor; never blocks the scheduler thread.
class JobSink final : public daemon::RequestSink {
 public:
  JobSink(std::shared_ptr<CompletionJob> job, std::shared_ptr<ResponseChannel> channel, int index)
      : job_(std::move(job)), channel_(std::move(channel)), index_(index) {}

  void OnToken(const daemon::SampledToken& token) override {
    channel_->Post([job = job_, i = index_, token] { job->OnToken(i, token); });
  }
  void OnFinish(daemon::FinishReason reason, const daemon::Usage& usage) override {
    channel_->Post([job = job_, i = index_, reason, usage] { job->OnFinish(i, reason, usage); });
  }
  void OnError(const absl::Status& status) override {
    channel_->Post([job = job_, i = index_, status] { job->OnError(i, status); });
  }

 private:
  std::shared_ptr<CompletionJob> job_;
  std::shared_ptr<ResponseChannel> channel_;
  int index_;
};

void CompletionJob::Count(int http_status) {
  if (metrics_ != nullptr) metrics_->Request(spec_.endpoint, http_status).Increment();
}

void CompletionJob::Start() {
  const size_t n = spec_.requests.size();
  choices_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    choices_[i].stream = std::make_unique<ChoiceStream>(spec_.model->tokenizer.get(),
                                                        std::move(spec_.choice_options[i]));
  }
  for (size_t i = 0; i < n; ++i) {
    auto sink = std::make_shared<JobSink>(shared_from_this(), channel_, static_cast<int>(i));
    absl::StatusOr<daemon::RequestId> id =
        spec_.model->backend->Submit(std::move(spec_.requests[i]), std::move(sink));
    if (!id.ok()) {
      Fail(id.status());
      return;
    }
    choices_[i].id = *id;
    choices_[i].submitted = true;
  }
  std::weak_ptr<CompletionJob> weak = weak_from_this();
  channel_->SetOnClientGone([weak] {
    if (auto job = weak.lock()) job->OnClientGone();
  });
  if (spec_.stream) {
    channel_->BeginStream(SseHead());
    streaming_ = true;
    Count(200);
    for (size_t i = 0; i < n; ++i) {
      if (std::optional<Json> chunk = spec_.formatter->StreamStart(static_cast<int>(i))) {
        channel_->Write(SseData(*chunk));
      }
    }
  }
}

void CompletionJob::Emit(int index, ChoiceDelta delta) {
  if (spec_.stream) {
    if (std::optional<Json> chunk = spec_.formatter->StreamDelta(index, delta)) {
      channel_->Write(SseData(*chunk));
    }
  } else {
    choices_[index].result.Append(std::move(delta));
  }
}

void CompletionJob::OnToken(int index, const daemon::SampledToken& token) {
  Choice& c = choices_[index];
  if (closed_ || c.done || c.stream->stopped()) return;
  absl::StatusOr<ChoiceDelta> delta = c.stream->Push(token);
  if (!delta.ok()) {
    OnError(index, delta.status());
    return;
  }
  // A stop string matched: the text before it is in `delta`; end generation now.
  if (c.stream->stopped()) spec_.model->backend->Cancel(c.id);
  Emit(index, *std::move(delta));
}

void CompletionJob::OnFinish(int index, daemon::FinishReason reason, const daemon::Usage& usage) {
  Choice& c = choices_[index];
  if (c.done) return;
  c.done = true;
  c.usage = usage;
  if (closed_) return;
  Emit(index, c.stream->Finish());
  std::string finish = "stop";
  if (!c.stream->stopped() && reason == daemon::FinishReason::kLength) finish = "length";
  if (finish == "stop" && c.stream->tool_calls() > 0) finish = "tool_calls";
  c.result.finish_reason = finish;
  if (spec_.stream) channel_->Write(SseData(spec_.formatter->StreamFinish(index, finish)));
  MaybeComplete();
}

void CompletionJob::OnError(int index, const absl::Status& status) {
  choices_[index].done = true;
  if (closed_) return;
  MOED_LOG(WARNING) << spec_.endpoint << ": generation failed: " << status.ToString();
  Fail(status);
}

void CompletionJob::OnClientGone() {
  if (closed_) return;
  closed_ = true;
  if (!streaming_) Count(499);  // nginx's "client closed request"
  CancelRunning();
}

void CompletionJob::CancelRunning() {
  for (Choice& c : choices_) {
    if (c.submitted && !c.done) spec_.model->backend->Cancel(c.id);
  }
}

void CompletionJob::Fail(const absl::Status& status) {
  closed_ = true;
  CancelRunning();
  const ApiError error =
      ErrorFromStatus(status, spec_.queue_full_status, spec_.retry_after_seconds);
  if (streaming_) {
    // The 200 head is out: the error travels as an event, as OpenAI and vLLM send it.
    channel_->Write(absl::StrCat("data: ", ErrorBodyText(error), "\n\n"));
    channel_->Write(std::string(kSseDone));
    channel_->EndStream();
    return;
  }
  Count(error.http_status);
  channel_->Send(ErrorResponse(error));
}

UsageTotals CompletionJob::Totals() const {
  UsageTotals totals;
  totals.prompt_tokens = spec_.prompt_tokens;
  for (size_t i = 0; i < choices_.size(); ++i) {
    // The scheduler's count includes the stop token (EOS), as llama-server and vLLM count it;
    // after a stop string, only the tokens up to the match were the client's.
    const Choice& c = choices_[i];
    totals.completion_tokens +=
        c.stream->stopped() ? c.stream->tokens() : c.usage.completion_tokens;
    if (i % static_cast<size_t>(spec_.choices_per_prompt) == 0) {
      totals.cached_tokens += choices_[i].usage.cached_prompt_tokens;
    }
  }
  return totals;
}

void CompletionJob::MaybeComplete() {
  for (const Choice& c : choices_) {
    if (!c.done) return;
  }
  closed_ = true;
  if (spec_.stream) {
    if (spec_.include_usage) channel_->Write(SseData(spec_.formatter->StreamUsage(Totals())));
    channel_->Write(std::string(kSseDone));
    channel_->EndStream();
    return;
  }
  std::vector<ChoiceResult> results;
  results.reserve(choices_.size());
  for (Choice& c : choices_) results.push_back(std::move(c.result));
  HttpResponse response;
  response.body = DumpJson(spec_.formatter->Response(results, Totals()));
  Count(200);
  channel_->Send(std::move(response));
}

}  // namespace

void StartCompletionJob(JobSpec spec, std::shared_ptr<ResponseChannel> channel,
                        metrics::MoedMetrics* metrics) {
  auto job = std::make_shared<CompletionJob>(std::move(spec), std::move(channel), metrics);
  job->Start();
}

}  // namespace moed::gateway

// The Worker service's handlers: proto <-> StageWorker structs, and the step thread they post to.
#include "workers/worker_service.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <deque>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kernels/base/log.h"
#include "kernels/base/status_macros.h"
#include "proto/grpc_status.h"
#include "proto/step_channel.h"

namespace moed::worker {

// The step thread: runs posted closures in order and serves the step channel, the only thread
// that touches the StageWorker (besides Health and Interrupt). A step from the channel runs right
// on this thread when its frame arrives, so the hot path has no thread hand-off.
class StepThread {
 public:
  explicit StepThread(WorkerService* service)
      : service_(service),
        wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
        thread_([this] { Loop(); }) {}
  ~StepThread() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    Wake();
    thread_.join();
    close(wake_fd_);
  }
  void Post(std::function<void()> work) {
    {
      absl::MutexLock lock(&mu_);
      queue_.push_back(std::move(work));
    }
    Wake();
  }
  // Step thread only: serves the step channel at `path` from now on (empty: no channel); a
  // router connected to the previous one must connect again.
  absl::Status ListenForSteps(const std::string& path, absl::Duration spin) {
    connection_.reset();
    listener_.reset();
    spin_ = spin;
    if (path.empty()) return absl::OkStatus();
    auto listener = wire::StepListener::Listen(path);
    if (!listener.ok()) return listener.status();
    listener_ = std::move(listener).value();
    return absl::OkStatus();
  }

 private:
  void Wake() {
    const uint64_t one = 1;
    ssize_t ignored = write(wake_fd_, &one, sizeof(one));
    (void)ignored;
  }

  // Runs the queued closures; false once stopping and nothing is left.
  bool RunQueued() {
    uint64_t drained;
    while (read(wake_fd_, &drained, sizeof(drained)) > 0) {
    }
    for (;;) {
      std::function<void()> work;
      {
        absl::MutexLock lock(&mu_);
        if (queue_.empty()) return !stop_;
        work = std::move(queue_.front());
        queue_.pop_front();
      }
      work();
    }
  }

  void ServeStep() {
    absl::Status s = connection_->Read(&request_, absl::Now() + absl::Seconds(10));
    if (s.ok()) {
      service_->RunStep(request_, &response_);
      s = connection_->Write(response_, absl::Seconds(10));
    }
    if (!s.ok()) {
      if (!absl::IsUnavailable(s)) {
        MOED_LOG(WARNING) << "step channel: " << s;
      }
      connection_.reset();  // the router reconnects (a closed channel is its way to say goodbye)
    }
  }

  void Loop() {
    for (;;) {
      pollfd fds[3] = {{wake_fd_, POLLIN, 0}, {-1, POLLIN, 0}, {-1, POLLIN, 0}};
      if (listener_ != nullptr) fds[1].fd = listener_->fd();
      if (connection_ != nullptr) fds[2].fd = connection_->fd();
      // The router's next step usually follows the last answer closely: catch it awake.
      // A router with several steps in flight may have sent the next one already, read into the
      // connection's buffer with the last: poll would not see it.
      const bool buffered = connection_ != nullptr && connection_->has_buffered();
      if (!buffered && connection_ != nullptr && spin_ > absl::ZeroDuration()) {
        wire::SpinUntilReadable(connection_->fd(), spin_);
      }
      if (poll(fds, 3, buffered ? 0 : -1) < 0) continue;  // EINTR
      if ((fds[0].revents & POLLIN) != 0) {
        if (!RunQueued()) return;
        continue;  // a Load may have replaced the sockets: the other events are stale
      }
      if (listener_ != nullptr && (fds[1].revents & POLLIN) != 0) {
        auto accepted = listener_->Accept();
        if (accepted.ok()) connection_ = std::move(accepted).value();  // a new router connection
        continue;
      }
      if (connection_ != nullptr && (buffered || (fds[2].revents & (POLLIN | POLLHUP)) != 0)) ServeStep();
    }
  }

  WorkerService* service_;
  const int wake_fd_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Step thread only.
  std::unique_ptr<wire::StepListener> listener_;
  std::unique_ptr<wire::StepSocket> connection_;
  absl::Duration spin_ = absl::ZeroDuration();
  v1::StepRequest request_;
  v1::StepResponse response_;
  std::thread thread_;  // last: starts once everything above is constructed
};

namespace {

StageConfig ToConfig(const v1::LoadRequest& r) {
  StageConfig c;
  c.model_path = r.model_path();
  c.first_layer = r.first_layer();
  c.last_layer = r.last_layer();
  c.stage_index = r.stage_index();
  c.stage_count = r.stage_count();
  if (r.variant().has_variant()) c.variants.variant = r.variant().variant();
  if (r.variant().has_budget_mb()) c.variants.budget_mb = r.variant().budget_mb();
  c.engine.backend = r.backend() == "cuda" ? engine::Backend::kCuda : engine::Backend::kCpu;
  c.engine.device = r.device();
  c.engine.threads = r.threads();
  c.engine.cache.max_slots = r.cache().max_slots();
  c.engine.cache.kv_block_size = r.cache().kv_block_size();
  c.engine.cache.kv_blocks = r.cache().kv_blocks();
  c.activation_listen = r.activation_listen();
  c.activation_next = r.activation_next();
  c.activation_timeout =
      absl::Milliseconds(r.activation_timeout_ms() == 0 ? 120000 : r.activation_timeout_ms());
  c.step_spin = absl::Microseconds(r.step_spin_us());
  c.device_links = r.activation_link() == "nccl";
  return c;
}

void FromFacts(const StageFacts& f, v1::LoadResponse* r) {
  r->set_n_vocab(f.n_vocab);
  r->set_n_embd(f.n_embd);
  r->set_n_layer(f.n_layer);
  r->set_context_length(f.context_length);
  r->set_slot_capacity(f.slot_capacity);
  r->set_reused_weights(f.reused_weights);
}

cpu::SamplingParams ToParams(const v1::SamplingParams& p) {
  cpu::SamplingParams s;
  s.temperature = p.temperature();
  s.top_k = p.top_k();
  s.top_p = p.top_p();
  s.min_p = p.min_p();
  s.repetition_penalty = p.repetition_penalty();
  s.presence_penalty = p.presence_penalty();
  s.frequency_penalty = p.frequency_penalty();
  s.seed = p.seed();
  return s;
}

void FromOutcome(const StepOutcome& o, v1::StepResponse* r) {
  r->mutable_status()->set_code(static_cast<int32_t>(o.status.code()));
  r->mutable_status()->set_message(std::string(o.status.message()));
  r->set_upstream_failed(o.upstream_failed);
  r->set_forward_us(o.forward_us);
  r->clear_sampled();
  for (const WorkerSample& s : o.sampled) {
    v1::SampledToken* t = r->add_sampled();
    t->set_slot(s.slot);
    t->set_token(s.choice.token);
    t->set_logprob(s.choice.logprob);
    for (const auto& [id, logprob] : s.choice.top) {
      v1::TokenLogprob* alt = t->add_top();
      alt->set_token(id);
      alt->set_logprob(logprob);
    }
  }
}

// The Step stream: read a request, run it on the step thread, write the response, read the next.
// The router waits for each response before it writes again, so one read or one write is in
// flight at a time; the reactor deletes itself when gRPC is done with it.
class StepReactor final : public grpc::ServerBidiReactor<v1::StepRequest, v1::StepResponse> {
 public:
  explicit StepReactor(WorkerService* service) : service_(service) { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the router closed its side or the call was cancelled
      Finish(grpc::Status::OK);
      return;
    }
    service_->Post([this] {
      service_->RunStep(request_, &response_);
      StartWrite(&response_);
    });
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the step stream was closed"));
      return;
    }
    StartRead(&request_);
  }
  void OnDone() override { delete this; }

 private:
  WorkerService* service_;
  v1::StepRequest request_;
  v1::StepResponse response_;
};

// Shutdown's reactor: the process may stop only once gRPC is done with the call, or the server's
// shutdown would wait for the router's side of it until its deadline.
class ShutdownReactor final : public grpc::ServerUnaryReactor {
 public:
  explicit ShutdownReactor(std::function<void()> on_done) : on_done_(std::move(on_done)) {}
  void OnDone() override {
    if (on_done_) on_done_();
    delete this;
  }

 private:
  std::function<void()> on_done_;
};

}  // namespace

WorkerService::WorkerService(StageWorker* worker, std::function<void()> on_shutdown)
    : worker_(worker),
      on_shutdown_(std::move(on_shutdown)),
      step_thread_(std::make_unique<StepThread>(this)) {}

WorkerService::~WorkerService() = default;

void WorkerService::Post(std::function<void()> work) { step_thread_->Post(std::move(work)); }

void WorkerService::RunStep(const v1::StepRequest& request, v1::StepResponse* response) {
  std::vector<WorkerSequence> sequences(static_cast<size_t>(request.sequences_size()));
  for (int i = 0; i < request.sequences_size(); ++i) {
    const v1::StepSequence& s = request.sequences(i);
    sequences[i] = {s.slot(), {s.tokens().begin(), s.tokens().end()}, s.sample(), s.top_logprobs()};
  }
  response->set_step_id(request.step_id());
  FromOutcome(worker_->Step(sequences), response);
}

grpc::ServerUnaryReactor* WorkerService::Unary(grpc::CallbackServerContext* context,
                                               std::function<absl::Status()> work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Post([reactor, work = std::move(work)] { reactor->Finish(ToGrpcStatus(work())); });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Load(grpc::CallbackServerContext* context,
                                              const v1::LoadRequest* request,
                                              v1::LoadResponse* response) {
  worker_
      ->Interrupt();  // the router rebuilds the pipeline: a step stuck on a dead neighbour ends now
  return Unary(context, [this, request, response]() -> absl::Status {
    (void)step_thread_->ListenForSteps("", absl::ZeroDuration());  // a failed Load leaves no channel behind
    if (!request->backend().empty() && request->backend() != "cpu" && request->backend() != "cuda") {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown backend '", request->backend(), "' (expected cpu or cuda)"));
    }
    if (!request->activation_link().empty() && request->activation_link() != "socket" &&
        request->activation_link() != "nccl") {
      return absl::InvalidArgumentError(absl::StrCat("unknown activation_link '", request->activation_link(),
                                                     "' (expected socket or nccl)"));
    }
    auto facts = worker_->Load(ToConfig(*request));
    if (!facts.ok()) return facts.status();
    RETURN_IF_ERROR(step_thread_->ListenForSteps(request->step_channel(), absl::Microseconds(request->step_spin_us())));
    FromFacts(*facts, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkerService::Health(grpc::CallbackServerContext* context,
                                                const v1::HealthRequest*,
                                                v1::HealthResponse* response) {
  const WorkerHealth h = worker_->Health();
  response->set_loaded(h.loaded);
  response->set_slots_in_use(h.slots_in_use);
  response->set_step_running_ms(h.step_running_ms);
  response->set_steps(h.steps);
  response->set_rss_bytes(h.rss_bytes);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerBidiReactor<v1::StepRequest, v1::StepResponse>* WorkerService::Step(
    grpc::CallbackServerContext*) {
  return new StepReactor(this);
}

grpc::ServerUnaryReactor* WorkerService::StepOnce(grpc::CallbackServerContext* context,
                                                  const v1::StepRequest* request,
                                                  v1::StepResponse* response) {
  return Unary(context, [this, request, response] {
    RunStep(*request, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkerService::OpenSlot(grpc::CallbackServerContext* context,
                                                  const v1::OpenSlotRequest* request,
                                                  v1::OpenSlotResponse*) {
  return Unary(context, [this, request] {
    return worker_->OpenSlot(request->slot(), ToParams(request->sampling()));
  });
}

grpc::ServerUnaryReactor* WorkerService::CloseSlot(grpc::CallbackServerContext* context,
                                                   const v1::CloseSlotRequest* request,
                                                   v1::CloseSlotResponse*) {
  return Unary(context, [this, request] { return worker_->CloseSlot(request->slot()); });
}

grpc::ServerUnaryReactor* WorkerService::Snapshot(grpc::CallbackServerContext* context,
                                                  const v1::SnapshotRequest* request,
                                                  v1::SnapshotResponse*) {
  return Unary(context, [this, request] {
    return worker_->SaveSnapshot(request->slot(), request->snapshot_id());
  });
}

grpc::ServerUnaryReactor* WorkerService::Restore(grpc::CallbackServerContext* context,
                                                 const v1::RestoreRequest* request,
                                                 v1::RestoreResponse*) {
  return Unary(context, [this, request] {
    return worker_->RestoreSnapshot(request->slot(), request->snapshot_id());
  });
}

grpc::ServerUnaryReactor* WorkerService::Drop(grpc::CallbackServerContext* context,
                                              const v1::DropRequest* request, v1::DropResponse*) {
  return Unary(context, [this, request] { return worker_->DropSnapshot(request->snapshot_id()); });
}

grpc::ServerUnaryReactor* WorkerService::Shutdown(grpc::CallbackServerContext*,
                                                  const v1::ShutdownRequest*,
                                                  v1::ShutdownResponse*) {
  worker_->Interrupt();  // a step waiting for a neighbour must not delay the exit
  auto* reactor = new ShutdownReactor(on_shutdown_);
  Post([reactor] { reactor->Finish(grpc::Status::OK); });
  return reactor;
}

}  // namespace moed::worker

// gRPC calls to one worker, and the translation between moed's structs and the v1 messages.
#include "daemon/workers/worker_client.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "kernels/base/status_macros.h"
#include "moed/worker/v1/worker.grpc.pb.h"
#include "proto/grpc_status.h"
#include "proto/step_channel.h"

namespace moed::daemon {

namespace v1 = ::moed::worker::v1;

struct WorkerClient::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Worker::Stub> stub;
  StepPath step_path = StepPath::kChannel;
  std::string step_channel_path;
  absl::Duration step_spin = absl::ZeroDuration();  // from the last Load
  int cancel_fd = -1;  // eventfd, readable once Cancel was called: ends a channel read

  absl::Mutex mu;
  bool cancelled ABSL_GUARDED_BY(mu) = false;
  std::unique_ptr<grpc::ClientContext> step_context
      ABSL_GUARDED_BY(mu);  // of the stream or the unary call
  // Scheduler thread only.
  std::unique_ptr<wire::StepSocket> step_socket;
  std::unique_ptr<grpc::ClientReaderWriter<v1::StepRequest, v1::StepResponse>> stream;
  bool broken = false;
  std::deque<uint64_t> step_ids;  // steps sent and not yet answered, oldest first
  v1::StepRequest request;
  v1::StepResponse response;
  // Unary step mode: the callback's result.
  absl::Mutex done_mu;
  bool done ABSL_GUARDED_BY(done_mu) = false;
  grpc::Status done_status ABSL_GUARDED_BY(done_mu);

  template <typename Request, typename Response>
  absl::Status Call(const char* name,
                    grpc::Status (v1::Worker::Stub::*method)(grpc::ClientContext*, const Request&,
                                                             Response*),
                    const Request& request, Response* response, absl::Duration timeout) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    return FromGrpcStatus((stub.get()->*method)(&context, request, response), name);
  }
};

namespace {

absl::Status FromStepStatus(const v1::StepStatus& s) {
  if (s.code() == 0) return absl::OkStatus();
  int code = s.code();
  if (code < 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    code = static_cast<int>(absl::StatusCode::kUnknown);
  }
  return absl::Status(static_cast<absl::StatusCode>(code), s.message());
}

WorkerStepReply FromResponse(const v1::StepResponse& r) {
  WorkerStepReply reply;
  reply.status = FromStepStatus(r.status());
  reply.upstream_failed = r.upstream_failed();
  reply.forward_us = r.forward_us();
  reply.sampled.reserve(static_cast<size_t>(r.sampled_size()));
  for (const v1::SampledToken& t : r.sampled()) {
    SampledToken s;
    s.slot = t.slot();
    s.token = t.token();
    s.logprob = t.logprob();
    for (const v1::TokenLogprob& alt : t.top()) s.top.emplace_back(alt.token(), alt.logprob());
    reply.sampled.push_back(std::move(s));
  }
  return reply;
}

}  // namespace

WorkerClient::WorkerClient(const std::string& target, StepPath step_path,
                           const std::string& step_channel)
    : impl_(std::make_unique<Impl>()) {
  grpc::ChannelArguments args;
  // A worker that restarts is back within milliseconds; gRPC's default back-off (1 s, growing)
  // would keep the pipeline down far longer than the worker.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  // Each client gets its own connection, so tearing down one pipeline generation cannot touch
  // the next one's.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  impl_->channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  impl_->stub = v1::Worker::NewStub(impl_->channel);
  impl_->step_path = step_path;
  impl_->step_channel_path = step_channel;
  impl_->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

WorkerClient::~WorkerClient() {
  Cancel();
  if (impl_->stream != nullptr) (void)impl_->stream->Finish();
  // A unary step still in flight completes (cancelled) before its context goes away.
  bool unary_started;
  {
    absl::MutexLock lock(&impl_->mu);
    unary_started = impl_->step_context != nullptr && impl_->step_path == StepPath::kUnary;
  }
  if (unary_started) {
    absl::MutexLock lock(&impl_->done_mu);
    impl_->done_mu.Await(absl::Condition(&impl_->done));
  }
  impl_->step_socket.reset();
  if (impl_->cancel_fd >= 0) close(impl_->cancel_fd);
}

bool WorkerClient::WaitConnected(absl::Time deadline) {
  return impl_->channel->WaitForConnected(absl::ToChronoTime(deadline));
}

absl::StatusOr<WorkerLoadFacts> WorkerClient::Load(const WorkerLoadSpec& spec,
                                                   absl::Duration timeout) {
  v1::LoadRequest r;
  r.set_model_path(spec.model_path);
  r.set_first_layer(spec.first_layer);
  r.set_last_layer(spec.last_layer);
  r.set_stage_index(spec.stage_index);
  r.set_stage_count(spec.stage_count);
  if (spec.variants.variant) r.mutable_variant()->set_variant(*spec.variants.variant);
  if (spec.variants.budget_mb) r.mutable_variant()->set_budget_mb(*spec.variants.budget_mb);
  r.mutable_cache()->set_max_slots(spec.cache.max_slots);
  r.mutable_cache()->set_kv_block_size(spec.cache.kv_block_size);
  r.mutable_cache()->set_kv_blocks(spec.cache.kv_blocks);
  r.set_threads(spec.threads);
  r.set_backend(spec.backend);
  r.set_activation_link(spec.activation_link);
  r.set_device(spec.device);
  r.set_activation_listen(spec.activation_listen);
  r.set_activation_next(spec.activation_next);
  r.set_activation_timeout_ms(static_cast<uint32_t>(std::clamp<int64_t>(
      absl::ToInt64Milliseconds(spec.activation_timeout), 1, int64_t{1} << 31)));
  r.set_step_channel(spec.step_channel);
  r.set_step_spin_us(static_cast<uint32_t>(absl::ToInt64Microseconds(spec.step_spin)));
  impl_->step_spin = spec.step_spin;
  v1::LoadResponse response;
  RETURN_IF_ERROR(impl_->Call("Load", &v1::Worker::Stub::Load, r, &response, timeout));
  WorkerLoadFacts f;
  f.n_vocab = response.n_vocab();
  f.n_embd = response.n_embd();
  f.n_layer = response.n_layer();
  f.context_length = response.context_length();
  f.slot_capacity = response.slot_capacity();
  f.reused_weights = response.reused_weights();
  return f;
}

absl::StatusOr<WorkerHealthReport> WorkerClient::Health(absl::Duration timeout) {
  v1::HealthResponse response;
  RETURN_IF_ERROR(
      impl_->Call("Health", &v1::Worker::Stub::Health, v1::HealthRequest(), &response, timeout));
  WorkerHealthReport h;
  h.loaded = response.loaded();
  h.slots_in_use = response.slots_in_use();
  h.step_running = absl::Milliseconds(response.step_running_ms());
  h.steps = response.steps();
  h.rss_bytes = response.rss_bytes();
  return h;
}

absl::Status WorkerClient::OpenSlot(int slot, const cpu::SamplingParams& p,
                                    absl::Duration timeout) {
  v1::OpenSlotRequest r;
  r.set_slot(slot);
  v1::SamplingParams* s = r.mutable_sampling();
  s->set_temperature(p.temperature);
  s->set_top_k(p.top_k);
  s->set_top_p(p.top_p);
  s->set_min_p(p.min_p);
  s->set_repetition_penalty(p.repetition_penalty);
  s->set_presence_penalty(p.presence_penalty);
  s->set_frequency_penalty(p.frequency_penalty);
  s->set_seed(p.seed);
  v1::OpenSlotResponse response;
  return impl_->Call("OpenSlot", &v1::Worker::Stub::OpenSlot, r, &response, timeout);
}

absl::Status WorkerClient::CloseSlot(int slot, absl::Duration timeout) {
  v1::CloseSlotRequest r;
  r.set_slot(slot);
  v1::CloseSlotResponse response;
  return impl_->Call("CloseSlot", &v1::Worker::Stub::CloseSlot, r, &response, timeout);
}

absl::Status WorkerClient::SaveSnapshot(int slot, int64_t snapshot_id, absl::Duration timeout) {
  v1::SnapshotRequest r;
  r.set_slot(slot);
  r.set_snapshot_id(snapshot_id);
  v1::SnapshotResponse response;
  return impl_->Call("Snapshot", &v1::Worker::Stub::Snapshot, r, &response, timeout);
}

absl::Status WorkerClient::RestoreSnapshot(int slot, int64_t snapshot_id, absl::Duration timeout) {
  v1::RestoreRequest r;
  r.set_slot(slot);
  r.set_snapshot_id(snapshot_id);
  v1::RestoreResponse response;
  return impl_->Call("Restore", &v1::Worker::Stub::Restore, r, &response, timeout);
}

absl::Status WorkerClient::DropSnapshot(int64_t snapshot_id, absl::Duration timeout) {
  v1::DropRequest r;
  r.set_snapshot_id(snapshot_id);
  v1::DropResponse response;
  return impl_->Call("Drop", &v1::Worker::Stub::Drop, r, &response, timeout);
}

absl::Status WorkerClient::Shutdown(absl::Duration timeout) {
  v1::ShutdownResponse response;
  return impl_->Call("Shutdown", &v1::Worker::Stub::Shutdown, v1::ShutdownRequest(), &response,
                     timeout);
}

absl::Status WorkerClient::StartStep(uint64_t step_id, std::span<const StepSequence> sequences) {
  Impl& m = *impl_;
  if (m.broken) return absl::UnavailableError("the step path to this worker is broken");
  m.request.Clear();
  m.request.set_step_id(step_id);
  for (const StepSequence& s : sequences) {
    v1::StepSequence* out = m.request.add_sequences();
    out->set_slot(s.slot);
    out->mutable_tokens()->Add(s.tokens.begin(), s.tokens.end());
    out->set_sample(s.sample);
    out->set_top_logprobs(s.top_logprobs);
  }
  if (m.step_path == StepPath::kChannel) {
    {
      absl::MutexLock lock(&m.mu);
      if (m.cancelled) return absl::UnavailableError("the worker pipeline was torn down");
    }
    if (m.step_socket == nullptr) {
      auto connected = wire::StepSocket::Connect(m.step_channel_path);
      if (!connected.ok()) {
        m.broken = true;
        return absl::UnavailableError(connected.status().message());
      }
      m.step_socket = std::move(connected).value();
      m.step_socket->set_spin(m.step_spin);
    }
    absl::Status sent = m.step_socket->Write(m.request, absl::Seconds(10));
    if (!sent.ok()) {
      m.broken = true;
      return absl::UnavailableError(sent.message());
    }
    m.step_ids.push_back(step_id);
    return absl::OkStatus();
  }
  {
    absl::MutexLock lock(&m.mu);
    if (m.cancelled) return absl::UnavailableError("the worker pipeline was torn down");
    if (m.step_path == StepPath::kUnary) {
      m.step_context = std::make_unique<grpc::ClientContext>();
      {
        absl::MutexLock done_lock(&m.done_mu);
        m.done = false;
      }
      m.response.Clear();
      m.stub->async()->StepOnce(m.step_context.get(), &m.request, &m.response,
                                [&m](grpc::Status s) {
                                  absl::MutexLock done_lock(&m.done_mu);
                                  m.done = true;
                                  m.done_status = std::move(s);
                                });
      m.step_ids.push_back(step_id);
      return absl::OkStatus();
    }
    if (m.stream == nullptr) {
      m.step_context = std::make_unique<grpc::ClientContext>();
      m.stream = m.stub->Step(m.step_context.get());
    }
  }
  if (!m.stream->Write(m.request)) {
    m.broken = true;
    return absl::UnavailableError("the worker closed its step stream");
  }
  m.step_ids.push_back(step_id);
  return absl::OkStatus();
}

absl::StatusOr<WorkerStepReply> WorkerClient::FinishStep() {
  Impl& m = *impl_;
  if (m.step_path == StepPath::kChannel) {
    absl::Status read = m.step_socket->Read(&m.response, absl::InfiniteFuture(), m.cancel_fd);
    if (!read.ok()) {
      m.broken = true;
      return absl::UnavailableError(absl::IsCancelled(read) ? "the worker pipeline was torn down"
                                                            : read.message());
    }
  } else if (m.step_path == StepPath::kUnary) {
    grpc::Status status;
    {
      absl::MutexLock lock(&m.done_mu);
      m.done_mu.Await(absl::Condition(&m.done));
      status = m.done_status;
    }
    if (!status.ok()) {
      m.broken = true;
      return absl::UnavailableError(absl::StrCat("step call failed: ", status.error_message()));
    }
  } else if (!m.stream->Read(&m.response)) {
    m.broken = true;
    return absl::UnavailableError("the worker closed its step stream");
  }
  const uint64_t expected = m.step_ids.empty() ? 0 : m.step_ids.front();
  if (!m.step_ids.empty()) m.step_ids.pop_front();
  if (m.response.step_id() != expected) {
    m.broken = true;
    return absl::InternalError(
        absl::StrCat("worker answered step ", m.response.step_id(), " to step ", expected));
  }
  return FromResponse(m.response);
}

void WorkerClient::Cancel() {
  absl::MutexLock lock(&impl_->mu);
  impl_->cancelled = true;
  if (impl_->step_context != nullptr) impl_->step_context->TryCancel();
  const uint64_t one = 1;
  ssize_t ignored = write(impl_->cancel_fd, &one, sizeof(one));
  (void)ignored;
}

}  // namespace moed::daemon

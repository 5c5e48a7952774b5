// The gRPC side of the admin API: a callback-API service whose handlers each call one
// AdminBackend method, and the server lifecycle (socket file hygiene, TCP with a bearer token).
#include "daemon/admin/admin_service.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "daemon/planner/planner.h"
#include "grpcpp/grpcpp.h"
#include "kernels/base/log.h"
#include "moed/admin/v1/admin.grpc.pb.h"
#include "proto/grpc_status.h"

namespace moed::daemon::admin {
namespace {

namespace v1 = ::moed::admin::v1;

// A unary reactor that runs `on_done` once gRPC is finished with the call, i.e. after the answer
// went out: Shutdown must not stop the daemon before the client has its reply.
class AfterReplyReactor final : public grpc::ServerUnaryReactor {
 public:
  explicit AfterReplyReactor(std::function<void()> on_done) : on_done_(std::move(on_done)) {}
  void OnDone() override {
    if (on_done_) on_done_();
    delete this;
  }

 private:
  std::function<void()> on_done_;
};

// Compares without an early exit, so the time taken does not reveal how much of a guess matched.
bool TokenEquals(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

void ToProto(const AdminStatus& s, v1::GetStatusResponse* r) {
  r->set_model(s.model);
  r->set_model_path(s.model_path);
  r->set_phase(s.phase);
  r->set_plan_summary(s.plan_summary);
  r->set_listen(s.listen);
  for (const Device& d : s.devices) {
    v1::Device* p = r->add_devices();
    p->set_backend(std::string(DeviceBackendName(d.backend)));
    p->set_index(d.index);
    p->set_id(planner::DeviceId(d));
    p->set_name(d.name);
    p->set_uuid(d.uuid);
    p->set_total_bytes(d.total_bytes);
    if (d.free_bytes.has_value()) p->set_free_bytes(*d.free_bytes);
    p->set_arch(d.arch);
    p->set_can_compute(d.can_compute);
    p->set_note(d.note);
  }
  for (const AdminWorker& w : s.workers) {
    v1::Worker* p = r->add_workers();
    p->set_stage(w.stage);
    p->set_device_id(w.device_id);
    p->set_first_layer(w.first_layer);
    p->set_last_layer(w.last_layer);
    p->set_restarts(w.restarts);
  }
  r->set_workers_ready(s.workers_ready);
  r->set_queue_length(s.queue_length);
  r->set_running(s.running);
  r->set_slot_capacity(s.slot_capacity);
  r->set_steps(s.steps);
  r->set_prefix_lookups(s.prefix_lookups);
  r->set_prefix_hits(s.prefix_hits);
  r->set_draining(s.draining);
  r->set_context_length(s.context_length);
  r->set_uptime_seconds(s.uptime_seconds);
}

void ToProto(const AdminModel& m, v1::Model* r) {
  r->set_id(m.id);
  r->set_path(m.path);
  r->set_phase(m.phase);
  r->set_max_variant(m.max_variant);
  r->set_weight_bytes(m.weight_bytes);
  r->set_load_seconds(m.load_seconds);
}

PhaseChoice FromProto(const v1::PhaseChoice& p) {
  PhaseChoice c;
  if (p.has_variant()) c.variant = p.variant();
  if (p.has_budget_mb()) c.budget_mb = p.budget_mb();
  return c;
}

class AdminService final : public v1::Admin::CallbackService {
 public:
  // `token` empty: no authentication (the Unix socket, guarded by its file permissions).
  AdminService(AdminBackend* backend, std::string token) : backend_(backend), token_(std::move(token)) {}

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context, const v1::GetStatusRequest*,
                                      v1::GetStatusResponse* response) override {
    return Answer(context, [&]() -> absl::Status {
      absl::StatusOr<AdminStatus> status = backend_->Status();
      if (!status.ok()) return status.status();
      ToProto(*status, response);
      return absl::OkStatus();
    });
  }

  grpc::ServerUnaryReactor* GetPlan(grpc::CallbackServerContext* context, const v1::GetPlanRequest*,
                                    v1::GetPlanResponse* response) override {
    return Answer(context, [&] {
      response->set_text(backend_->PlanText());
      response->set_json(backend_->PlanJson());
      return absl::OkStatus();
    });
  }

  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* context, const v1::DrainRequest*,
                                  v1::DrainResponse* response) override {
    return Answer(context, [&] {
      MOED_LOG(INFO) << "admin: drain requested (" << context->peer() << ")";
      response->set_already_draining(backend_->BeginDrain());
      return absl::OkStatus();
    });
  }

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context, const v1::ListModelsRequest*,
                                       v1::ListModelsResponse* response) override {
    return Answer(context, [&] {
      for (const AdminModel& m : backend_->ListModels()) ToProto(m, response->add_models());
      return absl::OkStatus();
    });
  }

  // The model-changing calls block this callback thread for the length of a reload; they are
  // rare and serialised by the daemon, and GetStatus keeps answering on other threads.
  grpc::ServerUnaryReactor* LoadModel(grpc::CallbackServerContext* context, const v1::LoadModelRequest* request,
                                      v1::LoadModelResponse* response) override {
    return Answer(context, [&]() -> absl::Status {
      MOED_LOG(INFO) << "admin: load model " << request->path() << " (" << context->peer() << ")";
      absl::StatusOr<AdminModel> model = backend_->LoadModel(request->path(), request->name(), FromProto(request->phase()));
      if (!model.ok()) return model.status();
      ToProto(*model, response->mutable_model());
      return absl::OkStatus();
    });
  }

  grpc::ServerUnaryReactor* UnloadModel(grpc::CallbackServerContext* context, const v1::UnloadModelRequest*,
                                        v1::UnloadModelResponse* response) override {
    return Answer(context, [&]() -> absl::Status {
      MOED_LOG(INFO) << "admin: unload model (" << context->peer() << ")";
      absl::StatusOr<std::string> unloaded = backend_->UnloadModel();
      if (!unloaded.ok()) return unloaded.status();
      response->set_unloaded(*unloaded);
      return absl::OkStatus();
    });
  }

  grpc::ServerUnaryReactor* SwitchPhase(grpc::CallbackServerContext* context, const v1::SwitchPhaseRequest* request,
                                        v1::SwitchPhaseResponse* response) override {
    return Answer(context, [&]() -> absl::Status {
      MOED_LOG(INFO) << "admin: switch phase (" << context->peer() << ")";
      const std::vector<AdminModel> before = backend_->ListModels();
      absl::StatusOr<AdminModel> model = backend_->SwitchPhase(FromProto(request->phase()));
      if (!model.ok()) return model.status();
      if (!before.empty()) response->set_previous_phase(before.front().phase);
      ToProto(*model, response->mutable_model());
      return absl::OkStatus();
    });
  }

  grpc::ServerUnaryReactor* Shutdown(grpc::CallbackServerContext* context, const v1::ShutdownRequest*,
                                     v1::ShutdownResponse*) override {
    if (absl::Status s = Authenticate(context); !s.ok()) {
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      reactor->Finish(ToGrpcStatus(s));
      return reactor;
    }
    MOED_LOG(INFO) << "admin: shutdown requested (" << context->peer() << ")";
    auto* reactor = new AfterReplyReactor([backend = backend_] { backend->RequestShutdown(); });
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  absl::Status Authenticate(grpc::CallbackServerContext* context) const {
    if (token_.empty()) return absl::OkStatus();
    const auto& metadata = context->client_metadata();
    auto it = metadata.find("authorization");
    if (it == metadata.end()) {
      return absl::UnauthenticatedError("the admin TCP endpoint needs 'authorization: Bearer <token>' metadata");
    }
    const std::string_view value(it->second.data(), it->second.size());
    constexpr std::string_view kBearer = "Bearer ";
    if (value.substr(0, kBearer.size()) != kBearer || !TokenEquals(value.substr(kBearer.size()), token_)) {
      return absl::UnauthenticatedError("wrong admin token");
    }
    return absl::OkStatus();
  }

  // Authenticates, then runs `work` and finishes the call with its status.
  grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context, const std::function<absl::Status()>& work) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    absl::Status status = Authenticate(context);
    if (status.ok()) status = work();
    reactor->Finish(ToGrpcStatus(status));
    return reactor;
  }

  AdminBackend* backend_;
  const std::string token_;
};

// Makes `path` free for a new socket: creates its directory, removes a socket file nobody
// listens on (left by a moed that was killed), refuses anything else.
absl::Status PrepareSocketPath(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("admin socket path is ", path.size(), " bytes long; the limit is ", sizeof(sockaddr_un::sun_path) - 1));
  }
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create the admin socket directory ", parent.string(), ": ", ec.message()));
    }
  }
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat("cannot inspect admin socket ", path, ": ", std::strerror(errno)));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("admin socket path ", path, " exists and is not a socket; remove it or set admin.socket"));
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket(AF_UNIX): ", std::strerror(errno)));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const bool live = connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  if (live) {
    return absl::FailedPreconditionError(
        absl::StrCat("admin socket ", path, " is in use: is another moed running?"));
  }
  if (unlink(path.c_str()) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot remove the stale admin socket ", path, ": ", std::strerror(errno)));
  }
  MOED_LOG(INFO) << "removed stale admin socket " << path;
  return absl::OkStatus();
}

}  // namespace

struct AdminServer::Impl {
  std::string socket_path;
  // One server per endpoint, so that only the TCP one asks for the token.
  std::unique_ptr<AdminService> unix_service;
  std::unique_ptr<AdminService> tcp_service;
  std::unique_ptr<grpc::Server> unix_server;
  std::unique_ptr<grpc::Server> tcp_server;
};

AdminServer::AdminServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AdminServer::~AdminServer() { Stop(); }

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(const AdminServerOptions& options,
                                                                AdminBackend* backend) {
  if (options.socket.empty() && options.tcp_listen.empty()) {
    return absl::InvalidArgumentError("the admin server needs admin.socket or admin.tcp_listen");
  }
  if (!options.tcp_listen.empty() && options.token.empty()) {
    return absl::InvalidArgumentError("admin.tcp_listen needs admin.token or admin.token_file");
  }
  auto impl = std::make_unique<Impl>();
  std::unique_ptr<AdminServer> server(new AdminServer(std::move(impl)));
  Impl& d = *server->impl_;
  if (!options.socket.empty()) {
    if (absl::Status s = PrepareSocketPath(options.socket); !s.ok()) return s;
    d.unix_service = std::make_unique<AdminService>(backend, "");
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + options.socket, grpc::InsecureServerCredentials());
    builder.RegisterService(d.unix_service.get());
    d.unix_server = builder.BuildAndStart();
    if (d.unix_server == nullptr) {
      return absl::UnavailableError(absl::StrCat("cannot listen on the admin socket unix:", options.socket));
    }
    d.socket_path = options.socket;
    // Owner and group only: the socket grants drain and shutdown.
    chmod(options.socket.c_str(), 0660);
    MOED_LOG(INFO) << "admin API listening on unix:" << options.socket;
  }
  if (!options.tcp_listen.empty()) {
    d.tcp_service = std::make_unique<AdminService>(backend, options.token);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(options.tcp_listen, grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(d.tcp_service.get());
    d.tcp_server = builder.BuildAndStart();
    if (d.tcp_server == nullptr || port == 0) {
      return absl::UnavailableError(absl::StrCat("cannot listen for the admin API on ", options.tcp_listen));
    }
    server->tcp_port_ = port;
    MOED_LOG(INFO) << "admin API listening on " << options.tcp_listen << " (port " << port << ", token required)";
  }
  return server;
}

void AdminServer::Stop() {
  Impl& d = *impl_;
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(2);
  if (d.tcp_server) d.tcp_server->Shutdown(deadline);
  if (d.unix_server) d.unix_server->Shutdown(deadline);
  d.tcp_server.reset();
  d.unix_server.reset();
  if (!d.socket_path.empty()) {
    unlink(d.socket_path.c_str());
    d.socket_path.clear();
  }
}

}  // namespace moed::daemon::admin

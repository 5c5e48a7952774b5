// moed's admin API (proto/moed/admin/v1/admin.proto) on the daemon side: AdminBackend, the small
// interface the daemon implements (a status snapshot, the plan, drain, shutdown, model and phase
// changes), and AdminServer,
// which serves it over gRPC on a Unix socket and optionally on TCP with a bearer token. The gRPC
// handlers are thin: each calls one backend method and converts the answer. Only
// admin_service.cc includes generated code.
#ifndef MOED_DAEMON_ADMIN_ADMIN_SERVICE_H_
#define MOED_DAEMON_ADMIN_ADMIN_SERVICE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/devices/device.h"

namespace moed::daemon::admin {

// One pipeline stage's worker, as GetStatus reports it.
struct AdminWorker {
  int stage = 0;
  std::string device_id;  // "cpu", "cuda:0"
  int first_layer = 0;    // trunk layers [first_layer, last_layer)
  int last_layer = 0;
  int restarts = 0;       // restarts by the supervisor since start
};

// The daemon at one moment (the GetStatus answer; see admin.proto for each field's meaning).
struct AdminStatus {
  std::string model;
  std::string model_path;
  std::string phase;
  std::string plan_summary;
  std::string listen;
  std::vector<Device> devices;
  std::vector<AdminWorker> workers;
  bool workers_ready = false;
  int queue_length = 0;
  int running = 0;
  int slot_capacity = 0;
  uint64_t steps = 0;
  uint64_t prefix_lookups = 0;
  uint64_t prefix_hits = 0;
  bool draining = false;
  int64_t context_length = 0;
  double uptime_seconds = 0;
};

// A served model (ListModels and the answers of the model-changing calls).
struct AdminModel {
  std::string id;
  std::string path;
  std::string phase;
  uint32_t max_variant = 0;
  uint64_t weight_bytes = 0;
  double load_seconds = 0;
};

// A phase to plan: a fixed variant, a weight budget, or neither (the planner picks).
struct PhaseChoice {
  std::optional<uint32_t> variant;
  std::optional<uint64_t> budget_mb;
};

// What the admin service needs from the daemon. Called from gRPC threads, concurrently: every
// method must be thread-safe.
class AdminBackend {
 public:
  virtual ~AdminBackend() = default;
  // Errors: Unavailable while the daemon is not serving (starting or stopping).
  virtual absl::StatusOr<AdminStatus> Status() const = 0;
  // planner::FormatPlan and planner::PlanToJson of the current plan.
  virtual std::string PlanText() const = 0;
  virtual std::string PlanJson() const = 0;
  // Starts draining; returns whether it was draining already.
  virtual bool BeginDrain() = 0;
  // Makes the daemon stop as for SIGTERM. Called once the Shutdown call has been answered.
  virtual void RequestShutdown() = 0;
  // The served model, if any (zero or one entry).
  virtual std::vector<AdminModel> ListModels() const = 0;
  // Model changes; see admin.proto for their contracts. Each blocks until the new workers serve.
  virtual absl::StatusOr<AdminModel> LoadModel(const std::string& path, const std::string& name,
                                               const PhaseChoice& phase) = 0;
  // Returns the id of the model unloaded ("" if none was served).
  virtual absl::StatusOr<std::string> UnloadModel() = 0;
  virtual absl::StatusOr<AdminModel> SwitchPhase(const PhaseChoice& phase) = 0;
};

struct AdminServerOptions {
  // Unix socket path; empty: no Unix endpoint. A stale socket file is replaced; the parent
  // directory is created when missing.
  std::string socket;
  // "host:port" for TCP (port 0 picks one); empty: no TCP endpoint.
  std::string tcp_listen;
  // Required on TCP as `authorization: Bearer <token>`; must be non-empty when tcp_listen is set.
  std::string token;
};

class AdminServer {
 public:
  // Binds the endpoints and starts serving `backend`, which must outlive the server. Errors:
  // InvalidArgument (TCP without a token, no endpoint at all), FailedPrecondition (the socket
  // path is taken by another file or by a live server), Unavailable (an address cannot be bound).
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(const AdminServerOptions& options,
                                                            AdminBackend* backend);
  // Stop().
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Stops accepting calls, waits (briefly) for those in flight, removes the socket file.
  // Idempotent.
  void Stop();

  // The bound TCP port; 0 when there is no TCP endpoint.
  int tcp_port() const { return tcp_port_; }

 private:
  struct Impl;
  explicit AdminServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  int tcp_port_ = 0;
};

}  // namespace moed::daemon::admin

#endif  // MOED_DAEMON_ADMIN_ADMIN_SERVICE_H_

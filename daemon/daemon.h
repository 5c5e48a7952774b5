// The `moed` router daemon as one object: from a validated configuration it discovers devices,
// reads the model's header and makes the plan; Start() then brings the service up in the order
// clients can rely on — metrics and the HTTP gateway first (/health answers 503 while loading),
// then the worker processes (one per stage, supervised), the scheduler, and the model the
// gateway serves. Drain/Stop take it down in reverse. The served model can be replaced, unloaded
// or re-planned in another phase while moed runs (the admin API, SIGHUP).
//
// Thread-compatible: the main thread drives it; the gateway, scheduler and supervisor run their
// own threads.
#ifndef MOED_DAEMON_DAEMON_H_
#define MOED_DAEMON_DAEMON_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "configs/config.h"
#include "daemon/planner/plan.h"

namespace moed::daemon {

class Daemon {
 public:
  // Discovers devices, opens the model header and plans (no model.path: moed starts without a
  // model, and the admin API loads one). Errors: the model cannot be opened or
  // described, or no placement fits (the message carries the numbers).
  static absl::StatusOr<std::unique_ptr<Daemon>> Create(config::Config config);
  ~Daemon();

  // The configuration in effect (the model section follows model changes).
  config::Config config() const;
  // The plan of the served model (before Start: the one Create made); none without a model.
  std::optional<planner::Plan> plan() const;

  // Starts serving. Errors: the address cannot be bound, a worker fails to load.
  absl::Status Start();
  // SIGHUP: re-plans with `next` and reloads the workers, as a phase switch does (see admin.proto
  // LoadModel). Only the model, devices, workers, scheduler and cache sections take effect; the
  // others need a restart (logged).
  absl::Status Reload(const config::Config& next);
  uint16_t port() const;
  // One line for systemd's STATUS= and the log.
  std::string StatusLine() const;

  // SIGTERM: new requests get 503 with Retry-After, queued and running ones finish.
  void BeginDrain();
  bool Idle() const;
  // Closes connections, stops the scheduler (what is left fails with Unavailable) and the workers.
  void Stop();

 private:
  struct Impl;
  explicit Daemon(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace moed::daemon

#endif  // MOED_DAEMON_DAEMON_H_

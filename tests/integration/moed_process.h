// Runs the real `moed` binary for integration tests: writes a config, starts the daemon (its
// worker processes start under it), waits until it serves, and stops it with a signal. The
// port, the worker pids and the log come from the daemon's own log lines.
#ifndef MOED_TESTS_INTEGRATION_MOED_PROCESS_H_
#define MOED_TESTS_INTEGRATION_MOED_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace moed::testing {

class MoedProcess {
 public:
  // Starts `moed --config config_path`; stdout and stderr go to log_path. Waits (up to 60 s)
  // for the "serving" line. Errors: the daemon exited or never became ready (log included).
  // `extra_env` (NAME -> value) is added to the daemon's environment, e.g. NOTIFY_SOCKET.
  static absl::StatusOr<MoedProcess> Start(const std::string& config_path, const std::string& log_path,
                                           const std::map<std::string, std::string>& extra_env = {});
  MoedProcess(MoedProcess&& other) noexcept;
  MoedProcess& operator=(MoedProcess&&) = delete;
  // Kills the daemon (SIGKILL) if it still runs, and its workers with it.
  ~MoedProcess();

  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  std::string Log() const;
  // stage -> pid of the worker running it, from the workers' "listening" lines (the latest per stage).
  std::map<int, pid_t> WorkerPids() const;
  // Sends `sig` and waits up to `timeout_seconds` for the exit; returns the exit code, or an error
  // if it did not exit (then it is killed) or died from a signal.
  absl::StatusOr<int> SignalAndWait(int sig, int timeout_seconds);

 private:
  MoedProcess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string log_path_;
};

}  // namespace moed::testing

#endif  // MOED_TESTS_INTEGRATION_MOED_PROCESS_H_

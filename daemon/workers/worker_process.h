// WorkerProcess: one child process of the router (a moed-worker), started with fork+exec in its
// own process group, with its stdout and stderr forwarded line by line to the router's stderr
// behind a prefix. The child's environment carries MOED_WORKER_PARENT_PID (this process), and a
// moed-worker stops by itself when that process is gone, so a crashed router leaves no orphan
// holding a GPU or a socket. (PR_SET_PDEATHSIG is not used: it fires when the *thread* that
// forked exits, and the supervisor thread that restarts workers ends before they are stopped.)
//
// Exit detection needs no SIGCHLD handler (which would be process-wide and clash with other
// code): exit_fd() is a pidfd that poll(2) reports readable when the child exits, and Exited()
// reaps it with waitpid on its own pid only.
//
// Thread-compatible: one owner thread at a time.
#ifndef MOED_DAEMON_WORKERS_WORKER_PROCESS_H_
#define MOED_DAEMON_WORKERS_WORKER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace moed::daemon {

class WorkerProcess {
 public:
  // Starts `binary` with `args` (argv[1..]). Errors: NotFound/PermissionDenied/Internal naming
  // the binary when it cannot be executed (reported by the child before it would have run).
  static absl::StatusOr<std::unique_ptr<WorkerProcess>> Spawn(const std::string& binary,
                                                              const std::vector<std::string>& args,
                                                              const std::string& log_prefix);
  // Kills the process group if the child still runs, reaps it, and waits for its last output.
  ~WorkerProcess();
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Readable once the child has exited; -1 where pidfds are unsupported (then poll Exited()).
  int exit_fd() const { return pidfd_; }
  // True when the child has exited (reaping it the first time); never blocks.
  bool Exited();
  // Waits up to `timeout` for the child to exit; true when it has.
  bool WaitExited(absl::Duration timeout);
  // SIGKILL to the child's process group; nothing once it has been reaped.
  void Kill();
  // "running", "exited with status N" or "killed by signal N (name)".
  std::string ExitDescription() const;

 private:
  WorkerProcess() = default;

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int output_fd_ = -1;  // read end of the child's stdout/stderr pipe
  bool reaped_ = false;
  int wait_status_ = 0;
  std::thread forwarder_;  // copies output_fd_ to stderr until EOF
};

}  // namespace moed::daemon

#endif  // MOED_DAEMON_WORKERS_WORKER_PROCESS_H_

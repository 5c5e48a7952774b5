// fork+exec of a worker, output forwarding, exit detection and reaping. Between fork and exec the
// child only makes async-signal-safe calls: the router is multi-threaded (gRPC), so the child may
// not allocate or take locks.
#include "daemon/workers/worker_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace moed::daemon {
namespace {

// Writes `prefix` + each complete line of `buffer` to stderr with one write(2) per line, so that
// lines from several workers and the router never interleave mid-line; keeps the incomplete tail.
void FlushLines(const std::string& prefix, std::string* buffer, bool final) {
  size_t start = 0;
  while (start < buffer->size()) {
    size_t end = buffer->find('\n', start);
    size_t next = end + 1;
    if (end == std::string::npos) {
      // A very long line, or the last unterminated one, goes out as it is.
      if (!final && buffer->size() - start <= 4096) break;
      end = next = buffer->size();
    }
    const std::string line = prefix + buffer->substr(start, end - start) + "\n";
    ssize_t ignored = write(STDERR_FILENO, line.data(), line.size());
    (void)ignored;
    start = next;
  }
  buffer->erase(0, start);
}

void Forward(int fd, std::string prefix) {
  std::string buffer;
  char chunk[4096];
  for (;;) {
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: every copy of the write end is closed (the child is gone)
    buffer.append(chunk, static_cast<size_t>(n));
    FlushLines(prefix, &buffer, false);
  }
  FlushLines(prefix, &buffer, true);
}

}  // namespace

absl::StatusOr<std::unique_ptr<WorkerProcess>> WorkerProcess::Spawn(
    const std::string& binary, const std::vector<std::string>& args,
    const std::string& log_prefix) {
  int output[2], exec_report[2];
  if (pipe2(output, O_CLOEXEC) != 0)
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  if (pipe2(exec_report, O_CLOEXEC) != 0) {
    close(output[0]);
    close(output[1]);
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  // Everything the child needs is prepared before fork.
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  // The child learns its parent's pid from the environment: it stops when that process is gone.
  // The service manager's variables are the daemon's alone: a worker must not notify systemd.
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view var(*e);
    bool inherited = true;
    for (std::string_view drop :
         {"MOED_WORKER_PARENT_PID=", "NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID=", "NCCL_NVLS_ENABLE="}) {
      inherited = inherited && var.substr(0, drop.size()) != drop;
    }
    if (inherited) env_storage.emplace_back(var);
  }
  env_storage.push_back(absl::StrCat("MOED_WORKER_PARENT_PID=", getpid()));
  // NVLink SHARP (multicast) buffers are not needed by point-to-point links and their set-up can
  // fail or hang on shared machines: every worker's NCCL runs without them.
  env_storage.push_back("NCCL_NVLS_ENABLE=0");
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  const pid_t pid = fork();
  if (pid < 0) {
    const int err = errno;
    for (int fd : {output[0], output[1], exec_report[0], exec_report[1]}) close(fd);
    return absl::ResourceExhaustedError(absl::StrCat("fork: ", std::strerror(err)));
  }
  if (pid == 0) {
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);  // the forking thread may block signals
    for (int sig : {SIGTERM, SIGINT, SIGPIPE, SIGHUP}) signal(sig, SIG_DFL);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    dup2(output[1], STDOUT_FILENO);
    dup2(output[1], STDERR_FILENO);
    execve(binary.c_str(), argv.data(), envp.data());
    const int err = errno;
    ssize_t ignored = write(exec_report[1], &err, sizeof(err));
    (void)ignored;
    _exit(127);
  }
  setpgid(pid, pid);  // also here, so the group exists whichever process runs first
  close(output[1]);
  close(exec_report[1]);

  auto p = std::unique_ptr<WorkerProcess>(new WorkerProcess());
  p->pid_ = pid;
  p->output_fd_ = output[0];
  p->forwarder_ = std::thread(Forward, output[0], log_prefix);

  // The report pipe closes at a successful exec (O_CLOEXEC) or carries the child's errno.
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(exec_report[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  close(exec_report[0]);
  if (n == static_cast<ssize_t>(sizeof(child_errno))) {
    p.reset();  // reaps the child and joins the forwarder
    const std::string message =
        absl::StrCat("cannot execute ", binary, ": ", std::strerror(child_errno));
    if (child_errno == ENOENT) return absl::NotFoundError(message);
    if (child_errno == EACCES || child_errno == EPERM) return absl::PermissionDeniedError(message);
    return absl::InternalError(message);
  }
  // Through syscall(2): glibc 2.36's <sys/pidfd.h> lacks C linkage for C++. -1 on kernels
  // without pidfds: Exited() is polled instead.
  p->pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (p->pidfd_ >= 0) fcntl(p->pidfd_, F_SETFD, FD_CLOEXEC);
  return p;
}

WorkerProcess::~WorkerProcess() {
  if (!reaped_) {
    Kill();
    int status;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }
  if (forwarder_.joinable()) forwarder_.join();
  if (output_fd_ >= 0) close(output_fd_);
  if (pidfd_ >= 0) close(pidfd_);
}

bool WorkerProcess::Exited() {
  if (reaped_) return true;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    wait_status_ = status;
  } else if (r < 0 && errno == ECHILD) {
    reaped_ = true;  // someone else reaped it (a waitpid(-1) elsewhere): it is gone either way
  }
  return reaped_;
}

bool WorkerProcess::WaitExited(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!Exited()) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    if (pidfd_ >= 0) {
      pollfd p{pidfd_, POLLIN, 0};
      poll(&p, 1, static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1000)));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  return true;
}

void WorkerProcess::Kill() {
  if (reaped_) return;  // the pid may already belong to another process
  kill(-pid_, SIGKILL);
  kill(pid_, SIGKILL);
}

std::string WorkerProcess::ExitDescription() const {
  if (!reaped_) return "running";
  if (WIFEXITED(wait_status_))
    return absl::StrCat("exited with status ", WEXITSTATUS(wait_status_));
  if (WIFSIGNALED(wait_status_)) {
    const int sig = WTERMSIG(wait_status_);
    return absl::StrCat("killed by signal ", sig, " (", strsignal(sig), ")");
  }
  return "exited";
}

}  // namespace moed::daemon

#include "tests/integration/moed_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace moed::testing {

absl::StatusOr<MoedProcess> MoedProcess::Start(const std::string& config_path, const std::string& log_path,
                                               const std::map<std::string, std::string>& extra_env) {
  const std::string binary = std::string(MOED_BINARY_DIR) + "/daemon/moed";
  ::unlink(log_path.c_str());  // never read a previous run's "serving" line
  // The environment is built before fork: a test may run threads, so the child only calls
  // async-signal-safe functions (no setenv, which allocates) before exec.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    if (!extra_env.contains(std::string(entry.substr(0, entry.find('='))))) env_strings.emplace_back(entry);
  }
  for (const auto& [name, value] : extra_env) env_strings.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    setpgid(0, 0);  // one group: the test can kill the daemon and its workers together
    const char* argv[] = {binary.c_str(), "--config", config_path.c_str(), nullptr};
    execve(binary.c_str(), const_cast<char* const*>(argv), envp.data());
    _exit(127);
  }
  MoedProcess p(pid, log_path);
  const std::regex listening("gateway listening on [^ ]+:([0-9]+)");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      p.pid_ = -1;
      return absl::UnavailableError(absl::StrCat("moed exited during start-up:\n", p.Log()));
    }
    const std::string log = p.Log();
    std::smatch m;
    uint32_t port = 0;
    if (std::regex_search(log, m, listening) && absl::SimpleAtoi(m[1].str(), &port)) p.port_ = static_cast<uint16_t>(port);
    if (p.port_ != 0 && log.find("serving '") != std::string::npos) return p;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat("moed did not become ready in 60 s:\n", p.Log()));
}

MoedProcess::MoedProcess(MoedProcess&& other) noexcept
    : pid_(other.pid_), port_(other.port_), log_path_(std::move(other.log_path_)) {
  other.pid_ = -1;
}

MoedProcess::~MoedProcess() {
  if (pid_ <= 0) return;
  kill(-pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
}

std::string MoedProcess::Log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::map<int, pid_t> MoedProcess::WorkerPids() const {
  std::map<int, pid_t> pids;
  const std::string log = Log();
  const std::regex line(R"(\[worker ([0-9]+)\][^\n]*moed-worker ([0-9]+) listening)");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator(); ++it) {
    pids[std::stoi((*it)[1].str())] = static_cast<pid_t>(std::stoi((*it)[2].str()));
  }
  return pids;
}

absl::StatusOr<int> MoedProcess::SignalAndWait(int sig, int timeout_seconds) {
  if (pid_ <= 0) return absl::FailedPreconditionError("not running");
  kill(pid_, sig);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return absl::InternalError(absl::StrCat("moed died from signal ", WTERMSIG(status)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat("moed did not exit within ", timeout_seconds, " s"));
}

}  // namespace moed::testing

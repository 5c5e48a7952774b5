// moed-worker: one pipeline stage as a process. moed starts it with a listen address only; the
// stage itself (model, layers, cache, links to the neighbouring stages) arrives in the Load RPC
// (proto/moed/worker/v1/worker.proto). Exits with status 0 after the Shutdown RPC, SIGTERM,
// SIGINT, or when the process named in $MOED_WORKER_PARENT_PID (the router sets it) is no longer
// its parent; with 1 when it cannot listen.
//
//   moed-worker --listen unix:/run/moed/worker-0.sock --log-level info
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "kernels/base/log.h"
#include "workers/stage_worker.h"
#include "workers/worker_service.h"

ABSL_FLAG(std::string, listen, "",
          "Address of the worker's gRPC service: unix:/path or 127.0.0.1:port (port 0 picks one "
          "and logs it). "
          "Default: $MOED_WORKER_LISTEN. Required.");
ABSL_FLAG(std::string, log_level, "",
          "debug, info, warning or error (also spelled --log-level). Default: $MOED_LOG_LEVEL, "
          "else info.");

namespace {

// Set once by the Shutdown RPC or a signal; main waits for it.
class StopSignal {
 public:
  void Notify() {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }
  void Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&stopped_));
  }

 private:
  absl::Mutex mu_;
  bool stopped_ = false;
};

bool ParseLogLevel(const std::string& name, moed::LogLevel* level) {
  if (name == "debug")
    *level = moed::LogLevel::kDebug;
  else if (name == "info")
    *level = moed::LogLevel::kInfo;
  else if (name == "warning")
    *level = moed::LogLevel::kWarning;
  else if (name == "error")
    *level = moed::LogLevel::kError;
  else
    return false;
  return true;
}

// absl flag names cannot hold '-'; accept the documented --log-level spelling too.
std::vector<char*> NormalizeArgs(int argc, char** argv, std::vector<std::string>* storage) {
  storage->reserve(static_cast<size_t>(argc));
  std::vector<char*> out;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--log-level", 0) == 0)
      arg = "--log_level" + arg.substr(std::strlen("--log-level"));
    storage->push_back(std::move(arg));
    out.push_back(storage->back().data());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("moed-worker --listen unix:/path|127.0.0.1:port [--log-level info]");
  // --help lists this file's flags (absl's default looks for a file named after the binary).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "workers/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  std::vector<std::string> storage;
  std::vector<char*> args = NormalizeArgs(argc, argv, &storage);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());

  std::string level_name = absl::GetFlag(FLAGS_log_level);
  if (level_name.empty() && std::getenv("MOED_LOG_LEVEL") != nullptr)
    level_name = std::getenv("MOED_LOG_LEVEL");
  if (!level_name.empty()) {
    moed::LogLevel level;
    if (!ParseLogLevel(level_name, &level)) {
      MOED_LOG(ERROR) << "unknown log level \"" << level_name << "\" (debug, info, warning, error)";
      return 2;
    }
    moed::SetLogLevel(level);
  }
  std::string listen = absl::GetFlag(FLAGS_listen);
  if (listen.empty() && std::getenv("MOED_WORKER_LISTEN") != nullptr)
    listen = std::getenv("MOED_WORKER_LISTEN");
  if (listen.empty()) {
    MOED_LOG(ERROR) << "--listen is required (unix:/path or 127.0.0.1:port)";
    return 2;
  }

  // Signals go to one thread that turns them into a stop; every other thread blocks them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  auto stop = std::make_shared<StopSignal>();
  std::thread([stop, stop_signals] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    MOED_LOG(INFO) << "moed-worker: " << strsignal(sig) << ", stopping";
    stop->Notify();
  }).detach();

  // A worker outlives its router only by accident (the router crashed): started by moed, it
  // follows the process named in MOED_WORKER_PARENT_PID, and stops at once if that is not (or no
  // longer) its parent.
  if (const char* parent_env = std::getenv("MOED_WORKER_PARENT_PID"); parent_env != nullptr) {
    const pid_t parent = static_cast<pid_t>(std::atoi(parent_env));
    std::thread([stop, parent] {
      const int parent_fd = static_cast<int>(syscall(SYS_pidfd_open, parent, 0));
      while (getppid() == parent) {
        if (parent_fd >= 0) {
          pollfd p{parent_fd, POLLIN, 0};
          if (poll(&p, 1, 1000) > 0) break;
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(500));
        }
      }
      MOED_LOG(WARNING) << "moed-worker: parent process " << parent << " is gone, stopping";
      stop->Notify();
    }).detach();
  }

  moed::worker::StageWorker worker;
  auto service = std::make_unique<moed::worker::WorkerService>(&worker, [stop] { stop->Notify(); });
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    MOED_LOG(ERROR) << "moed-worker: cannot listen on " << listen;
    return 1;
  }
  MOED_LOG(INFO) << "moed-worker " << getpid() << " listening on " << listen
                 << (listen.rfind("unix:", 0) == 0 ? "" : " (port " + std::to_string(port) + ")");

  stop->Wait();
  worker.Interrupt();  // a step waiting for a neighbour ends now
  // Calls still open after 2 s are cancelled; the router has stopped using this worker.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  service.reset();  // runs whatever was posted, then joins the step thread
  MOED_LOG(INFO) << "moed-worker " << getpid() << " stopped";
  return 0;
}

// moed: the router daemon. Flags are defined here and only here; everything else comes from the
// YAML configuration (configs/moed.yaml documents every key).
//
// Signals are handled on the main thread (blocked everywhere else): SIGTERM/SIGINT drain —
// new requests get 503, in-flight ones finish within scheduler.drain_timeout — then the workers
// stop and moed exits 0. The systemd notify protocol reports READY=1 once the workers are
// loaded, STATUS= lines, WATCHDOG=1 when the service manager asks for it, and STOPPING=1.
// SIGHUP re-reads the configuration and reloads the model (RELOADING=1, then READY=1).
#include <signal.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "configs/config.h"
#include "daemon/daemon.h"
#include "daemon/planner/planner.h"
#include "kernels/base/log.h"

ABSL_FLAG(std::string, config, "",
          "YAML configuration file (default: $MOED_CONFIG, else the built-in defaults of configs/moed.yaml)");
ABSL_FLAG(std::string, model, "", "GGUF model to serve; overrides model.path (default: from the config)");
ABSL_FLAG(std::string, listen, "", "host:port of the OpenAI gateway; overrides server.listen (default: from the config)");
ABSL_FLAG(bool, dry_run, false, "print the effective configuration and the plan, then exit without serving");

namespace {

using moed::daemon::Daemon;

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "moed: %s\n", std::string(status.message()).c_str());
  return 1;
}

absl::StatusOr<moed::config::Config> LoadConfig() {
  std::string path = absl::GetFlag(FLAGS_config);
  if (path.empty()) {
    if (const char* env = std::getenv("MOED_CONFIG")) path = env;
  }
  moed::config::Config config;
  if (!path.empty()) {
    absl::StatusOr<moed::config::Config> loaded = moed::config::LoadConfigFile(path);
    if (!loaded.ok()) return loaded.status();
    config = *std::move(loaded);
  }
  if (!absl::GetFlag(FLAGS_model).empty()) config.model.path = absl::GetFlag(FLAGS_model);
  if (!absl::GetFlag(FLAGS_listen).empty()) config.server.listen = absl::GetFlag(FLAGS_listen);
  if (absl::Status s = moed::config::Validate(config); !s.ok()) return s;
  return config;
}

// Talks to the service manager while moed serves: WATCHDOG=1 at half its period (when it set
// one) and a fresh STATUS= line every few seconds, so that `systemctl status` stays current.
// Stop() wakes it at once, so SIGTERM never waits for a sleeping period.
class Notifier {
 public:
  explicit Notifier(const Daemon* daemon) : daemon_(daemon) {
    uint64_t watchdog_usec = 0;
    if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
      watchdog_ = std::chrono::microseconds(watchdog_usec / 2);
    }
    if (std::getenv("NOTIFY_SOCKET") != nullptr) thread_ = std::thread([this] { Run(); });
  }
  ~Notifier() { Stop(); }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    constexpr std::chrono::milliseconds kStatusEvery(5000);
    auto next_status = std::chrono::steady_clock::now() + kStatusEvery;
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      if (watchdog_.count() > 0) sd_notify(0, "WATCHDOG=1");
      if (std::chrono::steady_clock::now() >= next_status) {
        sd_notify(0, absl::StrCat("STATUS=", daemon_->StatusLine()).c_str());
        next_status += kStatusEvery;
      }
      const auto period = watchdog_.count() > 0 ? std::min<std::chrono::microseconds>(watchdog_, kStatusEvery)
                                                : std::chrono::microseconds(kStatusEvery);
      wake_.wait_for(lock, period, [this] { return stop_; });
    }
  }

  const Daemon* daemon_;
  std::chrono::microseconds watchdog_{0};
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("moed: serves low-bit MoE models (GGUF) over an OpenAI-compatible API");
  // Accept the dashed spellings people type (--dry-run) for Abseil's underscore flag names.
  std::vector<std::string> args(argv, argv + argc);
  std::vector<char*> arg_ptrs;
  for (std::string& a : args) {
    if (a.rfind("--", 0) == 0) std::replace(a.begin(), a.begin() + std::min(a.find('='), a.size()), '-', '_');
    if (a.rfind("__", 0) == 0) a.replace(0, 2, "--");
    arg_ptrs.push_back(a.data());
  }
  absl::ParseCommandLine(static_cast<int>(arg_ptrs.size()), arg_ptrs.data());

  // Block the signals before any thread starts, so that every thread inherits the mask and only
  // sigwait below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<moed::config::Config> config = LoadConfig();
  if (!config.ok()) return Fail(config.status());
  moed::SetLogLevel(config->logging.level);

  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Create(*config);
  if (!daemon.ok()) return Fail(daemon.status());
  if (absl::GetFlag(FLAGS_dry_run)) {
    const std::optional<moed::planner::Plan> plan = (*daemon)->plan();
    std::printf("%s\n%s", moed::config::DumpConfig(*config).c_str(),
                plan ? moed::planner::FormatPlan(*plan).c_str() : "no model.path: moed would start without a model\n");
    return 0;
  }

  sd_notify(0, "STATUS=loading workers");
  if (absl::Status s = (*daemon)->Start(); !s.ok()) {
    sd_notify(0, absl::StrCat("STATUS=failed: ", s.message()).c_str());
    return Fail(s);
  }
  sd_notify(0, absl::StrCat("READY=1\nSTATUS=", (*daemon)->StatusLine()).c_str());

  Notifier notifier(daemon->get());

  for (;;) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGHUP) {
      // systemd's ExecReload: re-read the file, re-plan, reload the workers.
      sd_notify(0, "RELOADING=1\nSTATUS=reloading the configuration");
      absl::StatusOr<moed::config::Config> next = LoadConfig();
      absl::Status reloaded = next.ok() ? (*daemon)->Reload(*next) : next.status();
      if (reloaded.ok()) {
        MOED_LOG(INFO) << "SIGHUP: configuration reloaded";
      } else {
        MOED_LOG(ERROR) << "SIGHUP: reload failed: " << reloaded;
      }
      sd_notify(0, absl::StrCat("READY=1\nSTATUS=", (*daemon)->StatusLine()).c_str());
      continue;
    }
    break;
  }
  const absl::Duration drain_timeout = (*daemon)->config().scheduler.drain_timeout;
  MOED_LOG(INFO) << "draining: new requests get 503, waiting up to " << absl::FormatDuration(drain_timeout)
                 << " for requests in flight";
  sd_notify(0, "STOPPING=1\nSTATUS=draining");
  (*daemon)->BeginDrain();
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(absl::ToInt64Milliseconds(drain_timeout));
  while (!(*daemon)->Idle() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!(*daemon)->Idle()) MOED_LOG(WARNING) << "drain timeout: failing the requests still in flight";
  notifier.Stop();
  (*daemon)->Stop();
  MOED_LOG(INFO) << "stopped";
  return 0;
}

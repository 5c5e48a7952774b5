// Worker start-up, health checks, restart with back-off and pipeline rebuilds.
#include "daemon/workers/supervisor.h"

#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "daemon/metrics/moed_metrics.h"
#include "daemon/workers/worker_process.h"
#include "kernels/base/log.h"
#include "kernels/base/status_macros.h"

namespace moed::daemon {

struct Supervisor::Worker {
  int stage = 0;
  std::string label;            // metrics label: the stage index
  std::string control_path;     // the worker's gRPC socket
  std::string activation_path;  // where it accepts the previous stage's activations
  std::string step_path;        // its step channel
  std::unique_ptr<WorkerProcess> process;
  std::unique_ptr<WorkerClient> control;  // Load, Health, Shutdown
  int backoff_level = 0;
  absl::Time last_restart = absl::InfinitePast();
};

struct Supervisor::State {
  mutable absl::Mutex mu;
  std::shared_ptr<const WorkerPipeline> current ABSL_GUARDED_BY(mu);
  std::string down_reason ABSL_GUARDED_BY(mu);
  uint64_t generation ABSL_GUARDED_BY(mu) = 0;
  bool broken ABSL_GUARDED_BY(mu) = false;
  std::string broken_reason ABSL_GUARDED_BY(mu);
  bool stop ABSL_GUARDED_BY(mu) = false;
  std::vector<int> restarts ABSL_GUARDED_BY(mu);
  std::vector<pid_t> pids ABSL_GUARDED_BY(mu);
  int wake_fd = -1;
  std::thread thread;
};

namespace {

// moed-worker beside the running binary; in a build tree the daemon and the worker live in
// sibling folders.
std::string DefaultWorkerBinary() {
  char self[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return "moed-worker";
  std::string dir(self, static_cast<size_t>(n));
  dir = dir.substr(0, dir.rfind('/'));
  for (const std::string& candidate : {dir + "/moed-worker", dir + "/../workers/moed-worker"}) {
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return dir + "/moed-worker";
}

absl::Status CheckOptions(const WorkerPoolOptions& o) {
  if (o.model_path.empty()) return absl::InvalidArgumentError("worker pool: no model path");
  if (o.stages.empty()) return absl::InvalidArgumentError("worker pool: no stages");
  for (size_t i = 0; i < o.stages.size(); ++i) {
    const auto [first, last] = o.stages[i];
    const int expected_first = i == 0 ? 0 : o.stages[i - 1].second;
    if (first != expected_first || last <= first) {
      return absl::InvalidArgumentError(
          absl::StrCat("worker pool: stage ", i, " has layers [", first, ", ", last,
                       "); stages must be non-empty, contiguous and start at 0"));
    }
  }
  if (o.threads_per_worker < 1)
    return absl::InvalidArgumentError("worker pool: threads_per_worker must be >= 1");
  for (absl::Duration d :
       {o.start_timeout, o.load_timeout, o.rpc_timeout, o.activation_timeout, o.health_interval,
        o.health_timeout, o.step_timeout, o.shutdown_timeout}) {
    if (d <= absl::ZeroDuration())
      return absl::InvalidArgumentError("worker pool: every timeout must be positive");
  }
  if (o.restart_backoff < absl::ZeroDuration() || o.restart_backoff_max < o.restart_backoff) {
    return absl::InvalidArgumentError(
        "worker pool: restart back-off must be >= 0 and <= its maximum");
  }
  return absl::OkStatus();
}

std::string StageName(int stage, const std::pair<int, int>& layers) {
  return absl::StrCat("stage ", stage, " (layers [", layers.first, ", ", layers.second, "))");
}

}  // namespace

Supervisor::Supervisor(const WorkerPoolOptions& options)
    : options_(options), state_(std::make_unique<State>()) {}

absl::StatusOr<std::unique_ptr<Supervisor>> Supervisor::Start(const WorkerPoolOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  std::unique_ptr<Supervisor> s(new Supervisor(options));
  RETURN_IF_ERROR(s->Init());  // on error the destructor stops what was started
  return s;
}

absl::Status Supervisor::Init() {
  worker_binary_ = options_.worker_binary.empty() ? DefaultWorkerBinary() : options_.worker_binary;
  if (access(worker_binary_.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("worker pool: no executable moed-worker at ",
                                            worker_binary_, " (", std::strerror(errno), ")"));
  }
  if (options_.runtime_dir.empty()) {
    char tmpl[] = "/tmp/moed-workers-XXXXXX";
    if (mkdtemp(tmpl) == nullptr)
      return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
    runtime_dir_ = tmpl;
    own_runtime_dir_ = true;
  } else {
    runtime_dir_ = options_.runtime_dir;
  }
  if (runtime_dir_.size() > 80) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker pool: runtime directory ", runtime_dir_,
                     " is too long for Unix socket paths (80 characters at most)"));
  }
  state_->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (state_->wake_fd < 0)
    return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));

  const int k = stage_count();
  {
    absl::MutexLock lock(&state_->mu);
    state_->restarts.assign(k, 0);
    state_->pids.assign(k, 0);
  }
  for (int i = 0; i < k; ++i) {
    auto w = std::make_unique<Worker>();
    w->stage = i;
    w->label = absl::StrCat(i);
    w->control_path = absl::StrCat(runtime_dir_, "/worker-", i, ".sock");
    w->activation_path = i == 0 ? "" : absl::StrCat(runtime_dir_, "/activations-", i, ".sock");
    w->step_path = absl::StrCat(runtime_dir_, "/steps-", i, ".sock");
    if (options_.metrics != nullptr) {
      absl::Status s = options_.metrics->RegisterWorker(w->label);
      if (!s.ok()) {
        MOED_LOG(WARNING) << "worker metrics: " << s;
      }
    }
    workers_.push_back(std::move(w));
  }
  for (int i = 0; i < k; ++i) {
    absl::Status s = SpawnWorker(i);
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("worker pool: ", StageName(i, options_.stages[i]),
                                                 ": ", s.message()));
    }
  }
  std::vector<WorkerLoadFacts> facts;
  std::vector<absl::Status> loaded = LoadAll(&facts);
  for (int i = 0; i < k; ++i) {
    if (!loaded[i].ok()) return loaded[i];
  }
  facts_.n_vocab = facts.back().n_vocab;
  facts_.slot_capacity = facts.back().slot_capacity;
  facts_.context_length = facts[0].context_length;
  for (const WorkerLoadFacts& f : facts) {
    facts_.context_length = std::min(facts_.context_length, f.context_length);
  }
  Publish();
  state_->thread = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

absl::Status Supervisor::SpawnWorker(int i) {
  Worker& w = *workers_[i];
  w.control.reset();
  w.process.reset();
  unlink(w.control_path.c_str());  // a socket file left by a killed worker
  const std::vector<std::string> args = {"--listen", "unix:" + w.control_path, "--log-level",
                                         options_.worker_log_level};
  ASSIGN_OR_RETURN(w.process,
                   WorkerProcess::Spawn(worker_binary_, args, absl::StrCat("[worker ", i, "] ")));
  {
    absl::MutexLock lock(&state_->mu);
    state_->pids[i] = w.process->pid();
  }
  w.control =
      std::make_unique<WorkerClient>("unix:" + w.control_path, options_.step_path, w.step_path);
  const absl::Time deadline = absl::Now() + options_.start_timeout;
  for (;;) {
    if (w.control->WaitConnected(std::min(deadline, absl::Now() + absl::Milliseconds(50))))
      return absl::OkStatus();
    if (w.process->Exited()) {
      return absl::UnavailableError(absl::StrCat("moed-worker (pid ", w.process->pid(), ") ",
                                                 w.process->ExitDescription(),
                                                 " during start-up; see its log"));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "moed-worker (pid ", w.process->pid(), ") did not accept connections within ",
          absl::FormatDuration(options_.start_timeout)));
    }
    if (stopping()) return absl::CancelledError("the worker pool is stopping");
  }
}

std::vector<absl::Status> Supervisor::LoadAll(std::vector<WorkerLoadFacts>* facts) {
  const int k = stage_count();
  std::vector<absl::Status> statuses(k);
  facts->assign(k, {});
  std::vector<std::thread> threads;
  for (int i = 0; i < k; ++i) {
    WorkerLoadSpec spec;
    spec.model_path = options_.model_path;
    spec.first_layer = options_.stages[i].first;
    spec.last_layer = options_.stages[i].second;
    spec.stage_index = i;
    spec.stage_count = k;
    spec.variants = options_.variants;
    spec.cache = options_.cache;
    spec.threads = options_.threads_per_worker;
    spec.backend = options_.backend;
    spec.activation_link = options_.activation_link;
    spec.device = i < static_cast<int>(options_.stage_devices.size()) ? options_.stage_devices[i] : 0;
    spec.activation_listen = workers_[i]->activation_path;
    spec.activation_next = i + 1 < k ? workers_[i + 1]->activation_path : "";
    spec.activation_timeout = options_.activation_timeout;
    spec.step_channel = workers_[i]->step_path;
    spec.step_spin = options_.step_spin;
    threads.emplace_back([this, i, spec, &statuses, facts] {
      auto f = workers_[i]->control->Load(spec, options_.load_timeout);
      if (f.ok()) {
        (*facts)[i] = *f;
      } else {
        statuses[i] = absl::Status(
            f.status().code(), absl::StrCat("worker pool: ", StageName(i, options_.stages[i]), ": ",
                                            f.status().message()));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return statuses;
}

void Supervisor::Publish() {
  auto pipeline = std::make_shared<WorkerPipeline>();
  for (const auto& w : workers_) {
    pipeline->stages.push_back(std::make_shared<WorkerClient>("unix:" + w->control_path,
                                                              options_.step_path, w->step_path));
  }
  absl::MutexLock lock(&state_->mu);
  pipeline->generation = ++state_->generation;
  state_->current = std::move(pipeline);
  state_->broken = false;
  state_->down_reason.clear();
  if (options_.metrics != nullptr) {
    for (const auto& w : workers_) options_.metrics->WorkerUp(w->label).Set(1);
  }
}

absl::StatusOr<std::shared_ptr<const WorkerPipeline>> Supervisor::Current() const {
  absl::MutexLock lock(&state_->mu);
  if (state_->current == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("the worker pipeline is being rebuilt: ", state_->down_reason));
  }
  return state_->current;
}

bool Supervisor::TakeDown(uint64_t generation, const std::string& reason) {
  std::shared_ptr<const WorkerPipeline> old;
  {
    absl::MutexLock lock(&state_->mu);
    if (state_->current == nullptr ||
        (generation != 0 && state_->current->generation != generation))
      return false;
    old = std::move(state_->current);
    state_->current = nullptr;
    state_->down_reason = reason;
  }
  for (const auto& client : old->stages) client->Cancel();  // a blocked step returns at once
  return true;
}

void Supervisor::ReportBroken(uint64_t generation, const absl::Status& why) {
  if (!TakeDown(generation, std::string(why.message()))) return;  // already being handled
  {
    absl::MutexLock lock(&state_->mu);
    state_->broken = true;
    state_->broken_reason = std::string(why.message());
  }
  Wake();
}

absl::Status Supervisor::WaitReady(absl::Duration timeout) const {
  absl::MutexLock lock(&state_->mu);
  auto ready = [](State* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
    return s->current != nullptr || s->stop;
  };
  if (!state_->mu.AwaitWithTimeout(absl::Condition(+ready, state_.get()), timeout) ||
      state_->current == nullptr) {
    return absl::DeadlineExceededError(absl::StrCat("the worker pipeline is not up after ",
                                                    absl::FormatDuration(timeout), ": ",
                                                    state_->down_reason));
  }
  return absl::OkStatus();
}

int Supervisor::restarts(int stage) const {
  absl::MutexLock lock(&state_->mu);
  return stage >= 0 && stage < static_cast<int>(state_->restarts.size()) ? state_->restarts[stage]
                                                                         : 0;
}

std::vector<pid_t> Supervisor::pids() const {
  absl::MutexLock lock(&state_->mu);
  return state_->pids;
}

bool Supervisor::stopping() const {
  absl::MutexLock lock(&state_->mu);
  return state_->stop;
}

void Supervisor::Wake() {
  const uint64_t one = 1;
  ssize_t ignored = write(state_->wake_fd, &one, sizeof(one));
  (void)ignored;
}

bool Supervisor::SleepUnlessStopping(absl::Duration d) {
  absl::MutexLock lock(&state_->mu);
  state_->mu.AwaitWithTimeout(absl::Condition(&state_->stop), d);
  return !state_->stop;
}

void Supervisor::Loop() {
  absl::Time next_health = absl::Now() + options_.health_interval;
  for (;;) {
    std::vector<pollfd> fds = {{state_->wake_fd, POLLIN, 0}};
    bool polling_exits = false;  // some worker has no pidfd: check it every 100 ms
    for (const auto& w : workers_) {
      if (w->process == nullptr) continue;
      if (w->process->exit_fd() >= 0) {
        fds.push_back({w->process->exit_fd(), POLLIN, 0});
      } else {
        polling_exits = true;
      }
    }
    absl::Duration wait = std::max(absl::ZeroDuration(), next_health - absl::Now());
    if (polling_exits) wait = std::min(wait, absl::Milliseconds(100));
    poll(fds.data(), fds.size(), static_cast<int>(absl::ToInt64Milliseconds(wait)) + 1);
    uint64_t drained;
    while (read(state_->wake_fd, &drained, sizeof(drained)) > 0) {
    }
    if (stopping()) return;

    std::vector<int> down;
    std::string reason;
    for (const auto& w : workers_) {
      if (w->process != nullptr && w->process->Exited()) {
        const std::string what = absl::StrCat("worker ", w->stage, " (pid ", w->process->pid(),
                                              ") ", w->process->ExitDescription());
        MOED_LOG(ERROR) << what;
        absl::StrAppend(&reason, reason.empty() ? "" : "; ", what);
        down.push_back(w->stage);
      }
    }
    if (!down.empty()) TakeDown(0, reason);
    bool broken;
    {
      absl::MutexLock lock(&state_->mu);
      broken = state_->broken;
      if (broken) absl::StrAppend(&reason, reason.empty() ? "" : "; ", state_->broken_reason);
      state_->broken = false;
    }
    if (down.empty() && !broken && absl::Now() >= next_health) {
      down = CheckHealth();
      if (!down.empty()) reason = "a worker failed its health check";
      next_health = absl::Now() + options_.health_interval;
    }
    if (!down.empty() || broken) Rebuild(std::move(down), reason);
  }
}

std::vector<int> Supervisor::CheckHealth() {
  std::vector<int> down;
  for (const auto& w : workers_) {
    auto h = w->control->Health(options_.health_timeout);
    std::string problem;
    if (!h.ok()) {
      problem = absl::StrCat("does not answer: ", h.status().message());
    } else if (!h->loaded) {
      problem = "has no stage loaded";
    } else if (h->step_running > options_.step_timeout) {
      problem = absl::StrCat("has run one step for ", absl::FormatDuration(h->step_running));
    }
    if (!problem.empty()) {
      const std::string what =
          absl::StrCat("worker ", w->stage, " (pid ", w->process->pid(), ") ", problem);
      MOED_LOG(ERROR) << what << "; killing it";
      TakeDown(0, what);  // before the kill, so that no caller sees the pipeline up and broken
      w->process->Kill();
      down.push_back(w->stage);
    } else if (options_.metrics != nullptr) {
      options_.metrics->WorkerMemory(w->label).Set(static_cast<double>(h->rss_bytes));
    }
  }
  return down;
}

void Supervisor::Rebuild(std::vector<int> down, const std::string& reason) {
  MOED_LOG(WARNING) << "rebuilding the worker pipeline: " << reason;
  TakeDown(0, reason);
  std::set<int> dead(down.begin(), down.end());
  for (;;) {
    for (auto it = dead.begin(); it != dead.end();) {
      Worker& w = *workers_[*it];
      if (options_.metrics != nullptr) options_.metrics->WorkerUp(w.label).Set(0);
      if (w.process != nullptr) {
        w.process->Kill();
        w.process->WaitExited(absl::Seconds(10));
      }
      if (absl::Now() - w.last_restart > options_.restart_backoff_reset) w.backoff_level = 0;
      const absl::Duration delay =
          std::min(options_.restart_backoff * (int64_t{1} << std::min(w.backoff_level, 30)),
                   options_.restart_backoff_max);
      ++w.backoff_level;
      if (!SleepUnlessStopping(delay)) return;
      w.last_restart = absl::Now();
      {
        absl::MutexLock lock(&state_->mu);
        ++state_->restarts[w.stage];
      }
      if (options_.metrics != nullptr) options_.metrics->WorkerRestarts(w.label).Increment();
      absl::Status s = SpawnWorker(w.stage);
      if (!s.ok()) {
        MOED_LOG(ERROR) << "restarting worker " << w.stage << ": " << s;
        ++it;
        continue;
      }
      MOED_LOG(INFO) << "worker " << w.stage << " restarted as pid " << w.process->pid()
                     << " after " << absl::FormatDuration(delay);
      it = dead.erase(it);
    }
    if (stopping()) return;
    if (!dead.empty()) continue;
    std::vector<WorkerLoadFacts> facts;
    std::vector<absl::Status> loaded = LoadAll(&facts);
    for (int i = 0; i < stage_count(); ++i) {
      if (loaded[i].ok()) continue;
      MOED_LOG(ERROR) << loaded[i] << "; restarting that worker";
      dead.insert(i);
    }
    if (dead.empty()) break;
  }
  Publish();
  MOED_LOG(INFO) << "worker pipeline is up again";
}

void Supervisor::StopWorkers() {
  std::shared_ptr<const WorkerPipeline> last;
  {
    absl::MutexLock lock(&state_->mu);
    state_->stop = true;
    last = std::move(state_->current);
    state_->current = nullptr;
    state_->down_reason = "the worker pool is stopping";
  }
  if (state_->wake_fd >= 0) Wake();
  if (state_->thread.joinable()) state_->thread.join();
  // Close the step paths first: a worker's server waits for open calls before it exits.
  if (last != nullptr) {
    for (const auto& client : last->stages) client->Cancel();
  }
  last.reset();
  for (const auto& w : workers_) {
    if (w->process == nullptr || w->process->Exited() || w->control == nullptr) continue;
    absl::Status s = w->control->Shutdown(std::min(options_.shutdown_timeout, absl::Seconds(2)));
    if (!s.ok()) {
      MOED_LOG(WARNING) << "worker " << w->stage << ": Shutdown: " << s;
    }
  }
  // Our connections go too: a worker's server finishes its shutdown once its clients are gone.
  for (const auto& w : workers_) w->control.reset();
  for (const auto& w : workers_) {
    if (w->process == nullptr) continue;
    if (!w->process->WaitExited(options_.shutdown_timeout)) {
      MOED_LOG(WARNING) << "worker " << w->stage << " (pid " << w->process->pid()
                        << ") did not stop in " << absl::FormatDuration(options_.shutdown_timeout)
                        << "; killing it";
    } else if (w->process->ExitDescription() != "exited with status 0") {
      MOED_LOG(WARNING) << "worker " << w->stage << " (pid " << w->process->pid() << ") "
                        << w->process->ExitDescription() << " while stopping";
    }
    w->process.reset();  // kills if still running, and reaps
    if (options_.metrics != nullptr) options_.metrics->WorkerUp(w->label).Set(0);
  }
  for (const auto& w : workers_) {
    unlink(w->control_path.c_str());
    if (!w->activation_path.empty()) unlink(w->activation_path.c_str());
    unlink(w->step_path.c_str());
  }
  if (own_runtime_dir_) rmdir(runtime_dir_.c_str());
  {
    absl::MutexLock lock(&state_->mu);
    std::fill(state_->pids.begin(), state_->pids.end(), 0);
  }
}

Supervisor::~Supervisor() {
  StopWorkers();
  if (state_->wake_fd >= 0) close(state_->wake_fd);
}

}  // namespace moed::daemon

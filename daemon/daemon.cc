#include "daemon/daemon.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "daemon/admin/admin_service.h"
#include "daemon/devices/discovery.h"
#include "daemon/gateway/gateway.h"
#include "daemon/gateway/gateway_config.h"
#include "daemon/gateway/generation_backend.h"
#include "daemon/gateway/http_server.h"
#include "daemon/gateway/served_model.h"
#include "daemon/metrics/moed_metrics.h"
#include "daemon/planner/footprint.h"
#include "daemon/planner/planner.h"
#include "daemon/scheduler/scheduler.h"
#include "daemon/workers/worker_pool.h"
#include "kernels/base/log.h"
#include "kernels/base/strings.h"
#include "kernels/base/status_macros.h"
#include "loader/gguf/gguf_file.h"

namespace moed::daemon {
namespace {

using Clock = std::chrono::steady_clock;

// What a configuration resolves to before any process starts: the devices and the plan.
struct Placement {
  std::vector<Device> devices;
  planner::Plan plan;
};

// One served model: everything a reload replaces. Immutable once published, except through the
// thread-safe objects it points to.
struct Serving {
  config::ModelOptions model;
  Placement placement;
  std::string model_id;
  std::string phase;
  double load_seconds = 0;
  Clock::time_point since;
  // Owns the WorkerPool. Shared only so that the gateway's backend can hold a weak reference.
  std::shared_ptr<Scheduler> scheduler;
  WorkerPool* workers = nullptr;  // owned by `scheduler`
};

int Cores() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

int DefaultThreadsPerWorker(int stages) { return std::max(1, Cores() / std::max(1, stages)); }

text::ReasoningFormat ToText(config::ReasoningFormat f) {
  return f == config::ReasoningFormat::kRaw ? text::ReasoningFormat::kRaw : text::ReasoningFormat::kSeparate;
}

std::string PhaseName(const planner::Plan& plan) {
  switch (plan.mode) {
    case planner::PlanMode::kVariant: return absl::StrCat("variant ", plan.variant);
    case planner::PlanMode::kBudget: return absl::StrCat("budget ", plan.budget_mb, "MiB");
    default: return "none";
  }
}

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

absl::StatusOr<Placement> Place(const config::Config& c) {
  DiscoveryOptions discovery;
  const auto& backends = c.devices.backends;
  discovery.enable_cuda = std::find(backends.begin(), backends.end(), config::Backend::kCuda) != backends.end();
  discovery.enable_level_zero =
      std::find(backends.begin(), backends.end(), config::Backend::kLevelZero) != backends.end();
  Placement p;
  ASSIGN_OR_RETURN(p.devices, DiscoverDevices(discovery));
  ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> file, gguf::GgufFile::Open(c.model.path));
  ASSIGN_OR_RETURN(planner::ModelFootprint footprint, planner::FootprintFromFile(*file));
  ASSIGN_OR_RETURN(p.plan, planner::MakePlan(footprint, p.devices, planner::PlannerOptionsFromConfig(c)));
  for (const std::string& w : p.plan.warnings) MOED_LOG(WARNING) << "plan: " << w;
  if (p.plan.backend == DeviceBackend::kLevelZero) {
    return absl::UnimplementedError(
        "the plan puts stages on Level Zero GPUs, which moed-worker cannot compute on yet; "
        "set devices.backends: [cuda, cpu] or [cpu]");
  }
  return p;
}

}  // namespace

// Impl is also the admin API's backend (daemon/admin): its methods run on gRPC threads while the
// admin server is up, which is only between the end of Start() and the beginning of Stop().
//
// Locking: `reload_mu` serialises model changes (load, unload, phase switch) for their whole
// length; `mu` guards `config` and `serving` and is held only to read or swap them, so status
// calls keep answering during a reload.
struct Daemon::Impl final : public admin::AdminBackend {
  std::unique_ptr<metrics::MoedMetrics> metrics;
  std::unique_ptr<gateway::Gateway> gateway;
  std::unique_ptr<gateway::HttpServer> server;
  std::unique_ptr<admin::AdminServer> admin_server;  // stopped first, before what it reads
  std::string listen;
  std::atomic<bool> draining{false};
  std::atomic<bool> loading{false};  // while a model's workers start

  std::mutex reload_mu;
  mutable std::mutex mu;
  config::Config config;             // the model section is the served (or last requested) one
  std::optional<Placement> pending;  // Create()'s placement, used by Start()
  std::shared_ptr<const Serving> serving;  // null: no model served

  std::shared_ptr<const Serving> Current() const {
    std::lock_guard<std::mutex> lock(mu);
    return serving;
  }
  config::Config CurrentConfig() const {
    std::lock_guard<std::mutex> lock(mu);
    return config;
  }
  void SetConfig(const config::Config& c) {
    std::lock_guard<std::mutex> lock(mu);
    config = c;
  }
  void Publish(std::shared_ptr<const Serving> s) {
    std::lock_guard<std::mutex> lock(mu);
    serving = std::move(s);
  }
  WorkerPoolOptions PoolOptions(const config::Config& c, const planner::Plan& plan) const;
  SchedulerOptions SchedulerOpts(const config::Config& c, const planner::Plan& plan) const;
  // Starts the workers and the scheduler for `c` placed as `placement`, and hands the model to
  // the gateway.
  absl::StatusOr<std::shared_ptr<const Serving>> Launch(const config::Config& c, Placement placement);
  // Takes the served model out of the gateway (new requests get 503 with `why`), lets the requests
  // in flight finish within the drain timeout, then stops its scheduler and workers.
  void Retire(const std::string& why, absl::Duration drain_timeout);
  // Applies `change` to the configuration and serves the model it names (an empty path: none) in
  // place of the current one; returns what is served (null for none). See admin.proto.
  absl::StatusOr<std::shared_ptr<const Serving>> Replace(const std::function<void(config::Config&)>& change);
  absl::Status StartAdmin();
  admin::AdminModel Describe(const Serving& s) const;

  // admin::AdminBackend
  absl::StatusOr<admin::AdminStatus> Status() const override;
  std::string PlanText() const override;
  std::string PlanJson() const override;
  bool BeginDrain() override;
  // main.cc's sigwait loop does the rest, exactly as for `kill -TERM`.
  void RequestShutdown() override { kill(getpid(), SIGTERM); }
  std::vector<admin::AdminModel> ListModels() const override;
  absl::StatusOr<admin::AdminModel> LoadModel(const std::string& path, const std::string& name,
                                              const admin::PhaseChoice& phase) override;
  absl::StatusOr<std::string> UnloadModel() override;
  absl::StatusOr<admin::AdminModel> SwitchPhase(const admin::PhaseChoice& phase) override;
};

WorkerPoolOptions Daemon::Impl::PoolOptions(const config::Config& c, const planner::Plan& plan) const {
  WorkerPoolOptions o;
  o.worker_binary = c.workers.binary;
  o.model_path = c.model.path;
  if (plan.mode == planner::PlanMode::kVariant) o.variants.variant = plan.variant;
  if (plan.mode == planner::PlanMode::kBudget) o.variants.budget_mb = plan.budget_mb;
  int64_t kv_blocks = 1;
  o.backend = plan.backend == DeviceBackend::kCuda ? "cuda" : "cpu";
  const config::ActivationLink link = c.workers.activation_link;
  if (plan.backend == DeviceBackend::kCuda && plan.stages.size() > 1 && link != config::ActivationLink::kSocket) {
    o.activation_link = "nccl";
  } else if (link == config::ActivationLink::kNccl && plan.stages.size() > 1) {
    MOED_LOG(WARNING) << "workers.activation_link is nccl, but the plan's stages are not CUDA GPUs: "
                         "activations go over Unix sockets";
  }
  for (const planner::PlanStage& s : plan.stages) {
    o.stages.emplace_back(s.first_layer, s.last_layer);
    o.stage_devices.push_back(s.device_index);
    kv_blocks = std::max(kv_blocks, s.kv_blocks);
  }
  o.threads_per_worker =
      c.workers.threads > 0 ? c.workers.threads : DefaultThreadsPerWorker(static_cast<int>(plan.stages.size()));
  // Spinning on the step channel saves a wake-up per step and hop (tens of microseconds on a VM),
  // but only pays when the router and every compute thread of every worker have a core of their
  // own; otherwise the spinner steals the core the work needs.
  const int busy = static_cast<int>(plan.stages.size()) * o.threads_per_worker + 1;
  o.step_spin = Cores() >= busy ? absl::Microseconds(200) : absl::ZeroDuration();
  o.cache.max_slots = plan.slots;
  o.cache.kv_block_size = plan.kv_block_size;
  o.cache.kv_blocks = kv_blocks;
  o.health_interval = c.workers.health_check_interval;
  o.health_timeout = c.workers.health_check_timeout;
  o.restart_backoff = c.workers.restart_backoff_initial;
  o.restart_backoff_max = c.workers.restart_backoff_max;
  o.worker_log_level = std::string(config::LogLevelName(c.logging.level));
  o.metrics = metrics.get();
  return o;
}

SchedulerOptions Daemon::Impl::SchedulerOpts(const config::Config& c, const planner::Plan& plan) const {
  SchedulerOptions o;
  o.max_running = plan.slots;
  o.max_batch_tokens = c.scheduler.max_batch_tokens;
  o.prefill_chunk = c.scheduler.prefill_chunk;
  o.queue_capacity = std::max(1, c.scheduler.queue_capacity);
  o.prefix_cache_entries = c.cache.prefix_cache ? c.cache.prefix_cache_snapshots : 0;
  o.pipeline = c.scheduler.pipeline;
  return o;
}

absl::StatusOr<std::shared_ptr<const Serving>> Daemon::Impl::Launch(const config::Config& c, Placement placement) {
  const Clock::time_point start = Clock::now();
  auto s = std::make_shared<Serving>();
  s->model = c.model;
  s->placement = std::move(placement);
  const planner::Plan& plan = s->placement.plan;
  ASSIGN_OR_RETURN(gateway::ModelText text, gateway::LoadModelText(c.model.path, c.model.chat_template_file));
  ASSIGN_OR_RETURN(std::unique_ptr<WorkerPool> pool, WorkerPool::Create(PoolOptions(c, plan)));
  s->workers = pool.get();
  const ExecutorInfo info = pool->info();
  s->scheduler = std::make_shared<Scheduler>(std::move(pool), SchedulerOpts(c, plan), metrics.get());
  RETURN_IF_ERROR(s->scheduler->Start());

  auto model = std::make_shared<gateway::ServedModel>();
  model->id = c.model.name.empty() ? std::filesystem::path(c.model.path).stem().string() : c.model.name;
  model->created = static_cast<int64_t>(std::time(nullptr));
  model->context_length = info.context_length;
  model->tokenizer = std::move(text.tokenizer);
  model->chat_template = std::move(text.chat_template);
  model->reasoning_format = ToText(c.model.reasoning_format);
  model->backend = std::make_shared<gateway::SchedulerBackend>(s->scheduler);
  s->model_id = model->id;
  s->phase = PhaseName(plan);
  s->load_seconds = SecondsSince(start);
  s->since = Clock::now();
  if (absl::Status st = metrics->SetPhase(s->model_id, s->phase); !st.ok()) MOED_LOG(WARNING) << st;
  metrics->model_load_seconds().Set(s->load_seconds);
  gateway->SetModel(std::move(model));
  MOED_LOG(INFO) << "serving '" << s->model_id << "' (phase " << s->phase << ") with " << plan.stages.size()
                 << " worker stage(s), " << info.slot_capacity << " slots of " << info.context_length
                 << " tokens (loaded in " << s->load_seconds << " s)";
  return s;
}

void Daemon::Impl::Retire(const std::string& why, absl::Duration drain_timeout) {
  std::shared_ptr<const Serving> old;
  {
    std::lock_guard<std::mutex> lock(mu);
    old = std::move(serving);
  }
  gateway->SetModel(nullptr, why);
  if (old == nullptr) return;
  old->scheduler->Drain();
  const Clock::time_point deadline =
      Clock::now() + std::chrono::milliseconds(absl::ToInt64Milliseconds(drain_timeout));
  while (!old->scheduler->Idle() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (!old->scheduler->Idle()) MOED_LOG(WARNING) << "reload: drain timeout; failing the requests still in flight";
  // Status calls and gateway backends may hold the scheduler for a moment; wait for them so that
  // the old workers are gone before new ones start (on a GPU they hold the memory).
  std::weak_ptr<Scheduler> scheduler = old->scheduler;
  old.reset();
  const Clock::time_point released_by = Clock::now() + std::chrono::seconds(10);
  while (!scheduler.expired() && Clock::now() < released_by) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!scheduler.expired()) MOED_LOG(WARNING) << "reload: the old scheduler is still referenced; starting the new one";
}

absl::StatusOr<std::shared_ptr<const Serving>> Daemon::Impl::Replace(
    const std::function<void(config::Config&)>& change) {
  std::lock_guard<std::mutex> reload(reload_mu);
  if (draining) return absl::FailedPreconditionError("moed is draining; the model cannot change now");
  const config::Config previous = CurrentConfig();
  config::Config next = previous;
  change(next);
  RETURN_IF_ERROR(config::Validate(next));
  // Plan first: a file that cannot be opened or placed leaves the current model serving.
  std::optional<Placement> placement;
  if (!next.model.path.empty()) {
    ASSIGN_OR_RETURN(placement, Place(next));
  }
  loading = placement.has_value();
  Retire(next.model.path.empty() ? "No model is loaded" : "Reloading the model", previous.scheduler.drain_timeout);
  SetConfig(next);
  if (!placement) return nullptr;
  absl::StatusOr<std::shared_ptr<const Serving>> launched = Launch(next, *std::move(placement));
  loading = false;
  if (launched.ok()) {
    Publish(*launched);
    return *launched;
  }
  MOED_LOG(ERROR) << "reload failed: " << launched.status();
  std::string outcome = "no model is served now";
  if (!previous.model.path.empty()) {
    absl::StatusOr<Placement> back = Place(previous);
    absl::StatusOr<std::shared_ptr<const Serving>> restored =
        back.ok() ? Launch(previous, *std::move(back)) : back.status();
    if (restored.ok()) {
      outcome = "moed serves the previous model again";
      SetConfig(previous);
      Publish(*restored);
    }
  }
  if (Current() == nullptr) gateway->SetModel(nullptr, "No model is loaded: the last load failed");
  return absl::Status(launched.status().code(), absl::StrCat(launched.status().message(), " (", outcome, ")"));
}

absl::Status Daemon::Impl::StartAdmin() {
  admin::AdminServerOptions options;
  options.socket = config.admin.socket;
  options.tcp_listen = config.admin.tcp_listen;
  if (!options.tcp_listen.empty()) {
    ASSIGN_OR_RETURN(options.token, config::ResolveAdminToken(config.admin));
  }
  ASSIGN_OR_RETURN(admin_server, admin::AdminServer::Start(options, this));
  return absl::OkStatus();
}

admin::AdminModel Daemon::Impl::Describe(const Serving& s) const {
  admin::AdminModel m;
  m.id = s.model_id;
  m.path = s.model.path;
  m.phase = s.phase;
  m.max_variant = s.placement.plan.max_variant;
  m.weight_bytes = s.placement.plan.weight_bytes;
  m.load_seconds = s.load_seconds;
  return m;
}

absl::StatusOr<admin::AdminStatus> Daemon::Impl::Status() const {
  if (gateway == nullptr) return absl::UnavailableError("moed is not serving yet");
  admin::AdminStatus s;
  s.listen = listen;
  s.draining = draining;
  const std::shared_ptr<const Serving> current = Current();
  if (current == nullptr) {
    s.phase = "none";
    s.plan_summary = loading ? "loading the model" : "no model loaded";
    return s;
  }
  const planner::Plan& plan = current->placement.plan;
  s.model = current->model_id;
  s.model_path = current->model.path;
  s.phase = current->phase;
  s.plan_summary = absl::StrCat(plan.stages.size(), " ", Sv(DeviceBackendName(plan.backend)), " stage(s), ", plan.slots,
                                " slots of ", plan.context_length, " tokens, ", plan.n_layer, " layers");
  s.devices = current->placement.devices;
  for (const planner::PlanStage& stage : plan.stages) {
    s.workers.push_back({stage.index, stage.device_id, stage.first_layer, stage.last_layer,
                         current->workers->restarts(stage.index)});
  }
  s.workers_ready = current->workers->WaitReady(absl::ZeroDuration()).ok();
  const SchedulerStats stats = current->scheduler->Stats();
  s.queue_length = stats.queue_length;
  s.running = stats.running;
  s.slot_capacity = stats.slot_capacity;
  s.steps = stats.steps;
  s.prefix_lookups = stats.prefix_lookups;
  s.prefix_hits = stats.prefix_hits;
  s.draining = s.draining || stats.draining;
  s.context_length = plan.context_length;
  s.uptime_seconds = SecondsSince(current->since);
  return s;
}

std::string Daemon::Impl::PlanText() const {
  const std::shared_ptr<const Serving> current = Current();
  return current ? planner::FormatPlan(current->placement.plan) : "no model loaded\n";
}

std::string Daemon::Impl::PlanJson() const {
  const std::shared_ptr<const Serving> current = Current();
  return current ? planner::PlanToJson(current->placement.plan) : "{}";
}

bool Daemon::Impl::BeginDrain() {
  const bool already = draining.exchange(true);
  if (gateway) gateway->SetDraining(true);
  if (const std::shared_ptr<const Serving> current = Current()) current->scheduler->Drain();
  return already;
}

std::vector<admin::AdminModel> Daemon::Impl::ListModels() const {
  const std::shared_ptr<const Serving> current = Current();
  if (current == nullptr) return {};
  return {Describe(*current)};
}

absl::StatusOr<admin::AdminModel> Daemon::Impl::LoadModel(const std::string& path, const std::string& name,
                                                          const admin::PhaseChoice& phase) {
  if (path.empty()) return absl::InvalidArgumentError("LoadModel needs the path of a GGUF file");
  // The reasoning format and context settings stay as configured; the template is the file's.
  ASSIGN_OR_RETURN(std::shared_ptr<const Serving> s, Replace([&](config::Config& c) {
                     c.model.path = path;
                     c.model.name = name;
                     c.model.chat_template_file.clear();
                     c.model.variant = phase.variant;
                     c.model.budget_mb = phase.budget_mb;
                   }));
  return Describe(*s);
}

absl::StatusOr<std::string> Daemon::Impl::UnloadModel() {
  std::string id;  // not the Serving itself: Retire waits until nothing holds it
  if (const std::shared_ptr<const Serving> current = Current()) id = current->model_id;
  RETURN_IF_ERROR(Replace([](config::Config& c) {
                    config::ModelOptions none;
                    none.reasoning_format = c.model.reasoning_format;
                    none.context_length = c.model.context_length;
                    c.model = none;
                  }).status());
  return id;
}

absl::StatusOr<admin::AdminModel> Daemon::Impl::SwitchPhase(const admin::PhaseChoice& phase) {
  if (Current() == nullptr) return absl::FailedPreconditionError("no model is loaded; use LoadModel");
  ASSIGN_OR_RETURN(std::shared_ptr<const Serving> s, Replace([&](config::Config& c) {
                     c.model.variant = phase.variant;
                     c.model.budget_mb = phase.budget_mb;
                   }));
  if (s == nullptr) return absl::FailedPreconditionError("no model is loaded; use LoadModel");
  return Describe(*s);
}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Create(config::Config config) {
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  if (!impl->config.model.path.empty()) {
    ASSIGN_OR_RETURN(impl->pending, Place(impl->config));
  }
  return std::unique_ptr<Daemon>(new Daemon(std::move(impl)));
}

Daemon::Daemon(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Daemon::~Daemon() { Stop(); }

config::Config Daemon::config() const { return impl_->CurrentConfig(); }

std::optional<planner::Plan> Daemon::plan() const {
  if (impl_->pending) return impl_->pending->plan;
  if (const std::shared_ptr<const Serving> current = impl_->Current()) return current->placement.plan;
  return std::nullopt;
}

absl::Status Daemon::Start() {
  Impl& d = *impl_;
  const config::Config& c = d.config;
  ASSIGN_OR_RETURN(d.metrics, metrics::MoedMetrics::Create());

  // The gateway answers /health with 503 until the model is set.
  ASSIGN_OR_RETURN(gateway::GatewayOptions gateway_options, gateway::GatewayOptionsFromConfig(c));
  d.gateway = std::make_unique<gateway::Gateway>(gateway_options, c.metrics.enabled ? d.metrics.get() : nullptr);
  d.server = std::make_unique<gateway::HttpServer>(gateway::HttpServerOptions::FromGateway(gateway_options),
                                                   d.gateway.get());
  ASSIGN_OR_RETURN(uint16_t port, d.server->Start());
  d.listen = absl::StrCat(gateway_options.host, ":", port);
  MOED_LOG(INFO) << "gateway listening on " << d.listen;

  // The admin API first: a second moed on the same socket fails before it starts workers, and
  // `moectl status` answers while the model loads.
  std::lock_guard<std::mutex> reload(d.reload_mu);  // admin model changes wait for the first load
  d.loading = d.pending.has_value();
  RETURN_IF_ERROR(d.StartAdmin());
  if (!d.pending) {
    d.gateway->SetModel(nullptr, "No model is loaded");
    MOED_LOG(INFO) << "no model.path: serving no model until `moectl load` loads one";
    return absl::OkStatus();
  }
  absl::StatusOr<std::shared_ptr<const Serving>> s = d.Launch(c, *std::move(d.pending));
  d.pending.reset();
  d.loading = false;
  if (!s.ok()) return s.status();
  d.Publish(*std::move(s));
  return absl::OkStatus();
}

absl::Status Daemon::Reload(const config::Config& next) {
  bool restart_needed = false;
  absl::Status s = impl_->Replace([&](config::Config& c) {
                     // Only what the workers and the scheduler take at start can change here.
                     c.model = next.model;
                     c.devices = next.devices;
                     c.workers = next.workers;
                     c.scheduler = next.scheduler;
                     c.cache = next.cache;
                     restart_needed = !(c == next);
                   }).status();
  if (restart_needed) {
    MOED_LOG(WARNING) << "reload: changes to server, admin, logging or metrics take effect only after a restart";
  }
  return s;
}

uint16_t Daemon::port() const { return impl_->server ? impl_->server->port() : 0; }

std::string Daemon::StatusLine() const {
  const std::shared_ptr<const Serving> current = impl_->Current();
  if (current == nullptr) return impl_->draining ? "draining" : "no model loaded";
  const SchedulerStats s = current->scheduler->Stats();
  return absl::StrCat(s.draining ? "draining: " : "serving: ", current->model_id, " (", current->phase, "), ", s.running,
                      " running, ", s.queue_length, " queued, ", current->placement.plan.stages.size(), " stages");
}

void Daemon::BeginDrain() { impl_->BeginDrain(); }

bool Daemon::Idle() const {
  const std::shared_ptr<const Serving> current = impl_->Current();
  return current == nullptr || current->scheduler->Idle();
}

void Daemon::Stop() {
  Impl& d = *impl_;
  d.admin_server.reset();  // waits for admin calls in flight, which read the scheduler
  if (d.server) d.server->Stop();
  {
    std::lock_guard<std::mutex> lock(d.mu);
    d.serving.reset();  // the scheduler fails what is left, then destroys the worker pool it owns
  }
  d.server.reset();
  d.gateway.reset();
}

}  // namespace moed::daemon

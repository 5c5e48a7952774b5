// The catalogue of moed's metrics: every family moed exports is registered here, with its help
// text, labels and buckets; see moed_metrics.h.
#include "daemon/metrics/moed_metrics.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

#ifndef MOED_VERSION
#define MOED_VERSION "unknown"  // set by daemon/CMakeLists.txt from the project version
#endif

namespace moed::metrics {
namespace {

// Latency buckets in seconds, close to vLLM's so dashboards and alerts read the same way: TTFT
// spans a cached short prompt to a long CPU prefill; ITL a GPU step to a stalled pipeline.
const std::vector<double> kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                          0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0,
                                          20.0,  40.0,  80.0, 160.0, 640.0};
const std::vector<double> kItlBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075,
                                         0.1,   0.15,   0.2,   0.3,  0.4,   0.5,  0.75,
                                         1.0,   2.5,    5.0,   10.0};
const std::vector<double> kE2eBuckets = {0.1,  0.25, 0.5,  1.0,  1.5,   2.0,   2.5,
                                         5.0,  10.0, 15.0, 20.0, 30.0,  40.0,  50.0,
                                         60.0, 120.0, 240.0, 480.0, 960.0, 1920.0};
// One pipeline stage's forward pass: tens of microseconds (a small GPU decode) to seconds (a
// CPU prefill chunk).
const std::vector<double> kStepBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                          0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                          1.0,    2.5,     5.0,    10.0};

template <typename T>
absl::StatusOr<T*> Unlabelled(Registry& registry, FamilyOptions options) {
  ASSIGN_OR_RETURN(Family<T> * family, registry.AddFamily<T>(std::move(options)));
  return family->TryAdd({});
}

Labels WorkerLabels(std::string_view worker) { return {{"worker", std::string(worker)}}; }

}  // namespace

std::string BuildInfo::DefaultVersion() { return MOED_VERSION; }

std::string BuildInfo::DefaultCompiler() {
#if defined(__clang__)
  return std::string(absl::StripAsciiWhitespace(absl::StrCat("clang ", __clang_version__)));
#elif defined(__GNUC__)
  return absl::StrCat("gcc ", __VERSION__);
#else
  return "unknown";
#endif
}

absl::StatusOr<std::unique_ptr<MoedMetrics>> MoedMetrics::Create(const BuildInfo& build) {
  std::unique_ptr<MoedMetrics> metrics(new MoedMetrics());
  RETURN_IF_ERROR(metrics->Build(build));
  return metrics;
}

absl::Status MoedMetrics::Build(const BuildInfo& build) {
  Registry& r = registry_;

  // Gateway.
  ASSIGN_OR_RETURN(requests_,
                   r.AddFamily<Counter>(
                       {.name = "moed_requests_total",
                        .help = "HTTP requests answered, by endpoint path and HTTP status code.",
                        .label_names = {"endpoint", "status"},
                        .max_children = 1000}));
  ASSIGN_OR_RETURN(prompt_tokens_,
                   Unlabelled<Counter>(r, {.name = "moed_prompt_tokens_total",
                                           .help = "Prompt tokens processed (prefilled or taken "
                                                   "from the prefix cache)."}));
  ASSIGN_OR_RETURN(generation_tokens_,
                   Unlabelled<Counter>(r, {.name = "moed_generation_tokens_total",
                                           .help = "Tokens generated and sent to clients."}));
  ASSIGN_OR_RETURN(ttft_, Unlabelled<Histogram>(
                              r, {.name = "moed_time_to_first_token_seconds",
                                  .help = "Time from request arrival to its first generated token.",
                                  .buckets = kTtftBuckets}));
  ASSIGN_OR_RETURN(itl_, Unlabelled<Histogram>(
                             r, {.name = "moed_inter_token_latency_seconds",
                                 .help = "Time between consecutive generated tokens of a request.",
                                 .buckets = kItlBuckets}));
  ASSIGN_OR_RETURN(e2e_, Unlabelled<Histogram>(
                             r, {.name = "moed_e2e_request_latency_seconds",
                                 .help = "Time from request arrival to its last byte.",
                                 .buckets = kE2eBuckets}));

  // Scheduler.
  ASSIGN_OR_RETURN(queue_length_,
                   Unlabelled<Gauge>(r, {.name = "moed_queue_length",
                                         .help = "Requests waiting for admission."}));
  ASSIGN_OR_RETURN(queue_capacity_,
                   Unlabelled<Gauge>(r, {.name = "moed_queue_capacity",
                                         .help = "Queue bound: beyond it requests get 429/503."}));
  ASSIGN_OR_RETURN(running_, Unlabelled<Gauge>(
                                 r, {.name = "moed_running_sequences",
                                     .help = "Sequences in the running batch (prefill or decode)."}));
  ASSIGN_OR_RETURN(slots_used_,
                   Unlabelled<Gauge>(r, {.name = "moed_slots_used",
                                         .help = "Sequence state slots in use."}));
  ASSIGN_OR_RETURN(slots_capacity_,
                   Unlabelled<Gauge>(r, {.name = "moed_slots_capacity",
                                         .help = "Sequence state slots the plan provides."}));
  ASSIGN_OR_RETURN(kv_used_,
                   Unlabelled<Gauge>(r, {.name = "moed_kv_blocks_used",
                                         .help = "KV cache blocks in use (attention layers)."}));
  ASSIGN_OR_RETURN(kv_capacity_,
                   Unlabelled<Gauge>(r, {.name = "moed_kv_blocks_capacity",
                                         .help = "KV cache blocks the plan provides."}));
  ASSIGN_OR_RETURN(prefix_lookups_,
                   Unlabelled<Counter>(r, {.name = "moed_prefix_cache_lookups_total",
                                           .help = "Prompts looked up in the prefix cache."}));
  ASSIGN_OR_RETURN(prefix_hits_,
                   Unlabelled<Counter>(r, {.name = "moed_prefix_cache_hits_total",
                                           .help = "Prefix cache lookups that reused a snapshot "
                                                   "of a slot's state."}));

  // Workers.
  ASSIGN_OR_RETURN(step_, r.AddFamily<Histogram>(
                              {.name = "moed_worker_step_duration_seconds",
                               .help = "Time a worker stage takes for one batch step.",
                               .label_names = {"worker"},
                               .buckets = kStepBuckets,
                               .max_children = 256}));
  ASSIGN_OR_RETURN(restarts_, r.AddFamily<Counter>(
                                  {.name = "moed_worker_restarts_total",
                                   .help = "Times the supervisor restarted a worker process.",
                                   .label_names = {"worker"},
                                   .max_children = 256}));
  ASSIGN_OR_RETURN(worker_up_,
                   r.AddFamily<Gauge>({.name = "moed_worker_up",
                                       .help = "1 when the worker is loaded and healthy, else 0.",
                                       .label_names = {"worker"},
                                       .max_children = 256}));
  ASSIGN_OR_RETURN(worker_memory_,
                   r.AddFamily<Gauge>({.name = "moed_worker_memory_bytes",
                                       .help = "Device memory the worker holds (weights, state, "
                                               "buffers).",
                                       .label_names = {"worker"},
                                       .max_children = 256}));
  ASSIGN_OR_RETURN(worker_idle_,
                   r.AddFamily<Gauge>({.name = "moed_worker_idle_ratio",
                                       .help = "Fraction of the time the pipeline had a step in flight that "
                                               "the worker stage was not computing (the pipeline bubble and "
                                               "its waits for activations), over the last window of >= 1 s.",
                                       .label_names = {"worker"},
                                       .max_children = 256}));

  // Model, plan and build.
  ASSIGN_OR_RETURN(load_seconds_,
                   Unlabelled<Gauge>(r, {.name = "moed_model_load_seconds",
                                         .help = "Time the last model load took, from planning "
                                                 "to every worker ready."}));
  ASSIGN_OR_RETURN(phase_, r.AddFamily<Info>(
                               {.name = "moed_phase_info",
                                .help = "Active Phase Twin variant (phase) of the served model.",
                                .label_names = {"model", "phase"},
                                .max_children = 1}));
  ASSIGN_OR_RETURN(budget_, r.AddFamily<Info>(
                                {.name = "moed_budget_info",
                                 .help = "Per-device weight budget that chose the tensor variants.",
                                 .label_names = {"model", "device", "budget_bytes"},
                                 .max_children = 256}));
  ASSIGN_OR_RETURN(Family<Info> * build_info,
                   r.AddFamily<Info>({.name = "moed_build_info",
                                      .help = "Version, source revision and compiler of moed.",
                                      .label_names = {"version", "revision", "compiler"},
                                      .max_children = 1}));
  RETURN_IF_ERROR(build_info
                      ->TryAdd({{"version", build.version},
                                {"revision", build.revision},
                                {"compiler", build.compiler}})
                      .status());
  return absl::OkStatus();
}

Counter& MoedMetrics::Request(std::string_view endpoint, int http_status) {
  return requests_->Add({{"endpoint", std::string(endpoint)}, {"status", absl::StrCat(http_status)}});
}

absl::Status MoedMetrics::RegisterWorker(std::string_view worker) {
  const Labels labels = WorkerLabels(worker);
  RETURN_IF_ERROR(step_->TryAdd(labels).status());
  RETURN_IF_ERROR(restarts_->TryAdd(labels).status());
  RETURN_IF_ERROR(worker_up_->TryAdd(labels).status());
  RETURN_IF_ERROR(worker_idle_->TryAdd(labels).status());
  return worker_memory_->TryAdd(labels).status();
}

Gauge& MoedMetrics::WorkerIdle(std::string_view worker) { return worker_idle_->Add(WorkerLabels(worker)); }

Histogram& MoedMetrics::WorkerStep(std::string_view worker) {
  return step_->Add(WorkerLabels(worker));
}
Counter& MoedMetrics::WorkerRestarts(std::string_view worker) {
  return restarts_->Add(WorkerLabels(worker));
}
Gauge& MoedMetrics::WorkerUp(std::string_view worker) {
  return worker_up_->Add(WorkerLabels(worker));
}
Gauge& MoedMetrics::WorkerMemory(std::string_view worker) {
  return worker_memory_->Add(WorkerLabels(worker));
}

absl::Status MoedMetrics::SetPhase(std::string_view model, std::string_view phase) {
  return phase_->Replace({{{"model", std::string(model)}, {"phase", std::string(phase)}}});
}

absl::Status MoedMetrics::SetBudgets(
    std::string_view model, const std::vector<std::pair<std::string, uint64_t>>& device_bytes) {
  std::vector<Labels> label_sets;
  label_sets.reserve(device_bytes.size());
  for (const auto& [device, bytes] : device_bytes) {
    label_sets.push_back({{"model", std::string(model)},
                          {"device", device},
                          {"budget_bytes", absl::StrCat(bytes)}});
  }
  return budget_->Replace(label_sets);
}

}  // namespace moed::metrics

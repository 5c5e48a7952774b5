// MoedMetrics: the catalogue of moed's own metrics, all prefixed "moed_", created in one place so
// the /metrics page, the Grafana dashboard and the alert rules (deploy/) agree on one list. The
// gateway, scheduler and supervisor update the children below; GET /metrics serves Serialize().
//
// Label values are chosen by moed's code (endpoint paths, HTTP status codes, worker ids, model
// and device names), never copied from request bodies, so the number of series stays small.
#ifndef MOED_DAEMON_METRICS_MOED_METRICS_H_
#define MOED_DAEMON_METRICS_MOED_METRICS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/metrics/counter.h"
#include "daemon/metrics/family.h"
#include "daemon/metrics/gauge.h"
#include "daemon/metrics/histogram.h"
#include "daemon/metrics/registry.h"

namespace moed::metrics {

// The labels of moed_build_info.
struct BuildInfo {
  std::string version = DefaultVersion();    // the CMake project version
  std::string revision = "unknown";          // source revision, when the build knows it
  std::string compiler = DefaultCompiler();  // e.g. "gcc 12.2.0"

  static std::string DefaultVersion();
  static std::string DefaultCompiler();
};

class MoedMetrics {
 public:
  static absl::StatusOr<std::unique_ptr<MoedMetrics>> Create(const BuildInfo& build = {});

  MoedMetrics(const MoedMetrics&) = delete;
  MoedMetrics& operator=(const MoedMetrics&) = delete;

  // The page for GET /metrics (Content-Type: kContentType).
  std::string Serialize() const { return registry_.Serialize(); }
  const Registry& registry() const { return registry_; }

  // --- Gateway -----------------------------------------------------------------------------
  // moed_requests_total{endpoint, status}: requests answered, by endpoint path and HTTP status.
  Family<Counter>& requests() { return *requests_; }
  Counter& Request(std::string_view endpoint, int http_status);
  Counter& prompt_tokens() { return *prompt_tokens_; }          // moed_prompt_tokens_total
  Counter& generation_tokens() { return *generation_tokens_; }  // moed_generation_tokens_total
  Histogram& time_to_first_token() { return *ttft_; }  // moed_time_to_first_token_seconds
  Histogram& inter_token_latency() { return *itl_; }   // moed_inter_token_latency_seconds
  Histogram& e2e_request_latency() { return *e2e_; }   // moed_e2e_request_latency_seconds

  // --- Scheduler ---------------------------------------------------------------------------
  Gauge& queue_length() { return *queue_length_; }          // moed_queue_length
  Gauge& queue_capacity() { return *queue_capacity_; }      // moed_queue_capacity
  Gauge& running_sequences() { return *running_; }          // moed_running_sequences
  Gauge& slots_used() { return *slots_used_; }              // moed_slots_used
  Gauge& slots_capacity() { return *slots_capacity_; }      // moed_slots_capacity
  Gauge& kv_blocks_used() { return *kv_used_; }             // moed_kv_blocks_used
  Gauge& kv_blocks_capacity() { return *kv_capacity_; }     // moed_kv_blocks_capacity
  Counter& prefix_cache_lookups() { return *prefix_lookups_; }  // moed_prefix_cache_lookups_total
  Counter& prefix_cache_hits() { return *prefix_hits_; }        // moed_prefix_cache_hits_total

  // --- Workers (label worker) --------------------------------------------------------------
  Family<Histogram>& worker_step_duration() { return *step_; }  // moed_worker_step_duration_seconds
  Family<Counter>& worker_restarts() { return *restarts_; }     // moed_worker_restarts_total
  Family<Gauge>& worker_up() { return *worker_up_; }            // moed_worker_up
  Family<Gauge>& worker_memory() { return *worker_memory_; }    // moed_worker_memory_bytes
  Family<Gauge>& worker_idle() { return *worker_idle_; }        // moed_worker_idle_ratio
  // Creates every per-worker child at zero (worker_up at 0), so that rate() and absent() work
  // from the first scrape after the supervisor knows the worker, before it ever restarts.
  absl::Status RegisterWorker(std::string_view worker);
  Histogram& WorkerStep(std::string_view worker);
  Counter& WorkerRestarts(std::string_view worker);
  Gauge& WorkerUp(std::string_view worker);
  Gauge& WorkerMemory(std::string_view worker);
  Gauge& WorkerIdle(std::string_view worker);

  // --- Model and plan ----------------------------------------------------------------------
  Gauge& model_load_seconds() { return *load_seconds_; }  // moed_model_load_seconds
  // moed_phase_info{model, phase}: replaces the previous value (one series at a time). `phase`
  // is the Phase Twin variant index as text, or "budget" when a per-device budget chose.
  absl::Status SetPhase(std::string_view model, std::string_view phase);
  // moed_budget_info{model, device, budget_bytes}: one series per device; replaces all. Empty
  // clears it (no budget in use).
  absl::Status SetBudgets(std::string_view model,
                          const std::vector<std::pair<std::string, uint64_t>>& device_bytes);

 private:
  MoedMetrics() = default;
  absl::Status Build(const BuildInfo& build);

  Registry registry_;
  Family<Counter>* requests_ = nullptr;
  Counter* prompt_tokens_ = nullptr;
  Counter* generation_tokens_ = nullptr;
  Histogram* ttft_ = nullptr;
  Histogram* itl_ = nullptr;
  Histogram* e2e_ = nullptr;
  Gauge* queue_length_ = nullptr;
  Gauge* queue_capacity_ = nullptr;
  Gauge* running_ = nullptr;
  Gauge* slots_used_ = nullptr;
  Gauge* slots_capacity_ = nullptr;
  Gauge* kv_used_ = nullptr;
  Gauge* kv_capacity_ = nullptr;
  Counter* prefix_lookups_ = nullptr;
  Counter* prefix_hits_ = nullptr;
  Family<Histogram>* step_ = nullptr;
  Family<Counter>* restarts_ = nullptr;
  Family<Gauge>* worker_up_ = nullptr;
  Family<Gauge>* worker_memory_ = nullptr;
  Family<Gauge>* worker_idle_ = nullptr;
  Gauge* load_seconds_ = nullptr;
  Family<Info>* phase_ = nullptr;
  Family<Info>* budget_ = nullptr;
};

}  // namespace moed::metrics

#endif  // MOED_DAEMON_METRICS_MOED_METRICS_H_

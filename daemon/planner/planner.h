// The planner: from a model's footprint and the discovered devices, an explicit Plan (plan.h):
// the phase or weight budget of a Phase Twin file, the pipeline stages and their layer ranges,
// and the state-slot capacity. Pure computation, so every placement rule is testable without
// hardware; `moectl plan` and `moed --dry-run` print FormatPlan's text.
//
// Rules (issue "The daemon", Planner; issue "Several GPUs", Placement):
//  * GPUs of the first backend in devices.backends that has usable ones; a device without a
//    compute backend (Level Zero today) is reported in the warnings and skipped. No usable GPU:
//    workers.cpu_stages CPU stages, if "cpu" is an allowed backend.
//  * Phase Twin files: model.variant or model.budget_mb when configured; else per-device budgets
//    (devices.budgets) select budget mode, the file budget being the devices' total less the
//    KV/state of scheduler.max_running slots; else one GPU -> variant 0, two or more -> variant 1.
//    On the CPU the file's own keys decide.
//  * Each device's capacity: its devices.budgets entry, else free memory minus devices.reserve.
//  * Slots: the most (up to scheduler.max_running) for which some contiguous cut fits every
//    device, a slot costing context x KV bytes/token of a stage's full layers plus the recurrent
//    state of its linear layers, and KV/state using at most cache.kv_memory_fraction of what the
//    weights leave. The cut: stages balanced by weight bytes plus their share of that slot memory.
//  * A device that cannot hold its balanced share of even one slot is dropped (warning with the
//    numbers) and the plan is redone on the others, phase rule included; nothing fits: an error.
#ifndef MOED_DAEMON_PLANNER_PLANNER_H_
#define MOED_DAEMON_PLANNER_PLANNER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "configs/config.h"
#include "daemon/devices/device.h"
#include "daemon/planner/footprint.h"
#include "daemon/planner/plan.h"

namespace moed::planner {

// The configuration keys the planner reads (PlannerOptionsFromConfig), plus its own constants.
struct PlannerOptions {
  // model.*: a fixed phase or a total weight budget (MiB), never both; context 0: trained.
  std::optional<uint32_t> variant;
  std::optional<uint64_t> budget_mb;
  int64_t context_length = 0;
  // devices.*
  std::vector<config::Backend> backends = {config::Backend::kCuda, config::Backend::kLevelZero,
                                           config::Backend::kCpu};
  std::vector<std::string> device_ids;            // "cuda:0", "cpu"; empty: every device
  std::map<std::string, uint64_t> device_budgets; // by device id, bytes
  uint64_t reserve = config::kGiB;
  // workers.cpu_stages (the demo runs two CPU stages).
  int cpu_stages = 2;
  // scheduler.max_running: the slot cap.
  int max_running = 16;
  // cache.kv_block_size / cache.kv_blocks (a fixed pool per stage, 0: sized by memory) /
  // cache.kv_memory_fraction.
  int64_t kv_block_size = 16;
  int64_t kv_blocks = 0;
  double kv_memory_fraction = config::kDefaultKvMemoryFraction;
  // Not configurable: bytes per K/V element on CPU stages. The CPU engine keeps K and V rows in
  // F32 (workers/engine/state_cache.h) where the model description counts F16.
  uint32_t cpu_kv_element_bytes = 4;
};

PlannerOptions PlannerOptionsFromConfig(const config::Config& config);

// "cuda:1", "level_zero:0", "cpu": the id that devices.ids and devices.budgets use.
std::string DeviceId(const Device& device);

// Plans `model` on `devices` (as discovery lists them; a DeviceBackend::kCpu entry, e.g.
// DescribeHostCpu(), gives the host memory that CPU plans are sized to).
// Errors: InvalidArgument for impossible options or a devices.ids entry that was not found;
// NotFound for a configured variant the file lacks; FailedPrecondition when no backend is usable;
// ResourceExhausted when the model does not fit, with the numbers.
absl::StatusOr<Plan> MakePlan(const ModelFootprint& model, std::span<const Device> devices,
                              const PlannerOptions& options);

// Human-readable, one line per fact, stages aligned; what `moectl plan` and `moed --dry-run` print.
std::string FormatPlan(const Plan& plan);

// The same as a JSON object (pretty-printed), for `moectl plan --json` and the admin API.
std::string PlanToJson(const Plan& plan);

}  // namespace moed::planner

#endif  // MOED_DAEMON_PLANNER_PLANNER_H_

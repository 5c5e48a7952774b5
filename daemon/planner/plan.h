// The placement plan that `moed` derives from a model file and the devices it found: which phase
// or weight budget of a Phase Twin file is loaded, how the trunk is cut into pipeline stages and
// where each stage runs, and how many state slots every stage reserves. Plain values only: the
// router spawns workers from it, `moectl plan` and `moed --dry-run` print it (planner.h).
#ifndef MOED_DAEMON_PLANNER_PLAN_H_
#define MOED_DAEMON_PLANNER_PLAN_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/devices/device.h"

namespace moed::planner {

// How the file's tensor variants are resolved.
enum class PlanMode {
  kNone,     // the file has no variant groups: every tensor as stored
  kVariant,  // one phase: every group at variant `Plan::variant`
  kBudget,   // greedy promotion under a total weight budget (`Plan::budget_mb`)
};

inline std::string_view PlanModeName(PlanMode mode) {
  switch (mode) {
    case PlanMode::kNone:
      return "none";
    case PlanMode::kVariant:
      return "variant";
    case PlanMode::kBudget:
      return "budget";
  }
  return "unknown";
}

// One pipeline stage: one worker process on one device (or on the host CPU).
struct PlanStage {
  int index = 0;
  DeviceBackend backend = DeviceBackend::kCpu;
  int device_index = 0;      // the vendor API's ordinal; 0 for the CPU
  std::string device_id;     // "cuda:1", "cpu"
  std::string device_name;   // as discovered; empty when the planner had no host description
  int first_layer = 0;       // trunk layers [first_layer, last_layer)
  int last_layer = 0;
  int full_layers = 0;       // of them, full attention (KV cache)
  int linear_layers = 0;     // and linear attention (recurrent state)
  bool embeds = false;       // holds the token embedding (the first stage)
  bool samples = false;      // holds the final norm and the head (the last stage)
  uint64_t weight_bytes = 0;
  uint64_t kv_bytes = 0;     // KV cache reserved: slots x context x bytes/token of its full layers
  uint64_t state_bytes = 0;  // recurrent state reserved: slots x state of its linear layers
  uint64_t total_bytes = 0;  // weight_bytes + kv_bytes + state_bytes
  // What the stage may use on its device: the configured budget, or free memory minus the
  // reserve; 0 when unknown (CPU stages share the host's memory, see Plan::host_memory_bytes).
  uint64_t capacity_bytes = 0;
  bool budget_configured = false;  // capacity_bytes comes from devices.budgets
  int64_t kv_blocks = 0;           // KV pool of the stage in blocks of Plan::kv_block_size tokens
  size_t promoted = 0;             // budget mode: promoted tensors this stage holds
};

struct Plan {
  // The model, as the footprint names it.
  std::string model_name;
  std::string architecture;
  std::string size_label;
  int n_layer = 0;

  DeviceBackend backend = DeviceBackend::kCpu;  // where every stage runs
  PlanMode mode = PlanMode::kNone;
  uint32_t variant = 0;     // kVariant: the phase
  uint64_t budget_mb = 0;   // kBudget: the file budget (general.tensor_variant.budget_mb), MiB
  size_t promoted = 0;      // kBudget: tensors promoted to variant 1, over all stages
  size_t promotable = 0;    // kBudget: candidates in the file's promote_order
  uint32_t max_variant = 0; // highest variant the file carries (0: not a Phase Twin file)
  std::string mode_reason;  // why this mode: "2 GPUs: phase 1", "model.variant", ...

  std::vector<PlanStage> stages;

  int slots = 0;                   // state slots, the same in every stage
  int max_running = 0;             // the scheduler's cap the slot count was held to
  int64_t context_length = 0;      // tokens per slot
  int64_t kv_block_size = 0;       // tokens per KV block
  uint64_t per_slot_bytes = 0;     // KV + state of one slot over all stages
  uint64_t weight_bytes = 0;       // held by the stages together (the head counted where held)
  uint64_t file_weight_bytes = 0;  // the resolved file's total (what budget_mb counts)
  uint64_t host_memory_bytes = 0;  // CPU plans: the host memory the plan was sized to; 0 unknown

  std::vector<std::string> warnings;
};

}  // namespace moed::planner

#endif  // MOED_DAEMON_PLANNER_PLAN_H_

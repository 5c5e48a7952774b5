// MakePlan: device selection, phase/budget choice, slot sizing and the layer cut (see planner.h
// for the rules). The cut itself is PartitionLayers; this file decides what it is fed.
#include "daemon/planner/planner.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/devices/discovery.h"
#include "loader/model/layer_partition.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::planner {
namespace {

constexpr int kMaxBudgetRounds = 16;

// A device the plan may place a stage on, with what it may use there.
struct Slotted {
  DeviceBackend backend = DeviceBackend::kCpu;
  int index = 0;
  std::string id;
  std::string name;
  uint64_t capacity = 0;  // 0: unknown (CPU)
  bool budget_configured = false;
  std::string capacity_note;  // how capacity was derived, for messages
};

// What the plan resolves the file to.
struct ModeChoice {
  PlanMode mode = PlanMode::kNone;
  uint32_t variant = 0;
  std::optional<uint64_t> budget_mb;  // kBudget with a fixed budget
  bool derived_budget = false;        // kBudget from the device budgets
  std::string reason;
};

// The smallest device share that failed, for the fallback message.
struct Shortfall {
  size_t device = 0;  // index into the device list
  uint64_t weights = 0;
  uint64_t slot = 0;  // one slot's KV + state on that stage, scaled by 1/kv_memory_fraction
  uint64_t need = 0;
  uint64_t capacity = 0;
};

struct Fit {
  bool ok = false;
  int slots = 0;
  std::vector<std::pair<int, int>> ranges;
  Shortfall shortfall;  // when !ok
};

// Bytes per K/V element on GPU stages: CudaStageEngine's K/V pools are F16, as the footprint
// counts them (workers/engine/cuda_stage_engine.h).
constexpr uint32_t kGpuKvElementBytes = 2;

uint64_t SatAdd(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

uint64_t SatMul(uint64_t a, uint64_t b) { return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b; }

// Bytes one slot costs in each trunk layer on a stage whose K/V elements take kv_element_bytes
// bytes (the footprint's kv_bytes_per_token counts F16, 2 bytes an element).
std::vector<uint64_t> SlotCosts(const ModelFootprint& model, int64_t context_tokens, uint32_t kv_element_bytes) {
  std::vector<uint64_t> out;
  for (const LayerFootprint& l : model.layers) {
    const uint64_t kv = SatMul(l.kv_bytes_per_token, kv_element_bytes) / 2;
    out.push_back(SatAdd(SatMul(kv, static_cast<uint64_t>(context_tokens)), l.state_bytes));
  }
  return out;
}

// What `slots` slots cost in memory terms: their bytes over the fraction KV may use.
uint64_t SlotShare(uint64_t one_slot_bytes, int slots, double fraction) {
  const long double v = std::ceil(static_cast<long double>(one_slot_bytes) * slots / fraction);
  return v >= static_cast<long double>(UINT64_MAX) ? UINT64_MAX : static_cast<uint64_t>(v);
}

// Per-layer partition costs: weights plus the share of `slots` slots; the embedding folded into
// the first layer and the head into the last (they always sit on the first and last stage).
std::vector<uint64_t> LayerCosts(const PhaseWeights& w, std::span<const uint64_t> slot_cost, int slots,
                                 double fraction) {
  std::vector<uint64_t> cost(w.layer_bytes.size());
  for (size_t l = 0; l < cost.size(); ++l) cost[l] = SatAdd(w.layer_bytes[l], SlotShare(slot_cost[l], slots, fraction));
  cost.front() = SatAdd(cost.front(), w.first_bytes);
  cost.back() = SatAdd(cost.back(), w.last_bytes);
  return cost;
}

uint64_t StageWeights(const PhaseWeights& w, int first, int last) {
  uint64_t sum = 0;
  for (int l = first; l < last; ++l) sum = SatAdd(sum, w.layer_bytes[l]);
  if (first == 0) sum = SatAdd(sum, w.first_bytes);
  if (last == static_cast<int>(w.layer_bytes.size())) sum = SatAdd(sum, w.last_bytes);
  return sum;
}

uint64_t StageSlot(std::span<const uint64_t> slot_cost, int first, int last) {
  uint64_t sum = 0;
  for (int l = first; l < last; ++l) sum = SatAdd(sum, slot_cost[l]);
  return sum;
}

// The most slots (1..max_running) for which a cut fits every capacity, and of those cuts the most
// balanced. A device must first hold its share of the balanced cut with one slot: one that cannot
// is reported as the shortfall (the caller drops it) rather than given a token stage, since a
// pipeline runs at the pace of its largest stage.
Fit FitOnDevices(const PhaseWeights& w, std::span<const uint64_t> slot_cost, std::span<const uint64_t> capacity,
                 int max_running, double fraction) {
  Fit fit;
  absl::StatusOr<std::vector<std::pair<int, int>>> balanced =
      PartitionLayers(LayerCosts(w, slot_cost, 1, fraction), static_cast<int>(capacity.size()));
  if (!balanced.ok()) {  // more devices than layers: callers prevent it; drop the last device
    fit.shortfall = Shortfall{capacity.size() - 1, 0, 0, 0, capacity.back()};
    return fit;
  }
  uint64_t worst = 0;
  for (size_t s = 0; s < balanced->size(); ++s) {
    const auto [first, last] = (*balanced)[s];
    const uint64_t weights = StageWeights(w, first, last);
    const uint64_t slot = SlotShare(StageSlot(slot_cost, first, last), 1, fraction);
    const uint64_t need = SatAdd(weights, slot);
    if (need > capacity[s] && need - capacity[s] >= worst) {
      worst = need - capacity[s];
      fit.shortfall = Shortfall{s, weights, slot, need, capacity[s]};
    }
  }
  if (worst > 0) return fit;
  // The balanced cut fits one slot; now trade balance for slots within the capacities.
  auto cut = [&](int slots) { return PartitionLayers(LayerCosts(w, slot_cost, slots, fraction), capacity); };
  absl::StatusOr<std::vector<std::pair<int, int>>> ranges = cut(1);
  if (!ranges.ok()) {  // cannot happen: the balanced cut is one such cut
    fit.shortfall = Shortfall{0, 0, 0, 0, capacity.front()};
    return fit;
  }
  int lo = 1, hi = max_running;  // lo fits
  std::vector<std::pair<int, int>> best = *std::move(ranges);
  while (lo < hi) {
    const int mid = lo + (hi - lo + 1) / 2;
    absl::StatusOr<std::vector<std::pair<int, int>>> r = cut(mid);
    if (r.ok()) {
      lo = mid;
      best = *std::move(r);
    } else {
      hi = mid - 1;
    }
  }
  fit.ok = true;
  fit.slots = lo;
  fit.ranges = std::move(best);
  return fit;
}

std::string PhaseName(const ModeChoice& mode, uint64_t budget_mb) {
  switch (mode.mode) {
    case PlanMode::kNone:
      return "the model";
    case PlanMode::kVariant:
      return absl::StrCat("phase ", mode.variant);
    case PlanMode::kBudget:
      return absl::StrCat("budget ", budget_mb, " MiB");
  }
  return "";
}

// Which resolution the plan uses. `gpus` is the number of GPUs (0 for a CPU plan).
absl::StatusOr<ModeChoice> ChooseMode(const ModelFootprint& model, const PlannerOptions& options, size_t gpus,
                                      bool device_budgets) {
  ModeChoice m;
  if (!model.twin()) {
    m.reason = "not a Phase Twin file";
    return m;
  }
  if (options.budget_mb) {
    m.mode = PlanMode::kBudget;
    m.budget_mb = *options.budget_mb;
    m.reason = absl::StrCat("model.budget_mb = ", *options.budget_mb);
  } else if (options.variant) {
    RETURN_IF_ERROR(model.Phase(*options.variant).status());
    m.mode = PlanMode::kVariant;
    m.variant = *options.variant;
    m.reason = absl::StrCat("model.variant = ", *options.variant);
  } else if (gpus > 0 && device_budgets) {
    m.mode = PlanMode::kBudget;
    m.derived_budget = true;
    m.reason = absl::StrCat("devices.budgets: the ", gpus, " device budget(s) less the KV/state of ",
                            options.max_running, " slots");
  } else if (gpus > 0) {
    m.mode = PlanMode::kVariant;
    m.variant = gpus == 1 ? 0 : 1;
    if (!model.Phase(m.variant).ok()) m.variant = 0;
    m.reason = absl::StrCat(gpus, gpus == 1 ? " GPU" : " GPUs", ": phase ", m.variant);
  } else if (model.default_budget_mb > 0) {
    m.mode = PlanMode::kBudget;
    m.budget_mb = model.default_budget_mb;
    m.reason = absl::StrCat("the file's general.tensor_variant.budget_mb = ", model.default_budget_mb);
  } else {
    RETURN_IF_ERROR(model.Phase(model.default_variant).status());
    m.mode = PlanMode::kVariant;
    m.variant = model.default_variant;
    m.reason = absl::StrCat("the file's general.tensor_variant.default = ", model.default_variant);
  }
  return m;
}

Plan BuildPlan(const ModelFootprint& model, const ModeChoice& mode, const PhaseWeights& w, uint64_t budget_mb,
               const std::vector<Slotted>& devices, const Fit& fit, std::span<const uint64_t> slot_cost,
               int64_t context_tokens, uint32_t kv_element_bytes, const PlannerOptions& options) {
  Plan plan;
  plan.model_name = model.name;
  plan.architecture = model.architecture;
  plan.size_label = model.size_label;
  plan.n_layer = model.n_layer();
  plan.backend = devices.front().backend;
  plan.mode = mode.mode;
  plan.variant = mode.mode == PlanMode::kVariant ? mode.variant : 0;
  plan.budget_mb = mode.mode == PlanMode::kBudget ? budget_mb : 0;
  plan.max_variant = model.max_variant;
  plan.mode_reason = mode.reason;
  if (mode.mode == PlanMode::kBudget) {
    plan.promotable = model.promotions.size();
    plan.promoted = std::count(w.promoted.begin(), w.promoted.end(), true);
  }
  plan.slots = fit.slots;
  plan.max_running = options.max_running;
  plan.context_length = context_tokens;
  plan.kv_block_size = options.kv_block_size;
  plan.file_weight_bytes = w.file_bytes;
  for (size_t s = 0; s < fit.ranges.size(); ++s) {
    const auto [first, last] = fit.ranges[s];
    const Slotted& d = devices[s];
    PlanStage st;
    st.index = static_cast<int>(s);
    st.backend = d.backend;
    st.device_index = d.index;
    st.device_id = d.id;
    st.device_name = d.name;
    st.first_layer = first;
    st.last_layer = last;
    st.embeds = first == 0;
    st.samples = last == model.n_layer();
    st.weight_bytes = StageWeights(w, first, last);
    uint64_t kv_per_token = 0, state = 0;
    for (int l = first; l < last; ++l) {
      const LayerFootprint& layer = model.layers[l];
      (layer.kind == LayerKind::kFullAttention ? st.full_layers : st.linear_layers) += 1;
      kv_per_token = SatAdd(kv_per_token, SatMul(layer.kv_bytes_per_token, kv_element_bytes) / 2);
      state = SatAdd(state, layer.state_bytes);
    }
    const uint64_t slots = static_cast<uint64_t>(fit.slots);
    st.kv_bytes = SatMul(SatMul(kv_per_token, static_cast<uint64_t>(context_tokens)), slots);
    st.state_bytes = SatMul(state, slots);
    st.total_bytes = SatAdd(SatAdd(st.weight_bytes, st.kv_bytes), st.state_bytes);
    st.capacity_bytes = d.capacity;
    st.budget_configured = d.budget_configured;
    if (st.full_layers > 0) st.kv_blocks = fit.slots * (context_tokens / options.kv_block_size);
    for (size_t i = 0; i < w.promoted.size(); ++i) {
      if (!w.promoted[i]) continue;
      const Promotion& p = model.promotions[i];
      if ((p.layer >= first && p.layer < last) || (p.first && st.embeds) || (p.last && st.samples)) ++st.promoted;
    }
    plan.weight_bytes = SatAdd(plan.weight_bytes, st.weight_bytes);
    plan.per_slot_bytes = SatAdd(plan.per_slot_bytes, StageSlot(slot_cost, first, last));
    plan.stages.push_back(std::move(st));
  }
  return plan;
}

uint64_t HeldWeights(const PhaseWeights& w) {
  uint64_t sum = SatAdd(w.first_bytes, w.last_bytes);
  for (uint64_t b : w.layer_bytes) sum = SatAdd(sum, b);
  return sum;
}

// One attempt on a fixed set of GPUs: a plan, or the shortfall that rules this set out.
struct Attempt {
  std::optional<Plan> plan;
  Shortfall shortfall;
  std::string phase;  // the resolution tried, for messages
};

absl::StatusOr<Attempt> TryGpus(const ModelFootprint& model, const std::vector<Slotted>& gpus,
                                const PlannerOptions& options, int64_t context_tokens) {
  const bool device_budgets =
      std::any_of(gpus.begin(), gpus.end(), [](const Slotted& d) { return d.budget_configured; });
  ASSIGN_OR_RETURN(ModeChoice mode, ChooseMode(model, options, gpus.size(), device_budgets));
  const std::vector<uint64_t> slot_cost = SlotCosts(model, context_tokens, kGpuKvElementBytes);
  std::vector<uint64_t> capacity;
  for (const Slotted& d : gpus) capacity.push_back(d.capacity);

  PhaseWeights w;
  uint64_t budget_mb = mode.budget_mb.value_or(0);
  Fit fit;
  if (mode.derived_budget) {
    // The file budget: what the devices hold together, less the slots' KV/state, less what the
    // stages hold beyond the file's count (a tied head) plus what no stage holds (MTP blocks).
    uint64_t slot_total = 0;
    for (uint64_t c : slot_cost) slot_total = SatAdd(slot_total, c);
    const PhaseWeights& base = model.phases.front();
    __int128 budget = 0;
    for (uint64_t c : capacity) budget += c;
    budget -= SlotShare(slot_total, options.max_running, options.kv_memory_fraction);
    budget -= static_cast<__int128>(HeldWeights(base)) - static_cast<__int128>(base.file_bytes);
    for (int round = 0; round < kMaxBudgetRounds; ++round) {
      budget_mb = budget <= 0 ? 1 : std::max<uint64_t>(1, static_cast<uint64_t>(budget >> 20));
      w = model.WithBudget(budget_mb);
      fit = FitOnDevices(w, slot_cost, capacity, options.max_running, options.kv_memory_fraction);
      const bool any_promoted = std::find(w.promoted.begin(), w.promoted.end(), true) != w.promoted.end();
      if (fit.ok || !any_promoted) break;
      // A device cannot hold its share of what the total promoted: promote less, by the overflow
      // times the number of shares it is spread over, and try again.
      const uint64_t overflow = fit.shortfall.need - fit.shortfall.capacity;
      budget = std::min<__int128>(budget, w.file_bytes) -
               std::max<__int128>(static_cast<__int128>(overflow) * static_cast<__int128>(gpus.size()), __int128{1} << 20);
    }
    if (!fit.ok && std::find(w.promoted.begin(), w.promoted.end(), true) != w.promoted.end()) {
      // Still no fit: the last word is the all-variant-0 baseline (a budget it cannot exceed).
      budget_mb = std::max<uint64_t>(1, base.file_bytes >> 20);
      w = model.WithBudget(budget_mb);
      fit = FitOnDevices(w, slot_cost, capacity, options.max_running, options.kv_memory_fraction);
    }
  } else if (mode.mode == PlanMode::kBudget) {
    w = model.WithBudget(budget_mb);
    fit = FitOnDevices(w, slot_cost, capacity, options.max_running, options.kv_memory_fraction);
  } else {
    ASSIGN_OR_RETURN(const PhaseWeights* phase, model.Phase(mode.variant));
    w = *phase;
    fit = FitOnDevices(w, slot_cost, capacity, options.max_running, options.kv_memory_fraction);
  }
  Attempt a;
  a.phase = PhaseName(mode, budget_mb);
  if (!fit.ok) {
    a.shortfall = fit.shortfall;
    return a;
  }
  a.plan =
      BuildPlan(model, mode, w, budget_mb, gpus, fit, slot_cost, context_tokens, kGpuKvElementBytes, options);
  return a;
}

std::string DescribeDevice(const Slotted& d) {
  return d.name.empty() ? d.id : absl::StrCat(d.id, " (", d.name, ")");
}

absl::StatusOr<Plan> PlanGpus(const ModelFootprint& model, std::vector<Slotted> gpus, const PlannerOptions& options,
                              int64_t context_tokens, std::vector<std::string>& warnings) {
  if (static_cast<int>(gpus.size()) > model.n_layer()) {
    warnings.push_back(absl::StrCat("the model has ", model.n_layer(), " layers: only the first ", model.n_layer(),
                                    " of ", gpus.size(), " GPUs get a stage"));
    gpus.resize(model.n_layer());
  }
  while (true) {
    ASSIGN_OR_RETURN(Attempt a, TryGpus(model, gpus, options, context_tokens));
    if (a.plan) return *std::move(a.plan);
    const Shortfall& sf = a.shortfall;
    const Slotted& d = gpus[sf.device];
    if (gpus.size() == 1) {
      std::string message = absl::StrCat(
          "the model does not fit: ", a.phase, " needs ", FormatBytes(sf.weights), " of weights plus ",
          FormatBytes(sf.slot), " for one slot of ", context_tokens, " tokens (KV/state at most ",
          options.kv_memory_fraction, " of what weights leave) = ", FormatBytes(sf.need), " on one device, and ",
          DescribeDevice(d), " has ", FormatBytes(sf.capacity), " (", d.capacity_note,
          "); lower model.context_length, set a smaller model.variant or model.budget_mb, or add devices");
      if (!warnings.empty()) absl::StrAppend(&message, " [", absl::StrJoin(warnings, "; "), "]");
      return absl::ResourceExhaustedError(message);
    }
    const size_t left = gpus.size() - 1;
    warnings.push_back(absl::StrCat(
        DescribeDevice(d), " too small: its share of a ", gpus.size(), "-stage plan (", a.phase, ") needs ",
        FormatBytes(sf.need), " (weights ", FormatBytes(sf.weights), " + one slot ", FormatBytes(sf.slot),
        ") but it has ", FormatBytes(sf.capacity), " (", d.capacity_note, "); falling back to ", left,
        left == 1 ? " GPU" : " GPUs"));
    gpus.erase(gpus.begin() + static_cast<std::ptrdiff_t>(sf.device));
  }
}

absl::StatusOr<Plan> PlanCpu(const ModelFootprint& model, const Device* host, const PlannerOptions& options,
                             int64_t context_tokens, std::vector<std::string>& warnings) {
  int stages = options.cpu_stages;
  if (stages > model.n_layer()) {
    warnings.push_back(absl::StrCat("workers.cpu_stages = ", stages, " but the model has ", model.n_layer(),
                                    " layers: ", model.n_layer(), " stages"));
    stages = model.n_layer();
  }
  ASSIGN_OR_RETURN(ModeChoice mode, ChooseMode(model, options, 0, false));
  PhaseWeights w;
  uint64_t budget_mb = mode.budget_mb.value_or(0);
  if (mode.mode == PlanMode::kBudget) {
    w = model.WithBudget(budget_mb);
  } else {
    ASSIGN_OR_RETURN(const PhaseWeights* phase, model.Phase(mode.variant));
    w = *phase;
  }
  const std::vector<uint64_t> slot_cost = SlotCosts(model, context_tokens, options.cpu_kv_element_bytes);

  // The stages share the host's memory: size the slots to the total.
  Slotted cpu;
  cpu.backend = DeviceBackend::kCpu;
  cpu.id = "cpu";
  uint64_t memory = 0;
  if (auto it = options.device_budgets.find("cpu"); it != options.device_budgets.end()) {
    memory = it->second;
    cpu.capacity_note = "devices.budgets";
  } else if (host != nullptr) {
    memory = host->free_bytes.value_or(host->total_bytes);
    cpu.capacity_note = host->free_bytes ? "available host memory" : "host memory";
  }
  if (host != nullptr) cpu.name = host->name;
  Fit fit;
  fit.slots = options.max_running;
  const uint64_t weights = HeldWeights(w);
  if (memory > 0) {
    uint64_t slot_total = 0;
    for (uint64_t c : slot_cost) slot_total = SatAdd(slot_total, c);
    const long double left = memory > weights ? static_cast<long double>(memory - weights) : 0.0L;
    const long double fits = slot_total == 0 ? options.max_running
                                             : std::floor(left * options.kv_memory_fraction / slot_total);
    fit.slots = static_cast<int>(std::min<long double>(fits, options.max_running));
    if (fit.slots < 1) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the model does not fit in host memory: ", PhaseName(mode, budget_mb), " needs ", FormatBytes(weights),
          " of weights plus ", FormatBytes(SlotShare(slot_total, 1, options.kv_memory_fraction)),
          " for one slot of ", context_tokens, " tokens, and the host has ", FormatBytes(memory), " (",
          cpu.capacity_note, "); lower model.context_length or use a smaller model"));
    }
  }
  ASSIGN_OR_RETURN(fit.ranges, PartitionLayers(LayerCosts(w, slot_cost, fit.slots, options.kv_memory_fraction), stages));
  fit.ok = true;
  const std::vector<Slotted> devices(stages, cpu);
  Plan plan = BuildPlan(model, mode, w, budget_mb, devices, fit, slot_cost, context_tokens,
                        options.cpu_kv_element_bytes, options);
  plan.host_memory_bytes = memory;  // shared by the stages: their capacity_bytes stay 0
  return plan;
}

absl::Status CheckOptions(const PlannerOptions& o) {
  if (o.variant && o.budget_mb) {
    return absl::InvalidArgumentError("model.variant and model.budget_mb are both set; choose one");
  }
  if (o.budget_mb && *o.budget_mb == 0) return absl::InvalidArgumentError("model.budget_mb must be > 0");
  if (o.context_length < 0) return absl::InvalidArgumentError("model.context_length must be >= 0");
  if (o.cpu_stages < 1) return absl::InvalidArgumentError("workers.cpu_stages must be >= 1");
  if (o.max_running < 1) return absl::InvalidArgumentError("scheduler.max_running must be >= 1");
  if (o.kv_block_size < 1) return absl::InvalidArgumentError("cache.kv_block_size must be >= 1");
  if (!(o.kv_memory_fraction > 0.0 && o.kv_memory_fraction <= 1.0)) {
    return absl::InvalidArgumentError("cache.kv_memory_fraction must be in (0, 1]");
  }
  if (o.cpu_kv_element_bytes == 0) return absl::InvalidArgumentError("cpu_kv_element_bytes must be > 0");
  return absl::OkStatus();
}

DeviceBackend ToDeviceBackend(config::Backend b) {
  switch (b) {
    case config::Backend::kCuda:
      return DeviceBackend::kCuda;
    case config::Backend::kLevelZero:
      return DeviceBackend::kLevelZero;
    case config::Backend::kCpu:
      return DeviceBackend::kCpu;
  }
  return DeviceBackend::kCpu;
}

std::string_view BackendTitle(DeviceBackend b) {
  switch (b) {
    case DeviceBackend::kCuda:
      return "CUDA";
    case DeviceBackend::kLevelZero:
      return "Level Zero";
    case DeviceBackend::kCpu:
      return "CPU";
  }
  return "";
}

}  // namespace

std::string DeviceId(const Device& device) {
  if (device.backend == DeviceBackend::kCpu) return "cpu";
  return absl::StrCat(Sv(DeviceBackendName(device.backend)), ":", device.index);
}

PlannerOptions PlannerOptionsFromConfig(const config::Config& config) {
  PlannerOptions o;
  o.variant = config.model.variant;
  o.budget_mb = config.model.budget_mb;
  o.context_length = config.model.context_length;
  o.backends = config.devices.backends;
  o.device_ids = config.devices.ids;
  o.device_budgets = config.devices.budgets;
  o.reserve = config.devices.reserve;
  o.cpu_stages = config.workers.cpu_stages;
  o.max_running = config.scheduler.max_running;
  o.kv_block_size = config.cache.kv_block_size;
  o.kv_blocks = config.cache.kv_blocks;
  o.kv_memory_fraction = config.cache.kv_memory_fraction;
  return o;
}

absl::StatusOr<Plan> MakePlan(const ModelFootprint& model, std::span<const Device> devices,
                              const PlannerOptions& options) {
  RETURN_IF_ERROR(model.Validate());
  RETURN_IF_ERROR(CheckOptions(options));
  std::vector<std::string> warnings;

  int64_t context = options.context_length > 0 ? options.context_length : model.context_length;
  if (context <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("model '", model.name,
                                                   "' does not state its context length; set model.context_length"));
  }
  if (model.context_length > 0 && context > model.context_length) {
    warnings.push_back(absl::StrCat("model.context_length = ", context, " exceeds the trained context of ",
                                    model.context_length, " tokens"));
  }
  // Slots hold whole KV blocks.
  context = (context + options.kv_block_size - 1) / options.kv_block_size * options.kv_block_size;
  if (options.kv_blocks > 0) {
    // A fixed pool (cache.kv_blocks) is shared by max_running slots: it bounds each one's context.
    const int64_t per_slot = options.kv_blocks / options.max_running * options.kv_block_size;
    if (per_slot < options.kv_block_size) {
      return absl::InvalidArgumentError(absl::StrCat("cache.kv_blocks = ", options.kv_blocks,
                                                     " leaves less than one block per slot for scheduler.max_running = ",
                                                     options.max_running));
    }
    if (per_slot < context) {
      warnings.push_back(absl::StrCat("cache.kv_blocks = ", options.kv_blocks, " limits each of the ",
                                      options.max_running, " slots to ", per_slot, " tokens"));
      context = per_slot;
    }
  }
  if (!model.twin() && (options.variant || options.budget_mb)) {
    warnings.push_back(absl::StrCat(options.variant ? "model.variant" : "model.budget_mb",
                                    " is ignored: the model is not a Phase Twin file"));
  }

  auto listed = [&](const std::string& id) {
    return options.device_ids.empty() ||
           std::find(options.device_ids.begin(), options.device_ids.end(), id) != options.device_ids.end();
  };
  auto allowed = [&](DeviceBackend b) {
    return std::any_of(options.backends.begin(), options.backends.end(),
                       [b](config::Backend c) { return ToDeviceBackend(c) == b; });
  };
  for (const std::string& id : options.device_ids) {
    const bool found = id == "cpu" || std::any_of(devices.begin(), devices.end(),
                                                  [&](const Device& d) { return DeviceId(d) == id; });
    if (!found) {
      std::vector<std::string> ids;
      for (const Device& d : devices) {
        if (d.backend != DeviceBackend::kCpu) ids.push_back(DeviceId(d));
      }
      return absl::InvalidArgumentError(absl::StrCat("devices.ids names '", id, "', which was not discovered (found: ",
                                                     ids.empty() ? "no GPU" : absl::StrJoin(ids, ", "), ")"));
    }
  }

  const Device* host = nullptr;
  std::vector<Slotted> gpus;
  for (const Device& d : devices) {
    if (d.backend == DeviceBackend::kCpu) {
      if (host == nullptr) host = &d;
      continue;
    }
    Slotted s;
    s.backend = d.backend;
    s.index = d.index;
    s.id = DeviceId(d);
    s.name = d.name;
    if (!listed(s.id) || !allowed(d.backend)) continue;
    if (!d.can_compute) {
      const std::string why = d.backend == DeviceBackend::kLevelZero ? "no compute backend yet"
                              : d.note.empty()                       ? "moed cannot compute on it"
                                                                     : d.note;
      warnings.push_back(absl::StrCat(Sv(BackendTitle(d.backend)), " device ", DescribeDevice(s),
                                      " discovered but skipped: ", why));
      continue;
    }
    const uint64_t free = d.free_bytes.value_or(d.total_bytes);
    if (auto it = options.device_budgets.find(s.id); it != options.device_budgets.end()) {
      s.budget_configured = true;
      s.capacity = it->second;
      s.capacity_note = absl::StrCat("devices.budgets ", FormatBytes(it->second));
      if (s.capacity > free) {
        warnings.push_back(absl::StrCat("devices.budgets gives ", s.id, " ", FormatBytes(s.capacity), " but it has ",
                                        FormatBytes(free), " free; using ", FormatBytes(free)));
        s.capacity = free;
        s.capacity_note = absl::StrCat(FormatBytes(free), " free, below its devices.budgets");
      }
    } else {
      if (!d.free_bytes) {
        warnings.push_back(absl::StrCat(s.id, ": free memory unknown; planning with its total ",
                                        FormatBytes(d.total_bytes), " less the reserve"));
      }
      if (free <= options.reserve) {
        warnings.push_back(absl::StrCat(Sv(BackendTitle(d.backend)), " device ", DescribeDevice(s), " skipped: ",
                                        FormatBytes(free), " free, not more than devices.reserve ",
                                        FormatBytes(options.reserve)));
        continue;
      }
      s.capacity = free - options.reserve;
      s.capacity_note = absl::StrCat(FormatBytes(free), " free - ", FormatBytes(options.reserve), " reserve");
    }
    gpus.push_back(std::move(s));
  }
  for (const auto& [id, bytes] : options.device_budgets) {
    const bool used = id == "cpu" || std::any_of(gpus.begin(), gpus.end(), [&](const Slotted& s) { return s.id == id; });
    if (!used) warnings.push_back(absl::StrCat("devices.budgets names '", id, "', which is not a usable device; ignored"));
  }

  // The first allowed backend that can take the model's stages decides.
  auto finish = [&](absl::StatusOr<Plan> plan) -> absl::StatusOr<Plan> {
    if (plan.ok()) plan->warnings.insert(plan->warnings.begin(), warnings.begin(), warnings.end());
    return plan;
  };
  for (config::Backend b : options.backends) {
    const DeviceBackend backend = ToDeviceBackend(b);
    if (backend == DeviceBackend::kCpu) {
      if (!listed("cpu")) continue;
      return finish(PlanCpu(model, host, options, context, warnings));
    }
    std::vector<Slotted> mine;
    for (const Slotted& s : gpus) {
      if (s.backend == backend) mine.push_back(s);
    }
    if (!mine.empty()) return finish(PlanGpus(model, std::move(mine), options, context, warnings));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "no usable device: no GPU of devices.backends can take a stage and the CPU is not allowed",
      warnings.empty() ? "" : absl::StrCat(" [", absl::StrJoin(warnings, "; "), "]")));
}

}  // namespace moed::planner

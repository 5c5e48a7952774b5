// FormatPlan and PlanToJson: the two printed forms of a Plan. The text is for operators (labels
// in a left column, one stage per block, every number the planner decided on); the JSON carries
// the same facts with exact byte counts for tools.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "daemon/devices/discovery.h"
#include "daemon/planner/planner.h"
#include "kernels/base/strings.h"
#include "nlohmann/json.hpp"

namespace moed::planner {
namespace {

void Line(std::string* out, std::string_view label, std::string_view text) {
  absl::StrAppend(out, absl::StrFormat("%-10s", Sv(label)), Sv(text), "\n");
}

std::string ModeText(const Plan& plan) {
  std::string out;
  switch (plan.mode) {
    case PlanMode::kNone:
      out = "none";
      break;
    case PlanMode::kVariant:
      out = absl::StrCat("variant ", plan.variant);
      break;
    case PlanMode::kBudget:
      out = absl::StrCat("budget ", plan.budget_mb, " MiB, ", plan.promoted, " of ", plan.promotable,
                         " candidate tensors promoted to variant 1");
      break;
  }
  if (!plan.mode_reason.empty()) absl::StrAppend(&out, " (", plan.mode_reason, ")");
  if (plan.max_variant > 0) absl::StrAppend(&out, "; the file carries variants 0..", plan.max_variant);
  return out;
}

std::string LayersText(const PlanStage& st) {
  std::string out = st.last_layer - st.first_layer == 1
                        ? absl::StrCat("layer ", st.first_layer)
                        : absl::StrCat("layers ", st.first_layer, "-", st.last_layer - 1);
  absl::StrAppend(&out, ": ", st.full_layers, " full + ", st.linear_layers, " linear");
  if (st.embeds) absl::StrAppend(&out, ", embedding");
  if (st.samples) absl::StrAppend(&out, ", head");
  return out;
}

}  // namespace

std::string FormatPlan(const Plan& plan) {
  std::string out;
  std::string model = plan.model_name;
  std::string arch = plan.architecture;
  if (!plan.size_label.empty()) absl::StrAppend(&arch, " ", plan.size_label);
  absl::StrAppend(&model, " (", arch, ", ", plan.n_layer, " layers)");
  Line(&out, "model", model);
  Line(&out, "backend", absl::StrCat(Sv(DeviceBackendName(plan.backend)), ", ", plan.stages.size(),
                                     plan.stages.size() == 1 ? " stage" : " stages"));
  Line(&out, "mode", ModeText(plan));
  Line(&out, "weights", absl::StrCat(FormatBytes(plan.weight_bytes), " held by the stages, ",
                                     FormatBytes(plan.file_weight_bytes), " in the resolved file"));
  Line(&out, "slots",
       absl::StrCat(plan.slots, " x ", plan.context_length, " tokens, ", FormatBytes(plan.per_slot_bytes),
                    " per slot (", plan.slots >= plan.max_running ? "capped by" : "limited by memory below",
                    " scheduler.max_running = ", plan.max_running, ")"));
  if (plan.backend == DeviceBackend::kCpu) {
    Line(&out, "memory", plan.host_memory_bytes > 0
                             ? absl::StrCat(FormatBytes(plan.host_memory_bytes), " of host memory shared by the stages")
                             : std::string("host memory unknown: slots not limited by memory"));
  }
  for (const PlanStage& st : plan.stages) {
    Line(&out, absl::StrCat("stage ", st.index),
         st.device_name.empty() ? st.device_id : absl::StrCat(st.device_id, " ", st.device_name));
    Line(&out, "", LayersText(st));
    std::string bytes = absl::StrCat("weights ", FormatBytes(st.weight_bytes), " + KV ", FormatBytes(st.kv_bytes),
                                     " + state ", FormatBytes(st.state_bytes), " = ", FormatBytes(st.total_bytes));
    if (st.capacity_bytes > 0) {
      absl::StrAppend(&bytes, " of ", FormatBytes(st.capacity_bytes), st.budget_configured ? " (budget)" : "");
    }
    Line(&out, "", bytes);
    std::string pool = st.kv_blocks > 0
                           ? absl::StrCat("KV pool ", st.kv_blocks, " blocks of ", plan.kv_block_size, " tokens")
                           : std::string("no KV cache");
    if (plan.mode == PlanMode::kBudget) absl::StrAppend(&pool, ", ", st.promoted, " promoted tensors");
    Line(&out, "", pool);
  }
  for (const std::string& w : plan.warnings) Line(&out, "warning", w);
  return out;
}

std::string PlanToJson(const Plan& plan) {
  nlohmann::ordered_json j;
  j["model"] = {{"name", plan.model_name},
                {"architecture", plan.architecture},
                {"size_label", plan.size_label},
                {"n_layer", plan.n_layer}};
  j["backend"] = std::string(DeviceBackendName(plan.backend));
  j["mode"] = std::string(PlanModeName(plan.mode));
  if (plan.mode == PlanMode::kVariant) j["variant"] = plan.variant;
  if (plan.mode == PlanMode::kBudget) {
    j["budget_mb"] = plan.budget_mb;
    j["promoted"] = plan.promoted;
    j["promotable"] = plan.promotable;
  }
  j["max_variant"] = plan.max_variant;
  j["mode_reason"] = plan.mode_reason;
  j["slots"] = plan.slots;
  j["max_running"] = plan.max_running;
  j["context_length"] = plan.context_length;
  j["kv_block_size"] = plan.kv_block_size;
  j["per_slot_bytes"] = plan.per_slot_bytes;
  j["weight_bytes"] = plan.weight_bytes;
  j["file_weight_bytes"] = plan.file_weight_bytes;
  j["host_memory_bytes"] = plan.host_memory_bytes;
  nlohmann::ordered_json stages = nlohmann::ordered_json::array();
  for (const PlanStage& st : plan.stages) {
    stages.push_back({{"index", st.index},
                      {"device", st.device_id},
                      {"backend", std::string(DeviceBackendName(st.backend))},
                      {"device_index", st.device_index},
                      {"device_name", st.device_name},
                      {"first_layer", st.first_layer},
                      {"last_layer", st.last_layer},
                      {"full_layers", st.full_layers},
                      {"linear_layers", st.linear_layers},
                      {"embeds", st.embeds},
                      {"samples", st.samples},
                      {"weight_bytes", st.weight_bytes},
                      {"kv_bytes", st.kv_bytes},
                      {"state_bytes", st.state_bytes},
                      {"total_bytes", st.total_bytes},
                      {"capacity_bytes", st.capacity_bytes},
                      {"budget_configured", st.budget_configured},
                      {"kv_blocks", st.kv_blocks},
                      {"promoted", st.promoted}});
  }
  j["stages"] = std::move(stages);
  j["warnings"] = plan.warnings;
  return j.dump(2);
}

}  // namespace moed::planner

// ModelFootprint from a GGUF file: one ResolveTensorVariants + DescribeModel per phase, and the
// budget greedy's inputs from a resolution with an unbounded budget (every candidate promoted, in
// promote order), so that MakePlan can evaluate any budget without the file.
#include "daemon/planner/footprint.h"

#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"
#include "loader/tensor_variant.h"

namespace moed::planner {
namespace {

// The largest budget ResolveTensorVariants takes without saturating: every candidate fits.
constexpr uint64_t kUnboundedBudgetMb = std::numeric_limits<uint64_t>::max() >> 20;

uint64_t BudgetBytes(uint64_t budget_mb) {
  return budget_mb > kUnboundedBudgetMb ? std::numeric_limits<uint64_t>::max() : budget_mb << 20;
}

// Weights per stage role from one resolution's description.
PhaseWeights WeightsOf(const ModelDescription& model, uint64_t file_bytes, uint32_t variant) {
  PhaseWeights w;
  w.variant = variant;
  w.file_bytes = file_bytes;
  for (int l = 0; l < model.n_layer; ++l) w.layer_bytes.push_back(model.layers[l].weight_bytes);
  const gguf::TensorInfo* embd = nullptr;
  bool has_head = false;
  for (const auto& [name, info] : model.global_tensors) {
    if (name == "token_embd.weight") {
      embd = info;
      w.first_bytes += info->nbytes;
    } else {
      if (name == "output.weight") has_head = true;
      w.last_bytes += info->nbytes;
    }
  }
  if (!has_head && embd != nullptr) w.last_bytes += embd->nbytes;  // tied head: the last stage reads the embedding
  return w;
}

// Where a canonical tensor lives: "blk.<N>." inside trunk layer N, the embedding on the first
// stage (and on the last when the head is tied), other globals on the last stage; MTP blocks
// nowhere.
void LocateTensor(const ModelDescription& model, const std::string& name, Promotion* p) {
  if (name.rfind("blk.", 0) == 0) {
    const size_t dot = name.find('.', 4);
    int layer = -1;
    if (dot != std::string::npos && absl::SimpleAtoi(name.substr(4, dot - 4), &layer) && layer >= 0 &&
        layer < model.n_layer) {
      p->layer = layer;
    }
    return;
  }
  if (name == "token_embd.weight") {
    p->first = true;
    p->last = !model.global_tensors.contains("output.weight");
    return;
  }
  if (model.global_tensors.contains(name)) p->last = true;
}

}  // namespace

absl::StatusOr<const PhaseWeights*> ModelFootprint::Phase(uint32_t variant) const {
  for (const PhaseWeights& p : phases) {
    if (p.variant == variant) return &p;
  }
  return absl::NotFoundError(absl::StrCat("the model '", name, "' has no phase ", variant,
                                          twin() ? absl::StrCat(" (its variants are 0..", max_variant, ")")
                                                 : std::string(" (it is not a Phase Twin file)")));
}

PhaseWeights ModelFootprint::WithBudget(uint64_t budget_mb) const {
  PhaseWeights w = phases.front();  // Validate() guarantees variant 0 comes first
  w.variant = 0;
  w.promoted.assign(promotions.size(), false);
  const uint64_t budget = BudgetBytes(budget_mb);
  uint64_t total = w.file_bytes;
  for (size_t i = 0; i < promotions.size(); ++i) {
    const Promotion& p = promotions[i];
    // The reference's test, written so that nothing wraps: skip (and keep walking) on a misfit.
    if (p.delta == 0 || p.delta > budget || total > budget - p.delta) continue;
    total += p.delta;
    w.promoted[i] = true;
    if (p.layer >= 0) w.layer_bytes[p.layer] += p.delta;
    if (p.first) w.first_bytes += p.delta;
    if (p.last) w.last_bytes += p.delta;
  }
  w.file_bytes = total;
  return w;
}

absl::Status ModelFootprint::Validate() const {
  if (layers.empty()) return absl::InvalidArgumentError(absl::StrCat("model '", name, "': no trunk layers"));
  if (phases.empty() || phases.front().variant != 0) {
    return absl::InvalidArgumentError(absl::StrCat("model '", name, "': the footprint lacks phase 0"));
  }
  for (const PhaseWeights& p : phases) {
    if (p.layer_bytes.size() != layers.size()) {
      return absl::InvalidArgumentError(absl::StrCat("model '", name, "': phase ", p.variant, " has ",
                                                     p.layer_bytes.size(), " layer sizes for ", layers.size(),
                                                     " layers"));
    }
  }
  for (const Promotion& p : promotions) {
    if (p.layer >= n_layer()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model '", name, "': promotion '", p.name, "' names layer ", p.layer));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelFootprint> FootprintFromFile(const gguf::GgufFile& file) {
  ModelFootprint fp;
  // The file's own resolution tells whether it is a twin and what it asks for by itself.
  ASSIGN_OR_RETURN(VariantPlan own, ResolveTensorVariants(file));
  const bool twin = own.num_groups > 0;
  fp.max_variant = twin ? own.max_variant : 0;
  if (own.mode == VariantMode::kBudget) {
    fp.default_budget_mb = own.budget_bytes >> 20;
  } else {
    fp.default_variant = own.variant;
  }

  // Phase 0 (or the plain file) defines the layers; every phase is described the same way.
  ASSIGN_OR_RETURN(VariantPlan base,
                   twin ? ResolveTensorVariants(file, VariantOptions{0u, std::nullopt}) : std::move(own));
  const std::vector<gguf::TensorInfo> base_tensors = base.Infos();
  ASSIGN_OR_RETURN(ModelDescription model, DescribeModel(file, base_tensors));
  fp.architecture = model.architecture;
  fp.size_label = model.size_label;
  for (int l = 0; l < model.n_layer; ++l) {
    const LayerDescription& layer = model.layers[l];
    fp.layers.push_back(LayerFootprint{layer.kind, layer.kv_bytes_per_token, layer.recurrent_state_bytes});
  }
  fp.phases.push_back(WeightsOf(model, base.total_bytes, 0));

  if (absl::StatusOr<std::string_view> name = file.GetString("general.name"); name.ok() && !name->empty()) {
    fp.name = std::string(*name);
  } else {
    std::string base_name = file.path().substr(file.path().find_last_of('/') + 1);
    if (base_name.size() > 5 && base_name.ends_with(".gguf")) base_name.resize(base_name.size() - 5);
    fp.name = base_name.empty() ? fp.architecture : base_name;
  }
  if (absl::StatusOr<uint64_t> ctx = file.GetUint(absl::StrCat(Sv(fp.architecture), ".context_length")); ctx.ok()) {
    fp.context_length = static_cast<int64_t>(std::min<uint64_t>(*ctx, std::numeric_limits<int32_t>::max()));
  }
  if (!twin) return fp;

  for (uint32_t v = 1; v <= fp.max_variant; ++v) {
    absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(file, VariantOptions{v, std::nullopt});
    if (!plan.ok()) continue;  // not every group carries this variant: the phase does not exist
    const std::vector<gguf::TensorInfo> tensors = plan->Infos();
    ASSIGN_OR_RETURN(ModelDescription phase_model, DescribeModel(file, tensors));
    fp.phases.push_back(WeightsOf(phase_model, plan->total_bytes, v));
  }

  // With an unbounded budget every candidate is promoted, in promote order: exactly the list the
  // greedy walks for any budget (the other skip reasons do not depend on the budget).
  ASSIGN_OR_RETURN(VariantPlan all, ResolveTensorVariants(file, VariantOptions{std::nullopt, kUnboundedBudgetMb}));
  for (const std::string& name : all.promoted) {
    const ResolvedTensor* v1 = all.Find(name);
    const ResolvedTensor* v0 = base.Find(name);
    if (v1 == nullptr || v0 == nullptr || v1->info.nbytes <= v0->info.nbytes) {
      return absl::InternalError(absl::StrCat("tensor variant group '", name, "' was promoted without growing"));
    }
    Promotion p;
    p.name = name;
    p.delta = v1->info.nbytes - v0->info.nbytes;
    LocateTensor(model, name, &p);
    fp.promotions.push_back(std::move(p));
  }
  return fp;
}

}  // namespace moed::planner

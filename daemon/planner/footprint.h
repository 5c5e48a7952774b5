// What the planner needs to know about a model: per trunk layer its kind and per-sequence state
// cost, and the weight bytes of every way the file can be resolved (each Phase Twin phase, and
// the inputs of the budget greedy so that any budget can be evaluated without the file). Built
// from a GGUF by FootprintFromFile, or by hand in tests with 35B/122B/397B-sized numbers.
#ifndef MOED_DAEMON_PLANNER_FOOTPRINT_H_
#define MOED_DAEMON_PLANNER_FOOTPRINT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "loader/gguf/gguf_file.h"
#include "loader/model/model_description.h"

namespace moed::planner {

// One trunk layer, the same in every phase.
struct LayerFootprint {
  LayerKind kind = LayerKind::kFullAttention;
  uint64_t kv_bytes_per_token = 0;  // full attention: K and V at F16 (ModelDescription's figure)
  uint64_t state_bytes = 0;         // linear attention: conv window + delta-rule state per sequence
};

// The weight bytes of one resolution of the file's tensor variants.
struct PhaseWeights {
  uint32_t variant = 0;               // the global variant (0 for budget resolutions)
  std::vector<uint64_t> layer_bytes;  // per trunk layer
  uint64_t first_bytes = 0;  // held by the first stage only: the token embedding
  uint64_t last_bytes = 0;   // held by the last stage only: final norm and head (a tied head is
                             // the embedding again, counted here too)
  uint64_t file_bytes = 0;   // every tensor after resolution, MTP blocks included: what
                             // general.tensor_variant.budget_mb counts
  // Budget resolutions: promoted[i] says whether ModelFootprint::promotions[i] was promoted.
  std::vector<bool> promoted;
};

// A group the budget greedy may promote from variant 0 to 1, in promote_order.
struct Promotion {
  std::string name;    // canonical tensor name
  int layer = -1;      // the trunk layer holding it, -1 if none
  bool first = false;  // held by the first stage (the embedding)
  bool last = false;   // held by the last stage (head, or a tied embedding)
  uint64_t delta = 0;  // nbytes(v1) - nbytes(v0), > 0
};

struct ModelFootprint {
  std::string name;          // general.name, else the file name
  std::string architecture;  // general.architecture
  std::string size_label;    // "35B-A3B", or ""
  int64_t context_length = 0;  // trained context; 0 when the file does not say
  std::vector<LayerFootprint> layers;  // the trunk layers that run (MTP blocks excluded)
  // One entry per global variant the file resolves to, in variant order (variant 0 always;
  // plain files have just that one).
  std::vector<PhaseWeights> phases;
  uint32_t max_variant = 0;  // highest sibling index in the file; 0: not a Phase Twin file
  // The file's own choice, used when neither the config nor the device count decides (CPU).
  uint32_t default_variant = 0;
  uint64_t default_budget_mb = 0;  // > 0: the file asks for budget mode
  // The budget greedy's candidates: promote_order filtered to groups with a larger variant 1,
  // first occurrence only. Budget B promotes, in order, each one that still fits.
  std::vector<Promotion> promotions;

  int n_layer() const { return static_cast<int>(layers.size()); }
  bool twin() const { return max_variant > 0; }

  // The weights of global variant `variant`. Errors: NotFound when the file does not carry it.
  absl::StatusOr<const PhaseWeights*> Phase(uint32_t variant) const;
  // The weights after the budget greedy (docs gguf-and-quants.md §5.4 N2) under budget_mb MiB,
  // starting from variant 0. Equal to what ResolveTensorVariants selects for that budget.
  PhaseWeights WithBudget(uint64_t budget_mb) const;
  // Checks a hand-made footprint: layers present, variant 0 present, vectors sized to the trunk.
  absl::Status Validate() const;
};

// Resolves the file once per phase (and once with an unbounded budget for the greedy's
// candidates) and describes each resolution; reads metadata only. Errors: those of
// ResolveTensorVariants and DescribeModel for variant 0 (a later phase the file cannot resolve
// is left out of `phases`).
absl::StatusOr<ModelFootprint> FootprintFromFile(const gguf::GgufFile& file);

}  // namespace moed::planner

#endif  // MOED_DAEMON_PLANNER_FOOTPRINT_H_

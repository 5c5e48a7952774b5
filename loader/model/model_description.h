// What a model file holds, in the terms the planner and the engine need: the architecture's
// hyperparameters, every layer with its tensors, and byte accounting per layer and per type.
// An architecture (loader/model/<arch>.cc) builds it from the GGUF metadata and the tensor list
// after Phase Twin resolution, checking the full inventory, and registers itself by name, so a
// second architecture is added beside the first without touching a central switch.
#ifndef MOED_LOADER_MODEL_MODEL_DESCRIPTION_H_
#define MOED_LOADER_MODEL_MODEL_DESCRIPTION_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "kernels/quants/ggml_type.h"
#include "loader/gguf/gguf_file.h"

namespace moed {

enum class LayerKind {
  kFullAttention,    // gated softmax attention with a KV cache
  kLinearAttention,  // Gated DeltaNet: conv + recurrent state, no KV cache
};
std::string_view LayerKindName(LayerKind kind);

using BytesByType = std::map<GgmlType, uint64_t>;

struct LayerDescription {
  int index = 0;
  LayerKind kind = LayerKind::kFullAttention;
  bool is_mtp = false;  // a multi-token-prediction block: recognised, never run
  // Tensors keyed by their name inside the block ("attn_qkv.weight", "ffn_up_exps.weight").
  absl::flat_hash_map<std::string, const gguf::TensorInfo*> tensors;
  uint64_t weight_bytes = 0;
  BytesByType bytes_by_type;
  // Per-sequence state: KV cache bytes per token (full layers, at F16) and the fixed recurrent
  // state bytes (linear layers: conv window + delta-rule matrix, F32).
  uint64_t kv_bytes_per_token = 0;
  uint64_t recurrent_state_bytes = 0;

  const gguf::TensorInfo* Find(std::string_view name) const;
};

// Architecture-specific hyperparameters derive from this; see e.g. Qwen35MoeHparams.
struct ArchitectureHparams {
  virtual ~ArchitectureHparams() = default;
};

struct ModelDescription {
  std::string architecture;  // general.architecture
  std::string size_label;    // "35B-A3B", or "" if not a known size
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int n_layer = 0;  // trunk layers that the forward pass runs
  std::vector<LayerDescription> layers;  // trunk layers, then MTP blocks
  // Tensors outside the blocks (embedding, final norm, head), keyed by full name.
  absl::flat_hash_map<std::string, const gguf::TensorInfo*> global_tensors;
  uint64_t global_bytes = 0;
  uint64_t total_bytes = 0;  // every tensor, MTP included
  BytesByType bytes_by_type;
  std::shared_ptr<const ArchitectureHparams> hparams;

  template <typename T>
  const T& hparams_as() const {
    return dynamic_cast<const T&>(*hparams);
  }
};

// An architecture turns metadata + resolved tensors into a ModelDescription.
class Architecture {
 public:
  virtual ~Architecture() = default;
  virtual std::string_view name() const = 0;
  // `tensors` is the file's tensor list after Phase Twin resolution (canonical names only); the
  // description points into it, so it must outlive the result. Errors name the offending key
  // or tensor (missing, mis-shaped, unexpected).
  virtual absl::StatusOr<ModelDescription> Describe(const gguf::GgufFile& file,
                                                    std::span<const gguf::TensorInfo> tensors) const = 0;
};

// Registers an architecture under its name (static initialisation; see MOED_REGISTER_ARCHITECTURE).
bool RegisterArchitecture(std::unique_ptr<Architecture> arch);

// Describes a model with the architecture named by general.architecture.
// Errors: NotFound for an architecture moed does not implement (the message lists those it does).
absl::StatusOr<ModelDescription> DescribeModel(const gguf::GgufFile& file,
                                               std::span<const gguf::TensorInfo> tensors);

// "qwen35moe"
std::vector<std::string_view> KnownArchitectures();

}  // namespace moed

#define MOED_REGISTER_ARCHITECTURE(Class) \
  [[maybe_unused]] static const bool kRegistered##Class = ::moed::RegisterArchitecture(std::make_unique<Class>())

#endif  // MOED_LOADER_MODEL_MODEL_DESCRIPTION_H_

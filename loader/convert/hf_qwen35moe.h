// HF Qwen3.5-MoE (Qwen3_5MoeForConditionalGeneration / Qwen3_5MoeForCausalLM) -> GGUF
// "qwen35moe", reproducing llama.cpp's converter (conversion/qwen.py: Qwen3_5MoeTextModel and its
// bases, run with --no-mtp): the same keys with the same types in the same order, and the same
// tensors (names, shapes, types, order, bytes). The only expected difference is ssm_a =
// -exp(A_log), whose float32 exp may differ from torch's by one ulp.
//
// Pipeline per checkpoint tensor, in the converter's order (docs: qwen35moe.md §4): drop vision
// and MTP tensors, strip "language_model.", reorder linear-attention V heads from grouped to
// tiled order, A_log -> -exp, dt_bias -> dt_proj.bias, squeeze conv1d, +1 on zero-centred norms,
// stack per-expert / split packed expert tensors, map names, pick the output type (F32 for 1-D,
// norms, routers, conv taps and non-".weight" tensors; the requested type otherwise).
#ifndef MOED_LOADER_CONVERT_HF_QWEN35MOE_H_
#define MOED_LOADER_CONVERT_HF_QWEN35MOE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/quants/ggml_type.h"
#include "loader/convert/convert_tensor.h"
#include "loader/convert/hf_checkpoint.h"
#include "loader/gguf/gguf_writer.h"
#include "nlohmann/json.hpp"

namespace moed::convert {

inline constexpr std::string_view kQwen35MoeArch = "qwen35moe";

// True for the HF architecture names llama.cpp converts to qwen35moe.
bool IsQwen35MoeArchitecture(std::string_view hf_architecture);

// The hyperparameters the tensor pipeline and the shape checks need.
struct Qwen35MoeHparams {
  int64_t n_layer = 0;
  int64_t hidden = 0;
  int64_t vocab = 0;  // 0 when config.json does not say
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  int64_t n_expert = 0;
  int64_t n_ff_exp = 0;
  int64_t n_ff_shexp = 0;
  int64_t conv_kernel = 0;
  int64_t n_k_heads = 0;  // linear attention
  int64_t n_v_heads = 0;
  int64_t k_head_dim = 0;
  int64_t v_head_dim = 0;
  std::vector<bool> recurrent;  // per layer: Gated DeltaNet (true) or full attention

  int64_t key_dim() const { return n_k_heads * k_head_dim; }
  int64_t value_dim() const { return n_v_heads * v_head_dim; }
  int64_t conv_dim() const { return 2 * key_dim() + value_dim(); }
};

// Reads the merged config (HfCheckpoint::hparams()). Errors name the missing or bad key.
absl::StatusOr<Qwen35MoeHparams> ParseQwen35MoeHparams(const nlohmann::json& hparams);

// The output tensors in the converter's order, each producing its bytes on demand.
// Errors: unmappable or misshapen tensors, incomplete expert sets, missing required tensors.
absl::StatusOr<std::vector<PlannedTensor>> PlanQwen35MoeTensors(const HfCheckpoint& checkpoint,
                                                                const Qwen35MoeHparams& hparams,
                                                                GgmlType outtype);

// Adds every metadata key (general.* included) in the converter's order.
absl::Status SetQwen35MoeMetadata(const HfCheckpoint& checkpoint, const Qwen35MoeHparams& hparams,
                                  GgmlType outtype, const ParameterCounts& counts,
                                  gguf::GgufWriter& writer);

// The whole conversion into `out_path`. `outtype` is F32, F16 or BF16.
absl::Status ConvertQwen35Moe(const HfCheckpoint& checkpoint, const std::string& out_path,
                              GgmlType outtype);

}  // namespace moed::convert

#endif  // MOED_LOADER_CONVERT_HF_QWEN35MOE_H_

// The weights of one pipeline stage (layers [first, last) of a qwen35moe model), bound to the
// tensor bytes in place: matrices stay in their GGUF block format inside the file mapping, so a
// stage touches only its own layers' pages. Small vectors (norms, gates, conv taps) are decoded to
// float32 once.
#ifndef MOED_WORKERS_ENGINE_STAGE_WEIGHTS_H_
#define MOED_WORKERS_ENGINE_STAGE_WEIGHTS_H_

#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/matmul.h"
#include "loader/model/model_description.h"
#include "workers/engine/loaded_model.h"

namespace moed::engine {

// A 3-D expert tensor [n_in, n_out, n_expert]; Expert(e) is expert e's matrix.
struct ExpertWeights {
  GgmlType type = GgmlType::kF32;
  const uint8_t* data = nullptr;
  int64_t n_in = 0;
  int64_t n_out = 0;
  cpu::WeightMatrix Expert(int64_t e) const { return cpu::ExpertSlice(type, data, n_in, n_out, e); }
};

struct LayerWeights {
  int index = 0;
  LayerKind kind = LayerKind::kFullAttention;
  std::vector<float> attn_norm;
  std::vector<float> post_attention_norm;
  // Full attention: wq holds query and output gate rows interleaved per head. A fused QKV file
  // is bound as row ranges of one matrix.
  cpu::WeightMatrix wq, wk, wv, wo;
  std::vector<float> q_norm, k_norm;
  // Gated DeltaNet.
  cpu::WeightMatrix w_mix, w_z, w_beta, w_alpha, w_out;
  std::vector<float> conv;  // [conv_dim][d_conv]
  std::vector<float> dt_bias, ssm_a, ssm_norm;
  // MoE.
  cpu::WeightMatrix router;
  ExpertWeights gate_exps, up_exps, down_exps;  // gate/up may be row ranges of a fused tensor
  cpu::WeightMatrix shared_gate, shared_up, shared_down;
  std::vector<float> shared_gate_inp;
  bool has_shared_expert = false;
};

struct StageWeights {
  int first_layer = 0;
  int last_layer = 0;  // exclusive
  bool embeds = false;  // first stage: token embedding
  bool samples = false; // last stage: final norm and head
  cpu::WeightMatrix token_embd;
  cpu::WeightMatrix output;  // token_embd when the head is tied
  std::vector<float> output_norm;
  std::vector<LayerWeights> layers;
};

// Binds layers [first, last) of the model's trunk. Errors: InvalidArgument for a bad range or a
// tensor whose type moed cannot compute with.
absl::StatusOr<StageWeights> BindStageWeights(const LoadedModel& model, int first, int last);

}  // namespace moed::engine

#endif  // MOED_WORKERS_ENGINE_STAGE_WEIGHTS_H_

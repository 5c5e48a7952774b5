// The Qwen3.5-MoE text architecture (GGUF "qwen35moe": Qwen3.5-35B-A3B / Nex-N2-mini,
// Qwen3.5-122B-A10B, Qwen3.5-397B-A17B / Nex-N2-Pro). Hyperparameters come from the
// qwen35moe.* keys (docs: qwen35moe.md §1); the tensor inventory is §2.
#ifndef MOED_LOADER_MODEL_QWEN35MOE_H_
#define MOED_LOADER_MODEL_QWEN35MOE_H_

#include <array>
#include <cstdint>
#include <vector>

#include "loader/model/model_description.h"

namespace moed {

struct Qwen35MoeHparams : ArchitectureHparams {
  int n_layer_all = 0;  // block_count, MTP blocks included
  int n_nextn = 0;      // nextn_predict_layers (MTP blocks at the end)
  int n_layer = 0;      // trunk: n_layer_all - n_nextn
  int64_t n_ctx_train = 0;
  int64_t n_embd = 0;
  int64_t n_vocab = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim_k = 0;  // attention.key_length
  int64_t head_dim_v = 0;  // attention.value_length
  float rms_eps = 1e-6f;
  float rope_freq_base = 1e7f;
  int64_t n_rot = 0;                     // rotary dims per head (partial RoPE)
  std::array<int32_t, 4> rope_sections{};  // multi-section RoPE (text uses the first only)
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_ff_exp = 0;
  int64_t n_ff_shexp = 0;
  // Gated DeltaNet (linear attention) layers.
  int64_t ssm_d_conv = 0;  // conv taps
  int64_t ssm_d_state = 0; // dk: key head dim
  int64_t ssm_n_group = 0; // Hk: key heads
  int64_t ssm_dt_rank = 0; // Hv: value heads
  int64_t ssm_d_inner = 0; // Hv * dv
  int64_t full_attention_interval = 4;
  std::vector<bool> recurrent;  // per trunk layer: true = linear attention

  int64_t ssm_head_v_dim() const { return ssm_d_inner / ssm_dt_rank; }
  int64_t ssm_key_dim() const { return ssm_n_group * ssm_d_state; }
  int64_t ssm_conv_dim() const { return 2 * ssm_key_dim() + ssm_d_inner; }
};

// Reads and validates the hyperparameters alone (no tensors). Errors name the key.
absl::StatusOr<Qwen35MoeHparams> ReadQwen35MoeHparams(const gguf::GgufFile& file);

}  // namespace moed

#endif  // MOED_LOADER_MODEL_QWEN35MOE_H_

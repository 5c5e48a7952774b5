// The three sub-layers of a qwen35moe block on the GPU, as CudaStageEngine members: the same
// computation as cpu_stage_layers.cc, in launches of libmoed_cuda.so on the engine's stream. Each
// reads the normalised input from s_.a; attention and DeltaNet leave their output in s_.m for the
// caller's residual add, the MoE adds its output to the residual stream s_.x itself.
#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "kernels/base/status_macros.h"
#include "kernels/quants/ggml_type.h"
#include "workers/engine/cuda_stage_engine.h"

namespace moed::engine {

absl::Status CudaStageEngine::FullAttention(const Layer& l, int64_t n) {
  RETURN_IF_ERROR(MatMul(l.wq, s_.a, n, s_.qg, "gemv attn qkv"));
  RETURN_IF_ERROR(MatMul(l.wk, s_.a, n, s_.k, "gemv attn qkv"));
  RETURN_IF_ERROR(MatMul(l.wv, s_.a, n, s_.v, "gemv attn qkv"));
  MoedCudaAttentionPrepArgs p{};
  p.n_heads = hp_.n_head;
  p.n_kv_heads = hp_.n_head_kv;
  p.head_dim = hp_.head_dim_k;
  p.head_dim_v = hp_.head_dim_v;
  p.n_rot = hp_.n_rot;
  // As cpu::RopeMultiNeox computes it, so that both backends rotate by the same angles.
  p.theta_scale = std::pow(hp_.rope_freq_base, -2.0f / static_cast<float>(hp_.n_rot));
  p.eps = hp_.rms_eps;
  p.n_tokens = static_cast<int32_t>(n);
  p.qg = s_.qg, p.k = s_.k, p.v = s_.v;
  p.q_norm = l.q_norm, p.k_norm = l.k_norm;
  p.positions = s_.positions, p.kv_rows = s_.kv_rows;
  // The pools hold F16: the ABI's float* fields carry them (api.h, MOED_CUDA_KV_F16).
  p.q = s_.q, p.gate = s_.gate;
  p.k_cache = reinterpret_cast<float*>(l.k_cache), p.v_cache = reinterpret_cast<float*>(l.v_cache);
  RETURN_IF_ERROR(Check(api_.attention_prep_kv(&p, MOED_CUDA_KV_F16, stream_), "attention_prep"));

  MoedCudaAttentionArgs a{};
  a.n_heads = hp_.n_head;
  a.n_kv_heads = hp_.n_head_kv;
  a.head_dim = hp_.head_dim_k;
  a.head_dim_v = hp_.head_dim_v;
  a.n_tokens = static_cast<int32_t>(n);
  a.scale = 1.0f / std::sqrt(static_cast<float>(hp_.head_dim_k));
  a.q = s_.q, a.gate = s_.gate;
  a.k_cache = reinterpret_cast<const float*>(l.k_cache), a.v_cache = reinterpret_cast<const float*>(l.v_cache);
  a.block_size = cache_->options().kv_block_size;
  a.block_tables = block_tables_;
  a.block_table_stride = static_cast<int32_t>(cache_->options().kv_blocks);
  a.token_slots = s_.token_slots, a.positions = s_.positions, a.max_position = max_position_;
  a.partials = s_.attn_partials, a.partials_floats = s_.attn_partials_floats;
  a.out = s_.o;
  RETURN_IF_ERROR(Check(api_.attention_kv(&a, MOED_CUDA_KV_F16, stream_), "attention"));
  return MatMul(l.wo, s_.o, n, s_.m, "gemv attn out");
}

absl::Status CudaStageEngine::DeltaNet(const Layer& l, const std::vector<Group>& groups, int64_t n) {
  const int64_t conv_dim = hp_.ssm_conv_dim(), inner = hp_.ssm_d_inner, key_dim = hp_.ssm_key_dim();
  const int64_t hv = hp_.ssm_dt_rank, dv = hp_.ssm_head_v_dim();
  RETURN_IF_ERROR(MatMul(l.w_mix, s_.a, n, s_.mix, "gemv dnet in mix"));
  RETURN_IF_ERROR(MatMul(l.w_z, s_.a, n, s_.z, "gemv dnet in z"));
  RETURN_IF_ERROR(MatMul(l.w_beta, s_.a, n, s_.beta_in, "gemv dnet in beta/alpha"));
  RETURN_IF_ERROR(MatMul(l.w_alpha, s_.a, n, s_.alpha, "gemv dnet in beta/alpha"));
  // The conv window and the delta-rule state run per sequence: one launch per group of sequences
  // with the same token count (a decode batch is one group).
  for (const Group& g : groups) {
    MoedCudaConv1dArgs c{};
    c.n_channels = conv_dim;
    c.d_conv = hp_.ssm_d_conv;
    c.n_seqs = g.n_seqs;
    c.n_tokens = static_cast<int32_t>(g.n_tokens);
    c.x = s_.mix + g.first_token * conv_dim;
    c.w = l.conv;
    c.state = l.conv_state;
    c.state_slots = s_.seq_slots + g.first_seq;
    c.y = s_.conv_out + g.first_token * conv_dim;
    RETURN_IF_ERROR(Check(api_.conv1d_step(&c, stream_), "conv1d_step"));
  }
  MoedCudaDeltaNetPrepArgs p{};
  p.n_k_heads = hp_.ssm_n_group;
  p.n_v_heads = hv;
  p.dk = hp_.ssm_d_state;
  p.dv = dv;
  p.n_tokens = static_cast<int32_t>(n);
  p.eps = hp_.rms_eps;
  p.q_scale = 1.0f / std::sqrt(static_cast<float>(hp_.ssm_d_state));
  p.conv_out = s_.conv_out, p.alpha = s_.alpha, p.beta_logit = s_.beta_in;
  p.ssm_a = l.ssm_a, p.dt_bias = l.dt_bias;
  p.q = s_.dq, p.k = s_.dk, p.v = s_.dv, p.g = s_.g, p.beta = s_.beta;
  RETURN_IF_ERROR(Check(api_.deltanet_prep(&p, stream_), "deltanet_prep"));
  for (const Group& g : groups) {
    MoedCudaDeltaRuleArgs d{};
    d.n_k_heads = hp_.ssm_n_group;
    d.n_v_heads = hv;
    d.dk = hp_.ssm_d_state;
    d.dv = dv;
    d.n_seqs = g.n_seqs;
    d.n_tokens = static_cast<int32_t>(g.n_tokens);
    d.q = s_.dq + g.first_token * key_dim;
    d.k = s_.dk + g.first_token * key_dim;
    d.v = s_.dv + g.first_token * inner;
    d.g = s_.g + g.first_token * hv;
    d.beta = s_.beta + g.first_token * hv;
    d.state = l.delta_state;
    d.state_slots = s_.seq_slots + g.first_seq;
    d.out = s_.delta_out + g.first_token * inner;
    RETURN_IF_ERROR(Check(api_.delta_rule_step(&d, stream_), "delta_rule_step"));
  }
  // Gated RMSNorm per value head: rmsnorm(o_j) * ssm_norm * silu(z_j).
  RETURN_IF_ERROR(Check(api_.rms_norm_gated(s_.delta_out, l.ssm_norm, s_.z, dv, n * hv, hp_.rms_eps, s_.y, stream_),
                        "rms_norm_gated"));
  return MatMul(l.w_out, s_.y, n, s_.m, "gemv dnet out");
}

absl::Status CudaStageEngine::Moe(const Layer& l, int64_t n) {
  const int64_t H = hp_.n_embd, K = hp_.n_expert_used;
  if (l.has_shared_expert) {
    const int64_t Fs = hp_.n_ff_shexp;
    RETURN_IF_ERROR(MatMul(l.shared_gate, s_.a, n, s_.sh_g, "gemv shared gate/up"));
    RETURN_IF_ERROR(MatMul(l.shared_up, s_.a, n, s_.sh_u, "gemv shared gate/up"));
    RETURN_IF_ERROR(Check(api_.silu_mul(s_.sh_g, s_.sh_u, n * Fs, s_.sh_g, stream_), "silu_mul"));
    RETURN_IF_ERROR(MatMul(l.shared_down, s_.sh_g, n, s_.sh_d, "gemv shared down"));
    RETURN_IF_ERROR(MatMul(l.shared_gate_inp, s_.a, n, s_.sh_logit, "gemv shared gate_inp"));
    RETURN_IF_ERROR(Check(api_.add_rows(s_.x, s_.sh_d, s_.sh_logit, H, n, stream_), "add_rows"));
  }
  RETURN_IF_ERROR(MatMul(l.router, s_.a, n, s_.router, "gemv router"));
  RETURN_IF_ERROR(Check(api_.route_topk(s_.router, n, hp_.n_expert, static_cast<int32_t>(K), s_.ids, s_.weights,
                                        stream_), "route_topk"));
  // The routed experts, in passes: moe_grouped on tensor cores for batches (F16 mode), else the
  // exact moe_decode. Both take the same fields of the layer and the step.
  const bool grouped = mma_ok_ && n >= kMmaMinTokens && H % 32 == 0 && hp_.n_ff_exp % 32 == 0;
  const int64_t pass = grouped ? kMoeGroupTokens : MOED_CUDA_MAX_MOE_TOKENS;
  auto fill = [&](auto& m, int64_t t) {
    m.gate_up_type = l.gate.type;
    m.down_type = l.down.type;
    m.gate_w = l.gate.data, m.up_w = l.up.data, m.down_w = l.down.data;
    m.n_embd = H;
    m.n_ff = hp_.n_ff_exp;
    m.n_expert = hp_.n_expert;
    m.n_tokens = static_cast<int32_t>(std::min(pass, n - t));
    m.top_k = static_cast<int32_t>(K);
    m.ids = s_.ids + t * K;
    m.weights = s_.weights + t * K;
    m.x = s_.a + t * H;
    m.y = s_.x + t * H;
    m.accumulate = 1;  // onto the residual stream
  };
  for (int64_t t = 0; t < n; t += pass) {
    if (grouped) {
      MoedCudaMoeGroupedArgs m{};
      fill(m, t);
      m.scratch = s_.moe_scratch, m.scratch_bytes = s_.moe_scratch_bytes;
      RETURN_IF_ERROR(Check(api_.moe_grouped(&m, stream_), "moe_grouped"));
    } else {
      MoedCudaMoeArgs m{};
      fill(m, t);
      m.act = s_.act;
      RETURN_IF_ERROR(Check(api_.moe_decode(&m, stream_), "moe_decode"));
    }
  }
  return absl::OkStatus();
}

}  // namespace moed::engine

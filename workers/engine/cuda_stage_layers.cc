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
  RETURN_IF_ERROR(MatMul(l.w_mix, s_.a, n, s_.mix, "gemv dnet in"));
  RETURN_IF_ERROR(MatMul(l.w_z, s_.a, n, s_.z, "gemv dnet in"));
  RETURN_IF_ERROR(MatMul(l.w_beta, s_.a, n, s_.beta_in, "gemv dnet in"));
  RETURN_IF_ERROR(MatMul(l.w_alpha, s_.a, n, s_.alpha, "gemv dnet in"));
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
    RETURN_IF_ERROR(MatMul(l.shared_gate, s_.a, n, s_.sh_g, "gemv shared"));
    RETURN_IF_ERROR(MatMul(l.shared_up, s_.a, n, s_.sh_u, "gemv shared"));
    RETURN_IF_ERROR(Check(api_.silu_mul(s_.sh_g, s_.sh_u, n * Fs, s_.sh_g, stream_), "silu_mul"));
    RETURN_IF_ERROR(MatMul(l.shared_down, s_.sh_g, n, s_.sh_d, "gemv shared"));
    RETURN_IF_ERROR(MatMul(l.shared_gate_inp, s_.a, n, s_.sh_logit, "gemv shared"));
    RETURN_IF_ERROR(Check(api_.add_rows(s_.x, s_.sh_d, s_.sh_logit, H, n, stream_), "add_rows"));
  }
  if (use_gemm_ && experts_f16_ != nullptr && n >= kGemmMinTokens) return MoeGemm(l, n);
  RETURN_IF_ERROR(MatMul(l.router, s_.a, n, s_.router, "gemv router"));
  RETURN_IF_ERROR(Check(api_.route_topk(s_.router, n, hp_.n_expert, static_cast<int32_t>(K), s_.ids, s_.weights,
                                        stream_), "route_topk"));
  for (int64_t t = 0; t < n; t += MOED_CUDA_MAX_MOE_TOKENS) {
    MoedCudaMoeArgs m{};
    m.gate_up_type = l.gate.type;
    m.down_type = l.down.type;
    m.gate_w = l.gate.data, m.up_w = l.up.data, m.down_w = l.down.data;
    m.n_embd = H;
    m.n_ff = hp_.n_ff_exp;
    m.n_expert = hp_.n_expert;
    m.n_tokens = static_cast<int32_t>(std::min<int64_t>(MOED_CUDA_MAX_MOE_TOKENS, n - t));
    m.top_k = static_cast<int32_t>(K);
    m.ids = s_.ids + t * K;
    m.weights = s_.weights + t * K;
    m.x = s_.a + t * H;
    m.act = s_.act;
    m.y = s_.x + t * H;
    m.accumulate = 1;  // onto the residual stream
    RETURN_IF_ERROR(Check(api_.moe_decode(&m, stream_), "moe_decode"));
  }
  return absl::OkStatus();
}

absl::Status CudaStageEngine::MoeGemm(const Layer& l, int64_t n) {
  const int64_t H = hp_.n_embd, K = hp_.n_expert_used, F = hp_.n_ff_exp, E = hp_.n_expert;
  auto* gate16 = static_cast<uint8_t*>(experts_f16_);
  uint8_t* up16 = gate16 + 2 * E * F * H;
  uint8_t* down16 = up16 + 2 * E * F * H;
  const auto gate_type = static_cast<GgmlType>(l.gate.type), down_type = static_cast<GgmlType>(l.down.type);
  RETURN_IF_ERROR(Check(api_.dequantize_f16(l.gate.type, l.gate.data, RowBytes(gate_type, H), H, E * F, gate16, stream_),
                        "dequantize experts"));
  RETURN_IF_ERROR(Check(api_.dequantize_f16(l.up.type, l.up.data, RowBytes(gate_type, H), H, E * F, up16, stream_),
                        "dequantize experts"));
  RETURN_IF_ERROR(Check(api_.dequantize_f16(l.down.type, l.down.data, RowBytes(down_type, F), F, E * H, down16, stream_),
                        "dequantize experts"));
  RETURN_IF_ERROR(MatMul(l.router, s_.a, n, s_.router, "gemv router"));
  RETURN_IF_ERROR(Check(api_.route_topk(s_.router, n, E, static_cast<int32_t>(K), s_.ids, s_.weights, stream_),
                        "route_topk"));
  std::vector<int32_t> ids(n * K);
  RETURN_IF_ERROR(Check(api_.copy_to_host_async(ids.data(), s_.ids, ids.size() * 4, stream_), "routing readback"));
  RETURN_IF_ERROR(Check(api_.stream_synchronize(stream_), "routing readback"));

  auto gemm = [&](const uint8_t* w16, int64_t n_in, int64_t n_out, const float* x, float* y, int64_t rows) {
    MoedCudaGemmArgs g{};
    g.w_f16 = w16;
    return Gemm(g, n_in, n_out, rows, x, y, "gemm experts");
  };
  for (int64_t t0 = 0; t0 < n; t0 += kMoeGemmTokens) {
    const int64_t m = std::min(kMoeGemmTokens, n - t0);
    // Rows grouped by expert: row_of[t][s] is the row of (token t, slot s), src[row] its token.
    std::vector<int64_t> count(E + 1, 0);
    for (int64_t i = t0 * K; i < (t0 + m) * K; ++i) ++count[ids[i] + 1];
    for (int64_t e = 0; e < E; ++e) count[e + 1] += count[e];  // count[e]: first row of expert e
    std::vector<int64_t> next(count.begin(), count.end() - 1);
    std::vector<int32_t> row_of(m * K), src(m * K);
    for (int64_t i = 0; i < m * K; ++i) {
      const int32_t row = static_cast<int32_t>(next[ids[t0 * K + i]]++);
      row_of[i] = row;
      src[row] = static_cast<int32_t>(t0 + i / K);
    }
    RETURN_IF_ERROR(Check(api_.copy_to_device_async(s_.moe_row_of, row_of.data(), row_of.size() * 4, stream_), "copy"));
    RETURN_IF_ERROR(Check(api_.copy_to_device_async(s_.moe_src, src.data(), src.size() * 4, stream_), "copy"));
    RETURN_IF_ERROR(Check(api_.gather_rows(s_.a, s_.moe_src, m * K, H, s_.moe_xs, stream_), "gather_rows"));
    for (int64_t e = 0; e < E; ++e) {
      const int64_t first = count[e], rows = count[e + 1] - count[e];
      if (rows == 0) continue;
      RETURN_IF_ERROR(gemm(gate16 + 2 * e * F * H, H, F, s_.moe_xs + first * H, s_.moe_g + first * F, rows));
      RETURN_IF_ERROR(gemm(up16 + 2 * e * F * H, H, F, s_.moe_xs + first * H, s_.moe_u + first * F, rows));
    }
    RETURN_IF_ERROR(Check(api_.silu_mul(s_.moe_g, s_.moe_u, m * K * F, s_.moe_g, stream_), "silu_mul"));
    for (int64_t e = 0; e < E; ++e) {
      const int64_t first = count[e], rows = count[e + 1] - count[e];
      if (rows == 0) continue;
      RETURN_IF_ERROR(gemm(down16 + 2 * e * H * F, F, H, s_.moe_g + first * F, s_.moe_d + first * H, rows));
    }
    RETURN_IF_ERROR(Check(api_.moe_combine(s_.x + t0 * H, s_.moe_d, s_.moe_row_of, s_.weights + t0 * K, m,
                                           static_cast<int32_t>(K), H, stream_), "moe_combine"));
  }
  return absl::OkStatus();
}

}  // namespace moed::engine

// The three sub-layers of a qwen35moe block, as CpuStageEngine members: gated softmax attention
// (docs: qwen35moe.md §3.3), Gated DeltaNet (§3.4, §3.5) and the MoE FFN with its shared expert
// (§3.6). Projections run batched over every token of the step; whatever carries per-sequence
// state (RoPE positions, the KV cache, the conv window, the delta-rule scan) runs per sequence.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/conv1d.h"
#include "kernels/cpu/delta_rule.h"
#include "kernels/cpu/moe_routing.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "workers/engine/cpu_stage_engine.h"

namespace moed::engine {
namespace {

float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
float Silu(float x) { return x / (1.0f + std::exp(-x)); }
float Softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

}  // namespace

void CpuStageEngine::FullAttention(int layer, const std::vector<Rows>& rows, const float* a, float* out) {
  const LayerWeights& w = weights_.layers[layer];
  const int64_t n = rows.back().begin + rows.back().count;
  const int64_t nh = hp_.n_head, nkv = hp_.n_head_kv, hd = hp_.head_dim_k, hdv = hp_.head_dim_v;
  std::vector<float> qg(n * 2 * nh * hd), k(n * nkv * hd), v(n * nkv * hdv);
  MatMul(w.wq, a, n, qg.data());
  MatMul(w.wk, a, n, k.data());
  MatMul(w.wv, a, n, v.data());

  // Split each head's [query | gate] pair; normalise and rotate queries and keys; cache K and V.
  std::vector<float> q(n * nh * hd), gate(n * nh * hd);
  for (const Rows& r : rows) {
    for (int64_t i = 0; i < r.count; ++i) {
      const int64_t t = r.begin + i;
      for (int64_t h = 0; h < nh; ++h) {
        const float* src = qg.data() + (t * nh + h) * 2 * hd;
        cpu::RmsNorm(src, w.q_norm.data(), hd, hp_.rms_eps, q.data() + (t * nh + h) * hd);
        std::memcpy(gate.data() + (t * nh + h) * hd, src + hd, hd * sizeof(float));
      }
      float* kt = k.data() + t * nkv * hd;
      for (int64_t h = 0; h < nkv; ++h) cpu::RmsNorm(kt + h * hd, w.k_norm.data(), hd, hp_.rms_eps, kt + h * hd);
      const cpu::RopePosition pos = cpu::RopePosition::Text(r.first_pos + i);
      cpu::RopeMultiNeox(q.data() + t * nh * hd, nh, hd, hp_.n_rot, pos, hp_.rope_sections, hp_.rope_freq_base);
      cpu::RopeMultiNeox(kt, nkv, hd, hp_.n_rot, pos, hp_.rope_sections, hp_.rope_freq_base);
      std::memcpy(cache_->KeyRow(r.slot, layer, r.first_pos + i), kt, nkv * hd * sizeof(float));
      std::memcpy(cache_->ValueRow(r.slot, layer, r.first_pos + i), v.data() + t * nkv * hdv, nkv * hdv * sizeof(float));
    }
  }

  std::vector<float> o(n * nh * hdv);
  std::vector<const float*> k_ptrs, v_ptrs;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (const Rows& r : rows) {
    const cpu::PagedKv kv = cache_->KvView(r.slot, layer, k_ptrs, v_ptrs);
    cpu::AttentionPaged(q.data() + r.begin * nh * hd, r.count, r.first_pos, nh, kv, scale,
                        o.data() + r.begin * nh * hdv, pool_.get());
  }
  for (int64_t i = 0; i < n * nh * hdv; ++i) o[i] *= Sigmoid(gate[i]);
  MatMul(w.wo, o.data(), n, out);
}

void CpuStageEngine::DeltaNet(int layer, const std::vector<Rows>& rows, const float* a, float* out) {
  const LayerWeights& w = weights_.layers[layer];
  const int64_t n = rows.back().begin + rows.back().count;
  const int64_t conv_dim = hp_.ssm_conv_dim(), key_dim = hp_.ssm_key_dim(), inner = hp_.ssm_d_inner;
  const int64_t hk = hp_.ssm_n_group, hv = hp_.ssm_dt_rank, dk = hp_.ssm_d_state, dv = hp_.ssm_head_v_dim();
  std::vector<float> mix(n * conv_dim), z(n * inner), b(n * hv), al(n * hv);
  MatMul(w.w_mix, a, n, mix.data());
  MatMul(w.w_z, a, n, z.data());
  MatMul(w.w_beta, a, n, b.data());
  MatMul(w.w_alpha, a, n, al.data());

  std::vector<float> y(n * inner);
  const cpu::DeltaRuleShape shape{hk, hv, dk, dv};
  const float q_scale = 1.0f / std::sqrt(static_cast<float>(dk));
  for (const Rows& r : rows) {
    std::vector<float> c(r.count * conv_dim);
    cpu::CausalConv1dSilu(mix.data() + r.begin * conv_dim, r.count, conv_dim, w.conv.data(), hp_.ssm_d_conv,
                          cache_->ConvState(r.slot, layer), c.data());
    std::vector<float> q(r.count * key_dim), k(r.count * key_dim), v(r.count * inner), g(r.count * hv),
        beta(r.count * hv), o(r.count * inner);
    for (int64_t i = 0; i < r.count; ++i) {
      const float* ci = c.data() + i * conv_dim;
      std::memcpy(q.data() + i * key_dim, ci, key_dim * sizeof(float));
      std::memcpy(k.data() + i * key_dim, ci + key_dim, key_dim * sizeof(float));
      std::memcpy(v.data() + i * inner, ci + 2 * key_dim, inner * sizeof(float));
      for (int64_t h = 0; h < hk; ++h) {
        float* qh = q.data() + i * key_dim + h * dk;
        cpu::L2Normalize(qh, dk, hp_.rms_eps);
        for (int64_t d = 0; d < dk; ++d) qh[d] *= q_scale;
        cpu::L2Normalize(k.data() + i * key_dim + h * dk, dk, hp_.rms_eps);
      }
      const int64_t t = r.begin + i;
      for (int64_t j = 0; j < hv; ++j) {
        g[i * hv + j] = w.ssm_a[j] * Softplus(al[t * hv + j] + w.dt_bias[j]);
        beta[i * hv + j] = Sigmoid(b[t * hv + j]);
      }
    }
    float* state = cache_->DeltaState(r.slot, layer);
    if (r.count == 1) {
      cpu::DeltaRuleRecurrent(shape, r.count, q.data(), k.data(), v.data(), g.data(), beta.data(), state, o.data(),
                              pool_.get());
    } else {
      cpu::DeltaRuleChunked(shape, r.count, q.data(), k.data(), v.data(), g.data(), beta.data(), state, o.data(),
                            pool_.get());
    }
    // Gated RMSNorm per value head: rmsnorm(o_j, ssm_norm) * silu(z_j).
    for (int64_t i = 0; i < r.count; ++i) {
      const int64_t t = r.begin + i;
      for (int64_t j = 0; j < hv; ++j) {
        float* yj = y.data() + t * inner + j * dv;
        cpu::RmsNorm(o.data() + i * inner + j * dv, w.ssm_norm.data(), dv, hp_.rms_eps, yj);
        const float* zj = z.data() + t * inner + j * dv;
        for (int64_t d = 0; d < dv; ++d) yj[d] *= Silu(zj[d]);
      }
    }
  }
  MatMul(w.w_out, y.data(), n, out);
}

void CpuStageEngine::Moe(int layer, int64_t n, const float* f, float* out) {
  const LayerWeights& w = weights_.layers[layer];
  const int64_t H = hp_.n_embd, E = hp_.n_expert, K = hp_.n_expert_used, F = hp_.n_ff_exp;
  std::vector<float> router(n * E);
  MatMul(w.router, f, n, router.data());
  std::vector<int32_t> ids(n * K);
  std::vector<float> weights(n * K);
  for (int64_t t = 0; t < n; ++t) {
    cpu::RouteTopK(router.data() + t * E, E, K, ids.data() + t * K, weights.data() + t * K);
  }
  // Group the step's tokens by expert so each expert's weights are read once per step.
  std::vector<std::vector<std::pair<int64_t, float>>> by_expert(E);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < K; ++i) by_expert[ids[t * K + i]].push_back({t, weights[t * K + i]});
  }
  std::fill(out, out + n * H, 0.0f);
  std::vector<float> x, g, u, d;
  for (int64_t e = 0; e < E; ++e) {
    const auto& tokens = by_expert[e];
    if (tokens.empty()) continue;
    const int64_t m = static_cast<int64_t>(tokens.size());
    x.resize(m * H), g.resize(m * F), u.resize(m * F), d.resize(m * H);
    for (int64_t i = 0; i < m; ++i) std::memcpy(x.data() + i * H, f + tokens[i].first * H, H * sizeof(float));
    MatMul(w.gate_exps.Expert(e), x.data(), m, g.data());
    MatMul(w.up_exps.Expert(e), x.data(), m, u.data());
    for (int64_t i = 0; i < m * F; ++i) g[i] = Silu(g[i]) * u[i];
    MatMul(w.down_exps.Expert(e), g.data(), m, d.data());
    for (int64_t i = 0; i < m; ++i) {
      float* o = out + tokens[i].first * H;
      const float wt = tokens[i].second;
      for (int64_t c = 0; c < H; ++c) o[c] += wt * d[i * H + c];
    }
  }
  if (!w.has_shared_expert) return;
  const int64_t Fs = hp_.n_ff_shexp;
  g.resize(n * Fs), u.resize(n * Fs), d.resize(n * H);
  MatMul(w.shared_gate, f, n, g.data());
  MatMul(w.shared_up, f, n, u.data());
  for (int64_t i = 0; i < n * Fs; ++i) g[i] = Silu(g[i]) * u[i];
  MatMul(w.shared_down, g.data(), n, d.data());
  for (int64_t t = 0; t < n; ++t) {
    double dot = 0;
    for (int64_t c = 0; c < H; ++c) dot += static_cast<double>(w.shared_gate_inp[c]) * f[t * H + c];
    const float gamma = Sigmoid(static_cast<float>(dot));
    for (int64_t c = 0; c < H; ++c) out[t * H + c] += gamma * d[t * H + c];
  }
}

}  // namespace moed::engine

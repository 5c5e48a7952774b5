#include "loader/model/qwen35moe.h"

#include <optional>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed {
namespace {

constexpr std::string_view kArch = "qwen35moe";

std::string Key(std::string_view suffix) { return absl::StrCat(Sv(kArch), ".", Sv(suffix)); }

absl::StatusOr<int64_t> RequireInt(const gguf::GgufFile& f, std::string_view suffix) {
  ASSIGN_OR_RETURN(uint64_t v, f.GetUint(Key(suffix)));
  if (v > (uint64_t{1} << 40)) return absl::InvalidArgumentError(absl::StrCat("key '", Key(suffix), "' = ", v, " is implausible"));
  return static_cast<int64_t>(v);
}

absl::StatusOr<int64_t> OptionalInt(const gguf::GgufFile& f, std::string_view suffix, int64_t fallback) {
  if (f.FindValue(Key(suffix)) == nullptr) return fallback;
  return RequireInt(f, suffix);
}

absl::Status Positive(std::string_view suffix, int64_t v) {
  if (v > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("key '", Key(suffix), "' must be positive, found ", v));
}

// Shapes compare with trailing 1s ignored ([H] == [H, 1]).
bool SameShape(const gguf::TensorInfo& t, std::span<const int64_t> want) {
  for (int d = 0; d < gguf::kMaxDims; ++d) {
    const int64_t w = d < static_cast<int>(want.size()) ? want[d] : 1;
    if (t.ne[d] != w) return false;
  }
  return true;
}

std::string ShapeOf(std::span<const int64_t> ne) { return absl::StrCat("[", absl::StrJoin(ne, ", "), "]"); }

// Matches the tensors of one model against the expected inventory and records what it used.
class Inventory {
 public:
  explicit Inventory(std::span<const gguf::TensorInfo> tensors) {
    for (const gguf::TensorInfo& t : tensors) by_name_.emplace(t.name, &t);
  }

  const gguf::TensorInfo* Get(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
  }

  // Looks up `name`; a present tensor must have shape `ne`. Returns nullptr if absent.
  absl::StatusOr<const gguf::TensorInfo*> Optional(const std::string& name, std::initializer_list<int64_t> ne) {
    const gguf::TensorInfo* t = Get(name);
    if (t == nullptr) return nullptr;
    std::vector<int64_t> want(ne);
    if (!SameShape(*t, want)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has shape ", t->ShapeString(),
                                                     ", expected ", ShapeOf(want)));
    }
    used_.insert(name);
    return t;
  }

  absl::StatusOr<const gguf::TensorInfo*> Required(const std::string& name, std::initializer_list<int64_t> ne) {
    ASSIGN_OR_RETURN(const gguf::TensorInfo* t, Optional(name, ne));
    if (t == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("missing tensor '", name, "' (expected shape ",
                                                     ShapeOf(std::vector<int64_t>(ne)), ")"));
    }
    return t;
  }

  absl::Status CheckAllUsed() const {
    for (const auto& [name, t] : by_name_) {
      if (!used_.contains(name)) {
        return absl::InvalidArgumentError(absl::StrCat("unexpected tensor '", name, "' for architecture ", Sv(kArch)));
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::flat_hash_map<std::string, const gguf::TensorInfo*> by_name_;
  absl::flat_hash_set<std::string> used_;
};

// Adds one tensor of a block to the layer (short name, bytes).
void AddToLayer(LayerDescription& layer, std::string_view short_name, const gguf::TensorInfo* t) {
  if (t == nullptr) return;
  layer.tensors.emplace(std::string(short_name), t);
  layer.weight_bytes += t->nbytes;
  layer.bytes_by_type[t->type] += t->nbytes;
}

class Qwen35Moe : public Architecture {
 public:
  std::string_view name() const override { return kArch; }
  absl::StatusOr<ModelDescription> Describe(const gguf::GgufFile& file,
                                            std::span<const gguf::TensorInfo> tensors) const override;

 private:
  static absl::Status DescribeBlock(const Qwen35MoeHparams& hp, int il, bool is_mtp, Inventory& inv,
                                    LayerDescription& layer);
};

absl::Status Qwen35Moe::DescribeBlock(const Qwen35MoeHparams& hp, int il, bool is_mtp, Inventory& inv,
                                      LayerDescription& layer) {
  const std::string p = absl::StrCat("blk.", il, ".");
  const int64_t H = hp.n_embd;
  // MTP tensors are optional: some files declare nextn layers without shipping their weights.
  auto get = [&](std::string_view n, std::initializer_list<int64_t> ne) -> absl::StatusOr<const gguf::TensorInfo*> {
    const std::string full = p + std::string(n);
    ASSIGN_OR_RETURN(const gguf::TensorInfo* t, is_mtp ? inv.Optional(full, ne) : inv.Required(full, ne));
    AddToLayer(layer, n, t);
    return t;
  };
  auto opt = [&](std::string_view n, std::initializer_list<int64_t> ne) -> absl::StatusOr<const gguf::TensorInfo*> {
    ASSIGN_OR_RETURN(const gguf::TensorInfo* t, inv.Optional(p + std::string(n), ne));
    AddToLayer(layer, n, t);
    return t;
  };

  RETURN_IF_ERROR(get("attn_norm.weight", {H}).status());
  RETURN_IF_ERROR(get("post_attention_norm.weight", {H}).status());

  if (layer.kind == LayerKind::kFullAttention) {
    const int64_t q_rows = 2 * hp.n_head * hp.head_dim_k;  // query and output gate, per head
    const int64_t kv_rows = hp.n_head_kv * hp.head_dim_k;
    // Either separate Q(+gate)/K/V or one fused QKV matrix (newer tooling).
    ASSIGN_OR_RETURN(const gguf::TensorInfo* fused, opt("attn_qkv.weight", {H, q_rows + 2 * kv_rows}));
    if (fused == nullptr) {
      RETURN_IF_ERROR(get("attn_q.weight", {H, q_rows}).status());
      RETURN_IF_ERROR(get("attn_k.weight", {H, kv_rows}).status());
      RETURN_IF_ERROR(get("attn_v.weight", {H, hp.n_head_kv * hp.head_dim_v}).status());
    }
    RETURN_IF_ERROR(get("attn_output.weight", {hp.n_head * hp.head_dim_v, H}).status());
    RETURN_IF_ERROR(get("attn_q_norm.weight", {hp.head_dim_k}).status());
    RETURN_IF_ERROR(get("attn_k_norm.weight", {hp.head_dim_k}).status());
    layer.kv_bytes_per_token = static_cast<uint64_t>(hp.n_head_kv * (hp.head_dim_k + hp.head_dim_v)) * 2;
  } else {
    const int64_t hv = hp.ssm_dt_rank;
    RETURN_IF_ERROR(get("attn_qkv.weight", {H, hp.ssm_conv_dim()}).status());
    RETURN_IF_ERROR(get("attn_gate.weight", {H, hp.ssm_d_inner}).status());
    RETURN_IF_ERROR(get("ssm_beta.weight", {H, hv}).status());
    RETURN_IF_ERROR(get("ssm_alpha.weight", {H, hv}).status());
    RETURN_IF_ERROR(get("ssm_conv1d.weight", {hp.ssm_d_conv, hp.ssm_conv_dim()}).status());
    RETURN_IF_ERROR(get("ssm_dt.bias", {hv}).status());
    RETURN_IF_ERROR(get("ssm_a", {hv}).status());
    RETURN_IF_ERROR(get("ssm_norm.weight", {hp.ssm_head_v_dim()}).status());
    RETURN_IF_ERROR(get("ssm_out.weight", {hp.ssm_d_inner, H}).status());
    layer.recurrent_state_bytes =
        static_cast<uint64_t>((hp.ssm_d_conv - 1) * hp.ssm_conv_dim() + hv * hp.ssm_head_v_dim() * hp.ssm_d_state) * 4;
  }

  const int64_t E = hp.n_expert, F = hp.n_ff_exp;
  RETURN_IF_ERROR(get("ffn_gate_inp.weight", {H, E}).status());
  ASSIGN_OR_RETURN(const gguf::TensorInfo* gate_up, opt("ffn_gate_up_exps.weight", {H, 2 * F, E}));
  if (gate_up == nullptr) {
    RETURN_IF_ERROR(get("ffn_gate_exps.weight", {H, F, E}).status());
    RETURN_IF_ERROR(get("ffn_up_exps.weight", {H, F, E}).status());
  }
  RETURN_IF_ERROR(get("ffn_down_exps.weight", {F, H, E}).status());
  if (hp.n_ff_shexp > 0) {
    RETURN_IF_ERROR(get("ffn_gate_inp_shexp.weight", {H}).status());
    RETURN_IF_ERROR(get("ffn_gate_shexp.weight", {H, hp.n_ff_shexp}).status());
    RETURN_IF_ERROR(get("ffn_up_shexp.weight", {H, hp.n_ff_shexp}).status());
    RETURN_IF_ERROR(get("ffn_down_shexp.weight", {hp.n_ff_shexp, H}).status());
  }
  if (is_mtp) {
    RETURN_IF_ERROR(opt("nextn.eh_proj.weight", {2 * H, H}).status());
    for (const char* n : {"nextn.enorm.weight", "nextn.hnorm.weight", "nextn.shared_head_norm.weight"}) {
      RETURN_IF_ERROR(opt(n, {H}).status());
    }
    RETURN_IF_ERROR(opt("nextn.embed_tokens.weight", {H, hp.n_vocab}).status());
    RETURN_IF_ERROR(opt("nextn.shared_head_head.weight", {H, hp.n_vocab}).status());
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelDescription> Qwen35Moe::Describe(const gguf::GgufFile& file,
                                                      std::span<const gguf::TensorInfo> tensors) const {
  ASSIGN_OR_RETURN(Qwen35MoeHparams hp, ReadQwen35MoeHparams(file));
  Inventory inv(tensors);
  const gguf::TensorInfo* embd = inv.Get("token_embd.weight");
  if (embd == nullptr) return absl::InvalidArgumentError("missing tensor 'token_embd.weight'");
  hp.n_vocab = embd->ne[1];

  ModelDescription model;
  model.architecture = std::string(kArch);
  model.n_vocab = hp.n_vocab;
  model.n_embd = hp.n_embd;
  model.n_layer = hp.n_layer;
  switch (hp.n_layer) {
    case 40: model.size_label = "35B-A3B"; break;
    case 48: model.size_label = "122B-A10B"; break;
    case 60: model.size_label = "397B-A17B"; break;
    default: break;
  }
  auto add_global = [&](const std::string& name, const gguf::TensorInfo* t) {
    if (t == nullptr) return;
    model.global_tensors.emplace(name, t);
    model.global_bytes += t->nbytes;
    model.bytes_by_type[t->type] += t->nbytes;
  };
  ASSIGN_OR_RETURN(const gguf::TensorInfo* t, inv.Required("token_embd.weight", {hp.n_embd, hp.n_vocab}));
  add_global("token_embd.weight", t);
  ASSIGN_OR_RETURN(t, inv.Required("output_norm.weight", {hp.n_embd}));
  add_global("output_norm.weight", t);
  ASSIGN_OR_RETURN(t, inv.Optional("output.weight", {hp.n_embd, hp.n_vocab}));  // else tied to token_embd
  add_global("output.weight", t);
  model.total_bytes = model.global_bytes;

  for (int il = 0; il < hp.n_layer_all; ++il) {
    LayerDescription layer;
    layer.index = il;
    layer.is_mtp = il >= hp.n_layer;
    layer.kind = !layer.is_mtp && hp.recurrent[il] ? LayerKind::kLinearAttention : LayerKind::kFullAttention;
    RETURN_IF_ERROR(DescribeBlock(hp, il, layer.is_mtp, inv, layer));
    model.total_bytes += layer.weight_bytes;
    for (const auto& [type, bytes] : layer.bytes_by_type) model.bytes_by_type[type] += bytes;
    model.layers.push_back(std::move(layer));
  }
  RETURN_IF_ERROR(inv.CheckAllUsed());
  model.hparams = std::make_shared<Qwen35MoeHparams>(std::move(hp));
  return model;
}

MOED_REGISTER_ARCHITECTURE(Qwen35Moe);

}  // namespace

absl::StatusOr<Qwen35MoeHparams> ReadQwen35MoeHparams(const gguf::GgufFile& f) {
  Qwen35MoeHparams hp;
  ASSIGN_OR_RETURN(int64_t block_count, RequireInt(f, "block_count"));
  ASSIGN_OR_RETURN(int64_t nextn, OptionalInt(f, "nextn_predict_layers", 0));
  if (block_count <= 0 || block_count > 4096 || nextn < 0 || nextn >= block_count) {
    return absl::InvalidArgumentError(absl::StrCat("key '", Key("block_count"), "' = ", block_count,
                                                   " with nextn_predict_layers = ", nextn, " is invalid"));
  }
  hp.n_layer_all = static_cast<int>(block_count);
  hp.n_nextn = static_cast<int>(nextn);
  hp.n_layer = hp.n_layer_all - hp.n_nextn;
  ASSIGN_OR_RETURN(hp.n_ctx_train, OptionalInt(f, "context_length", 0));
  ASSIGN_OR_RETURN(hp.n_embd, RequireInt(f, "embedding_length"));
  ASSIGN_OR_RETURN(hp.n_head, RequireInt(f, "attention.head_count"));
  // head_count_kv is a scalar in official files, a per-layer array (0 on linear layers) in some.
  const gguf::Value* kv = f.FindValue(Key("attention.head_count_kv"));
  if (kv == nullptr) return absl::InvalidArgumentError(absl::StrCat("missing key '", Key("attention.head_count_kv"), "'"));
  if (kv->is_array()) {
    for (uint64_t i = 0; i < kv->size(); ++i) {
      ASSIGN_OR_RETURN(int64_t v, kv->GetIntAt(i));
      hp.n_head_kv = std::max(hp.n_head_kv, v);
    }
  } else {
    ASSIGN_OR_RETURN(hp.n_head_kv, RequireInt(f, "attention.head_count_kv"));
  }
  ASSIGN_OR_RETURN(hp.head_dim_k, RequireInt(f, "attention.key_length"));
  ASSIGN_OR_RETURN(hp.head_dim_v, RequireInt(f, "attention.value_length"));
  ASSIGN_OR_RETURN(double eps, f.GetFloat(Key("attention.layer_norm_rms_epsilon")));
  hp.rms_eps = static_cast<float>(eps);
  ASSIGN_OR_RETURN(double base, f.GetFloat(Key("rope.freq_base")));
  hp.rope_freq_base = static_cast<float>(base);
  ASSIGN_OR_RETURN(hp.n_rot, RequireInt(f, "rope.dimension_count"));
  if (const gguf::Value* s = f.FindValue(Key("rope.dimension_sections"))) {
    for (uint64_t i = 0; i < s->size() && i < 4; ++i) {
      ASSIGN_OR_RETURN(int64_t v, s->GetIntAt(i));
      hp.rope_sections[i] = static_cast<int32_t>(v);
    }
  }
  ASSIGN_OR_RETURN(hp.n_expert, RequireInt(f, "expert_count"));
  ASSIGN_OR_RETURN(hp.n_expert_used, RequireInt(f, "expert_used_count"));
  ASSIGN_OR_RETURN(hp.n_ff_exp, RequireInt(f, "expert_feed_forward_length"));
  ASSIGN_OR_RETURN(hp.n_ff_shexp, OptionalInt(f, "expert_shared_feed_forward_length", 0));
  ASSIGN_OR_RETURN(hp.ssm_d_conv, RequireInt(f, "ssm.conv_kernel"));
  ASSIGN_OR_RETURN(hp.ssm_d_state, RequireInt(f, "ssm.state_size"));
  ASSIGN_OR_RETURN(hp.ssm_n_group, RequireInt(f, "ssm.group_count"));
  ASSIGN_OR_RETURN(hp.ssm_dt_rank, RequireInt(f, "ssm.time_step_rank"));
  ASSIGN_OR_RETURN(hp.ssm_d_inner, RequireInt(f, "ssm.inner_size"));
  ASSIGN_OR_RETURN(hp.full_attention_interval, OptionalInt(f, "full_attention_interval", 4));
  for (auto [name, v] : {std::pair<std::string_view, int64_t>{"embedding_length", hp.n_embd},
                         {"attention.head_count", hp.n_head}, {"attention.head_count_kv", hp.n_head_kv},
                         {"attention.key_length", hp.head_dim_k}, {"attention.value_length", hp.head_dim_v},
                         {"expert_count", hp.n_expert}, {"expert_used_count", hp.n_expert_used},
                         {"expert_feed_forward_length", hp.n_ff_exp}, {"ssm.conv_kernel", hp.ssm_d_conv},
                         {"ssm.state_size", hp.ssm_d_state}, {"ssm.group_count", hp.ssm_n_group},
                         {"ssm.time_step_rank", hp.ssm_dt_rank}, {"ssm.inner_size", hp.ssm_d_inner},
                         {"full_attention_interval", hp.full_attention_interval}}) {
    RETURN_IF_ERROR(Positive(name, v));
  }
  if (hp.n_expert_used > hp.n_expert) {
    return absl::InvalidArgumentError(absl::StrCat("key '", Key("expert_used_count"), "' = ", hp.n_expert_used,
                                                   " exceeds expert_count = ", hp.n_expert));
  }
  if (hp.n_head % hp.n_head_kv != 0) {
    return absl::InvalidArgumentError(absl::StrCat("attention.head_count ", hp.n_head,
                                                   " is not a multiple of head_count_kv ", hp.n_head_kv));
  }
  if (hp.ssm_d_inner % hp.ssm_dt_rank != 0 || hp.ssm_dt_rank % hp.ssm_n_group != 0) {
    return absl::InvalidArgumentError(absl::StrCat("ssm.inner_size ", hp.ssm_d_inner, ", time_step_rank ",
                                                   hp.ssm_dt_rank, " and group_count ", hp.ssm_n_group,
                                                   " are inconsistent"));
  }
  if (hp.n_rot > hp.head_dim_k || hp.n_rot % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("rope.dimension_count ", hp.n_rot,
                                                   " must be even and at most key_length ", hp.head_dim_k));
  }
  // Layer schedule: the explicit per-layer array wins over the interval rule.
  hp.recurrent.resize(hp.n_layer);
  if (const gguf::Value* r = f.FindValue(Key("attention.recurrent_layers"))) {
    if (r->size() < static_cast<uint64_t>(hp.n_layer)) {
      return absl::InvalidArgumentError(absl::StrCat("key '", Key("attention.recurrent_layers"), "' has ", r->size(),
                                                     " entries for ", hp.n_layer, " layers"));
    }
    for (int i = 0; i < hp.n_layer; ++i) {
      ASSIGN_OR_RETURN(int64_t v, r->GetIntAt(i));
      hp.recurrent[i] = v != 0;
    }
  } else {
    for (int i = 0; i < hp.n_layer; ++i) hp.recurrent[i] = (i + 1) % hp.full_attention_interval != 0;
  }
  return hp;
}

}  // namespace moed

#include "workers/engine/stage_weights.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"
#include "kernels/quants/dequantize.h"

namespace moed::engine {
namespace {

absl::Status CheckComputable(const gguf::TensorInfo& t) {
  if (!FindGgmlType(t.type)->can_dequantize) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", t.name, "' has type ", Sv(GgmlTypeName(t.type)), ", which the CPU engine cannot read"));
  }
  return absl::OkStatus();
}

class Binder {
 public:
  explicit Binder(const LoadedModel& m) : model_(m) {}

  absl::StatusOr<cpu::WeightMatrix> Matrix(const gguf::TensorInfo* t) const {
    if (t == nullptr) return absl::InternalError("a required tensor is not bound");
    RETURN_IF_ERROR(CheckComputable(*t));
    return cpu::WeightMatrix{t->type, model_.file->TensorData(*t).data(), t->ne[0], t->ne[1] * t->ne[2] * t->ne[3],
                             t->row_bytes()};
  }

  // Rows [row0, row0 + n_rows) of a matrix, e.g. one part of a fused projection.
  static cpu::WeightMatrix Rows(const cpu::WeightMatrix& m, int64_t row0, int64_t n_rows) {
    return cpu::WeightMatrix{m.type, m.data + row0 * m.row_bytes, m.n_in, n_rows, m.row_bytes};
  }

  absl::StatusOr<std::vector<float>> Vector(const gguf::TensorInfo* t) const {
    if (t == nullptr) return absl::InternalError("a required tensor is not bound");
    RETURN_IF_ERROR(CheckComputable(*t));
    std::vector<float> out(t->n_elements());
    RETURN_IF_ERROR(DequantizeRow(t->type, model_.file->TensorData(*t).data(), out.data(), t->n_elements()));
    return out;
  }

  absl::StatusOr<ExpertWeights> Experts(const gguf::TensorInfo* t, int64_t row0, int64_t n_rows) const {
    if (t == nullptr) return absl::InternalError("a required tensor is not bound");
    RETURN_IF_ERROR(CheckComputable(*t));
    // Expert slices of a fused gate_up tensor interleave: expert e holds gate rows then up rows.
    if (row0 != 0 || n_rows != t->ne[1]) {
      return absl::UnimplementedError(absl::StrCat("fused expert tensor '", t->name, "' is not supported yet"));
    }
    return ExpertWeights{t->type, model_.file->TensorData(*t).data(), t->ne[0], t->ne[1]};
  }

 private:
  const LoadedModel& model_;
};

absl::StatusOr<LayerWeights> BindLayer(const Binder& b, const LayerDescription& l, const Qwen35MoeHparams& hp) {
  LayerWeights w;
  w.index = l.index;
  w.kind = l.kind;
  ASSIGN_OR_RETURN(w.attn_norm, b.Vector(l.Find("attn_norm.weight")));
  ASSIGN_OR_RETURN(w.post_attention_norm, b.Vector(l.Find("post_attention_norm.weight")));
  if (l.kind == LayerKind::kFullAttention) {
    if (const gguf::TensorInfo* fused = l.Find("attn_qkv.weight")) {
      ASSIGN_OR_RETURN(cpu::WeightMatrix qkv, b.Matrix(fused));
      const int64_t q_rows = 2 * hp.n_head * hp.head_dim_k, kv_rows = hp.n_head_kv * hp.head_dim_k;
      w.wq = Binder::Rows(qkv, 0, q_rows);
      w.wk = Binder::Rows(qkv, q_rows, kv_rows);
      w.wv = Binder::Rows(qkv, q_rows + kv_rows, kv_rows);
    } else {
      ASSIGN_OR_RETURN(w.wq, b.Matrix(l.Find("attn_q.weight")));
      ASSIGN_OR_RETURN(w.wk, b.Matrix(l.Find("attn_k.weight")));
      ASSIGN_OR_RETURN(w.wv, b.Matrix(l.Find("attn_v.weight")));
    }
    ASSIGN_OR_RETURN(w.wo, b.Matrix(l.Find("attn_output.weight")));
    ASSIGN_OR_RETURN(w.q_norm, b.Vector(l.Find("attn_q_norm.weight")));
    ASSIGN_OR_RETURN(w.k_norm, b.Vector(l.Find("attn_k_norm.weight")));
  } else {
    ASSIGN_OR_RETURN(w.w_mix, b.Matrix(l.Find("attn_qkv.weight")));
    ASSIGN_OR_RETURN(w.w_z, b.Matrix(l.Find("attn_gate.weight")));
    ASSIGN_OR_RETURN(w.w_beta, b.Matrix(l.Find("ssm_beta.weight")));
    ASSIGN_OR_RETURN(w.w_alpha, b.Matrix(l.Find("ssm_alpha.weight")));
    ASSIGN_OR_RETURN(w.w_out, b.Matrix(l.Find("ssm_out.weight")));
    ASSIGN_OR_RETURN(w.conv, b.Vector(l.Find("ssm_conv1d.weight")));
    ASSIGN_OR_RETURN(w.dt_bias, b.Vector(l.Find("ssm_dt.bias")));
    ASSIGN_OR_RETURN(w.ssm_a, b.Vector(l.Find("ssm_a")));
    ASSIGN_OR_RETURN(w.ssm_norm, b.Vector(l.Find("ssm_norm.weight")));
  }
  ASSIGN_OR_RETURN(w.router, b.Matrix(l.Find("ffn_gate_inp.weight")));
  if (const gguf::TensorInfo* fused = l.Find("ffn_gate_up_exps.weight")) {
    ASSIGN_OR_RETURN(w.gate_exps, b.Experts(fused, 0, hp.n_ff_exp));
  } else {
    ASSIGN_OR_RETURN(w.gate_exps, b.Experts(l.Find("ffn_gate_exps.weight"), 0, hp.n_ff_exp));
    ASSIGN_OR_RETURN(w.up_exps, b.Experts(l.Find("ffn_up_exps.weight"), 0, hp.n_ff_exp));
  }
  const gguf::TensorInfo* down = l.Find("ffn_down_exps.weight");
  ASSIGN_OR_RETURN(w.down_exps, b.Experts(down, 0, down ? down->ne[1] : 0));
  w.has_shared_expert = l.Find("ffn_gate_shexp.weight") != nullptr;
  if (w.has_shared_expert) {
    ASSIGN_OR_RETURN(w.shared_gate, b.Matrix(l.Find("ffn_gate_shexp.weight")));
    ASSIGN_OR_RETURN(w.shared_up, b.Matrix(l.Find("ffn_up_shexp.weight")));
    ASSIGN_OR_RETURN(w.shared_down, b.Matrix(l.Find("ffn_down_shexp.weight")));
    ASSIGN_OR_RETURN(w.shared_gate_inp, b.Vector(l.Find("ffn_gate_inp_shexp.weight")));
  }
  return w;
}

}  // namespace

absl::StatusOr<StageWeights> BindStageWeights(const LoadedModel& model, int first, int last) {
  const ModelDescription& d = model.description;
  if (first < 0 || last > d.n_layer || first >= last) {
    return absl::InvalidArgumentError(absl::StrCat("stage layer range [", first, ", ", last, ") is not within the ",
                                                   d.n_layer, " trunk layers"));
  }
  Binder b(model);
  StageWeights s;
  s.first_layer = first;
  s.last_layer = last;
  s.embeds = first == 0;
  s.samples = last == d.n_layer;
  auto global = [&](const char* name) -> const gguf::TensorInfo* {
    auto it = d.global_tensors.find(name);
    return it == d.global_tensors.end() ? nullptr : it->second;
  };
  if (s.embeds) {
    ASSIGN_OR_RETURN(s.token_embd, b.Matrix(global("token_embd.weight")));
  }
  if (s.samples) {
    const gguf::TensorInfo* head = global("output.weight");
    ASSIGN_OR_RETURN(s.output, b.Matrix(head ? head : global("token_embd.weight")));
    ASSIGN_OR_RETURN(s.output_norm, b.Vector(global("output_norm.weight")));
  }
  for (int il = first; il < last; ++il) {
    ASSIGN_OR_RETURN(LayerWeights w, BindLayer(b, d.layers[il], model.hparams()));
    s.layers.push_back(std::move(w));
  }
  return s;
}

}  // namespace moed::engine

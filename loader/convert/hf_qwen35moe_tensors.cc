// The tensor half of the qwen35moe conversion (hf_qwen35moe.h): which checkpoint tensors are kept,
// how each becomes one or more GGUF tensors, and the check that the result is a complete model.
// The class names in comments are those of llama.cpp's conversion/qwen.py and base.py, whose
// modify_tensors chain this file follows step by step.
#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"
#include "loader/convert/hf_qwen35moe.h"

namespace moed::convert {
namespace {

// A tensor on its way through the pipeline: its PyTorch shape and where each row comes from.
struct Expr {
  std::vector<int64_t> shape;  // PyTorch order, outermost first
  std::function<RowRef(int64_t)> rows;
  std::vector<int64_t> column_order;
  ValueOp op = ValueOp::kCopy;

  int64_t cols() const { return shape.back(); }
  int64_t num_rows() const {
    int64_t r = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) r *= shape[i];
    return r;
  }
};

std::string ShapeStr(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<Expr> SourceExpr(const HfTensorRef& ref) {
  Expr e;
  e.shape = ref.tensor->shape;
  if (e.shape.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", ref.name, "' is a scalar; expected a weight"));
  }
  RETURN_IF_ERROR(SourceRows(ref, e.cols()).status());
  const HfTensorRef* src = &ref;
  e.rows = [src](int64_t r) { return RowRef{src, r}; };
  return e;
}

// Rows from `first` on are reordered: new row first + i is old row first + order[i].
absl::StatusOr<Expr> PermuteRows(Expr e, std::vector<int64_t> order, int64_t first,
                                 std::string_view name) {
  if (first + static_cast<int64_t>(order.size()) != e.num_rows()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", Sv(name), "' ", ShapeStr(e.shape), " has ", e.num_rows(),
        " rows; the V-head reorder expects ", first + static_cast<int64_t>(order.size())));
  }
  auto inner = std::move(e.rows);
  e.rows = [inner = std::move(inner), order = std::move(order), first](int64_t r) {
    return r < first ? inner(r) : inner(first + order[r - first]);
  };
  return e;
}

absl::StatusOr<Expr> PermuteColumns(Expr e, const std::vector<int64_t>& order,
                                    std::string_view name) {
  if (static_cast<int64_t>(order.size()) != e.cols()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", Sv(name), "' ", ShapeStr(e.shape), " has ", e.cols(),
                     " columns; the V-head reorder expects ", order.size()));
  }
  if (e.column_order.empty()) {
    e.column_order = order;
  } else {
    std::vector<int64_t> composed(order.size());
    for (size_t c = 0; c < order.size(); ++c) composed[c] = e.column_order[order[c]];
    e.column_order = std::move(composed);
  }
  return e;
}

absl::StatusOr<Expr> Squeeze(Expr e, std::string_view name) {
  std::vector<int64_t> shape;
  for (int64_t d : e.shape) {
    if (d != 1) shape.push_back(d);
  }
  if (shape.empty() || shape.back() != e.cols()) {
    return absl::UnimplementedError(absl::StrCat("'", Sv(name), "' ", ShapeStr(e.shape),
                                                 ": squeezing it would change its rows"));
  }
  e.shape = std::move(shape);
  return e;
}

// Stacks same-shaped tensors along a new outer axis (torch.stack(dim=0)).
absl::StatusOr<Expr> Stack(std::vector<Expr> parts, std::string_view name) {
  for (const Expr& p : parts) {
    if (p.shape != parts[0].shape) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", Sv(name), "': experts have different shapes ", ShapeStr(parts[0].shape),
                       " and ", ShapeStr(p.shape)));
    }
  }
  Expr e;
  e.shape = parts[0].shape;
  e.shape.insert(e.shape.begin(), static_cast<int64_t>(parts.size()));
  const int64_t rows_each = parts[0].num_rows();
  std::vector<std::function<RowRef(int64_t)>> fns;
  for (Expr& p : parts) fns.push_back(std::move(p.rows));
  e.rows = [fns = std::move(fns), rows_each](int64_t r) {
    return fns[r / rows_each](r % rows_each);
  };
  return e;
}

// Rows [offset, offset + n) of every block of `block` rows (the gate/up halves of gate_up_proj).
Expr SliceRows(const Expr& in, int64_t block, int64_t offset, int64_t n) {
  Expr e = in;
  e.shape[e.shape.size() - 2] = n;
  e.rows = [inner = in.rows, block, offset, n](int64_t r) {
    return inner((r / n) * block + offset + r % n);
  };
  return e;
}

// ---- Name mapping (gguf-py TensorNameMap for MODEL_ARCH.QWEN35MOE) -------------------------

const std::map<std::string, std::string, std::less<>>& LayerNames() {
  static const auto* names = new std::map<std::string, std::string, std::less<>>{
      {"input_layernorm", "attn_norm"},
      {"post_attention_layernorm", "post_attention_norm"},
      {"self_attn.q_proj", "attn_q"},
      {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},
      {"self_attn.o_proj", "attn_output"},
      {"self_attn.q_norm", "attn_q_norm"},
      {"self_attn.k_norm", "attn_k_norm"},
      {"linear_attn.in_proj_qkv", "attn_qkv"},
      {"linear_attn.in_proj_z", "attn_gate"},
      {"linear_attn.in_proj_b", "ssm_beta"},
      {"linear_attn.in_proj_a", "ssm_alpha"},
      {"linear_attn.conv1d", "ssm_conv1d"},
      {"linear_attn.dt_proj", "ssm_dt"},
      {"linear_attn.A_log", "ssm_a"},
      {"linear_attn.norm", "ssm_norm"},
      {"linear_attn.out_proj", "ssm_out"},
      {"mlp.gate", "ffn_gate_inp"},
      {"mlp.experts.gate_proj", "ffn_gate_exps"},
      {"mlp.experts.up_proj", "ffn_up_exps"},
      {"mlp.experts.down_proj", "ffn_down_exps"},
      {"mlp.shared_expert.gate_proj", "ffn_gate_shexp"},
      {"mlp.shared_expert.up_proj", "ffn_up_shexp"},
      {"mlp.shared_expert.down_proj", "ffn_down_shexp"},
      {"mlp.shared_expert_gate", "ffn_gate_inp_shexp"},
  };
  return *names;
}

std::optional<std::string> MapBase(std::string_view name, int64_t n_layer) {
  if (name == "model.embed_tokens") return "token_embd";
  if (name == "model.norm") return "output_norm";
  if (name == "lm_head") return "output";
  constexpr std::string_view kLayers = "model.layers.";
  if (!absl::StartsWith(Sv(name), Sv(kLayers))) return std::nullopt;
  name.remove_prefix(kLayers.size());
  const size_t dot = name.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  int64_t bid;
  if (!absl::SimpleAtoi(Sv(name.substr(0, dot)), &bid) || bid < 0 || bid >= n_layer ||
      absl::StrCat(bid) != name.substr(0, dot)) {
    return std::nullopt;
  }
  auto it = LayerNames().find(name.substr(dot + 1));
  if (it == LayerNames().end()) return std::nullopt;
  return absl::StrCat("blk.", bid, ".", it->second);
}

// TensorNameMap.get_name(key, try_suffixes=(".weight", ".bias")).
absl::StatusOr<std::string> MapTensorName(std::string_view name, int64_t n_layer) {
  if (auto m = MapBase(name, n_layer)) return *m;
  for (std::string_view suffix : {".weight", ".bias"}) {
    if (absl::EndsWith(Sv(name), Sv(suffix))) {
      if (auto m = MapBase(name.substr(0, name.size() - suffix.size()), n_layer)) {
        return absl::StrCat(*m, Sv(suffix));
      }
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("can not map tensor '", Sv(name), "' to a qwen35moe GGUF name"));
}

// TextModel.filter_tensors: multimodal towers never go into the text GGUF.
bool IsMultimodalTensor(std::string_view name) {
  for (std::string_view prefix :
       {"mlp", "vit.", "vpm.", "siglip2.", "conformer.", "merger.", "resampler.", "sound_encoder.",
        "sound_projection.", "speech_embeddings."}) {
    if (absl::StartsWith(Sv(name), Sv(prefix))) return true;
  }
  for (std::string_view part :
       {"visual.", "vision.", "audio.", "talker.", "vision_", "audio_", "sam_model", "token2wav.",
        "code2wav.", "projector.", "pre_mm_projector_norm", "image_newline", "view_seperator",
        "patch_embed", "patch_embedding", "patch_merger.", "model.connector."}) {
    if (absl::StrContains(Sv(name), Sv(part))) return true;
  }
  return false;
}

// The first all-digit component of the name ("model.layers.12.mlp" -> 12), like prepare_tensors.
std::optional<int64_t> BlockId(std::string_view name) {
  for (absl::string_view part : absl::StrSplit(Sv(name), '.')) {
    if (part.empty() ||
        !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    int64_t bid;
    if (absl::SimpleAtoi(part, &bid)) return bid;
    return std::nullopt;
  }
  return std::nullopt;
}

// ---- The converter ------------------------------------------------------------------------

class Planner {
 public:
  Planner(const Qwen35MoeHparams& hp, GgmlType outtype) : hp_(hp), outtype_(outtype) {}

  absl::Status Add(const HfTensorRef& ref);
  absl::Status Finish();
  std::vector<PlannedTensor> Take() { return std::move(out_); }

 private:
  absl::Status ReorderVHeads(std::string_view name, Expr& e);
  absl::Status Experts(std::string name, std::optional<int64_t> bid, Expr e);
  absl::Status Emit(std::string_view hf_name, std::optional<int64_t> bid, Expr e);

  const Qwen35MoeHparams& hp_;
  GgmlType outtype_;
  std::vector<PlannedTensor> out_;
  std::set<std::string> names_;
  std::map<int64_t, std::map<std::string, Expr>> experts_;  // per layer, until complete
};

absl::Status Planner::Add(const HfTensorRef& ref) {
  std::string name = ref.name;
  // _Qwen35MtpMixin.filter_tensors with --no-mtp, then TextModel and ModelBase.filter_tensors.
  if (absl::StartsWith(name, "mtp.")) return absl::OkStatus();
  if (IsMultimodalTensor(name)) return absl::OkStatus();
  if (absl::EndsWith(name, "e_score_correction_bias")) {
    name = absl::StrReplaceAll(name, {{"e_score_correction_bias", "e_score_correction.bias"}});
  }
  name = absl::StrReplaceAll(name, {{"language_model.", ""}});
  // prepare_tensors: buffers the converter never writes.
  for (std::string_view skip :
       {".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq"}) {
    if (absl::EndsWith(name, Sv(skip))) return absl::OkStatus();
  }
  const std::optional<int64_t> bid = BlockId(name);
  ASSIGN_OR_RETURN(Expr e, SourceExpr(ref));

  // _LinearAttentionVReorderBase.modify_tensors
  if (hp_.n_k_heads != hp_.n_v_heads && absl::StrContains(name, "linear_attn.")) {
    RETURN_IF_ERROR(ReorderVHeads(name, e));
  }
  // Qwen3NextModel.modify_tensors
  if (absl::EndsWith(name, ".A_log")) {
    e.op = ValueOp::kNegExp;
  } else if (absl::EndsWith(name, ".dt_bias")) {
    name = absl::StrCat(name.substr(0, name.size() - std::string_view(".dt_bias").size()),
                        ".dt_proj.bias");
  } else if (absl::StrContains(name, "conv1d")) {
    ASSIGN_OR_RETURN(e, Squeeze(std::move(e), name));
  } else if (absl::EndsWith(name, "norm.weight") &&
             !absl::EndsWith(name, "linear_attn.norm.weight")) {
    e.op = ValueOp::kAddOne;
  }
  if (absl::StrContains(name, "in_proj_qkvz.weight")) {
    return absl::UnimplementedError(
        absl::StrCat("'", name, "': fused in_proj_qkvz is a Qwen3-Next layout, not Qwen3.5"));
  }
  return Experts(std::move(name), bid, std::move(e));
}

absl::Status Planner::ReorderVHeads(std::string_view name, Expr& e) {
  const int64_t hk = hp_.n_k_heads, hv = hp_.n_v_heads;
  const int64_t r = hv / hk;
  if (name.find(".in_proj_qkv.") != std::string_view::npos) {
    ASSIGN_OR_RETURN(e, PermuteRows(std::move(e), TiledHeadOrder(hk, r, hp_.v_head_dim),
                                    2 * hp_.key_dim(), name));
  } else if (name.find(".in_proj_z.") != std::string_view::npos) {
    ASSIGN_OR_RETURN(e, PermuteRows(std::move(e), TiledHeadOrder(hk, r, hp_.v_head_dim), 0, name));
  } else if (name.find(".in_proj_b.") != std::string_view::npos ||
             name.find(".in_proj_a.") != std::string_view::npos) {
    ASSIGN_OR_RETURN(e, PermuteRows(std::move(e), TiledHeadOrder(hk, r, 1), 0, name));
  } else if (name.find(".A_log") != std::string_view::npos ||
             name.find(".dt_bias") != std::string_view::npos ||
             name.find(".dt_proj") != std::string_view::npos) {
    ASSIGN_OR_RETURN(e, PermuteColumns(std::move(e), TiledHeadOrder(hk, r, 1), name));
  } else if (name.find(".conv1d") != std::string_view::npos) {
    ASSIGN_OR_RETURN(e, Squeeze(std::move(e), name));
    ASSIGN_OR_RETURN(e, PermuteRows(std::move(e), TiledHeadOrder(hk, r, hp_.v_head_dim),
                                    2 * hp_.key_dim(), name));
  } else if (name.find(".out_proj.") != std::string_view::npos) {
    ASSIGN_OR_RETURN(e, PermuteColumns(std::move(e), TiledHeadOrder(hk, r, hp_.v_head_dim), name));
  }
  return absl::OkStatus();
}

// Qwen2MoeModel.modify_tensors: packed and per-expert expert tensors.
absl::Status Planner::Experts(std::string name, std::optional<int64_t> bid, Expr e) {
  if (absl::EndsWith(name, "mlp.experts.down_proj") ||
      absl::EndsWith(name, "mlp.experts.down_proj.weight")) {
    if (!absl::EndsWith(name, ".weight")) absl::StrAppend(&name, ".weight");
    return Emit(name, bid, std::move(e));
  }
  if (absl::EndsWith(name, "mlp.experts.gate_up_proj") ||
      absl::EndsWith(name, "mlp.experts.gate_up_proj.weight")) {
    if (e.shape.size() < 3 || e.shape[e.shape.size() - 2] % 2 != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected gate_up_proj shape for '", name, "': ", ShapeStr(e.shape)));
    }
    const int64_t two_f = e.shape[e.shape.size() - 2];
    std::string base = name;
    if (absl::EndsWith(base, ".weight")) base.resize(base.size() - 7);
    base.resize(base.size() - std::string_view(".gate_up_proj").size());
    RETURN_IF_ERROR(
        Emit(absl::StrCat(base, ".gate_proj.weight"), bid, SliceRows(e, two_f, 0, two_f / 2)));
    return Emit(absl::StrCat(base, ".up_proj.weight"), bid,
                SliceRows(e, two_f, two_f / 2, two_f / 2));
  }
  if (!absl::StrContains(name, "experts")) return Emit(name, bid, std::move(e));

  if (!bid || *bid < 0 || *bid >= hp_.n_layer) {
    return absl::InvalidArgumentError(
        absl::StrCat("expert tensor '", name, "' is outside the ", hp_.n_layer, " layers"));
  }
  std::map<std::string, Expr>& layer = experts_[*bid];
  layer.insert_or_assign(name, std::move(e));
  if (static_cast<int64_t>(layer.size()) < hp_.n_expert * 3) return absl::OkStatus();
  for (const char* w : {"down_proj", "gate_proj", "up_proj"}) {
    std::vector<Expr> parts;
    for (int64_t x = 0; x < hp_.n_expert; ++x) {
      const std::string ename =
          absl::StrCat("model.layers.", *bid, ".mlp.experts.", x, ".", w, ".weight");
      auto it = layer.find(ename);
      if (it == layer.end()) {
        return absl::NotFoundError(absl::StrCat("layer ", *bid, " has ", layer.size(),
                                                " expert tensors but not '", ename, "'"));
      }
      parts.push_back(std::move(it->second));
      layer.erase(it);
    }
    const std::string merged = absl::StrCat("model.layers.", *bid, ".mlp.experts.", w, ".weight");
    ASSIGN_OR_RETURN(Expr stacked, Stack(std::move(parts), merged));
    RETURN_IF_ERROR(Emit(merged, bid, std::move(stacked)));
  }
  return absl::OkStatus();
}

// ModelBase.modify_tensors (name map) and prepare_tensors (output type).
absl::Status Planner::Emit(std::string_view hf_name, std::optional<int64_t> bid, Expr e) {
  ASSIGN_OR_RETURN(std::string new_name, MapTensorName(hf_name, hp_.n_layer));
  if (!names_.insert(new_name).second) {
    return absl::InvalidArgumentError(
        absl::StrCat("duplicated tensor name '", new_name, "' (from '", Sv(hf_name), "')"));
  }
  const size_t n_dims = e.shape.size();
  bool force_f32 = n_dims <= 1 || absl::EndsWith(new_name, "_norm.weight");
  if (!force_f32 && bid) {
    for (const char* key : {"ffn_gate_inp", "ffn_gate_inp_shexp", "ssm_conv1d"}) {
      force_f32 |= new_name == absl::StrCat("blk.", *bid, ".", key, ".weight");
    }
  }
  const std::string_view tail =
      std::string_view(new_name).substr(new_name.size() >= 7 ? new_name.size() - 7 : 0);
  force_f32 |= tail != ".weight" && tail != ".lora_a" && tail != ".lora_b";

  PlannedTensor t;
  t.name = std::move(new_name);
  t.type = force_f32 ? GgmlType::kF32 : outtype_;
  t.ne.assign(e.shape.rbegin(), e.shape.rend());
  t.row_source = std::move(e.rows);
  t.column_order = std::move(e.column_order);
  t.op = e.op;
  out_.push_back(std::move(t));
  return absl::OkStatus();
}

absl::Status Planner::Finish() {
  std::vector<std::string> left;
  for (const auto& [bid, layer] : experts_) {
    for (const auto& [name, e] : layer) left.push_back(name);
  }
  if (!left.empty()) {
    if (left.size() > 6) {
      left.resize(6);
      left.push_back("...");
    }
    return absl::NotFoundError(
        absl::StrCat("incomplete expert sets (every layer needs ", hp_.n_expert,
                     " x gate/up/down); unprocessed: ", absl::StrJoin(left, ", ")));
  }

  // A GGUF that llama.cpp could not load is an error here, not later: every required tensor must
  // exist with the shape the hyperparameters imply.
  std::map<std::string, const PlannedTensor*> by_name;
  for (const PlannedTensor& t : out_) by_name[t.name] = &t;
  const int64_t h = hp_.hidden;
  auto check = [&](const std::string& name, std::vector<int64_t> ne,
                   bool required = true) -> absl::Status {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      if (!required) return absl::OkStatus();
      return absl::NotFoundError(
          absl::StrCat("the checkpoint lacks the tensor that becomes '", name, "'"));
    }
    std::vector<int64_t> got = it->second->ne;
    while (got.size() > ne.size() && got.back() == 1) got.pop_back();  // {H, 1} is accepted as {H}
    if (got != ne) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", name, "' has shape ", ShapeStr(it->second->ne),
                       " (ggml order); the config implies ", ShapeStr(ne)));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(check("output_norm.weight", {h}));
  if (hp_.vocab > 0) {
    RETURN_IF_ERROR(check("token_embd.weight", {h, hp_.vocab}));
    RETURN_IF_ERROR(check("output.weight", {h, hp_.vocab}, /*required=*/false));
  } else if (!by_name.count("token_embd.weight")) {
    return absl::NotFoundError("the checkpoint lacks the tensor that becomes 'token_embd.weight'");
  }
  for (int64_t i = 0; i < hp_.n_layer; ++i) {
    const std::string p = absl::StrCat("blk.", i, ".");
    RETURN_IF_ERROR(check(p + "attn_norm.weight", {h}));
    RETURN_IF_ERROR(check(p + "post_attention_norm.weight", {h}));
    RETURN_IF_ERROR(check(p + "ffn_gate_inp.weight", {h, hp_.n_expert}));
    RETURN_IF_ERROR(check(p + "ffn_gate_exps.weight", {h, hp_.n_ff_exp, hp_.n_expert}));
    RETURN_IF_ERROR(check(p + "ffn_up_exps.weight", {h, hp_.n_ff_exp, hp_.n_expert}));
    RETURN_IF_ERROR(check(p + "ffn_down_exps.weight", {hp_.n_ff_exp, h, hp_.n_expert}));
    RETURN_IF_ERROR(check(p + "ffn_gate_inp_shexp.weight", {h}));
    RETURN_IF_ERROR(check(p + "ffn_gate_shexp.weight", {h, hp_.n_ff_shexp}));
    RETURN_IF_ERROR(check(p + "ffn_up_shexp.weight", {h, hp_.n_ff_shexp}));
    RETURN_IF_ERROR(check(p + "ffn_down_shexp.weight", {hp_.n_ff_shexp, h}));
    if (hp_.recurrent[i]) {
      RETURN_IF_ERROR(check(p + "attn_qkv.weight", {h, hp_.conv_dim()}));
      RETURN_IF_ERROR(check(p + "attn_gate.weight", {h, hp_.value_dim()}));
      RETURN_IF_ERROR(check(p + "ssm_beta.weight", {h, hp_.n_v_heads}));
      RETURN_IF_ERROR(check(p + "ssm_alpha.weight", {h, hp_.n_v_heads}));
      RETURN_IF_ERROR(check(p + "ssm_conv1d.weight", {hp_.conv_kernel, hp_.conv_dim()}));
      RETURN_IF_ERROR(check(p + "ssm_dt.bias", {hp_.n_v_heads}));
      RETURN_IF_ERROR(check(p + "ssm_a", {hp_.n_v_heads}));
      RETURN_IF_ERROR(check(p + "ssm_norm.weight", {hp_.v_head_dim}));
      RETURN_IF_ERROR(check(p + "ssm_out.weight", {hp_.value_dim(), h}));
    } else {
      const int64_t q = hp_.n_head * hp_.head_dim, kv = hp_.n_head_kv * hp_.head_dim;
      RETURN_IF_ERROR(check(p + "attn_q.weight", {h, 2 * q}));  // query and output gate per head
      RETURN_IF_ERROR(check(p + "attn_k.weight", {h, kv}));
      RETURN_IF_ERROR(check(p + "attn_v.weight", {h, kv}));
      RETURN_IF_ERROR(check(p + "attn_output.weight", {q, h}));
      RETURN_IF_ERROR(check(p + "attn_q_norm.weight", {hp_.head_dim}));
      RETURN_IF_ERROR(check(p + "attn_k_norm.weight", {hp_.head_dim}));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<PlannedTensor>> PlanQwen35MoeTensors(const HfCheckpoint& checkpoint,
                                                                const Qwen35MoeHparams& hparams,
                                                                GgmlType outtype) {
  if (outtype != GgmlType::kF32 && outtype != GgmlType::kF16 && outtype != GgmlType::kBf16) {
    return absl::InvalidArgumentError(absl::StrCat("output type ", Sv(GgmlTypeName(outtype)),
                                                   " is not supported; use F32, F16 or BF16"));
  }
  Planner planner(hparams, outtype);
  for (const HfTensorRef& ref : checkpoint.tensors()) RETURN_IF_ERROR(planner.Add(ref));
  RETURN_IF_ERROR(planner.Finish());
  return planner.Take();
}

}  // namespace moed::convert

// qwen35moe hyperparameters and metadata keys (hf_qwen35moe.h); the tensor pipeline is in
// hf_qwen35moe_tensors.cc.
#include "loader/convert/hf_qwen35moe.h"

#include <limits>
#include <memory>
#include <span>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/log.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"
#include "loader/convert/hf_metadata.h"

namespace moed::convert {
namespace {

using gguf::Value;
using Json = nlohmann::json;

std::string Key(std::string_view suffix) {
  return absl::StrCat(Sv(kQwen35MoeArch), ".", Sv(suffix));
}

absl::Status SetU32(gguf::GgufWriter& writer, std::string_view suffix, int64_t v) {
  if (v < 0 || v > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config value ", v, " for ", Key(suffix), " does not fit a uint32"));
  }
  writer.SetValue(Key(suffix), Value::Uint32(static_cast<uint32_t>(v)));
  return absl::OkStatus();
}

absl::StatusOr<int64_t> PositiveInt(const Json& hp, std::string_view key) {
  ASSIGN_OR_RETURN(int64_t v, JsonInt(hp, key));
  if (v <= 0)
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: '", Sv(key), "' must be positive, is ", v));
  return v;
}

// TextModel.__init__: rope_parameters (or the legacy rope_scaling), with rope_theta mirrored in.
Json RopeParameters(const Json& hp) {
  // hparams.get("rope_parameters", hparams.get("rope_scaling")) or {}
  Json rope = Json::object();
  auto it = hp.find("rope_parameters");
  if (it == hp.end()) it = hp.find("rope_scaling");
  if (it != hp.end() && it->is_object()) rope = *it;
  if (!rope.contains("full_attention") && !rope.contains("sliding_attention")) {
    if (!rope.contains("rope_theta")) {
      if (auto key = FindPresentKey(hp, {"global_rope_theta", "rope_global_theta",
                                         "rope_theta_global", "rope_theta", "rotary_emb_base"})) {
        rope["rope_theta"] = hp[std::string(*key)];
      }
    }
    if (!rope.contains("rope_type") && rope.contains("type")) rope["rope_type"] = rope["type"];
  }
  return rope;
}

// TextModel.set_gguf_parameters' RoPE-scaling keys.
absl::Status SetRopeScaling(const Json& rope_params, gguf::GgufWriter& writer) {
  auto type_it = rope_params.find("rope_type");
  if (type_it == rope_params.end() || !type_it->is_string()) return absl::OkStatus();
  const std::string type = type_it->get<std::string>();
  auto factor = rope_params.find("factor");
  const bool has_factor = factor != rope_params.end() && factor->is_number();
  auto set_f32 = [&](std::string_view suffix, const char* json_key) {
    auto it = rope_params.find(json_key);
    if (it != rope_params.end() && it->is_number()) {
      writer.SetValue(Key(suffix), Value::Float32(static_cast<float>(it->get<double>())));
    }
  };
  if (type == "linear" && has_factor) {
    writer.SetValue(Key("rope.scaling.type"), Value::String("linear"));
    writer.SetValue(Key("rope.scaling.factor"),
                    Value::Float32(static_cast<float>(factor->get<double>())));
  } else if (type == "yarn" && has_factor) {
    writer.SetValue(Key("rope.scaling.type"), Value::String("yarn"));
    writer.SetValue(Key("rope.scaling.factor"),
                    Value::Float32(static_cast<float>(factor->get<double>())));
    ASSIGN_OR_RETURN(int64_t orig, JsonInt(rope_params, "original_max_position_embeddings"));
    RETURN_IF_ERROR(SetU32(writer, "rope.scaling.original_context_length", orig));
    set_f32("rope.scaling.yarn_ext_factor", "extrapolation_factor");
    set_f32("rope.scaling.yarn_attn_factor",
            rope_params.contains("attention_factor") ? "attention_factor" : "attn_factor");
    set_f32("rope.scaling.yarn_beta_fast", "beta_fast");
    set_f32("rope.scaling.yarn_beta_slow", "beta_slow");
  } else if (type == "su" || type == "longrope") {
    writer.SetValue(Key("rope.scaling.type"), Value::String("longrope"));
  } else if (type != "dynamic" && type != "llama3" && type != "linear" && type != "yarn") {
    // The converter only warns, and writes nothing, for "default" and unknown types.
    if (type != "default") {
      MOED_LOG(WARNING) << "unknown RoPE type '" << type << "'; no scaling keys written";
    }
  }
  return absl::OkStatus();
}

absl::Status SetSections(gguf::GgufWriter& writer, const Json& sections) {
  std::vector<int32_t> v;
  for (const Json& s : sections) {
    if (!s.is_number_integer())
      return absl::InvalidArgumentError("config.json: mrope_section must hold integers");
    v.push_back(static_cast<int32_t>(s.get<int64_t>()));
  }
  while (v.size() < 4) v.push_back(0);
  v.resize(4);
  writer.SetValue(Key("rope.dimension_sections"), Value::Int32Array(v));
  return absl::OkStatus();
}

uint32_t FileType(GgmlType outtype) {
  switch (outtype) {
    case GgmlType::kF16:
      return 1;  // LLAMA_FTYPE_MOSTLY_F16
    case GgmlType::kBf16:
      return 32;  // LLAMA_FTYPE_MOSTLY_BF16
    default:
      return 0;  // LLAMA_FTYPE_ALL_F32
  }
}

}  // namespace

bool IsQwen35MoeArchitecture(std::string_view hf_architecture) {
  return hf_architecture == "Qwen3_5MoeForConditionalGeneration" ||
         hf_architecture == "Qwen3_5MoeForCausalLM";
}

absl::StatusOr<Qwen35MoeHparams> ParseQwen35MoeHparams(const Json& hp) {
  Qwen35MoeHparams p;
  ASSIGN_OR_RETURN(p.n_layer, PositiveInt(hp, "num_hidden_layers"));
  ASSIGN_OR_RETURN(p.hidden, PositiveInt(hp, "hidden_size"));
  if (FindPresentKey(hp, {"vocab_size"})) {
    ASSIGN_OR_RETURN(p.vocab, PositiveInt(hp, "vocab_size"));
  }
  ASSIGN_OR_RETURN(p.n_head, PositiveInt(hp, "num_attention_heads"));
  ASSIGN_OR_RETURN(p.n_head_kv, PositiveInt(hp, "num_key_value_heads"));
  if (FindPresentKey(hp, {"head_dim"})) {
    ASSIGN_OR_RETURN(p.head_dim, PositiveInt(hp, "head_dim"));
  } else {
    p.head_dim = p.hidden / p.n_head;
  }
  ASSIGN_OR_RETURN(p.n_expert, FindJsonInt(hp, {"num_local_experts", "num_experts"}));
  if (p.n_expert <= 0)
    return absl::InvalidArgumentError("config.json: the expert count must be positive");
  ASSIGN_OR_RETURN(p.n_ff_exp, PositiveInt(hp, "moe_intermediate_size"));
  ASSIGN_OR_RETURN(p.n_ff_shexp, PositiveInt(hp, "shared_expert_intermediate_size"));
  ASSIGN_OR_RETURN(p.conv_kernel, PositiveInt(hp, "linear_conv_kernel_dim"));
  ASSIGN_OR_RETURN(p.n_k_heads, PositiveInt(hp, "linear_num_key_heads"));
  ASSIGN_OR_RETURN(p.n_v_heads, PositiveInt(hp, "linear_num_value_heads"));
  ASSIGN_OR_RETURN(p.k_head_dim, PositiveInt(hp, "linear_key_head_dim"));
  ASSIGN_OR_RETURN(p.v_head_dim, PositiveInt(hp, "linear_value_head_dim"));
  if (p.n_v_heads % p.n_k_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: linear_num_value_heads (", p.n_v_heads,
                     ") must be a multiple of linear_num_key_heads (", p.n_k_heads, ")"));
  }

  auto types = hp.find("layer_types");
  if (types != hp.end() && !types->is_null()) {
    if (!types->is_array() || static_cast<int64_t>(types->size()) != p.n_layer) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config.json: layer_types must list the type of each of the ", p.n_layer, " layers"));
    }
    for (const Json& t : *types) {
      const std::string s = t.is_string() ? t.get<std::string>() : "";
      if (s != "linear_attention" && s != "full_attention") {
        return absl::InvalidArgumentError(
            absl::StrCat("config.json: unsupported layer type ", t.dump(),
                         " (qwen35moe has linear_attention and full_attention)"));
      }
      p.recurrent.push_back(s == "linear_attention");
    }
  } else {
    // Qwen3_5MoeTextConfig's default: every full_attention_interval-th layer is full attention.
    int64_t interval = 4;
    if (FindPresentKey(hp, {"full_attention_interval"})) {
      ASSIGN_OR_RETURN(interval, PositiveInt(hp, "full_attention_interval"));
    }
    for (int64_t i = 0; i < p.n_layer; ++i) p.recurrent.push_back((i + 1) % interval != 0);
  }
  return p;
}

absl::Status SetQwen35MoeMetadata(const HfCheckpoint& checkpoint, const Qwen35MoeHparams& p,
                                  GgmlType outtype, const ParameterCounts& counts,
                                  gguf::GgufWriter& writer) {
  const Json& hp = checkpoint.hparams();
  writer.SetValue("general.architecture", Value::String(std::string(kQwen35MoeArch)));
  SetGeneralMetadata(checkpoint, counts, writer);

  // TextModel.set_gguf_parameters
  RETURN_IF_ERROR(SetU32(writer, "block_count", p.n_layer));  // --no-mtp: trunk layers only
  if (auto k = FindPresentKey(hp, {"max_position_embeddings", "n_ctx", "n_positions", "max_length",
                                   "max_sequence_length", "model_max_length"})) {
    ASSIGN_OR_RETURN(int64_t v, JsonInt(hp, *k));
    RETURN_IF_ERROR(SetU32(writer, "context_length", v));
  }
  RETURN_IF_ERROR(SetU32(writer, "embedding_length", p.hidden));
  if (auto k = FindPresentKey(hp, {"intermediate_size", "n_inner", "hidden_dim"})) {
    ASSIGN_OR_RETURN(int64_t v, JsonInt(hp, *k));
    RETURN_IF_ERROR(SetU32(writer, "feed_forward_length", v));
  }
  RETURN_IF_ERROR(SetU32(writer, "attention.head_count", p.n_head));
  RETURN_IF_ERROR(SetU32(writer, "attention.head_count_kv", p.n_head_kv));

  const Json rope = RopeParameters(hp);
  const Json& rope_params = rope.contains("full_attention") && rope["full_attention"].is_object()
                                ? rope["full_attention"]
                                : rope;
  RETURN_IF_ERROR(SetRopeScaling(rope_params, writer));
  const bool has_sections = rope.contains("mrope_section");
  if (has_sections) RETURN_IF_ERROR(SetSections(writer, rope["mrope_section"]));
  if (rope_params.contains("rope_theta") && !rope_params["rope_theta"].is_null()) {
    ASSIGN_OR_RETURN(double theta, JsonNumber(rope_params, "rope_theta"));
    writer.SetValue(Key("rope.freq_base"), Value::Float32(static_cast<float>(theta)));
  }
  if (auto k = FindPresentKey(hp, {"rms_norm_eps", "norm_eps"})) {
    ASSIGN_OR_RETURN(double eps, JsonNumber(hp, *k));
    writer.SetValue(Key("attention.layer_norm_rms_epsilon"),
                    Value::Float32(static_cast<float>(eps)));
  }
  RETURN_IF_ERROR(SetU32(writer, "expert_count", p.n_expert));
  if (auto k =
          FindPresentKey(hp, {"num_experts_per_tok", "num_experts_per_token", "top_k_experts"})) {
    ASSIGN_OR_RETURN(int64_t v, JsonInt(hp, *k));
    RETURN_IF_ERROR(SetU32(writer, "expert_used_count", v));
  }
  if (FindPresentKey(hp, {"head_dim"})) {
    RETURN_IF_ERROR(SetU32(writer, "attention.key_length", p.head_dim));
    RETURN_IF_ERROR(SetU32(writer, "attention.value_length", p.head_dim));
  }
  writer.SetValue("general.file_type", Value::Uint32(FileType(outtype)));

  // Qwen2MoeModel.set_gguf_parameters
  RETURN_IF_ERROR(SetU32(writer, "expert_feed_forward_length", p.n_ff_exp));
  RETURN_IF_ERROR(SetU32(writer, "expert_shared_feed_forward_length", p.n_ff_shexp));

  // Qwen3NextModel.set_gguf_parameters
  RETURN_IF_ERROR(SetU32(writer, "ssm.conv_kernel", p.conv_kernel));
  RETURN_IF_ERROR(SetU32(writer, "ssm.state_size", p.k_head_dim));
  RETURN_IF_ERROR(SetU32(writer, "ssm.group_count", p.n_k_heads));
  RETURN_IF_ERROR(SetU32(writer, "ssm.time_step_rank", p.n_v_heads));
  RETURN_IF_ERROR(SetU32(writer, "ssm.inner_size", p.v_head_dim * p.n_v_heads));
  std::unique_ptr<bool[]> recurrent(new bool[p.recurrent.size()]);
  for (size_t i = 0; i < p.recurrent.size(); ++i) recurrent[i] = p.recurrent[i];
  writer.SetValue(Key("attention.recurrent_layers"),
                  Value::BoolArray(std::span<const bool>(recurrent.get(), p.recurrent.size())));
  int64_t interval = 4;
  if (FindPresentKey(hp, {"full_attention_interval"})) {
    ASSIGN_OR_RETURN(interval, JsonInt(hp, "full_attention_interval"));
  }
  RETURN_IF_ERROR(SetU32(writer, "full_attention_interval", interval));
  int64_t rope_dim = p.hidden / p.n_head;
  if (FindPresentKey(hp, {"head_dim"})) rope_dim = p.head_dim;
  double factor = 0.25;
  if (FindPresentKey(hp, {"partial_rotary_factor"})) {
    ASSIGN_OR_RETURN(factor, JsonNumber(hp, "partial_rotary_factor"));
  } else if (rope.contains("partial_rotary_factor") && rope["partial_rotary_factor"].is_number()) {
    factor = rope["partial_rotary_factor"].get<double>();
  }
  RETURN_IF_ERROR(SetU32(writer, "rope.dimension_count",
                         static_cast<int64_t>(static_cast<double>(rope_dim) * factor)));

  // _Qwen35MRopeMixin: llama.cpp requires the sections, so the HF default is written if absent.
  if (!has_sections) SetSections(writer, Json::array({11, 11, 10, 0})).IgnoreError();

  writer.SetValue("general.quantization_version", Value::Uint32(2));  // GGML_QNT_VERSION
  return absl::OkStatus();
}

absl::Status ConvertQwen35Moe(const HfCheckpoint& checkpoint, const std::string& out_path,
                              GgmlType outtype) {
  ASSIGN_OR_RETURN(Qwen35MoeHparams hparams, ParseQwen35MoeHparams(checkpoint.hparams()));
  ASSIGN_OR_RETURN(std::vector<PlannedTensor> tensors,
                   PlanQwen35MoeTensors(checkpoint, hparams, outtype));

  gguf::GgufWriter writer;
  RETURN_IF_ERROR(
      SetQwen35MoeMetadata(checkpoint, hparams, outtype, CountParameters(tensors), writer));
  for (PlannedTensor& t : tensors) {
    auto shared = std::make_shared<PlannedTensor>(std::move(t));
    RETURN_IF_ERROR(
        writer.AddTensor(shared->name, shared->type, shared->ne,
                         [shared](std::span<uint8_t> out) { return shared->Fill(out); }));
  }
  return writer.WriteFile(out_path);
}

}  // namespace moed::convert

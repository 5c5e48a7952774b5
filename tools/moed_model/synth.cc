// moed-model synth: full-size, well-formed qwen35moe models with random weights, for benchmarks
// (the real 35B/122B/397B shapes and tensor types) and for the tiny demo model.
//
// Weights are drawn so that a forward pass stays finite and routing spreads over the experts:
// matrices ~ N(0, 1/n_in) (unit-variance outputs), router logits ~ N(0, 1), norms 1, ssm_a in
// [-16, -1]. Quantized tensors are filled from a pool of blocks quantized from those
// distributions, so writing 20 GB costs about as much as the disk write, not a quantizer run.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/base/half.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"
#include "kernels/quants/quantize.h"
#include "loader/gguf/gguf_file.h"
#include "loader/gguf/gguf_writer.h"
#include "tools/moed_model/subcommand.h"

namespace moed::tool {
namespace {

struct Preset {
  std::string_view name;
  std::string_view label;
  int n_layer;
  int64_t n_embd, n_head, n_head_kv, head_dim, n_rot;
  int64_t n_expert, n_expert_used, n_ff_exp, n_ff_shexp;
  int64_t ssm_d_state, ssm_n_group, ssm_dt_rank;  // dv = d_state (llama.cpp requires dk == dv)
  int64_t n_vocab, n_ctx;
};

// Shapes from docs/qwen35moe.md §1.1; "tiny" is the demo model (every matrix fills 256-blocks).
constexpr Preset kPresets[] = {
    {"35b-a3b", "35B-A3B", 40, 2048, 16, 2, 256, 64, 256, 8, 512, 512, 128, 16, 32, 248320, 262144},
    {"122b-a10b", "122B-A10B", 48, 3072, 32, 2, 256, 64, 256, 8, 1024, 1024, 128, 16, 64, 248320, 262144},
    {"397b-a17b", "397B-A17B", 60, 4096, 32, 2, 256, 64, 512, 10, 1024, 1024, 128, 16, 64, 248320, 262144},
    {"tiny", "tiny", 4, 256, 4, 2, 64, 16, 16, 4, 256, 256, 64, 2, 4, 1024, 4096},
};

// How a tensor's values are drawn.
enum class Init { kMatrix, kEmbedding, kOnes, kSsmA, kDtBias, kConv };

struct Spec {
  std::string name;
  std::vector<int64_t> ne;
  Init init;
  bool expert = false;  // an *_exps tensor: gets --experts, others get --rest
  bool keep_f32 = false;
};

std::vector<Spec> TensorSpecs(const Preset& p) {
  const int64_t H = p.n_embd, E = p.n_expert, F = p.n_ff_exp, Fs = p.n_ff_shexp;
  const int64_t hv = p.ssm_dt_rank, dv = p.ssm_d_state, inner = hv * dv;
  const int64_t conv_dim = 2 * p.ssm_n_group * p.ssm_d_state + inner;
  std::vector<Spec> specs = {
      {"token_embd.weight", {H, p.n_vocab}, Init::kEmbedding},
      {"output.weight", {H, p.n_vocab}, Init::kMatrix},
  };
  for (int il = 0; il < p.n_layer; ++il) {
    const std::string b = absl::StrCat("blk.", il, ".");
    const bool full = (il + 1) % 4 == 0;
    specs.push_back({b + "attn_norm.weight", {H}, Init::kOnes, false, true});
    if (full) {
      specs.push_back({b + "attn_q.weight", {H, 2 * p.n_head * p.head_dim}, Init::kMatrix});
      specs.push_back({b + "attn_k.weight", {H, p.n_head_kv * p.head_dim}, Init::kMatrix});
      specs.push_back({b + "attn_v.weight", {H, p.n_head_kv * p.head_dim}, Init::kMatrix});
      specs.push_back({b + "attn_output.weight", {p.n_head * p.head_dim, H}, Init::kMatrix});
      specs.push_back({b + "attn_q_norm.weight", {p.head_dim}, Init::kOnes, false, true});
      specs.push_back({b + "attn_k_norm.weight", {p.head_dim}, Init::kOnes, false, true});
    } else {
      specs.push_back({b + "ssm_a", {hv}, Init::kSsmA, false, true});
      specs.push_back({b + "ssm_conv1d.weight", {4, conv_dim}, Init::kConv, false, true});
      specs.push_back({b + "ssm_dt.bias", {hv}, Init::kDtBias, false, true});
      specs.push_back({b + "ssm_alpha.weight", {H, hv}, Init::kMatrix});
      specs.push_back({b + "ssm_beta.weight", {H, hv}, Init::kMatrix});
      specs.push_back({b + "attn_qkv.weight", {H, conv_dim}, Init::kMatrix});
      specs.push_back({b + "attn_gate.weight", {H, inner}, Init::kMatrix});
      specs.push_back({b + "ssm_norm.weight", {dv}, Init::kOnes, false, true});
      specs.push_back({b + "ssm_out.weight", {inner, H}, Init::kMatrix});
    }
    specs.push_back({b + "ffn_down_exps.weight", {F, H, E}, Init::kMatrix, true});
    specs.push_back({b + "ffn_gate_exps.weight", {H, F, E}, Init::kMatrix, true});
    specs.push_back({b + "ffn_up_exps.weight", {H, F, E}, Init::kMatrix, true});
    specs.push_back({b + "ffn_gate_inp.weight", {H, E}, Init::kMatrix, false, true});
    specs.push_back({b + "ffn_down_shexp.weight", {Fs, H}, Init::kMatrix});
    specs.push_back({b + "ffn_gate_shexp.weight", {H, Fs}, Init::kMatrix});
    specs.push_back({b + "ffn_up_shexp.weight", {H, Fs}, Init::kMatrix});
    specs.push_back({b + "ffn_gate_inp_shexp.weight", {H}, Init::kMatrix, false, true});
    specs.push_back({b + "post_attention_norm.weight", {H}, Init::kOnes, false, true});
  }
  specs.push_back({"output_norm.weight", {H}, Init::kOnes, false, true});
  return specs;
}

void WriteHparams(const Preset& p, int64_t n_vocab, gguf::GgufWriter& w) {
  const std::string a = "qwen35moe.";
  w.SetValue("general.architecture", gguf::Value::String("qwen35moe"));
  w.SetValue("general.type", gguf::Value::String("model"));
  w.SetValue("general.name", gguf::Value::String(absl::StrCat("moed synthetic ", Sv(p.label))));
  w.SetValue(a + "block_count", gguf::Value::Uint32(p.n_layer));
  w.SetValue(a + "context_length", gguf::Value::Uint32(static_cast<uint32_t>(p.n_ctx)));
  w.SetValue(a + "embedding_length", gguf::Value::Uint32(static_cast<uint32_t>(p.n_embd)));
  w.SetValue(a + "attention.head_count", gguf::Value::Uint32(static_cast<uint32_t>(p.n_head)));
  w.SetValue(a + "attention.head_count_kv", gguf::Value::Uint32(static_cast<uint32_t>(p.n_head_kv)));
  const int32_t sections[] = {11, 11, 10, 0};
  w.SetValue(a + "rope.dimension_sections", gguf::Value::Int32Array(sections));
  w.SetValue(a + "rope.freq_base", gguf::Value::Float32(1e7f));
  w.SetValue(a + "attention.layer_norm_rms_epsilon", gguf::Value::Float32(1e-6f));
  w.SetValue(a + "expert_count", gguf::Value::Uint32(static_cast<uint32_t>(p.n_expert)));
  w.SetValue(a + "expert_used_count", gguf::Value::Uint32(static_cast<uint32_t>(p.n_expert_used)));
  w.SetValue(a + "attention.key_length", gguf::Value::Uint32(static_cast<uint32_t>(p.head_dim)));
  w.SetValue(a + "attention.value_length", gguf::Value::Uint32(static_cast<uint32_t>(p.head_dim)));
  w.SetValue(a + "expert_feed_forward_length", gguf::Value::Uint32(static_cast<uint32_t>(p.n_ff_exp)));
  w.SetValue(a + "expert_shared_feed_forward_length", gguf::Value::Uint32(static_cast<uint32_t>(p.n_ff_shexp)));
  w.SetValue(a + "ssm.conv_kernel", gguf::Value::Uint32(4));
  w.SetValue(a + "ssm.state_size", gguf::Value::Uint32(static_cast<uint32_t>(p.ssm_d_state)));
  w.SetValue(a + "ssm.group_count", gguf::Value::Uint32(static_cast<uint32_t>(p.ssm_n_group)));
  w.SetValue(a + "ssm.time_step_rank", gguf::Value::Uint32(static_cast<uint32_t>(p.ssm_dt_rank)));
  w.SetValue(a + "ssm.inner_size", gguf::Value::Uint32(static_cast<uint32_t>(p.ssm_dt_rank * p.ssm_d_state)));
  w.SetValue(a + "full_attention_interval", gguf::Value::Uint32(4));
  w.SetValue(a + "rope.dimension_count", gguf::Value::Uint32(static_cast<uint32_t>(p.n_rot)));
  w.SetValue("general.quantization_version", gguf::Value::Uint32(2));
  (void)n_vocab;
}

// Copies the tokenizer of a vocab GGUF, padded to n_vocab with unused "[PAD<id>]" tokens the way
// llama.cpp's converter pads a vocabulary to the embedding size.
absl::Status CopyTokenizer(const gguf::GgufFile& vocab, int64_t n_vocab, gguf::GgufWriter& w) {
  for (const gguf::KeyValue& kv : vocab.metadata()) {
    if (kv.key.rfind("tokenizer.", 0) != 0) continue;
    if (kv.key == "tokenizer.ggml.tokens") {
      ASSIGN_OR_RETURN(std::span<const std::string> tokens, kv.value.GetStrings());
      std::vector<std::string> padded(tokens.begin(), tokens.end());
      for (int64_t i = static_cast<int64_t>(padded.size()); i < n_vocab; ++i) padded.push_back(absl::StrCat("[PAD", i, "]"));
      w.SetValue(kv.key, gguf::Value::StringArray(std::move(padded)));
    } else if (kv.key == "tokenizer.ggml.token_type" || kv.key == "tokenizer.ggml.scores") {
      std::string raw(kv.value.raw());
      const size_t elem = gguf::ValueTypeSize(kv.value.element_type());
      const int32_t unused = 5;
      const float zero = 0;
      for (int64_t i = static_cast<int64_t>(kv.value.size()); i < n_vocab; ++i) {
        raw.append(reinterpret_cast<const char*>(kv.key.ends_with("type") ? static_cast<const void*>(&unused)
                                                                          : static_cast<const void*>(&zero)),
                   elem);
      }
      w.SetValue(kv.key, gguf::Value::FromRaw(kv.value.element_type(), true, std::move(raw), n_vocab));
    } else {
      w.SetValue(kv.key, kv.value);
    }
  }
  return absl::OkStatus();
}

GgmlType Fallback(GgmlType want, int64_t ne0) {
  for (GgmlType t : {want, GgmlType::kQ8_0, GgmlType::kF16}) {
    if (ne0 % FindGgmlType(t)->block_size == 0) return t;
  }
  return GgmlType::kF32;
}

// A pool of blocks quantized from N(0, sigma^2), sampled to fill large tensors quickly.
class BlockPool {
 public:
  static constexpr int kBlocks = 4096;
  static absl::StatusOr<BlockPool> Make(GgmlType type, float sigma, uint64_t seed) {
    BlockPool pool;
    const GgmlTypeTraits* t = FindGgmlType(type);
    pool.block_bytes_ = t->type_size;
    const int64_t n = t->block_size * kBlocks;
    std::vector<float> values(n);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, sigma);
    for (float& v : values) v = normal(rng);
    pool.bytes_.resize(static_cast<size_t>(pool.block_bytes_) * kBlocks);
    RETURN_IF_ERROR(QuantizeRow(type, values.data(), pool.bytes_.data(), n));
    return pool;
  }
  void Fill(std::span<uint8_t> out, uint64_t seed) const {
    uint64_t s = seed | 1;
    for (size_t at = 0; at < out.size(); at += block_bytes_) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;  // xorshift64
      std::memcpy(out.data() + at, bytes_.data() + (s % kBlocks) * block_bytes_, block_bytes_);
    }
  }

 private:
  int64_t block_bytes_ = 0;
  std::vector<uint8_t> bytes_;
};

absl::Status FillF32(const Spec& s, std::span<uint8_t> out, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const float scale = s.init == Init::kConv ? 0.5f : 1.0f / std::sqrt(static_cast<float>(s.ne[0]));
  float* v = reinterpret_cast<float*>(out.data());
  for (size_t i = 0; i < out.size() / 4; ++i) {
    switch (s.init) {
      case Init::kOnes: v[i] = 1.0f; break;
      case Init::kSsmA: v[i] = -(1.0f + 15.0f * uniform(rng)); break;
      case Init::kDtBias: v[i] = uniform(rng) - 0.5f; break;
      case Init::kMatrix: case Init::kEmbedding: case Init::kConv: v[i] = normal(rng) * scale; break;
    }
  }
  return absl::OkStatus();
}

absl::Status RunSynth(const Args& args) {
  RETURN_IF_ERROR(args.CheckKnown({"preset", "experts", "rest", "vocab", "chat-template", "seed"}));
  if (args.positional().size() != 1) return absl::InvalidArgumentError("expected OUT.gguf");
  ASSIGN_OR_RETURN(std::string preset_name, args.Require("preset"));
  const Preset* preset = nullptr;
  for (const Preset& p : kPresets) {
    if (p.name == preset_name) preset = &p;
  }
  if (preset == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown --preset '", preset_name,
                                                   "'; choose 35b-a3b, 122b-a10b, 397b-a17b or tiny"));
  }
  ASSIGN_OR_RETURN(GgmlType experts, GgmlTypeFromName(args.Get("experts").value_or("Q4_K")));
  ASSIGN_OR_RETURN(GgmlType rest, GgmlTypeFromName(args.Get("rest").value_or("Q8_0")));
  for (GgmlType t : {experts, rest}) {
    if (!HasQuantizer(t)) {
      return absl::InvalidArgumentError(absl::StrCat("moed cannot write ", Sv(GgmlTypeName(t)), " tensors"));
    }
  }
  ASSIGN_OR_RETURN(int64_t seed, args.GetInt("seed", 42));

  Preset p = *preset;
  gguf::GgufWriter w;
  WriteHparams(p, p.n_vocab, w);
  if (std::optional<std::string> vocab_path = args.Get("vocab")) {
    ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> vocab, gguf::GgufFile::Open(*vocab_path));
    const gguf::Value* tokens = vocab->FindValue("tokenizer.ggml.tokens");
    if (tokens == nullptr) return absl::InvalidArgumentError(absl::StrCat(*vocab_path, " has no tokenizer.ggml.tokens"));
    // The tiny model takes the vocabulary's size; the real shapes keep theirs and pad up to it.
    if (p.name == "tiny") p.n_vocab = static_cast<int64_t>(tokens->size());
    if (static_cast<int64_t>(tokens->size()) > p.n_vocab) {
      return absl::InvalidArgumentError(absl::StrCat("the vocabulary has ", tokens->size(), " tokens, more than the ",
                                                     p.n_vocab, " of preset ", Sv(p.name)));
    }
    RETURN_IF_ERROR(CopyTokenizer(*vocab, p.n_vocab, w));
  }
  if (std::optional<std::string> template_path = args.Get("chat-template")) {
    FILE* f = std::fopen(template_path->c_str(), "rb");
    if (f == nullptr) return absl::NotFoundError(absl::StrCat("cannot open --chat-template ", *template_path));
    std::string text;
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof(buf), f)) > 0;) text.append(buf, n);
    std::fclose(f);
    w.SetValue("tokenizer.chat_template", gguf::Value::String(std::move(text)));
  }

  std::map<std::pair<GgmlType, float>, BlockPool> pools;
  const std::vector<Spec> specs = TensorSpecs(p);
  for (size_t i = 0; i < specs.size(); ++i) {
    const Spec& s = specs[i];
    const uint64_t tensor_seed = static_cast<uint64_t>(seed) * 1000003 + i;
    const GgmlType type = s.keep_f32 ? GgmlType::kF32 : Fallback(s.expert ? experts : rest, s.ne[0]);
    if (type == GgmlType::kF32) {
      RETURN_IF_ERROR(w.AddTensor(s.name, type, s.ne, [&s, tensor_seed](std::span<uint8_t> out) {
        return FillF32(s, out, tensor_seed);
      }));
      continue;
    }
    const float sigma = s.init == Init::kEmbedding ? 1.0f : 1.0f / std::sqrt(static_cast<float>(s.ne[0]));
    auto key = std::make_pair(type, sigma);
    if (!pools.contains(key)) {
      ASSIGN_OR_RETURN(BlockPool pool, BlockPool::Make(type, sigma, tensor_seed));
      pools.emplace(key, std::move(pool));
    }
    const BlockPool* pool = &pools.at(key);
    RETURN_IF_ERROR(w.AddTensor(s.name, type, s.ne, [pool, tensor_seed](std::span<uint8_t> out) {
      pool->Fill(out, tensor_seed);
      return absl::OkStatus();
    }));
  }
  RETURN_IF_ERROR(w.WriteFile(args.positional()[0]));
  std::printf("wrote %s (%s: %d layers, experts %s, rest %s)\n", args.positional()[0].c_str(),
              std::string(p.label).c_str(), p.n_layer, std::string(GgmlTypeName(experts)).c_str(),
              std::string(GgmlTypeName(rest)).c_str());
  return absl::OkStatus();
}

MOED_SUBCOMMAND(kSynth, {
    .name = "synth",
    .usage = "OUT.gguf --preset 35b-a3b|122b-a10b|397b-a17b|tiny [--experts TYPE] [--rest TYPE] "
             "[--vocab FROM.gguf] [--chat-template T.jinja] [--seed N]",
    .help = "Write a full-size qwen35moe model with random weights (benchmarks) or the tiny demo model.",
    .bool_flags = {},
    .run = RunSynth,
});

}  // namespace
}  // namespace moed::tool

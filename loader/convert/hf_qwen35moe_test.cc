// Acceptance tests of the HF -> GGUF conversion against files written by llama.cpp's own converter
// (tests/data/qwen35moe-tiny/*/<name>-{f32,bf16}.gguf, convert_hf_to_gguf.py --no-mtp): same keys,
// types, values and order; same tensors, shapes, types, order and bytes; the whole file identical
// except ssm_a = -exp(A_log), allowed to differ by one ulp. Plus the packed-expert and multimodal
// checkpoint layouts, and the errors for incomplete or foreign checkpoints.
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/base/half.h"
#include "loader/convert/convert_tensor.h"
#include "loader/convert/hf_to_gguf.h"
#include "loader/gguf/gguf_file.h"
#include "loader/safetensors.h"
#include "nlohmann/json.hpp"

namespace moed::convert {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string FixtureDir(const std::string& model) {
  return std::string(MOED_TEST_DATA_DIR) + "/qwen35moe-tiny/" + model;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// A fresh directory under the test temp dir.
std::string ScratchDir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / "hf_qwen35moe_test" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

int64_t UlpDistance(float a, float b) {
  auto key = [](float f) {
    const int32_t i = std::bit_cast<int32_t>(f);
    return i < 0 ? static_cast<int64_t>(INT32_MIN) - i : static_cast<int64_t>(i);
  };
  return std::llabs(key(a) - key(b));
}

bool IsSsmA(const std::string& name) { return absl::EndsWith(name, ".ssm_a"); }

// Everything the acceptance criterion asks for, then the whole-file comparison.
void ExpectSameGguf(const std::string& ours_path, const std::string& ref_path) {
  auto ours = gguf::GgufFile::Open(ours_path);
  auto ref = gguf::GgufFile::Open(ref_path);
  ASSERT_TRUE(ours.ok()) << ours.status();
  ASSERT_TRUE(ref.ok()) << ref.status();

  const auto& om = (*ours)->metadata();
  const auto& rm = (*ref)->metadata();
  ASSERT_EQ(om.size(), rm.size());
  for (size_t i = 0; i < rm.size(); ++i) {
    EXPECT_EQ(om[i].key, rm[i].key) << "key #" << i;
    EXPECT_EQ(om[i].value.type(), rm[i].value.type()) << rm[i].key;
    EXPECT_TRUE(om[i].value == rm[i].value) << rm[i].key << ": ours " << om[i].value.DebugString()
                                            << ", llama.cpp " << rm[i].value.DebugString();
  }

  const auto& ot = (*ours)->tensors();
  const auto& rt = (*ref)->tensors();
  ASSERT_EQ(ot.size(), rt.size());
  int ssm_a_tensors = 0;
  for (size_t i = 0; i < rt.size(); ++i) {
    SCOPED_TRACE(rt[i].name);
    ASSERT_EQ(ot[i].name, rt[i].name) << "tensor #" << i;
    EXPECT_EQ(ot[i].n_dims, rt[i].n_dims);
    EXPECT_EQ(ot[i].ne, rt[i].ne);
    EXPECT_EQ(ot[i].type, rt[i].type);
    EXPECT_EQ(ot[i].offset, rt[i].offset);
    auto od = (*ours)->TensorData(ot[i]);
    auto rd = (*ref)->TensorData(rt[i]);
    ASSERT_EQ(od.size(), rd.size());
    if (IsSsmA(rt[i].name)) {
      ++ssm_a_tensors;
      ASSERT_EQ(rt[i].type, GgmlType::kF32);
      for (size_t j = 0; j < od.size() / 4; ++j) {
        float a, b;
        std::memcpy(&a, od.data() + 4 * j, 4);
        std::memcpy(&b, rd.data() + 4 * j, 4);
        EXPECT_LE(UlpDistance(a, b), 1) << "element " << j << ": " << a << " vs " << b;
        EXPECT_LT(a, 0.0f);
      }
    } else {
      EXPECT_EQ(std::memcmp(od.data(), rd.data(), od.size()), 0) << "tensor bytes differ";
    }
  }
  EXPECT_GT(ssm_a_tensors, 0);

  // The whole file: identical outside the ssm_a data.
  const std::string ob = ReadFile(ours_path);
  const std::string rb = ReadFile(ref_path);
  ASSERT_EQ(ob.size(), rb.size());
  std::vector<bool> skip(rb.size(), false);
  for (const auto& t : rt) {
    if (!IsSsmA(t.name)) continue;
    const uint64_t at = (*ref)->TensorFileOffset(t);
    for (uint64_t k = at; k < at + t.nbytes; ++k) skip[k] = true;
  }
  size_t differing = 0;
  for (size_t k = 0; k < rb.size(); ++k) differing += !skip[k] && ob[k] != rb[k];
  EXPECT_EQ(differing, 0u) << "bytes differ outside ssm_a";
}

struct Case {
  const char* model;
  const char* outtype_name;
  GgmlType outtype;
};

class ConvertMatchesLlamaCpp : public ::testing::TestWithParam<Case> {};

TEST_P(ConvertMatchesLlamaCpp, SameFile) {
  const Case& c = GetParam();
  const std::string out = ScratchDir(std::string(c.model) + "-" + c.outtype_name) + "/out.gguf";
  absl::Status s = ConvertHfToGguf(FixtureDir(c.model), out, c.outtype);
  ASSERT_TRUE(s.ok()) << s;
  ExpectSameGguf(out, FixtureDir(c.model) + "/" + c.model + "-" + c.outtype_name + ".gguf");
}

INSTANTIATE_TEST_SUITE_P(TinyModels, ConvertMatchesLlamaCpp,
                         ::testing::Values(Case{"tiny-a", "f32", GgmlType::kF32},
                                           Case{"tiny-a", "bf16", GgmlType::kBf16},
                                           Case{"tiny-b", "f32", GgmlType::kF32},
                                           Case{"tiny-b", "bf16", GgmlType::kBf16}),
                         [](const auto& info) {
                           return absl::StrReplaceAll(
                               std::string(info.param.model) + "_" + info.param.outtype_name,
                               {{"-", "_"}});
                         });

// F16 has no shipped file: every tensor must be llama.cpp's F32 tensor, F16-rounded unless it is
// one the converter keeps in F32; general.file_type is MOSTLY_F16.
TEST(ConvertTest, F16OutputIsTheF32ModelRounded) {
  const std::string out = ScratchDir("tiny-a-f16") + "/out.gguf";
  ASSERT_TRUE(ConvertHfToGguf(FixtureDir("tiny-a"), out, GgmlType::kF16).ok());
  auto ours = gguf::GgufFile::Open(out);
  auto ref = gguf::GgufFile::Open(FixtureDir("tiny-a") + "/tiny-a-f32.gguf");
  ASSERT_TRUE(ours.ok() && ref.ok());
  EXPECT_EQ(*(*ours)->GetUint("general.file_type"), 1u);
  auto bf16 = gguf::GgufFile::Open(FixtureDir("tiny-a") + "/tiny-a-bf16.gguf");
  ASSERT_TRUE(bf16.ok());
  ASSERT_EQ((*ours)->tensors().size(), (*ref)->tensors().size());
  for (size_t i = 0; i < (*ref)->tensors().size(); ++i) {
    const auto& o = (*ours)->tensors()[i];
    const auto& r = (*ref)->tensors()[i];
    SCOPED_TRACE(r.name);
    // The tensors the converter keeps in F32 are exactly those F32 in the BF16 file.
    const bool kept_f32 = (*bf16)->tensors()[i].type == GgmlType::kF32;
    EXPECT_EQ(o.type, kept_f32 ? GgmlType::kF32 : GgmlType::kF16);
    if (kept_f32 || IsSsmA(r.name)) continue;
    auto od = (*ours)->TensorData(o);
    auto rd = (*ref)->TensorData(r);
    for (int64_t j = 0; j < r.n_elements(); ++j) {
      float f;
      uint16_t h;
      std::memcpy(&f, rd.data() + 4 * j, 4);
      std::memcpy(&h, od.data() + 2 * j, 2);
      ASSERT_EQ(h, Fp32ToFp16(f)) << "element " << j;
    }
  }
}

// Builds a copy of tiny-a laid out like the released Qwen3.5 checkpoints: a multimodal config
// (text_config), "model.language_model." names, a vision tower and an MTP head (both dropped),
// packed experts (gate_up_proj [E, 2F, H], down_proj [E, H, F]) and two parts with an index.
void WriteQwen35StyleCheckpoint(const std::string& dir) {
  auto src = SafetensorsFile::Open(FixtureDir("tiny-a") + "/model.safetensors");
  ASSERT_TRUE(src.ok()) << src.status();
  std::map<std::string, SafetensorsWriteTensor> out;  // sorted by name, like the converter reads
  auto bytes = [&](const SafetensorsTensor& t) {
    auto d = (*src)->Data(t);
    return std::string(reinterpret_cast<const char*>(d.data()), d.size());
  };
  const int n_expert = 8;
  for (const SafetensorsTensor& t : (*src)->tensors()) {
    if (absl::StrContains(t.name, ".mlp.experts.")) continue;
    std::string name = t.name;
    if (absl::StartsWith(name, "model.")) name = "model.language_model." + name.substr(6);
    out[name] = {name, t.dtype, t.shape, bytes(t)};
  }
  for (int layer = 0; layer < 4; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".mlp.experts.";
    std::string gate_up, down;
    int64_t f = 0, h = 0;
    for (int e = 0; e < n_expert; ++e) {
      const SafetensorsTensor* g = (*src)->Find(p + std::to_string(e) + ".gate_proj.weight");
      const SafetensorsTensor* u = (*src)->Find(p + std::to_string(e) + ".up_proj.weight");
      const SafetensorsTensor* d = (*src)->Find(p + std::to_string(e) + ".down_proj.weight");
      ASSERT_TRUE(g && u && d);
      f = g->shape[0];
      h = g->shape[1];
      gate_up += bytes(*g) + bytes(*u);
      down += bytes(*d);
    }
    const std::string q = "model.language_model.layers." + std::to_string(layer) + ".mlp.experts.";
    out[q + "gate_up_proj"] = {
        q + "gate_up_proj", SafetensorsDtype::kF32, {n_expert, 2 * f, h}, gate_up};
    out[q + "down_proj"] = {q + "down_proj", SafetensorsDtype::kF32, {n_expert, h, f}, down};
  }
  const std::string four_floats(16, '\0');
  for (const char* extra :
       {"model.visual.blocks.0.attn.qkv.weight", "model.visual.patch_embed.proj.weight",
        "mtp.fc.weight", "mtp.layers.0.input_layernorm.weight"}) {
    out[extra] = {extra, SafetensorsDtype::kF32, {4}, four_floats};
  }

  std::vector<SafetensorsWriteTensor> part1, part2;
  nlohmann::json weight_map = nlohmann::json::object();
  size_t i = 0;
  for (auto& [name, t] : out) {
    const bool first = i++ < out.size() / 2;
    weight_map[name] =
        first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    (first ? part1 : part2).push_back(std::move(t));
  }
  ASSERT_TRUE(WriteSafetensorsFile(dir + "/model-00001-of-00002.safetensors", part1).ok());
  ASSERT_TRUE(WriteSafetensorsFile(dir + "/model-00002-of-00002.safetensors", part2).ok());
  WriteFile(dir + "/model.safetensors.index.json",
            nlohmann::json({{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}).dump());

  nlohmann::json text = nlohmann::json::parse(ReadFile(FixtureDir("tiny-a") + "/config.json"));
  text.erase("architectures");
  nlohmann::json config = {{"architectures", {"Qwen3_5MoeForConditionalGeneration"}},
                           {"model_type", "qwen3_5_moe"},
                           {"text_config", text},
                           {"vision_config", {{"depth", 1}, {"hidden_size", 4}}},
                           {"tie_word_embeddings", false}};
  WriteFile(dir + "/config.json", config.dump(2));
}

TEST(ConvertTest, PackedExpertsMultimodalNamesAndShardsGiveTheSameFile) {
  // The directory name feeds general.name, so it must be "tiny-a" too.
  const std::string dir = ScratchDir("packed") + "/tiny-a";
  fs::create_directories(dir);
  ASSERT_NO_FATAL_FAILURE(WriteQwen35StyleCheckpoint(dir));
  const std::string out = ScratchDir("packed-out") + "/out.gguf";
  absl::Status s = ConvertHfToGguf(dir + "/", out, GgmlType::kBf16);  // Path("x/").name is "x"
  ASSERT_TRUE(s.ok()) << s;
  ExpectSameGguf(out, FixtureDir("tiny-a") + "/tiny-a-bf16.gguf");
}

// Released Qwen3.5 checkpoints are BF16. tiny-b's weights are all BF16-exact, so a BF16 copy of
// its checkpoint must convert to exactly llama.cpp's file (sources are widened to F32 first).
TEST(ConvertTest, Bf16CheckpointGivesTheSameFile) {
  const std::string dir = ScratchDir("bf16-source") + "/tiny-b";
  fs::create_directories(dir);
  fs::copy_file(FixtureDir("tiny-b") + "/config.json", dir + "/config.json");
  auto src = SafetensorsFile::Open(FixtureDir("tiny-b") + "/model.safetensors");
  ASSERT_TRUE(src.ok()) << src.status();
  std::vector<SafetensorsWriteTensor> bf16;
  for (const SafetensorsTensor& t : (*src)->tensors()) {
    ASSERT_EQ(t.dtype, SafetensorsDtype::kF32);
    auto d = (*src)->Data(t);
    std::string bytes(d.size() / 2, '\0');
    for (size_t i = 0; i < d.size() / 4; ++i) {
      float f;
      std::memcpy(&f, d.data() + 4 * i, 4);
      const uint16_t b = Fp32ToBf16(f);
      ASSERT_EQ(Bf16ToFp32(b), f) << t.name << " is not BF16-exact";
      std::memcpy(bytes.data() + 2 * i, &b, 2);
    }
    bf16.push_back({t.name, SafetensorsDtype::kBf16, t.shape, bytes});
  }
  ASSERT_TRUE(WriteSafetensorsFile(dir + "/model.safetensors", bf16).ok());
  for (const char* outtype : {"f32", "bf16"}) {
    SCOPED_TRACE(outtype);
    const std::string out = ScratchDir(std::string("bf16-source-out-") + outtype) + "/out.gguf";
    absl::Status s =
        ConvertHfToGguf(dir, out, outtype == std::string("f32") ? GgmlType::kF32 : GgmlType::kBf16);
    ASSERT_TRUE(s.ok()) << s;
    ExpectSameGguf(out, FixtureDir("tiny-b") + "/tiny-b-" + outtype + ".gguf");
  }
}

// A copy of tiny-b's config and weights, minus the tensors `drop` selects.
std::string CopyWithout(const std::string& name, bool (*drop)(const std::string&)) {
  const std::string dir = ScratchDir(name) + "/tiny-b";
  fs::create_directories(dir);
  fs::copy_file(FixtureDir("tiny-b") + "/config.json", dir + "/config.json");
  auto src = SafetensorsFile::Open(FixtureDir("tiny-b") + "/model.safetensors");
  EXPECT_TRUE(src.ok());
  std::vector<SafetensorsWriteTensor> kept;
  for (const SafetensorsTensor& t : (*src)->tensors()) {
    if (drop(t.name)) continue;
    auto d = (*src)->Data(t);
    kept.push_back(
        {t.name, t.dtype, t.shape, std::string(reinterpret_cast<const char*>(d.data()), d.size())});
  }
  EXPECT_TRUE(WriteSafetensorsFile(dir + "/model.safetensors", kept).ok());
  return dir;
}

TEST(ConvertTest, MissingTensorIsNotFound) {
  const std::string dir = CopyWithout("missing-k", [](const std::string& n) {
    return n == "model.layers.3.self_attn.k_proj.weight";
  });
  absl::Status s = ConvertHfToGguf(dir, dir + "/../out.gguf", GgmlType::kF32);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("blk.3.attn_k.weight"));
  EXPECT_FALSE(fs::exists(dir + "/../out.gguf"));
}

TEST(ConvertTest, MissingExpertIsNotFound) {
  const std::string dir = CopyWithout("missing-expert", [](const std::string& n) {
    return n == "model.layers.5.mlp.experts.11.up_proj.weight";
  });
  absl::Status s = ConvertHfToGguf(dir, dir + "/../out.gguf", GgmlType::kF32);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("model.layers.5.mlp.experts."));
}

TEST(ConvertTest, MissingConfigIsNotFound) {
  const std::string dir = ScratchDir("no-config");
  fs::copy_file(FixtureDir("tiny-a") + "/model.safetensors", dir + "/model.safetensors");
  absl::Status s = ConvertHfToGguf(dir, dir + "/out.gguf", GgmlType::kF32);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("config.json"));
}

TEST(ConvertTest, MissingWeightsAreNotFound) {
  const std::string dir = ScratchDir("no-weights");
  fs::copy_file(FixtureDir("tiny-a") + "/config.json", dir + "/config.json");
  absl::Status s = ConvertHfToGguf(dir, dir + "/out.gguf", GgmlType::kF32);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("safetensors"));
}

TEST(ConvertTest, UnknownArchitectureIsUnimplemented) {
  const std::string dir = ScratchDir("llama");
  fs::copy_file(FixtureDir("tiny-a") + "/model.safetensors", dir + "/model.safetensors");
  WriteFile(dir + "/config.json", R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64})");
  absl::Status s = ConvertHfToGguf(dir, dir + "/out.gguf", GgmlType::kF32);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_THAT(s.message(), HasSubstr("LlamaForCausalLM"));
}

TEST(ConvertTest, BadConfigValueNamesTheKey) {
  const std::string dir = ScratchDir("bad-config");
  fs::copy_file(FixtureDir("tiny-a") + "/model.safetensors", dir + "/model.safetensors");
  nlohmann::json config = nlohmann::json::parse(ReadFile(FixtureDir("tiny-a") + "/config.json"));
  config["linear_num_value_heads"] = 3;  // not a multiple of the 2 key heads
  WriteFile(dir + "/config.json", config.dump());
  absl::Status s = ConvertHfToGguf(dir, dir + "/out.gguf", GgmlType::kF32);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("linear_num_value_heads"));

  config.erase("linear_num_value_heads");
  WriteFile(dir + "/config.json", config.dump());
  s = ConvertHfToGguf(dir, dir + "/out.gguf", GgmlType::kF32);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("linear_num_value_heads"));
}

TEST(ConvertTest, QuantizedOutputTypeIsRejected) {
  absl::Status s =
      ConvertHfToGguf(FixtureDir("tiny-a"), ScratchDir("q8") + "/out.gguf", GgmlType::kQ8_0);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

TEST(ConvertTest, TiledHeadOrderSwapsGroupAndRepeat) {
  // 2 key heads, 2 value heads each, head_dim 1: grouped [k0v0 k0v1 k1v0 k1v1] -> tiled
  // [k0v0 k1v0 k0v1 k1v1].
  EXPECT_EQ(TiledHeadOrder(2, 2, 1), (std::vector<int64_t>{0, 2, 1, 3}));
  // head_dim 2 moves whole heads.
  EXPECT_EQ(TiledHeadOrder(2, 2, 2), (std::vector<int64_t>{0, 1, 4, 5, 2, 3, 6, 7}));
  // One value head per key head: no change.
  EXPECT_EQ(TiledHeadOrder(3, 1, 2), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
}

}  // namespace
}  // namespace moed::convert

// The qwen35moe description against llama.cpp-converted files, and the errors for files whose
// tensors do not match the architecture.
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "loader/gguf/gguf_writer.h"
#include "loader/model/model_description.h"
#include "loader/model/qwen35moe.h"

namespace moed {
namespace {

using ::testing::HasSubstr;

std::string Fixture(const std::string& model, const std::string& suffix) {
  return std::string(MOED_TEST_DATA_DIR) + "/qwen35moe-tiny/" + model + "/" + model + "-" + suffix + ".gguf";
}

absl::StatusOr<ModelDescription> Describe(const gguf::GgufFile& f) { return DescribeModel(f, f.tensors()); }

// Copies tiny-a with edits: `keep` filters tensors, `edit` changes the writer before writing.
std::unique_ptr<gguf::GgufFile> EditedTinyA(std::function<bool(const gguf::TensorInfo&)> keep,
                                            std::function<void(gguf::GgufWriter&)> edit) {
  auto src = gguf::GgufFile::Open(Fixture("tiny-a", "f32"));
  EXPECT_TRUE(src.ok());
  gguf::GgufWriter w;
  w.CopyMetadataFrom(**src);
  for (const gguf::TensorInfo& t : (*src)->tensors()) {
    if (!keep(t)) continue;
    EXPECT_TRUE(w.AddTensorBytes(t.name, t.type, std::span<const int64_t>(t.ne.data(), t.n_dims),
                                 (*src)->TensorData(t)).ok());
  }
  edit(w);
  const std::string path = ::testing::TempDir() + "/edited." + std::to_string(getpid()) + ".gguf";
  EXPECT_TRUE(w.WriteFile(path).ok());
  auto out = gguf::GgufFile::Open(path);
  std::remove(path.c_str());  // the mapping stays valid
  EXPECT_TRUE(out.ok()) << out.status();
  return std::move(out).value();
}

TEST(Qwen35MoeTest, DescribesTinyA) {
  auto f = gguf::GgufFile::Open(Fixture("tiny-a", "f32"));
  ASSERT_TRUE(f.ok());
  auto m = Describe(**f);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->architecture, "qwen35moe");
  EXPECT_EQ(m->n_layer, 4);
  EXPECT_EQ(m->n_vocab, 1024);
  EXPECT_EQ(m->n_embd, 64);
  ASSERT_EQ(m->layers.size(), 4u);
  EXPECT_EQ(m->layers[0].kind, LayerKind::kLinearAttention);
  EXPECT_EQ(m->layers[2].kind, LayerKind::kLinearAttention);
  EXPECT_EQ(m->layers[3].kind, LayerKind::kFullAttention);
  const auto& hp = m->hparams_as<Qwen35MoeHparams>();
  EXPECT_EQ(hp.n_expert, 8);
  EXPECT_EQ(hp.n_expert_used, 2);
  EXPECT_EQ(hp.n_rot, 8);
  EXPECT_EQ(hp.ssm_head_v_dim(), 16);
  EXPECT_EQ(hp.ssm_conv_dim(), 2 * 2 * 16 + 64);
  // Byte accounting covers every tensor of the file exactly once.
  uint64_t file_bytes = 0;
  for (const auto& t : (*f)->tensors()) file_bytes += t.nbytes;
  EXPECT_EQ(m->total_bytes, file_bytes);
  EXPECT_EQ(m->bytes_by_type.at(GgmlType::kF32), file_bytes);
  // Full layer: K and V of 2 heads x 32 dims at F16 per token; linear: conv window + state.
  EXPECT_EQ(m->layers[3].kv_bytes_per_token, 2u * (32 + 32) * 2);
  EXPECT_EQ(m->layers[0].recurrent_state_bytes, (3u * 128 + 4 * 16 * 16) * 4);
  ASSERT_NE(m->layers[0].Find("ssm_a"), nullptr);
  EXPECT_EQ(m->layers[3].Find("ssm_a"), nullptr);
}

TEST(Qwen35MoeTest, DescribesTinyBInBf16) {
  auto f = gguf::GgufFile::Open(Fixture("tiny-b", "bf16"));
  ASSERT_TRUE(f.ok());
  auto m = Describe(**f);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->n_layer, 8);
  EXPECT_EQ(m->layers[7].kind, LayerKind::kFullAttention);
  EXPECT_GT(m->bytes_by_type.at(GgmlType::kBf16), 0u);
  EXPECT_GT(m->bytes_by_type.at(GgmlType::kF32), 0u);  // norms, router, conv, ssm_a stay F32
}

TEST(Qwen35MoeTest, MissingTensorIsNamed) {
  auto f = EditedTinyA([](const gguf::TensorInfo& t) { return t.name != "blk.1.ssm_a"; }, [](gguf::GgufWriter&) {});
  EXPECT_THAT(Describe(*f).status().message(), HasSubstr("missing tensor 'blk.1.ssm_a'"));
}

TEST(Qwen35MoeTest, MisShapedTensorIsNamed) {
  auto f = EditedTinyA([](const gguf::TensorInfo& t) { return t.name != "blk.3.attn_k_norm.weight"; },
                       [](gguf::GgufWriter& w) {
                         std::vector<uint8_t> bytes(16 * 4);
                         const int64_t ne[] = {16};
                         ASSERT_TRUE(w.AddTensorBytes("blk.3.attn_k_norm.weight", GgmlType::kF32, ne, bytes).ok());
                       });
  EXPECT_THAT(Describe(*f).status().message(),
              HasSubstr("tensor 'blk.3.attn_k_norm.weight' has shape [16], expected [32]"));
}

TEST(Qwen35MoeTest, UnexpectedTensorIsNamed) {
  auto f = EditedTinyA([](const gguf::TensorInfo&) { return true; }, [](gguf::GgufWriter& w) {
    std::vector<uint8_t> bytes(8 * 4);
    const int64_t ne[] = {8};
    ASSERT_TRUE(w.AddTensorBytes("blk.0.mystery.weight", GgmlType::kF32, ne, bytes).ok());
  });
  EXPECT_THAT(Describe(*f).status().message(), HasSubstr("unexpected tensor 'blk.0.mystery.weight'"));
}

TEST(Qwen35MoeTest, MissingOrBadKeysAreNamed) {
  auto no_key = EditedTinyA([](const gguf::TensorInfo&) { return true; },
                            [](gguf::GgufWriter& w) { w.RemoveValue("qwen35moe.ssm.state_size"); });
  EXPECT_THAT(Describe(*no_key).status().message(), HasSubstr("qwen35moe.ssm.state_size"));
  auto bad = EditedTinyA([](const gguf::TensorInfo&) { return true; },
                         [](gguf::GgufWriter& w) { w.SetValue("qwen35moe.expert_used_count", gguf::Value::Uint32(9)); });
  EXPECT_THAT(Describe(*bad).status().message(), HasSubstr("exceeds expert_count"));
  auto arch = EditedTinyA([](const gguf::TensorInfo&) { return true; },
                          [](gguf::GgufWriter& w) { w.SetValue("general.architecture", gguf::Value::String("gpt9")); });
  EXPECT_EQ(Describe(*arch).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Describe(*arch).status().message(), HasSubstr("qwen35moe"));
}

TEST(Qwen35MoeTest, IntervalRuleAppliesWithoutRecurrentLayersKey) {
  auto f = EditedTinyA([](const gguf::TensorInfo&) { return true; },
                       [](gguf::GgufWriter& w) { w.RemoveValue("qwen35moe.attention.recurrent_layers"); });
  auto m = Describe(*f);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->layers[3].kind, LayerKind::kFullAttention);
  EXPECT_EQ(m->layers[1].kind, LayerKind::kLinearAttention);
}

TEST(Qwen35MoeTest, MtpBlocksAreRecognisedAndSkipped) {
  // Declare one MTP block and ship only part of it: it is accounted for but never required.
  auto f = EditedTinyA([](const gguf::TensorInfo&) { return true; }, [](gguf::GgufWriter& w) {
    w.SetValue("qwen35moe.block_count", gguf::Value::Uint32(5));
    w.SetValue("qwen35moe.nextn_predict_layers", gguf::Value::Uint32(1));
    std::vector<uint8_t> eh(128 * 64 * 4);
    const int64_t ne[] = {128, 64};
    ASSERT_TRUE(w.AddTensorBytes("blk.4.nextn.eh_proj.weight", GgmlType::kF32, ne, eh).ok());
  });
  auto m = Describe(*f);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->n_layer, 4);
  ASSERT_EQ(m->layers.size(), 5u);
  EXPECT_TRUE(m->layers[4].is_mtp);
  EXPECT_EQ(m->layers[4].weight_bytes, 128u * 64 * 4);
}

}  // namespace
}  // namespace moed

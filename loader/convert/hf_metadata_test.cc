// Tests of the general.* heuristics ported from gguf-py's metadata.py / utility.py: model-id
// parsing, title-casing and size labels, on ids of released models.
#include "loader/convert/hf_metadata.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "loader/convert/model_card.h"

namespace moed::convert {
namespace {

TEST(ModelIdTest, FixtureDirectoryNames) {
  ModelIdComponents c = GetModelIdComponents("tiny-a", 280520);
  EXPECT_EQ(c.full_name, "tiny-a");
  EXPECT_FALSE(c.organization.has_value());
  EXPECT_FALSE(c.basename.has_value());  // no size, finetune or version: too ambiguous
  EXPECT_FALSE(c.size_label.has_value());
  EXPECT_EQ(IdToTitle("tiny-a"), "Tiny A");
  EXPECT_EQ(IdToTitle("tiny-b"), "Tiny B");
}

TEST(ModelIdTest, QwenHubId) {
  ModelIdComponents c = GetModelIdComponents("Qwen/Qwen3.5-35B-A3B", 34'660'000'000);
  EXPECT_EQ(c.organization, "Qwen");
  EXPECT_EQ(c.full_name, "Qwen3.5-35B-A3B");
  EXPECT_EQ(c.basename, "Qwen3.5");
  EXPECT_EQ(c.size_label, "35B-A3B");
  EXPECT_FALSE(c.finetune.has_value());
  EXPECT_FALSE(c.version.has_value());
  EXPECT_EQ(IdToTitle("Qwen3.5-35B-A3B"), "Qwen3.5 35B A3B");
}

TEST(ModelIdTest, SizeFinetuneAndVersion) {
  ModelIdComponents c = GetModelIdComponents("Mixtral-8x7B-Instruct-v0.1", 46'700'000'000);
  EXPECT_EQ(c.basename, "Mixtral");
  EXPECT_EQ(c.size_label, "8x7B");
  EXPECT_EQ(c.finetune, "Instruct");
  EXPECT_EQ(c.version, "v0.1");
  EXPECT_EQ(IdToTitle("Mixtral-8x7B-Instruct-v0.1"), "Mixtral 8x7B Instruct v0.1");
}

TEST(ModelIdTest, ContextLengthIsNotASize) {
  ModelIdComponents c = GetModelIdComponents("Llama-3-8B-128k", 8'030'000'000);
  EXPECT_EQ(c.basename, "Llama-3");
  EXPECT_EQ(c.size_label, "8B");
  EXPECT_EQ(c.finetune, "128k");
  EXPECT_FALSE(c.version.has_value());
}

TEST(ModelIdTest, QuantTypeAndSentence) {
  ModelIdComponents c = GetModelIdComponents("Model-7b-bf16", 7'000'000'000);
  EXPECT_EQ(c.basename, "Model");
  EXPECT_EQ(c.size_label, "7B");
  ModelIdComponents s = GetModelIdComponents("My Model", 1);
  EXPECT_EQ(s.full_name, "My Model");
  EXPECT_FALSE(s.basename.has_value());
}

TEST(SizeLabelTest, MixtureAndDense) {
  EXPECT_EQ(SizeLabel({.total = 280520, .shared = 255944, .expert = 24576, .expert_count = 8}),
            "8x281K");
  EXPECT_EQ(SizeLabel({.total = 1'234'567}), "1.2M");
  EXPECT_EQ(SizeLabel({.total = 999}), "1.0K");
  EXPECT_EQ(SizeLabel({.total = 35'000'000'001}), "35B");
}

TEST(ModelCardTest, ReadsTheSubsetModelCardsUse) {
  const ModelCard card = ParseModelCard(
      "---\n"
      "license: apache-2.0   # SPDX\n"
      "license_link: https://huggingface.co/Qwen/Qwen3.5-35B-A3B/blob/main/LICENSE\n"
      "pipeline_tag: image-text-to-text\n"
      "language:\n"
      "- en\n"
      "- no\n"
      "tags: [moe, 'a, b', \"c\"]\n"
      "base_model:\n"
      "  - Qwen/Qwen3.5-35B-A3B\n"
      "version: 1.0\n"
      "widget:\n"
      "  - text: hello\n"
      "model-index:\n"
      "  results: x\n"
      "empty:\n"
      "---\n"
      "# Title\n"
      "license: not-front-matter\n");
  EXPECT_EQ(card.at("license").str, "apache-2.0");
  EXPECT_EQ(card.at("license_link").str,
            "https://huggingface.co/Qwen/Qwen3.5-35B-A3B/blob/main/LICENSE");
  EXPECT_EQ(card.at("pipeline_tag").str, "image-text-to-text");
  EXPECT_EQ(card.at("language").list,
            (std::vector<std::string>{"en", "no"}));  // the "Norway" fix-up
  EXPECT_EQ(card.at("tags").list, (std::vector<std::string>{"moe", "a, b", "c"}));
  EXPECT_EQ(card.at("base_model").list, (std::vector<std::string>{"Qwen/Qwen3.5-35B-A3B"}));
  EXPECT_EQ(card.at("version").kind, CardValue::Kind::kOther);  // a YAML float, not a string
  EXPECT_EQ(card.at("widget").kind, CardValue::Kind::kOther);
  EXPECT_EQ(card.at("model-index").kind, CardValue::Kind::kOther);
  EXPECT_EQ(card.at("empty").kind, CardValue::Kind::kNull);
  EXPECT_TRUE(ParseModelCard("# no front matter\nlicense: mit\n").empty());
}

// SetGeneralMetadata over a directory with a model card and a generation config.
TEST(GeneralMetadataTest, CardConfigAndDirectoryInTheConvertersOrder) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(::testing::TempDir()) / "hf_metadata_test" / "Nex-N2-mini";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path fixture = fs::path(MOED_TEST_DATA_DIR) / "qwen35moe-tiny" / "tiny-a";
  fs::copy_file(fixture / "config.json", dir / "config.json");
  fs::copy_file(fixture / "model.safetensors", dir / "model.safetensors");
  std::ofstream(dir / "README.md")
      << "---\nlicense: apache-2.0\nbase_model: Qwen/Qwen3.5-35B-A3B\n"
         "pipeline_tag: text-generation\nlanguage: [en, zh]\n---\n# Nex\n";
  std::ofstream(dir / "generation_config.json")
      << R"({"temperature": 0.6, "top_k": 20, "top_p": 0.95,
                                                       "repetition_penalty": 1.0})";
  auto checkpoint = HfCheckpoint::Open(dir.string());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  gguf::GgufWriter writer;
  SetGeneralMetadata(**checkpoint,
                     {.total = 34'660'000'000, .shared = 1, .expert = 1, .expert_count = 256},
                     writer);
  std::vector<std::string> keys;
  for (const auto& kv : writer.metadata()) keys.push_back(kv.key);
  EXPECT_EQ(keys, (std::vector<std::string>{
                      "general.type", "general.sampling.top_k", "general.sampling.top_p",
                      "general.sampling.temp", "general.name", "general.basename",
                      "general.size_label", "general.license", "general.base_model.count",
                      "general.base_model.0.name", "general.base_model.0.organization",
                      "general.base_model.0.repo_url", "general.tags", "general.languages"}));
  auto get = [&](const std::string& key) -> const gguf::Value& {
    for (const auto& kv : writer.metadata()) {
      if (kv.key == key) return kv.value;
    }
    static const gguf::Value kNone;
    return kNone;
  };
  EXPECT_EQ(get("general.sampling.top_k"), gguf::Value::Int32(20));
  EXPECT_EQ(get("general.sampling.temp"), gguf::Value::Float32(0.6f));
  EXPECT_EQ(get("general.name"), gguf::Value::String("Nex N2 Mini"));
  EXPECT_EQ(get("general.basename"), gguf::Value::String("Nex-N2"));
  EXPECT_EQ(get("general.size_label"),
            gguf::Value::String("mini"));  // a word size label from the id
  EXPECT_EQ(get("general.base_model.count"), gguf::Value::Uint32(1));
  EXPECT_EQ(get("general.base_model.0.name"), gguf::Value::String("Qwen3.5 35B A3B"));
  EXPECT_EQ(get("general.base_model.0.organization"), gguf::Value::String("Qwen"));
  EXPECT_EQ(get("general.base_model.0.repo_url"),
            gguf::Value::String("https://huggingface.co/Qwen/Qwen3.5-35B-A3B"));
  EXPECT_EQ(get("general.tags"), gguf::Value::StringArray({"text-generation"}));
  EXPECT_EQ(get("general.languages"), gguf::Value::StringArray({"en", "zh"}));
}

}  // namespace
}  // namespace moed::convert

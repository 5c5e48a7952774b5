// End-to-end test of `moed-model twin` and `moed-model prune`: builds a base GGUF with IQ3_A770
// (file type 42) experts and an all-F32 variant, merges them into a Phase Twin, prunes the twin at
// several budgets, and checks every output with GgufFile: keys, tensor order, types and bytes.
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/moed_model/testing/run_model_tool.h"
#include "loader/gguf/gguf_file.h"
#include "loader/gguf/gguf_writer.h"
#include "loader/tensor_variant.h"

namespace moed {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kNorm[] = "blk.0.attn_norm.weight";
constexpr char kUp[] = "blk.0.ffn_up_exps.weight";
constexpr char kDown[] = "blk.0.ffn_down_exps.weight";
constexpr char kOutput[] = "output.weight";
const std::vector<int64_t> kNormNe = {256}, kUpNe = {256, 1024, 2}, kDownNe = {256, 16, 2}, kOutputNe = {256, 4};
// Base (IQ3_A770 experts) and promoted (F32) sizes; baseline = norm + up + down + output.
constexpr uint64_t kUpV0 = 2048 * 102, kUpV1 = 2048 * 1024;
constexpr uint64_t kDownV0 = 32 * 102, kDownV1 = 32 * 1024;
constexpr uint64_t kBaseline = 1024 + kUpV0 + kDownV0 + 4096;
static_assert(kBaseline + (kUpV1 - kUpV0) > (1u << 20));                       // up misses 1 MiB
static_assert(kBaseline + (kDownV1 - kDownV0) <= (1u << 20));                  // down fits in 1 MiB
static_assert(kBaseline + (kUpV1 - kUpV0) + (kDownV1 - kDownV0) <= (3u << 20));  // both fit in 3 MiB

using RunResult = moed::testing::ToolResult;

class TwinCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/twin_cli_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    WriteSources();
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  RunResult Run(const std::string& args) { return moed::testing::RunModelTool("" + args); }

  static std::unique_ptr<gguf::GgufFile> Open(const std::string& path) {
    auto f = gguf::GgufFile::Open(path);
    EXPECT_TRUE(f.ok()) << f.status();
    return f.ok() ? std::move(*f) : nullptr;
  }

  static std::vector<std::string> TensorNames(const gguf::GgufFile& f) {
    std::vector<std::string> out;
    for (const gguf::TensorInfo& t : f.tensors()) out.push_back(t.name);
    return out;
  }

  // Bytes of `name` in `a` equal bytes of `b_name` in `b`.
  static void ExpectSameBytes(const gguf::GgufFile& a, const std::string& name, const gguf::GgufFile& b,
                              const std::string& b_name) {
    const gguf::TensorInfo* ta = a.FindTensor(name);
    const gguf::TensorInfo* tb = b.FindTensor(b_name);
    ASSERT_NE(ta, nullptr) << name;
    ASSERT_NE(tb, nullptr) << b_name;
    EXPECT_EQ(ta->type, tb->type) << name;
    std::span<const uint8_t> da = a.TensorData(*ta), db = b.TensorData(*tb);
    ASSERT_EQ(da.size(), db.size()) << name;
    EXPECT_EQ(std::memcmp(da.data(), db.data(), da.size()), 0) << name << " vs " << b_name;
  }

  void WriteFile(const std::string& path, const std::vector<std::pair<std::string, GgmlType>>& tensors,
                 uint8_t seed) {
    gguf::GgufWriter w;
    w.SetValue("general.architecture", gguf::Value::String("qwen35moe"));
    w.SetValue("qwen35moe.expert_count", gguf::Value::Uint32(2));
    for (const auto& [name, type] : tensors) {
      const std::vector<int64_t>& ne = name == kNorm ? kNormNe : name == kUp ? kUpNe : name == kDown ? kDownNe : kOutputNe;
      const uint8_t s = static_cast<uint8_t>(seed + name.size());
      absl::Status st = w.AddTensor(name, type, ne, [s](std::span<uint8_t> out) {
        for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(s + i * 3 + (i >> 10));
        return absl::OkStatus();
      });
      ASSERT_TRUE(st.ok()) << st;
    }
    absl::Status st = w.WriteFile(path);
    ASSERT_TRUE(st.ok()) << st;
  }

  void WriteSources() {
    WriteFile(Path("base.gguf"),
              {{kNorm, GgmlType::kF32}, {kUp, GgmlType::kIq3A770}, {kDown, GgmlType::kIq3A770},
               {kOutput, GgmlType::kF32}},
              1);
    // Variant order differs from the base's (down before up); its norm differs and must be ignored.
    WriteFile(Path("variant.gguf"),
              {{kNorm, GgmlType::kF32}, {kDown, GgmlType::kF32}, {kUp, GgmlType::kF32}, {kOutput, GgmlType::kF32}},
              100);
  }

  void WriteText(const std::string& name, const std::string& text) {
    std::ofstream out(Path(name));
    out << text;
  }

  std::string dir_;
};

TEST_F(TwinCliTest, TwinWritesTheReferenceLayoutAndKeys) {
  RunResult r = Run("twin " + Path("base.gguf") + " " + Path("variant.gguf") + " " + Path("twin.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto base = Open(Path("base.gguf"));
  auto variant = Open(Path("variant.gguf"));
  auto twin = Open(Path("twin.gguf"));
  ASSERT_TRUE(base && variant && twin);
  EXPECT_EQ(base->FindTensor(kUp)->type, GgmlType::kIq3A770);  // by offset contiguity
  EXPECT_THAT(TensorNames(*twin), ElementsAre(kNorm, kUp, kDown, kOutput, std::string(kDown) + ".v1",
                                              std::string(kUp) + ".v1"));
  // Base metadata first, in order, then the keys: all UINT32, no promote_order without a ranking.
  ASSERT_EQ(twin->metadata().size(), 5u);
  EXPECT_EQ(twin->metadata()[0].key, "general.architecture");
  EXPECT_EQ(twin->metadata()[1].key, "qwen35moe.expert_count");
  const std::pair<std::string, uint64_t> keys[] = {{"general.tensor_variant.count", 2},
                                                   {"general.tensor_variant.default", 0},
                                                   {"general.tensor_variant.budget_mb", 0}};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(twin->metadata()[2 + i].key, keys[i].first);
    EXPECT_EQ(twin->metadata()[2 + i].value.type(), gguf::ValueType::kUint32);
    EXPECT_EQ(*twin->metadata()[2 + i].value.GetUint(), keys[i].second);
  }
  EXPECT_EQ(twin->FindValue("general.tensor_variant.promote_order"), nullptr);
  // Type 42 stays IQ3_A770 (now because of the keys), and every tensor's bytes are its source's.
  EXPECT_EQ(twin->FindTensor(kUp)->type, GgmlType::kIq3A770);
  EXPECT_THAT(twin->type42_decision(), HasSubstr("tensor_variant"));
  for (const char* n : {kNorm, kUp, kDown, kOutput}) ExpectSameBytes(*twin, n, *base, n);
  for (const char* n : {kUp, kDown}) ExpectSameBytes(*twin, std::string(n) + ".v1", *variant, n);
}

TEST_F(TwinCliTest, TwinEmbedsTheRankingAsPromoteOrder) {
  // rank-experts.py's ranking.csv: rows sorted by "rank", non-promotable rows dropped.
  WriteText("ranking.csv",
            "rank,name,layer,proj,score,base_type,prom_type,delta_bytes,cum_delta_gb,promotable,benefit_per_byte\n"
            "1,blk.0.ffn_down_exps.weight,0,down,1.0e-01,IQ3_A770,F32,29504,0.0019,1,3.3e-06\n"
            "2,blk.0.ffn_gate_exps.weight,0,gate,1.0e-01,F32,F32,0,0.0019,0,0.0\n"
            "0,blk.0.ffn_up_exps.weight,0,up,9.0e+00,IQ3_A770,F32,1888256,0.0018,1,4.7e-06\n");
  RunResult r = Run("twin " + Path("base.gguf") + " " + Path("variant.gguf") + " " + Path("twin.gguf") +
                    " --ranking " + Path("ranking.csv"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto twin = Open(Path("twin.gguf"));
  ASSERT_NE(twin, nullptr);
  const gguf::Value* order = twin->FindValue("general.tensor_variant.promote_order");
  ASSERT_NE(order, nullptr);
  EXPECT_EQ(order->element_type(), gguf::ValueType::kString);
  EXPECT_THAT(order->strings(), ElementsAre(kUp, kDown));

  // A plain list, one name per line.
  WriteText("ranking.txt", "# best first\nblk.0.ffn_down_exps.weight\n\nblk.0.ffn_up_exps.weight\n");
  r = Run("twin " + Path("base.gguf") + " " + Path("variant.gguf") + " " + Path("twin2.gguf") +
          " --ranking " + Path("ranking.txt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto twin2 = Open(Path("twin2.gguf"));
  ASSERT_NE(twin2, nullptr);
  EXPECT_THAT(twin2->FindValue("general.tensor_variant.promote_order")->strings(), ElementsAre(kDown, kUp));
}

TEST_F(TwinCliTest, TwinRejectsMismatchedShapes) {
  gguf::GgufWriter w;
  const std::vector<int64_t> ne = {256, 8, 2};
  ASSERT_TRUE(w.AddTensor(kUp, GgmlType::kF32, ne, [](std::span<uint8_t> out) {
                 std::memset(out.data(), 0, out.size());
                 return absl::OkStatus();
               }).ok());
  ASSERT_TRUE(w.WriteFile(Path("bad_variant.gguf")).ok());
  RunResult r = Run("twin " + Path("base.gguf") + " " + Path("bad_variant.gguf") + " " + Path("twin.gguf"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("blk.0.ffn_up_exps.weight' has shape [256, 1024, 2] in the base but "
                                  "[256, 8, 2] in the variant"));
  EXPECT_NE(access(Path("twin.gguf").c_str(), F_OK), 0);
}

TEST_F(TwinCliTest, TwinRejectsATwinAsBase) {
  ASSERT_EQ(Run("twin " + Path("base.gguf") + " " + Path("variant.gguf") + " " + Path("twin.gguf")).exit_code, 0);
  RunResult r = Run("twin " + Path("twin.gguf") + " " + Path("variant.gguf") + " " + Path("twin2.gguf"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("already has general.tensor_variant.* keys"));
}

// A type 42 that a base file without keys reads as upstream Q2_0 (it is last, so Q2_0 sizes are
// contiguous) would silently become IQ3_A770 in the twin: refused.
TEST_F(TwinCliTest, TwinRefusesType42ReadAsQ2_0) {
  WriteFile(Path("q2base.gguf"), {{kNorm, GgmlType::kF32}, {kUp, GgmlType::kIq3A770}}, 7);
  auto q2base = Open(Path("q2base.gguf"));
  ASSERT_NE(q2base, nullptr);
  ASSERT_EQ(q2base->FindTensor(kUp)->type, GgmlType::kQ2_0);
  RunResult r = Run("twin " + Path("q2base.gguf") + " " + Path("variant.gguf") + " " + Path("twin.gguf"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("type id 42 read as Q2_0"));
  EXPECT_NE(access(Path("twin.gguf").c_str(), F_OK), 0);
}

// twin then prune: the pruned file holds the greedy's winners under canonical names, in the twin's
// order, with every tensor_variant key dropped and the other keys kept.
TEST_F(TwinCliTest, PruneMaterialisesTheBudgetSelection) {
  WriteText("ranking.txt", "blk.0.ffn_up_exps.weight\nblk.0.ffn_down_exps.weight\n");
  ASSERT_EQ(Run("twin " + Path("base.gguf") + " " + Path("variant.gguf") + " " + Path("twin.gguf") +
                " --ranking " + Path("ranking.txt"))
                .exit_code,
            0);
  auto twin = Open(Path("twin.gguf"));
  ASSERT_NE(twin, nullptr);
  struct Case {
    std::string flags;
    bool up_promoted, down_promoted;
  };
  const Case cases[] = {
      {"--budget-mb 0", false, false},
      {"--budget-mb 1", false, true},  // up does not fit, down still does (skip and continue)
      {"--budget-mb 3", true, true},
      {"--vram-gib 0.601 --reserve-gib 0.6", false, true},  // floor(0.001 * 1024) = 1 MiB
      {"--vram-gib 1.6", true, true},                       // default reserve 0.6 -> 1024 MiB
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.flags);
    RunResult r = Run("prune " + Path("twin.gguf") + " " + Path("pruned.gguf") + " " + c.flags);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto pruned = Open(Path("pruned.gguf"));
    ASSERT_NE(pruned, nullptr);
    EXPECT_THAT(TensorNames(*pruned), ElementsAre(kNorm, kUp, kDown, kOutput));
    ASSERT_EQ(pruned->metadata().size(), 2u);
    EXPECT_EQ(pruned->metadata()[0].key, "general.architecture");
    EXPECT_EQ(pruned->metadata()[1].key, "qwen35moe.expert_count");
    ExpectSameBytes(*pruned, kUp, *twin, c.up_promoted ? std::string(kUp) + ".v1" : kUp);
    ExpectSameBytes(*pruned, kDown, *twin, c.down_promoted ? std::string(kDown) + ".v1" : kDown);
    ExpectSameBytes(*pruned, kNorm, *twin, kNorm);
    ExpectSameBytes(*pruned, kOutput, *twin, kOutput);
    // What prune wrote is what the loader resolves from the twin at that budget.
    absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*pruned);
    ASSERT_TRUE(plan.ok());
    EXPECT_EQ(plan->mode, VariantMode::kNone);
  }
}

TEST_F(TwinCliTest, PruneDryRunAndErrors) {
  ASSERT_EQ(Run("twin " + Path("base.gguf") + " " + Path("variant.gguf") + " " + Path("twin.gguf")).exit_code, 0);
  RunResult r = Run("prune " + Path("twin.gguf") + " " + Path("pruned.gguf") + " --budget-mb 3 --dry-run");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("promote_order is missing or empty"));
  EXPECT_NE(access(Path("pruned.gguf").c_str(), F_OK), 0);

  r = Run("prune " + Path("base.gguf") + " " + Path("pruned.gguf") + " --budget-mb 3");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("not a Phase Twin file"));

  r = Run("prune " + Path("twin.gguf") + " " + Path("pruned.gguf"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("exactly one of --budget-mb and --vram-gib"));

  r = Run("prune " + Path("twin.gguf") + " " + Path("pruned.gguf") + " --vram-gib 0.5");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("no usable budget"));
}

}  // namespace
}  // namespace moed

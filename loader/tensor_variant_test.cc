// Conformance tests of the Phase Twin resolution (gguf-and-quants.md §5.4): a small dual GGUF with
// two expert tensors (Q6_K as v0, Q8_0 as v1) and an F32 norm is written with GgufWriter, then
// resolved in global and budget mode. The loaded bytes are checked against the selected members
// (the other members are poisoned), and /proc/self/io shows that only the selection is read.
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "loader/gguf/gguf_file.h"
#include "loader/gguf/gguf_writer.h"
#include "loader/tensor_loader.h"
#include "loader/tensor_variant.h"

namespace moed {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr uint64_t kMiB = uint64_t{1} << 20;

// The dual: "up" is the big expert tensor, "down" the small one. Sizes are chosen so that the
// all-v0 baseline is exactly 3.5 MiB and the budgets 3, 4 and 5 MiB fall below the baseline,
// between (only the small promotion fits) and above full promotion.
constexpr char kUp[] = "blk.0.ffn_up_exps.weight";
constexpr char kDown[] = "blk.0.ffn_down_exps.weight";
constexpr char kNorm[] = "blk.0.attn_norm.weight";
constexpr int64_t kUpNe[] = {256, 2048, 8};   // 16384 rows
constexpr int64_t kDownNe[] = {256, 128, 8};  // 1024 rows
constexpr int64_t kNormNe[] = {3584};
constexpr uint64_t kUpQ6 = 16384 * 210, kUpQ8 = 16384 * 272;    // 3440640, 4456448
constexpr uint64_t kDownQ6 = 1024 * 210, kDownQ8 = 1024 * 272;  // 215040, 278528
constexpr uint64_t kNormBytes = 3584 * 4;                       // 14336
constexpr uint64_t kBaseline = kUpQ6 + kDownQ6 + kNormBytes;
static_assert(kBaseline == 3 * kMiB + kMiB / 2);
constexpr uint64_t kUpDelta = kUpQ8 - kUpQ6;        // 1015808: does not fit into 4 MiB
constexpr uint64_t kDownDelta = kDownQ8 - kDownQ6;  // 63488: does

enum class Poison { kNone, kV0, kV1 };

// Deterministic, member-specific content: byte i of the tensor with id `seed`.
uint8_t PatternByte(uint32_t seed, uint64_t i) {
  return static_cast<uint8_t>((seed * 131u + i * 7u + (i >> 9) * 13u) % 251u);
}

std::vector<uint8_t> Pattern(uint32_t seed, uint64_t n) {
  std::vector<uint8_t> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = PatternByte(seed, i);
  return v;
}

// 0xFF bytes, or quiet-NaN float32s: what a loader must never hand out.
std::vector<uint8_t> PoisonBytes(uint64_t n, bool nan) {
  std::vector<uint8_t> v(n, 0xFF);
  if (nan) {
    const uint32_t q = 0x7FC00000u;
    for (uint64_t i = 0; i + 4 <= n; i += 4) std::memcpy(&v[i], &q, 4);
  }
  return v;
}

uint64_t ProcRchar() {
  std::ifstream in("/proc/self/io");
  std::string key;
  uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "rchar:") return value;
  }
  ADD_FAILURE() << "no rchar in /proc/self/io";
  return 0;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "/tensor_variant_test.XXXXXX";
    char* p = mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct DualSpec {
  Poison poison = Poison::kNone;
  bool keys = true;
  uint32_t default_variant = 0;
  uint32_t budget_mb = 0;
  std::vector<std::string> order = {};  // promote_order; empty = key absent
};

// Writes the dual and remembers each member's content (seeds: norm 1, up 2, down 3, up.v1 4,
// down.v1 5), so that tests can compare loaded bytes against it.
class DualFile {
 public:
  static std::unique_ptr<DualFile> Write(const std::string& path, const DualSpec& spec) {
    auto d = std::unique_ptr<DualFile>(new DualFile);
    d->path_ = path;
    gguf::GgufWriter w;
    w.SetValue("general.architecture", gguf::Value::String("qwen35moe"));
    if (spec.keys) {
      w.SetValue(std::string(kTensorVariantCountKey), gguf::Value::Uint32(2));
      w.SetValue(std::string(kTensorVariantDefaultKey), gguf::Value::Uint32(spec.default_variant));
      w.SetValue(std::string(kTensorVariantBudgetKey), gguf::Value::Uint32(spec.budget_mb));
      if (!spec.order.empty()) {
        w.SetValue(std::string(kTensorVariantOrderKey), gguf::Value::StringArray(spec.order));
      }
    }
    auto add = [&](const std::string& name, GgmlType type, std::span<const int64_t> ne, uint64_t nbytes,
                   uint32_t seed, bool poisoned) {
      d->content_[name] = poisoned ? PoisonBytes(nbytes, seed % 2 == 0) : Pattern(seed, nbytes);
      EXPECT_TRUE(w.AddTensorBytes(name, type, ne, d->content_[name]).ok()) << name;
    };
    const bool p0 = spec.poison == Poison::kV0, p1 = spec.poison == Poison::kV1;
    add(kNorm, GgmlType::kF32, kNormNe, kNormBytes, 1, false);
    add(kUp, GgmlType::kQ6_K, kUpNe, kUpQ6, 2, p0);
    add(kDown, GgmlType::kQ6_K, kDownNe, kDownQ6, 3, p0);
    add(std::string(kUp) + ".v1", GgmlType::kQ8_0, kUpNe, kUpQ8, 4, p1);
    add(std::string(kDown) + ".v1", GgmlType::kQ8_0, kDownNe, kDownQ8, 5, p1);
    absl::Status s = w.WriteFile(path);
    EXPECT_TRUE(s.ok()) << s;
    return d;
  }
  const std::vector<uint8_t>& Content(const std::string& member) { return content_.at(member); }
  std::unique_ptr<gguf::GgufFile> Open() const {
    auto f = gguf::GgufFile::Open(path_);
    EXPECT_TRUE(f.ok()) << f.status();
    return f.ok() ? std::move(*f) : nullptr;
  }

 private:
  std::string path_;
  std::map<std::string, std::vector<uint8_t>> content_;
};

std::vector<std::string> Names(const VariantPlan& plan) {
  std::vector<std::string> out;
  for (const ResolvedTensor& t : plan.tensors) out.push_back(t.info.name);
  return out;
}

TEST(SiblingNameTest, MatchesTheReferenceRegex) {
  EXPECT_EQ(SiblingCanonicalName("a.weight.v1"), "a.weight");
  EXPECT_EQ(SiblingCanonicalName("a.weight.v12"), "a.weight");
  EXPECT_EQ(SiblingCanonicalName("a.v1.v2"), "a.v1");
  EXPECT_EQ(SiblingCanonicalName("a.weight.v0"), std::nullopt);   // v0 is never a sibling name
  EXPECT_EQ(SiblingCanonicalName("a.weight.v01"), std::nullopt);  // no leading zero
  EXPECT_EQ(SiblingCanonicalName("a.weight.v"), std::nullopt);
  EXPECT_EQ(SiblingCanonicalName("a.weight.v1x"), std::nullopt);
  EXPECT_EQ(SiblingCanonicalName(".v1"), std::nullopt);  // (.+) needs one character
  EXPECT_EQ(SiblingCanonicalName("x.v1"), "x");
  EXPECT_EQ(SiblingCanonicalName("a.weight"), std::nullopt);
}

class DualTest : public ::testing::Test {
 protected:
  TempDir dir_;
};

TEST_F(DualTest, GlobalModeSelectsTheDefaultVariant) {
  for (uint32_t def : {0u, 1u}) {
    SCOPED_TRACE(def);
    auto dual = DualFile::Write(dir_.File("global.gguf"), DualSpec{.default_variant = def});
    auto file = dual->Open();
    ASSERT_NE(file, nullptr);
    absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*file);
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_EQ(plan->mode, VariantMode::kGlobal);
    EXPECT_EQ(plan->variant, def);
    EXPECT_THAT(Names(*plan), ElementsAre(kNorm, kUp, kDown));
    EXPECT_EQ(plan->num_groups, 2u);
    EXPECT_EQ(plan->dropped, 2u);
    EXPECT_EQ(plan->baseline_bytes, kBaseline);
    EXPECT_THAT(plan->warnings, IsEmpty());
    const std::string suffix = def == 0 ? "" : ".v1";
    for (const char* name : {kUp, kDown}) {
      const ResolvedTensor* r = plan->Find(name);
      ASSERT_NE(r, nullptr);
      const gguf::TensorInfo* member = file->FindTensor(std::string(name) + suffix);
      ASSERT_NE(member, nullptr);
      EXPECT_EQ(r->member_name, member->name);
      EXPECT_EQ(r->variant, def);
      EXPECT_EQ(r->info.type, def == 0 ? GgmlType::kQ6_K : GgmlType::kQ8_0);
      EXPECT_EQ(r->info.offset, member->offset);
      EXPECT_EQ(r->info.nbytes, member->nbytes);
      EXPECT_EQ(r->info.ne, member->ne);
    }
    EXPECT_EQ(plan->Find(kNorm)->info.type, GgmlType::kF32);
    EXPECT_EQ(plan->total_bytes, def == 0 ? kBaseline : kNormBytes + kUpQ8 + kDownQ8);
  }
}

TEST_F(DualTest, VariantOverrideReplacesTheFileDefault) {
  auto dual = DualFile::Write(dir_.File("d.gguf"), DualSpec{.default_variant = 0});
  auto file = dual->Open();
  ASSERT_NE(file, nullptr);
  absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*file, VariantOptions{.variant = 1});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->Find(kUp)->info.type, GgmlType::kQ8_0);
}

TEST_F(DualTest, MissingGlobalMemberIsAnErrorNamingIt) {
  auto dual = DualFile::Write(dir_.File("d.gguf"), DualSpec{.default_variant = 2});
  auto file = dual->Open();
  ASSERT_NE(file, nullptr);
  absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*file);
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.status().message(), HasSubstr("blk.0.ffn_up_exps.weight.v2"));
}

// Budget mode: promote_order puts the big tensor first so that 4 MiB exercises skip-and-continue.
TEST_F(DualTest, BudgetModeMatchesTheHandComputedGreedy) {
  auto dual = DualFile::Write(dir_.File("budget.gguf"), DualSpec{.order = {kUp, kDown}});
  auto file = dual->Open();
  ASSERT_NE(file, nullptr);
  struct Case {
    uint64_t budget_mb;
    std::vector<std::string> promoted;
    uint64_t total;
  };
  const Case cases[] = {
      {3, {}, kBaseline},                                      // below the baseline: nothing, warning
      {4, {kDown}, kBaseline + kDownDelta},                    // up does not fit, down still does
      {5, {kUp, kDown}, kBaseline + kUpDelta + kDownDelta},    // full promotion
      {1000, {kUp, kDown}, kBaseline + kUpDelta + kDownDelta},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.budget_mb);
    absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*file, VariantOptions{.budget_mb = c.budget_mb});
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_EQ(plan->mode, VariantMode::kBudget);
    EXPECT_EQ(plan->budget_bytes, c.budget_mb * kMiB);
    EXPECT_EQ(plan->promoted, c.promoted);
    EXPECT_EQ(plan->baseline_bytes, kBaseline);
    EXPECT_EQ(plan->total_bytes, c.total);
    EXPECT_LE(plan->total_bytes, std::max(plan->budget_bytes, kBaseline));
    for (const char* name : {kUp, kDown}) {
      const bool promoted = std::find(c.promoted.begin(), c.promoted.end(), name) != c.promoted.end();
      EXPECT_EQ(plan->Find(name)->info.type, promoted ? GgmlType::kQ8_0 : GgmlType::kQ6_K) << name;
    }
    if (c.budget_mb == 3) {
      EXPECT_THAT(plan->warnings, ElementsAre(HasSubstr("exceeds the budget")));
    } else {
      EXPECT_THAT(plan->warnings, IsEmpty());
    }
  }
}

TEST_F(DualTest, BudgetFromTheFileKeyAndOrderIgnoresNonGroupsAndDuplicates) {
  auto dual = DualFile::Write(dir_.File("budget.gguf"),
                              DualSpec{.budget_mb = 5, .order = {kNorm, "no.such.tensor", kDown, kDown, kUp}});
  auto file = dual->Open();
  ASSERT_NE(file, nullptr);
  absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*file);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->mode, VariantMode::kBudget);
  EXPECT_THAT(plan->promoted, ElementsAre(kDown, kUp));
  // An explicit variant request wins over the file's budget, with a warning.
  plan = ResolveTensorVariants(*file, VariantOptions{.variant = 0});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->mode, VariantMode::kGlobal);
  EXPECT_THAT(plan->warnings, ElementsAre(HasSubstr("budget_mb=5")));
  // budget_mb = 0 turns budget mode off.
  plan = ResolveTensorVariants(*file, VariantOptions{.budget_mb = 0});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->mode, VariantMode::kGlobal);
  EXPECT_EQ(plan->total_bytes, kBaseline);
}

TEST_F(DualTest, BudgetWithoutPromoteOrderKeepsV0AndWarns) {
  auto dual = DualFile::Write(dir_.File("noorder.gguf"), DualSpec{.budget_mb = 100});
  auto file = dual->Open();
  ASSERT_NE(file, nullptr);
  absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*file);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->mode, VariantMode::kBudget);
  EXPECT_THAT(plan->promoted, IsEmpty());
  EXPECT_EQ(plan->total_bytes, kBaseline);
  EXPECT_THAT(plan->warnings, ElementsAre(HasSubstr("promote_order")));
}

TEST_F(DualTest, SiblingsWithoutKeysResolveToV0WithAWarning) {
  auto dual = DualFile::Write(dir_.File("nokeys.gguf"), DualSpec{.keys = false});
  auto file = dual->Open();
  ASSERT_NE(file, nullptr);
  absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*file);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->mode, VariantMode::kGlobal);
  EXPECT_EQ(plan->variant, 0u);
  EXPECT_THAT(Names(*plan), ElementsAre(kNorm, kUp, kDown));
  EXPECT_EQ(plan->Find(kUp)->info.type, GgmlType::kQ6_K);
  EXPECT_THAT(plan->warnings, ElementsAre(HasSubstr("no general.tensor_variant.* keys")));
}

// Poisoned members: whatever phase is loaded, the bytes handed out are exactly the selected
// member's, never the poison of the other one.
TEST_F(DualTest, LoadedBytesAreExactlyTheSelectedMembers) {
  struct Case {
    Poison poison;
    VariantOptions options;
    std::vector<std::string> order;
  };
  const Case cases[] = {
      {Poison::kV1, VariantOptions{.variant = 0}, {}},
      {Poison::kV0, VariantOptions{.variant = 1}, {}},
      {Poison::kNone, VariantOptions{.budget_mb = 4}, {kUp, kDown}},
  };
  for (const Case& c : cases) {
    auto dual = DualFile::Write(dir_.File("poison.gguf"), DualSpec{.poison = c.poison, .order = c.order});
    auto file = dual->Open();
    ASSERT_NE(file, nullptr);
    absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*file, c.options);
    ASSERT_TRUE(plan.ok()) << plan.status();
    const std::vector<gguf::TensorInfo> infos = plan->Infos();
    absl::StatusOr<std::vector<LoadedTensor>> loaded = LoadTensorBytes(*file, infos);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ASSERT_EQ(loaded->size(), 3u);
    for (size_t i = 0; i < loaded->size(); ++i) {
      const LoadedTensor& t = (*loaded)[i];
      const ResolvedTensor& r = plan->tensors[i];
      SCOPED_TRACE(r.member_name);
      EXPECT_EQ(t.info.name, r.info.name);
      const std::vector<uint8_t>& want = dual->Content(r.member_name);
      ASSERT_EQ(t.bytes().size(), want.size());
      EXPECT_TRUE(std::equal(want.begin(), want.end(), t.bytes().begin()));
      // The poison pattern is all 0xFF / NaN words, the real content never is.
      EXPECT_NE(t.bytes()[0] & t.bytes()[1] & t.bytes()[2], 0xFF);
    }
  }
}

// The bytes read while loading a phase are the selected bytes (±1%): unselected members, a full
// 45% of this file in phase 0, are never read.
TEST_F(DualTest, BytesReadMatchTheSelection) {
  auto dual = DualFile::Write(dir_.File("io.gguf"), DualSpec{.order = {kUp, kDown}});
  auto file = dual->Open();
  ASSERT_NE(file, nullptr);
  for (const VariantOptions& options :
       {VariantOptions{.variant = 0}, VariantOptions{.variant = 1}, VariantOptions{.budget_mb = 4}}) {
    absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*file, options);
    ASSERT_TRUE(plan.ok()) << plan.status();
    const std::vector<gguf::TensorInfo> infos = plan->Infos();
    const uint64_t before = ProcRchar();
    absl::StatusOr<std::vector<LoadedTensor>> loaded = LoadTensorBytes(*file, infos);
    const uint64_t after = ProcRchar();
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    const double read = static_cast<double>(after - before);
    const double selected = static_cast<double>(plan->total_bytes);
    EXPECT_NEAR(read, selected, selected * 0.01) << "mode " << VariantModeName(plan->mode);
    EXPECT_LT(read, static_cast<double>(file->file_size()) * 0.9);
  }
}

TEST_F(DualTest, DescribeListsEveryPhaseAndTheBudget) {
  auto dual = DualFile::Write(dir_.File("describe.gguf"), DualSpec{.order = {kUp, kDown}});
  auto file = dual->Open();
  ASSERT_NE(file, nullptr);
  absl::StatusOr<std::string> text = DescribeTensorVariants(*file, 4);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_THAT(*text, HasSubstr("2 groups, variants 0..1"));
  EXPECT_THAT(*text, HasSubstr("phase 0:"));
  EXPECT_THAT(*text, HasSubstr("v0 Q6_K: 2 tensors"));
  EXPECT_THAT(*text, HasSubstr("v1 Q8_0: 2 tensors"));
  EXPECT_THAT(*text, HasSubstr("budget 4 MiB:"));
  EXPECT_THAT(*text, HasSubstr("promoted to v1: 1 of 2 groups"));
}

// --- Small files built tensor by tensor. ----------------------------------------------------------

struct TensorSpec {
  std::string name;
  GgmlType type;
  std::vector<int64_t> ne;
};

std::unique_ptr<gguf::GgufFile> WriteAndOpen(const std::string& path, const std::vector<TensorSpec>& tensors,
                                             const std::vector<std::pair<std::string, gguf::Value>>& keys) {
  gguf::GgufWriter w;
  for (const auto& [k, v] : keys) w.SetValue(k, v);
  for (const TensorSpec& t : tensors) {
    absl::Status s = w.AddTensor(t.name, t.type, t.ne, [](std::span<uint8_t> out) {
      std::memset(out.data(), 0x11, out.size());
      return absl::OkStatus();
    });
    EXPECT_TRUE(s.ok()) << s;
  }
  absl::Status s = w.WriteFile(path);
  EXPECT_TRUE(s.ok()) << s;
  auto f = gguf::GgufFile::Open(path);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? std::move(*f) : nullptr;
}

TEST_F(DualTest, GroupMembersMustHaveIdenticalShapes) {
  auto file = WriteAndOpen(dir_.File("shape.gguf"),
                           {{"a_exps.weight", GgmlType::kQ8_0, {256, 4}},
                            {"a_exps.weight.v1", GgmlType::kQ8_0, {256, 8}}},
                           {{std::string(kTensorVariantDefaultKey), gguf::Value::Uint32(0)}});
  ASSERT_NE(file, nullptr);
  absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*file);
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.status().message(), HasSubstr("group 'a_exps.weight'"));
  EXPECT_THAT(plan.status().message(), HasSubstr("[256, 8]"));
}

TEST_F(DualTest, KeysAcceptAnyIntegerTypeButNotNegativeOrText) {
  const std::vector<TensorSpec> tensors = {{"a_exps.weight", GgmlType::kQ8_0, {256, 4}},
                                           {"a_exps.weight.v1", GgmlType::kF16, {256, 4}}};
  for (const gguf::Value& v : {gguf::Value::Int32(1), gguf::Value::Uint64(1), gguf::Value::Uint8(1)}) {
    auto file = WriteAndOpen(dir_.File("int.gguf"), tensors, {{std::string(kTensorVariantDefaultKey), v}});
    ASSERT_NE(file, nullptr);
    absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*file);
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_EQ(plan->Find("a_exps.weight")->info.type, GgmlType::kF16);
  }
  for (const gguf::Value& v : {gguf::Value::Int32(-1), gguf::Value::String("1")}) {
    auto file = WriteAndOpen(dir_.File("bad.gguf"), tensors, {{std::string(kTensorVariantDefaultKey), v}});
    ASSERT_NE(file, nullptr);
    absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*file);
    ASSERT_FALSE(plan.ok());
    EXPECT_THAT(plan.status().message(), HasSubstr("general.tensor_variant.default"));
  }
}

TEST_F(DualTest, KeysWithoutGroupsWarnAndChangeNothing) {
  auto file = WriteAndOpen(dir_.File("plain.gguf"), {{"a_exps.weight", GgmlType::kQ8_0, {256, 4}}},
                           {{std::string(kTensorVariantDefaultKey), gguf::Value::Uint32(1)}});
  ASSERT_NE(file, nullptr);
  absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*file);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->mode, VariantMode::kNone);
  EXPECT_THAT(Names(*plan), ElementsAre("a_exps.weight"));
  EXPECT_THAT(plan->warnings, ElementsAre(HasSubstr("no '<name>.v<N>' tensors")));
  absl::StatusOr<std::string> text = DescribeTensorVariants(*file, std::nullopt);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "");
}

TEST_F(DualTest, OrdinaryFilePassesThroughWithoutWarnings) {
  auto file = WriteAndOpen(dir_.File("plain.gguf"),
                           {{"a.weight", GgmlType::kF32, {32}}, {"b.weight", GgmlType::kQ8_0, {64, 2}}}, {});
  ASSERT_NE(file, nullptr);
  absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*file);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->mode, VariantMode::kNone);
  EXPECT_THAT(Names(*plan), ElementsAre("a.weight", "b.weight"));
  EXPECT_EQ(plan->total_bytes, 128u + 2 * 68u);
  EXPECT_THAT(plan->warnings, IsEmpty());
}

TEST_F(DualTest, SecondSiblingIsSelectableGloballyButNotByBudget) {
  const std::vector<TensorSpec> tensors = {{"a_exps.weight", GgmlType::kQ4_0, {256, 4}},
                                           {"a_exps.weight.v1", GgmlType::kQ8_0, {256, 4}},
                                           {"a_exps.weight.v2", GgmlType::kF32, {256, 4}}};
  auto file = WriteAndOpen(dir_.File("v2.gguf"), tensors,
                           {{std::string(kTensorVariantDefaultKey), gguf::Value::Uint32(2)},
                            {std::string(kTensorVariantOrderKey), gguf::Value::StringArray({"a_exps.weight"})}});
  ASSERT_NE(file, nullptr);
  absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*file);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->Find("a_exps.weight")->info.type, GgmlType::kF32);
  EXPECT_EQ(plan->dropped, 2u);
  EXPECT_EQ(plan->max_variant, 2u);
  plan = ResolveTensorVariants(*file, VariantOptions{.budget_mb = 1});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->Find("a_exps.weight")->info.type, GgmlType::kQ8_0);  // v1, never v2
}

TEST_F(DualTest, LoadRejectsRangesOutsideTheFile) {
  auto file = WriteAndOpen(dir_.File("small.gguf"), {{"a.weight", GgmlType::kF32, {32}}}, {});
  ASSERT_NE(file, nullptr);
  gguf::TensorInfo bogus = file->tensors()[0];
  bogus.nbytes = uint64_t{1} << 50;  // must fail before allocating a petabyte
  absl::StatusOr<std::vector<LoadedTensor>> loaded = LoadTensorBytes(*file, std::span(&bogus, 1));
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(loaded.status().message(), HasSubstr("a.weight"));
}

// Type 42 (§5.3 (1), N5): the same tensors read as IQ3_A770 (102 bytes / 256) when the file has
// tensor_variant keys, and as upstream Q2_0 when it has none and Q2_0 sizes are contiguous. The
// type-42 tensor is last, so both readings are contiguous and only the keys decide.
TEST_F(DualTest, Type42IsIq3A770OnlyInTwinFiles) {
  const std::vector<TensorSpec> tensors = {{"a_exps.weight", GgmlType::kQ8_0, {256, 4, 2}},
                                           {"a_exps.weight.v1", GgmlType::kIq3A770, {256, 4, 2}}};
  auto twin = WriteAndOpen(dir_.File("t42keys.gguf"), tensors,
                           {{std::string(kTensorVariantCountKey), gguf::Value::Uint32(2)},
                            {std::string(kTensorVariantDefaultKey), gguf::Value::Uint32(1)}});
  ASSERT_NE(twin, nullptr);
  EXPECT_EQ(twin->FindTensor("a_exps.weight.v1")->type, GgmlType::kIq3A770);
  EXPECT_EQ(twin->FindTensor("a_exps.weight.v1")->nbytes, 8u * 102);
  EXPECT_THAT(twin->type42_decision(), HasSubstr("IQ3_A770"));
  absl::StatusOr<VariantPlan> plan = ResolveTensorVariants(*twin);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->Find("a_exps.weight")->info.type, GgmlType::kIq3A770);
  EXPECT_EQ(plan->Find("a_exps.weight")->info.nbytes, 8u * 102);

  auto plain = WriteAndOpen(dir_.File("t42plain.gguf"), tensors, {});
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(plain->FindTensor("a_exps.weight.v1")->type, GgmlType::kQ2_0);
  EXPECT_EQ(plain->FindTensor("a_exps.weight.v1")->nbytes, 8u * 4 * 18);
  EXPECT_THAT(plain->type42_decision(), HasSubstr("Q2_0"));
}

// Without keys, a type-42 tensor followed by another one is IQ3_A770 when only the 102-byte
// reading gives contiguous offsets.
TEST_F(DualTest, Type42WithoutKeysFollowsContiguity) {
  auto file = WriteAndOpen(dir_.File("t42contig.gguf"),
                           {{"a_exps.weight", GgmlType::kIq3A770, {256, 4, 2}},
                            {"b.weight", GgmlType::kF32, {64}}},
                           {});
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->FindTensor("a_exps.weight")->type, GgmlType::kIq3A770);
  EXPECT_THAT(file->type42_decision(), HasSubstr("contiguous"));
}

}  // namespace
}  // namespace moed

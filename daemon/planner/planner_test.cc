// The planner without hardware: CPU plans for the tiny fixtures and for a tiny Phase Twin made by
// `moed-model` (run as a program), GPU plans on synthetic device lists with 35B/122B/397B-sized
// footprints (phase rule, budget mode, fallback to fewer GPUs, skipped Level Zero devices, nothing
// fits), the shared partition algorithm, and the printed forms of a plan.
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "loader/model/layer_partition.h"
#include "daemon/planner/planner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "loader/gguf/gguf_file.h"
#include "loader/tensor_variant.h"
#include "nlohmann/json.hpp"
#include "workers/engine/loaded_model.h"
#include "workers/engine/pipeline.h"

namespace moed::planner {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

std::string Fixture(const std::string& model) {
  return std::string(MOED_TEST_DATA_DIR) + "/qwen35moe-tiny/" + model + "/" + model + "-f32.gguf";
}

Device Gpu(int index, uint64_t free_bytes, uint64_t total_bytes = 80 * kGiB,
           std::string name = "NVIDIA H100 80GB HBM3") {
  Device d;
  d.backend = DeviceBackend::kCuda;
  d.index = index;
  d.name = std::move(name);
  d.total_bytes = total_bytes;
  d.free_bytes = free_bytes;
  d.compute_major = 9;
  d.arch = "sm_90";
  d.can_compute = true;
  return d;
}

Device H200(int index) { return Gpu(index, 139 * kGiB, 141 * kGiB, "NVIDIA H200"); }

Device Arc(int index) {
  Device d;
  d.backend = DeviceBackend::kLevelZero;
  d.index = index;
  d.name = "Intel(R) Arc(TM) A770 Graphics";
  d.total_bytes = 16 * kGiB;
  d.free_bytes = 16 * kGiB;
  d.arch = "8086:56a0";
  d.can_compute = false;
  d.note = "discovered, no compute backend yet";
  return d;
}

Device Host(uint64_t available) {
  Device d;
  d.backend = DeviceBackend::kCpu;
  d.name = "Test CPU";
  d.total_bytes = available * 2;
  d.free_bytes = available;
  d.can_compute = true;
  return d;
}

// Qwen3.5-MoE shapes (synth's presets): every 4th layer full attention with 2 KV heads of 256
// (2048 bytes/token at F16), the others Gated DeltaNet with state (3 x conv_dim + Hv x 128 x 128)
// x 4 bytes. Expert bytes per layer per phase, the rest of a layer at Q8_0.
struct Shape {
  int n_layer;
  uint64_t expert_v0, expert_v1;  // bytes of the three expert tensors of one layer
  uint64_t rest_full, rest_linear;
  uint64_t embd;
  uint64_t state;
};

ModelFootprint Footprint(const Shape& s, const std::string& name, const std::string& label, bool twin) {
  ModelFootprint f;
  f.name = name;
  f.architecture = "qwen35moe";
  f.size_label = label;
  f.context_length = 262144;
  PhaseWeights v0, v1;
  v1.variant = 1;
  v0.first_bytes = v1.first_bytes = s.embd;
  v0.last_bytes = v1.last_bytes = s.embd + 8192;
  for (int l = 0; l < s.n_layer; ++l) {
    const bool full = (l + 1) % 4 == 0;
    f.layers.push_back(full ? LayerFootprint{LayerKind::kFullAttention, 2048, 0}
                            : LayerFootprint{LayerKind::kLinearAttention, 0, s.state});
    const uint64_t rest = full ? s.rest_full : s.rest_linear;
    v0.layer_bytes.push_back(s.expert_v0 + rest);
    v1.layer_bytes.push_back(s.expert_v1 + rest);
  }
  auto held = [](const PhaseWeights& w) {
    uint64_t sum = w.first_bytes + w.last_bytes;
    for (uint64_t b : w.layer_bytes) sum += b;
    return sum;
  };
  v0.file_bytes = held(v0);
  v1.file_bytes = held(v1);
  f.phases.push_back(v0);
  if (twin) {
    f.phases.push_back(v1);
    f.max_variant = 1;
    for (int l = 0; l < s.n_layer; ++l) {
      for (const char* t : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"}) {
        f.promotions.push_back(Promotion{"blk." + std::to_string(l) + "." + t + ".weight", l, false, false,
                                         (s.expert_v1 - s.expert_v0) / 3});
      }
    }
  }
  return f;
}

// 35B-A3B: 40 layers, experts [2048, 512, 256] x 3; IQ3_A770 (102 B / 256) vs Q4_K (144 B / 256).
ModelFootprint Twin35B() {
  const uint64_t weights = uint64_t{3} * 2048 * 512 * 256;
  return Footprint({40, weights / 256 * 102, weights / 256 * 144, 34'000'000, 41'000'000, 540'000'000,
                    (3 * 8192 + 32 * 128 * 128) * 4},
                   "synthetic 35B-A3B twin", "35B-A3B", true);
}

// 122B-A10B: 48 layers, experts [3072, 1024, 256] x 3 at Q4_K.
ModelFootprint Plain122B() {
  const uint64_t weights = uint64_t{3} * 3072 * 1024 * 256;
  return Footprint({48, weights / 256 * 144, 0, 60'000'000, 70'000'000, 810'000'000,
                    (3 * 12288 + 64 * 128 * 128) * 4},
                   "synthetic 122B-A10B", "122B-A10B", false);
}

// 397B-A17B: 60 layers, experts [4096, 1024, 512] x 3 at about 3.2 bits per weight.
ModelFootprint Plain397B() {
  const uint64_t weights = uint64_t{3} * 4096 * 1024 * 512;
  return Footprint({60, weights / 10 * 4, 0, 90'000'000, 100'000'000, 1'080'000'000,
                    (3 * 12288 + 64 * 128 * 128) * 4},
                   "synthetic 397B-A17B", "397B-A17B", false);
}

uint64_t SlotBytes(const ModelFootprint& f, int64_t context) {
  uint64_t sum = 0;
  for (const LayerFootprint& l : f.layers) sum += l.kv_bytes_per_token * context + l.state_bytes;
  return sum;
}

// Every plan's invariants: contiguous ranges covering the trunk, stage sums, capacities held.
void ExpectConsistent(const Plan& plan, const ModelFootprint& f) {
  ASSERT_FALSE(plan.stages.empty());
  EXPECT_EQ(plan.stages.front().first_layer, 0);
  EXPECT_EQ(plan.stages.back().last_layer, f.n_layer());
  EXPECT_TRUE(plan.stages.front().embeds);
  EXPECT_TRUE(plan.stages.back().samples);
  uint64_t weights = 0;
  for (size_t s = 0; s < plan.stages.size(); ++s) {
    const PlanStage& st = plan.stages[s];
    EXPECT_EQ(st.index, static_cast<int>(s));
    EXPECT_LT(st.first_layer, st.last_layer);
    if (s > 0) {
      EXPECT_EQ(st.first_layer, plan.stages[s - 1].last_layer);
    }
    EXPECT_EQ(st.full_layers + st.linear_layers, st.last_layer - st.first_layer);
    EXPECT_EQ(st.total_bytes, st.weight_bytes + st.kv_bytes + st.state_bytes);
    if (st.capacity_bytes > 0) {
      EXPECT_LE(st.total_bytes, st.capacity_bytes) << "stage " << s;
      // KV and state use at most kv_memory_fraction of what the weights leave.
      EXPECT_LE(static_cast<double>(st.kv_bytes + st.state_bytes),
                0.9 * static_cast<double>(st.capacity_bytes - st.weight_bytes) + 1)
          << "stage " << s;
    }
    weights += st.weight_bytes;
  }
  EXPECT_EQ(plan.weight_bytes, weights);
  EXPECT_GE(plan.slots, 1);
  EXPECT_LE(plan.slots, plan.max_running);
}

// --- PartitionLayers ------------------------------------------------------------------------------

TEST(PartitionLayersTest, MinimisesTheLargestStage) {
  const std::vector<uint64_t> cost = {5, 1, 1, 1, 1, 1, 5};
  auto r = PartitionLayers(cost, 2);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(*r, ElementsAre(Pair(0, 4), Pair(4, 7)));  // 8 | 7: of the tie with 7 | 8, the later cut
  auto three = PartitionLayers(cost, 3);
  ASSERT_TRUE(three.ok());
  EXPECT_THAT(*three, ElementsAre(Pair(0, 1), Pair(1, 6), Pair(6, 7)));  // 5 | 5 | 5
}

TEST(PartitionLayersTest, HonoursCapacities) {
  const std::vector<uint64_t> cost = {4, 4, 4, 4, 4, 4};
  const std::vector<uint64_t> small_second = {100, 8};
  auto r = PartitionLayers(cost, small_second);
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(*r, ElementsAre(Pair(0, 4), Pair(4, 6)));
  const std::vector<uint64_t> too_small = {8, 8};
  EXPECT_EQ(PartitionLayers(cost, too_small).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(PartitionLayers(cost, 7).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PartitionLayers(cost, 0).status().code(), absl::StatusCode::kInvalidArgument);
  // Saturating sums: absurd costs are never "small".
  const std::vector<uint64_t> huge = {UINT64_MAX, UINT64_MAX, 1};
  const std::vector<uint64_t> caps = {UINT64_MAX - 1, UINT64_MAX - 1, UINT64_MAX - 1};
  EXPECT_FALSE(PartitionLayers(huge, caps).ok());
}

// The engine's SplitLayers and the planner's cut agree (weights only, equal stages).
TEST(PartitionLayersTest, AgreesWithTheEngineSplit) {
  for (const char* name : {"tiny-a", "tiny-b"}) {
    auto m = engine::LoadModel(Fixture(name));
    ASSERT_TRUE(m.ok()) << m.status();
    auto file = gguf::GgufFile::Open(Fixture(name));
    ASSERT_TRUE(file.ok());
    auto fp = FootprintFromFile(**file);
    ASSERT_TRUE(fp.ok()) << fp.status();
    const PhaseWeights& w = fp->phases.front();
    std::vector<uint64_t> cost = w.layer_bytes;
    cost.front() += w.first_bytes;
    cost.back() += w.last_bytes;
    for (int k = 1; k <= fp->n_layer(); ++k) {
      auto engine = engine::SplitLayers((*m)->description, k);
      auto mine = PartitionLayers(cost, k);
      ASSERT_TRUE(engine.ok() && mine.ok());
      EXPECT_EQ(*engine, *mine) << name << " k=" << k;
    }
  }
}

// --- Footprints and CPU plans of the fixtures -----------------------------------------------------

TEST(FootprintTest, DescribesTinyA) {
  auto file = gguf::GgufFile::Open(Fixture("tiny-a"));
  ASSERT_TRUE(file.ok());
  auto fp = FootprintFromFile(**file);
  ASSERT_TRUE(fp.ok()) << fp.status();
  EXPECT_EQ(fp->architecture, "qwen35moe");
  EXPECT_FALSE(fp->twin());
  ASSERT_EQ(fp->n_layer(), 4);
  ASSERT_EQ(fp->phases.size(), 1u);
  EXPECT_EQ(fp->layers[3].kind, LayerKind::kFullAttention);
  EXPECT_EQ(fp->layers[3].kv_bytes_per_token, 2u * (32 + 32) * 2);
  EXPECT_EQ(fp->layers[0].state_bytes, (3u * 128 + 4 * 16 * 16) * 4);
  EXPECT_GT(fp->context_length, 0);
  uint64_t file_bytes = 0;
  for (const gguf::TensorInfo& t : (*file)->tensors()) file_bytes += t.nbytes;
  const PhaseWeights& w = fp->phases.front();
  EXPECT_EQ(w.file_bytes, file_bytes);
  uint64_t held = w.first_bytes + w.last_bytes;
  for (uint64_t b : w.layer_bytes) held += b;
  EXPECT_EQ(held, file_bytes);  // untied head, no MTP: every byte on exactly one stage
}

TEST(CpuPlanTest, TwoStagesForTheFixtures) {
  for (const char* name : {"tiny-a", "tiny-b"}) {
    auto file = gguf::GgufFile::Open(Fixture(name));
    ASSERT_TRUE(file.ok());
    auto fp = FootprintFromFile(**file);
    ASSERT_TRUE(fp.ok());
    PlannerOptions options;
    options.context_length = 1000;  // rounded up to whole KV blocks
    auto plan = MakePlan(*fp, {}, options);
    ASSERT_TRUE(plan.ok()) << plan.status();
    ExpectConsistent(*plan, *fp);
    EXPECT_EQ(plan->backend, DeviceBackend::kCpu);
    EXPECT_EQ(plan->mode, PlanMode::kNone);
    ASSERT_EQ(plan->stages.size(), 2u);
    EXPECT_EQ(plan->stages[0].device_id, "cpu");
    EXPECT_EQ(plan->slots, 16);  // host memory unknown: the scheduler's cap
    EXPECT_EQ(plan->context_length, 1008);
    EXPECT_EQ(plan->host_memory_bytes, 0u);
    // The CPU engine keeps K/V in F32: twice the description's F16 figure.
    const PlanStage& last = plan->stages.back();
    uint64_t kv_per_token = 0;
    for (int l = last.first_layer; l < last.last_layer; ++l) kv_per_token += fp->layers[l].kv_bytes_per_token;
    EXPECT_GT(kv_per_token, 0u);
    EXPECT_EQ(last.kv_bytes, uint64_t{16} * 1008 * 2 * kv_per_token);
    EXPECT_EQ(last.kv_blocks, 16 * 1008 / 16);
    EXPECT_TRUE(plan->warnings.empty()) << plan->warnings.front();
  }
}

TEST(CpuPlanTest, FixedKvPoolBoundsTheContextPerSlot) {
  auto file = gguf::GgufFile::Open(Fixture("tiny-a"));
  ASSERT_TRUE(file.ok());
  auto fp = FootprintFromFile(**file);
  ASSERT_TRUE(fp.ok());
  PlannerOptions options;
  options.context_length = 4096;
  options.max_running = 8;
  options.kv_blocks = 512;  // 64 blocks of 16 tokens per slot
  auto plan = MakePlan(*fp, {}, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->context_length, 1024);
  EXPECT_EQ(plan->stages.back().kv_blocks, 512);
  EXPECT_THAT(plan->warnings, ElementsAre(HasSubstr("limits each of the 8 slots to 1024 tokens")));

  options.kv_blocks = 7;
  auto too_small = MakePlan(*fp, {}, options);
  EXPECT_EQ(too_small.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_small.status().message(), HasSubstr("cache.kv_blocks = 7"));
}

TEST(CpuPlanTest, HostMemoryLimitsSlotsAndStagesAreClamped) {
  auto file = gguf::GgufFile::Open(Fixture("tiny-a"));
  ASSERT_TRUE(file.ok());
  auto fp = FootprintFromFile(**file);
  ASSERT_TRUE(fp.ok());
  PlannerOptions options;
  options.context_length = 4096;
  options.cpu_stages = 6;
  const uint64_t weights = fp->phases.front().file_bytes;
  uint64_t slot = 0;
  for (const LayerFootprint& l : fp->layers) slot += l.kv_bytes_per_token * 2 * 4096 + l.state_bytes;
  const Device host = Host(weights + 5 * slot);  // 0.9 x 5 slots: 4 fit
  auto plan = MakePlan(*fp, std::vector<Device>{host}, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->stages.size(), 4u);
  EXPECT_EQ(plan->slots, 4);
  EXPECT_EQ(plan->per_slot_bytes, slot);
  EXPECT_EQ(plan->host_memory_bytes, weights + 5 * slot);
  EXPECT_EQ(plan->stages[0].device_name, "Test CPU");
  EXPECT_THAT(plan->warnings, ElementsAre(HasSubstr("workers.cpu_stages = 6 but the model has 4 layers")));

  auto none = MakePlan(*fp, std::vector<Device>{Host(weights)}, options);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(none.status().message(), HasSubstr("does not fit in host memory"));
}

// --- A tiny Phase Twin made by moed-model ---------------------------------------------------------

class TinyTwinTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string tmpl = ::testing::TempDir() + "/planner_twin.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = new std::string(tmpl);
    std::ofstream(Path("ranking.txt")) << "blk.3.ffn_down_exps.weight\nblk.0.ffn_up_exps.weight\n"
                                          "output.weight\nblk.3.ffn_down_exps.weight\nblk.1.ffn_gate_exps.weight\n"
                                          "blk.2.ffn_up_exps.weight\nblk.0.ffn_down_exps.weight\n";
    ASSERT_EQ(Run("synth " + Path("base.gguf") + " --preset tiny --experts IQ3_A770"), 0);
    ASSERT_EQ(Run("synth " + Path("variant.gguf") + " --preset tiny --experts Q4_K --seed 7"), 0);
    ASSERT_EQ(Run("twin " + Path("base.gguf") + " " + Path("variant.gguf") + " " + Path("twin.gguf") +
                  " --ranking " + Path("ranking.txt")),
              0);
  }
  static void TearDownTestSuite() {
    std::system(("rm -rf '" + *dir_ + "'").c_str());
    delete dir_;
  }
  static std::string Path(const std::string& name) { return *dir_ + "/" + name; }
  static int Run(const std::string& args) {
    const std::string cmd =
        std::string(MOED_BINARY_DIR "/tools/moed-model ") + args + " >>'" + Path("log.txt") + "' 2>&1";
    const int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  void SetUp() override {
    auto f = gguf::GgufFile::Open(Path("twin.gguf"));
    ASSERT_TRUE(f.ok()) << f.status();
    file_ = *std::move(f);
    auto fp = FootprintFromFile(*file_);
    ASSERT_TRUE(fp.ok()) << fp.status();
    fp_ = *std::move(fp);
  }

  static std::string* dir_;
  std::unique_ptr<gguf::GgufFile> file_;
  ModelFootprint fp_;
};
std::string* TinyTwinTest::dir_ = nullptr;

TEST_F(TinyTwinTest, FootprintHasBothPhasesAndTheGreedyInputs) {
  EXPECT_TRUE(fp_.twin());
  EXPECT_EQ(fp_.max_variant, 1u);
  ASSERT_EQ(fp_.phases.size(), 2u);
  EXPECT_EQ(fp_.default_variant, 0u);
  EXPECT_EQ(fp_.default_budget_mb, 0u);
  // Groups only, duplicates once, in ranking order.
  std::vector<std::string> names;
  for (const Promotion& p : fp_.promotions) names.push_back(p.name);
  EXPECT_THAT(names, ElementsAre("blk.3.ffn_down_exps.weight", "blk.0.ffn_up_exps.weight",
                                 "blk.1.ffn_gate_exps.weight", "blk.2.ffn_up_exps.weight",
                                 "blk.0.ffn_down_exps.weight"));
  EXPECT_EQ(fp_.promotions[0].layer, 3);
  for (int v = 0; v <= 1; ++v) {
    auto plan = ResolveTensorVariants(*file_, VariantOptions{static_cast<uint32_t>(v), std::nullopt});
    ASSERT_TRUE(plan.ok());
    EXPECT_EQ(fp_.phases[v].file_bytes, plan->total_bytes);
  }
  EXPECT_GT(fp_.phases[1].layer_bytes[0], fp_.phases[0].layer_bytes[0]);
}

// WithBudget reproduces ResolveTensorVariants for every budget around the interesting range.
TEST_F(TinyTwinTest, BudgetMatchesTheResolver) {
  const uint64_t base_mb = fp_.phases[0].file_bytes >> 20;
  const uint64_t top_mb = (fp_.phases[1].file_bytes >> 20) + 1;
  for (uint64_t mb = base_mb; mb <= top_mb; ++mb) {
    auto resolved = ResolveTensorVariants(*file_, VariantOptions{std::nullopt, mb});
    ASSERT_TRUE(resolved.ok());
    const std::vector<gguf::TensorInfo> tensors = resolved->Infos();
    auto model = DescribeModel(*file_, tensors);
    ASSERT_TRUE(model.ok());
    const PhaseWeights w = fp_.WithBudget(mb);
    EXPECT_EQ(w.file_bytes, resolved->total_bytes) << mb << " MiB";
    for (int l = 0; l < fp_.n_layer(); ++l) EXPECT_EQ(w.layer_bytes[l], model->layers[l].weight_bytes) << l;
    std::vector<std::string> promoted;
    for (size_t i = 0; i < w.promoted.size(); ++i) {
      if (w.promoted[i]) promoted.push_back(fp_.promotions[i].name);
    }
    EXPECT_EQ(promoted, resolved->promoted) << mb << " MiB";
  }
}

TEST_F(TinyTwinTest, CpuPlansFollowTheFileOrTheConfig) {
  PlannerOptions options;
  auto plan = MakePlan(fp_, {}, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectConsistent(*plan, fp_);
  EXPECT_EQ(plan->mode, PlanMode::kVariant);
  EXPECT_EQ(plan->variant, 0u);
  EXPECT_THAT(plan->mode_reason, HasSubstr("general.tensor_variant.default = 0"));
  EXPECT_EQ(plan->file_weight_bytes, fp_.phases[0].file_bytes);
  EXPECT_EQ(plan->context_length, 4096);  // the tiny preset's trained context

  options.variant = 1;
  plan = MakePlan(fp_, {}, options);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->variant, 1u);
  EXPECT_EQ(plan->file_weight_bytes, fp_.phases[1].file_bytes);

  options.variant = 2;
  EXPECT_EQ(MakePlan(fp_, {}, options).status().code(), absl::StatusCode::kNotFound);

  options.variant.reset();
  options.budget_mb = (fp_.phases[1].file_bytes >> 20) + 1;
  plan = MakePlan(fp_, {}, options);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->mode, PlanMode::kBudget);
  EXPECT_EQ(plan->promoted, 5u);
  EXPECT_EQ(plan->promotable, 5u);
  size_t per_stage = 0;
  for (const PlanStage& st : plan->stages) per_stage += st.promoted;
  EXPECT_EQ(per_stage, 5u);
}

// --- GPU plans on synthetic devices ----------------------------------------------------------------

TEST(GpuPlanTest, OneGpuRunsPhaseZero) {
  const ModelFootprint f = Twin35B();
  const std::vector<Device> devices = {Gpu(0, 79 * kGiB)};
  auto plan = MakePlan(f, devices, PlannerOptions{});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectConsistent(*plan, f);
  EXPECT_EQ(plan->backend, DeviceBackend::kCuda);
  EXPECT_EQ(plan->mode, PlanMode::kVariant);
  EXPECT_EQ(plan->variant, 0u);
  EXPECT_EQ(plan->mode_reason, "1 GPU: phase 0");
  ASSERT_EQ(plan->stages.size(), 1u);
  EXPECT_EQ(plan->stages[0].device_id, "cuda:0");
  EXPECT_EQ(plan->stages[0].capacity_bytes, 78 * kGiB);
  EXPECT_EQ(plan->weight_bytes, f.phases[0].file_bytes);
  // Full trained context (262144 tokens, ~5 GiB a slot): memory, not the cap, limits the slots.
  const uint64_t slot = SlotBytes(f, 262144);
  EXPECT_EQ(plan->per_slot_bytes, slot);
  const int expect = static_cast<int>(std::floor(0.9 * static_cast<double>(78 * kGiB - plan->weight_bytes) / slot));
  EXPECT_EQ(plan->slots, expect);
  EXPECT_LT(plan->slots, 16);
}

TEST(GpuPlanTest, TwoGpusSplitPhaseOne) {
  const ModelFootprint f = Twin35B();
  const std::vector<Device> devices = {Gpu(0, 79 * kGiB), Gpu(1, 79 * kGiB)};
  auto plan = MakePlan(f, devices, PlannerOptions{});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectConsistent(*plan, f);
  EXPECT_EQ(plan->variant, 1u);
  EXPECT_EQ(plan->mode_reason, "2 GPUs: phase 1");
  ASSERT_EQ(plan->stages.size(), 2u);
  EXPECT_EQ(plan->stages[1].device_id, "cuda:1");
  EXPECT_EQ(plan->weight_bytes, f.phases[1].file_bytes);
  EXPECT_EQ(plan->slots, 16);  // each GPU holds half the KV: the scheduler's cap now binds
  // Balanced: the stages differ by less than one layer plus the embedding.
  const int64_t diff = static_cast<int64_t>(plan->stages[0].total_bytes) - static_cast<int64_t>(plan->stages[1].total_bytes);
  EXPECT_LT(std::llabs(diff), static_cast<int64_t>(f.phases[1].layer_bytes[0] + SlotBytes(f, 262144) / 4));
  EXPECT_EQ(plan->stages[0].first_layer, 0);
  EXPECT_EQ(plan->stages[0].last_layer, 20);

  // A configured phase wins over the device count.
  PlannerOptions options;
  options.variant = 0;
  plan = MakePlan(f, devices, options);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->variant, 0u);
  EXPECT_EQ(plan->mode_reason, "model.variant = 0");
  EXPECT_EQ(plan->stages.size(), 2u);
}

TEST(GpuPlanTest, PerDeviceBudgetsSelectBudgetMode) {
  const ModelFootprint f = Twin35B();
  const std::vector<Device> devices = {Gpu(0, 79 * kGiB), Gpu(1, 79 * kGiB)};
  PlannerOptions options;
  options.context_length = 32768;
  options.device_budgets = {{"cuda:0", 14 * kGiB}, {"cuda:1", 14 * kGiB}};
  auto plan = MakePlan(f, devices, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectConsistent(*plan, f);
  EXPECT_EQ(plan->mode, PlanMode::kBudget);
  EXPECT_THAT(plan->mode_reason, HasSubstr("devices.budgets"));
  // The file budget: both budgets less the KV/state of 16 slots at 90%.
  const double reserved = std::ceil(static_cast<double>(SlotBytes(f, 32768)) * 16 / 0.9);
  EXPECT_EQ(plan->budget_mb, static_cast<uint64_t>((28 * kGiB - reserved) / kMiB));
  EXPECT_LE(plan->file_weight_bytes, plan->budget_mb * kMiB);
  EXPECT_GT(plan->promoted, 0u);
  EXPECT_LT(plan->promoted, f.promotions.size());
  EXPECT_EQ(plan->stages[0].promoted + plan->stages[1].promoted, plan->promoted);
  EXPECT_EQ(plan->stages[0].capacity_bytes, 14 * kGiB);
  EXPECT_TRUE(plan->stages[0].budget_configured);
  EXPECT_EQ(plan->file_weight_bytes, f.WithBudget(plan->budget_mb).file_bytes);
  const std::string text = FormatPlan(*plan);
  EXPECT_THAT(text, HasSubstr(absl::StrCat("mode      budget ", plan->budget_mb, " MiB, ", plan->promoted,
                                           " of 120 candidate tensors promoted to variant 1 (devices.budgets")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat(plan->stages[1].promoted, " promoted tensors")));
  EXPECT_THAT(text, HasSubstr("of 14.0 GiB (budget)"));
  const nlohmann::json j = nlohmann::json::parse(PlanToJson(*plan));
  EXPECT_EQ(j["mode"], "budget");
  EXPECT_EQ(j["budget_mb"], plan->budget_mb);
  EXPECT_EQ(j["promoted"], plan->promoted);
  EXPECT_EQ(j["stages"][0]["budget_configured"], true);

  // One device budgeted: the other keeps free - reserve, and budget mode still applies. The small
  // one must hold half the weights, so the total promotes only part of the candidates.
  options.device_budgets = {{"cuda:1", 10 * kGiB}, {"cuda:7", 10 * kGiB}};
  plan = MakePlan(f, devices, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectConsistent(*plan, f);
  EXPECT_EQ(plan->mode, PlanMode::kBudget);
  ASSERT_EQ(plan->stages.size(), 2u);
  EXPECT_EQ(plan->stages[0].capacity_bytes, 78 * kGiB);
  EXPECT_FALSE(plan->stages[0].budget_configured);
  EXPECT_EQ(plan->stages[1].capacity_bytes, 10 * kGiB);
  EXPECT_GT(plan->promoted, 0u);
  EXPECT_LT(plan->promoted, f.promotions.size());
  EXPECT_THAT(plan->warnings, ElementsAre(HasSubstr("devices.budgets names 'cuda:7'")));

  // Budgets so large that everything is promoted.
  options.device_budgets = {{"cuda:0", 40 * kGiB}, {"cuda:1", 40 * kGiB}};
  plan = MakePlan(f, devices, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->promoted, f.promotions.size());
  EXPECT_EQ(plan->file_weight_bytes, f.phases[1].file_bytes);

  // A budget above the free memory is held to it.
  options.device_budgets = {{"cuda:0", 100 * kGiB}};
  plan = MakePlan(f, std::vector<Device>{Gpu(0, 79 * kGiB)}, options);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->stages[0].capacity_bytes, 79 * kGiB);
  EXPECT_THAT(plan->warnings, ElementsAre(HasSubstr("but it has 79.0 GiB free")));
}

TEST(GpuPlanTest, TooSmallSecondDeviceFallsBackToOneGpu) {
  const ModelFootprint f = Twin35B();
  const std::vector<Device> devices = {Gpu(0, 79 * kGiB), Gpu(1, 4 * kGiB)};
  auto plan = MakePlan(f, devices, PlannerOptions{});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectConsistent(*plan, f);
  ASSERT_EQ(plan->stages.size(), 1u);
  EXPECT_EQ(plan->stages[0].device_id, "cuda:0");
  EXPECT_EQ(plan->variant, 0u);  // one GPU left: the compact phase
  ASSERT_EQ(plan->warnings.size(), 1u);
  EXPECT_THAT(plan->warnings[0],
              AllOf(HasSubstr("cuda:1 (NVIDIA H100 80GB HBM3) too small"), HasSubstr("2-stage plan (phase 1)"),
                    HasSubstr("it has 3.0 GiB (4.0 GiB free - 1.0 GiB reserve)"),
                    HasSubstr("falling back to 1 GPU")));
}

TEST(GpuPlanTest, LevelZeroDevicesAreReportedAndSkipped) {
  const ModelFootprint f = Twin35B();
  std::vector<Device> devices = {Arc(0), Gpu(0, 79 * kGiB)};
  auto plan = MakePlan(f, devices, PlannerOptions{});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->backend, DeviceBackend::kCuda);
  EXPECT_EQ(plan->stages.size(), 1u);
  EXPECT_THAT(plan->warnings, ElementsAre("Level Zero device level_zero:0 (Intel(R) Arc(TM) A770 Graphics) "
                                          "discovered but skipped: no compute backend yet"));

  // Only Level Zero devices: the CPU serves, and the warning stays.
  auto file = gguf::GgufFile::Open(Fixture("tiny-a"));
  ASSERT_TRUE(file.ok());
  auto tiny = FootprintFromFile(**file);
  ASSERT_TRUE(tiny.ok());
  devices = {Arc(0), Arc(1)};
  plan = MakePlan(*tiny, devices, PlannerOptions{});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->backend, DeviceBackend::kCpu);
  EXPECT_EQ(plan->warnings.size(), 2u);

  // ... unless the CPU is not allowed.
  PlannerOptions gpu_only;
  gpu_only.backends = {config::Backend::kCuda, config::Backend::kLevelZero};
  auto none = MakePlan(*tiny, devices, gpu_only);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(none.status().message(), HasSubstr("no compute backend yet"));
}

TEST(GpuPlanTest, NothingFitsIsAnErrorWithTheNumbers) {
  const ModelFootprint f = Twin35B();
  const std::vector<Device> devices = {Gpu(0, 8 * kGiB, 8 * kGiB, "Small GPU"), Gpu(1, 6 * kGiB, 8 * kGiB, "Small GPU")};
  auto plan = MakePlan(f, devices, PlannerOptions{});
  ASSERT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(plan.status().message(),
              AllOf(HasSubstr("the model does not fit: phase 0 needs"), HasSubstr("of weights plus"),
                    HasSubstr("262144 tokens"), HasSubstr("cuda:0 (Small GPU) has 7.0 GiB (8.0 GiB free - 1.0 GiB reserve)"),
                    HasSubstr("cuda:1 (Small GPU) too small")));
}

TEST(GpuPlanTest, ConfigErrors) {
  const ModelFootprint f = Twin35B();
  const std::vector<Device> devices = {Gpu(0, 79 * kGiB)};
  PlannerOptions options;
  options.device_ids = {"cuda:3"};
  auto plan = MakePlan(f, devices, options);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(), HasSubstr("devices.ids names 'cuda:3', which was not discovered (found: cuda:0)"));
  options = PlannerOptions{};
  options.variant = 1;
  options.budget_mb = 100;
  EXPECT_EQ(MakePlan(f, devices, options).status().code(), absl::StatusCode::kInvalidArgument);
  options = PlannerOptions{};
  options.max_running = 0;
  EXPECT_EQ(MakePlan(f, devices, options).status().code(), absl::StatusCode::kInvalidArgument);
  ModelFootprint broken = f;
  broken.phases[1].layer_bytes.pop_back();
  EXPECT_EQ(MakePlan(broken, devices, PlannerOptions{}).status().code(), absl::StatusCode::kInvalidArgument);
  // devices.ids restricts the GPUs; "cpu" in it allows the CPU.
  options = PlannerOptions{};
  options.device_ids = {"cuda:1"};
  plan = MakePlan(f, std::vector<Device>{Gpu(0, 79 * kGiB), Gpu(1, 79 * kGiB)}, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->stages.size(), 1u);
  EXPECT_EQ(plan->stages[0].device_id, "cuda:1");
}

TEST(GpuPlanTest, LargeModelsSpreadOverMoreGpus) {
  const ModelFootprint big = Plain397B();
  PlannerOptions options;
  options.context_length = 65536;
  auto one = MakePlan(big, std::vector<Device>{H200(0)}, options);
  EXPECT_EQ(one.status().code(), absl::StatusCode::kResourceExhausted);
  auto two = MakePlan(big, std::vector<Device>{H200(0), H200(1)}, options);
  ASSERT_TRUE(two.ok()) << two.status();
  ExpectConsistent(*two, big);
  EXPECT_EQ(two->mode, PlanMode::kNone);
  EXPECT_EQ(two->stages.size(), 2u);
  auto four = MakePlan(big, std::vector<Device>{H200(0), H200(1), H200(2), H200(3)}, options);
  ASSERT_TRUE(four.ok()) << four.status();
  ExpectConsistent(*four, big);
  ASSERT_EQ(four->stages.size(), 4u);
  EXPECT_EQ(four->slots, 16);
  for (const PlanStage& st : four->stages) EXPECT_EQ(st.last_layer - st.first_layer, 15);

  const ModelFootprint mid = Plain122B();
  auto a = MakePlan(mid, std::vector<Device>{Gpu(0, 79 * kGiB)}, options);
  auto b = MakePlan(mid, std::vector<Device>{Gpu(0, 79 * kGiB), Gpu(1, 79 * kGiB)}, options);
  ASSERT_TRUE(a.ok() && b.ok());
  ExpectConsistent(*a, mid);
  ExpectConsistent(*b, mid);
  EXPECT_LT(a->slots, b->slots);  // a second GPU buys KV room
}

// --- Printed forms ---------------------------------------------------------------------------------

ModelFootprint SmallTwin() {
  ModelFootprint f;
  f.name = "demo";
  f.architecture = "qwen35moe";
  f.context_length = 4096;
  PhaseWeights v0, v1;
  v1.variant = 1;
  for (int l = 0; l < 4; ++l) {
    const bool full = l == 3;
    f.layers.push_back(full ? LayerFootprint{LayerKind::kFullAttention, 1024, 0}
                            : LayerFootprint{LayerKind::kLinearAttention, 0, 4 * kMiB});
    v0.layer_bytes.push_back(100 * kMiB);
    v1.layer_bytes.push_back(150 * kMiB);
  }
  v0.first_bytes = v1.first_bytes = 50 * kMiB;
  v0.last_bytes = v1.last_bytes = 50 * kMiB;
  v0.file_bytes = 500 * kMiB;
  v1.file_bytes = 700 * kMiB;
  f.phases = {v0, v1};
  f.max_variant = 1;
  return f;
}

TEST(FormatPlanTest, TextIsStableAndComplete) {
  const std::vector<Device> devices = {Arc(0), Gpu(0, 3 * kGiB, 4 * kGiB, "GPU A"), Gpu(1, 3 * kGiB, 4 * kGiB, "GPU B")};
  auto plan = MakePlan(SmallTwin(), devices, PlannerOptions{});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(FormatPlan(*plan),
            "model     demo (qwen35moe, 4 layers)\n"
            "backend   cuda, 2 stages\n"
            "mode      variant 1 (2 GPUs: phase 1); the file carries variants 0..1\n"
            "weights   700.0 MiB held by the stages, 700.0 MiB in the resolved file\n"
            "slots     16 x 4096 tokens, 16.0 MiB per slot (capped by scheduler.max_running = 16)\n"
            "stage 0   cuda:0 GPU A\n"
            "          layers 0-1: 0 full + 2 linear, embedding\n"
            "          weights 350.0 MiB + KV 0 B + state 128.0 MiB = 478.0 MiB of 2.0 GiB\n"
            "          no KV cache\n"
            "stage 1   cuda:1 GPU B\n"
            "          layers 2-3: 1 full + 1 linear, head\n"
            "          weights 350.0 MiB + KV 64.0 MiB + state 64.0 MiB = 478.0 MiB of 2.0 GiB\n"
            "          KV pool 4096 blocks of 16 tokens\n"
            "warning   Level Zero device level_zero:0 (Intel(R) Arc(TM) A770 Graphics) discovered but skipped: "
            "no compute backend yet\n");
}

TEST(FormatPlanTest, CpuTextAndJson) {
  auto plan = MakePlan(SmallTwin(), std::vector<Device>{Host(8 * kGiB)}, PlannerOptions{});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(FormatPlan(*plan),
            "model     demo (qwen35moe, 4 layers)\n"
            "backend   cpu, 2 stages\n"
            "mode      variant 0 (the file's general.tensor_variant.default = 0); the file carries variants 0..1\n"
            "weights   500.0 MiB held by the stages, 500.0 MiB in the resolved file\n"
            "slots     16 x 4096 tokens, 20.0 MiB per slot (capped by scheduler.max_running = 16)\n"
            "memory    8.0 GiB of host memory shared by the stages\n"
            "stage 0   cpu Test CPU\n"
            "          layers 0-1: 0 full + 2 linear, embedding\n"
            "          weights 250.0 MiB + KV 0 B + state 128.0 MiB = 378.0 MiB\n"
            "          no KV cache\n"
            "stage 1   cpu Test CPU\n"
            "          layers 2-3: 1 full + 1 linear, head\n"
            "          weights 250.0 MiB + KV 128.0 MiB + state 64.0 MiB = 442.0 MiB\n"
            "          KV pool 4096 blocks of 16 tokens\n");
  const nlohmann::json j = nlohmann::json::parse(PlanToJson(*plan));
  EXPECT_EQ(j["backend"], "cpu");
  EXPECT_EQ(j["mode"], "variant");
  EXPECT_EQ(j["variant"], 0);
  EXPECT_EQ(j["slots"], plan->slots);
  ASSERT_EQ(j["stages"].size(), 2u);
  EXPECT_EQ(j["stages"][1]["first_layer"], plan->stages[1].first_layer);
  EXPECT_EQ(j["stages"][1]["weight_bytes"], plan->stages[1].weight_bytes);
  EXPECT_EQ(j["host_memory_bytes"], 8 * kGiB);
  EXPECT_TRUE(j["warnings"].empty());
}

}  // namespace
}  // namespace moed::planner

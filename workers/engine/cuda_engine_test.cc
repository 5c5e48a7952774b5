// The CUDA stage engine against the CPU engine and HF transformers' outputs on the tiny qwen35moe
// fixtures, as 1 and 2 pipeline stages; batching and state slots on the device. Skips on a
// machine without libmoed_cuda.so or a GPU.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/base/half.h"
#include "kernels/cpu/sampling.h"
#include "kernels/cuda/loader.h"
#include "loader/safetensors.h"
#include "workers/engine/pipeline.h"

namespace moed::engine {
namespace {

std::string Dir(const std::string& model) { return std::string(MOED_TEST_DATA_DIR) + "/qwen35moe-tiny/" + model; }

absl::Status GpuStatus() {
  static const absl::Status* status = new absl::Status(cuda::CudaLibrary::Load({}).status());
  return *status;
}
#define MOED_REQUIRE_GPU() \
  if (!GpuStatus().ok()) GTEST_SKIP() << GpuStatus()

template <typename T>
std::vector<T> Get(const SafetensorsFile& f, const std::string& name) {
  const SafetensorsTensor* t = f.Find(name);
  EXPECT_NE(t, nullptr) << name;
  if (t == nullptr) return {};
  std::vector<T> out(t->nbytes() / sizeof(T));
  std::memcpy(out.data(), f.Data(*t).data(), t->nbytes());
  return out;
}

// max |a - b| / max |b|: the relative error of a against b over a whole set of logits.
double RelErr(const std::vector<float>& a, const float* b, size_t n) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n; ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}
double MaxAbs(const std::vector<float>& a, const float* b, size_t n) {
  double diff = 0;
  for (size_t i = 0; i < n; ++i) diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
  return diff;
}

EngineOptions Options(Backend backend) {
  EngineOptions o;
  o.backend = backend;
  // float32 prefill GEMMs: the tiny fixtures' routers have near-ties (reference.json: a top-k
  // margin of 8.3e-6) that F16 rounding flips; F16PrefillOnTinyA covers the F16 path.
  o.cuda_gemm = CudaGemm::kF32;
  o.threads = 2;
  o.cache.max_slots = 8;
  o.cache.kv_block_size = 16;
  o.cache.kv_blocks = 64;
  return o;
}

std::vector<float> Step(Pipeline& p, int slot, const std::vector<int32_t>& ids, LogitsWanted wanted) {
  std::vector<SequenceStep> step = {{slot, ids, wanted}};
  std::vector<float> logits;
  absl::Status s = p.Forward(step, &logits);
  EXPECT_TRUE(s.ok()) << s;
  return logits;
}

using Param = std::tuple<std::string, std::string, int>;  // model, type, stages

class CudaFixtureTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    MOED_REQUIRE_GPU();
    const auto& [model, type, stages] = GetParam();
    auto m = LoadModel(Dir(model) + "/" + model + "-" + type + ".gguf");
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(m).value();
    auto gpu = Pipeline::Create(*model_, stages, Options(Backend::kCuda));
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    gpu_ = std::move(gpu).value();
    auto cpu = Pipeline::Create(*model_, stages, Options(Backend::kCpu));
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    cpu_ = std::move(cpu).value();
    auto ref = SafetensorsFile::Open(Dir(model) + "/reference.safetensors");
    ASSERT_TRUE(ref.ok()) << ref.status();
    ref_ = std::move(ref).value();
  }
  std::string Name() const {
    return std::get<0>(GetParam()) + "-" + std::get<1>(GetParam()) + " x" + std::to_string(std::get<2>(GetParam()));
  }

  std::unique_ptr<LoadedModel> model_;
  std::unique_ptr<Pipeline> gpu_, cpu_;
  std::unique_ptr<SafetensorsFile> ref_;
};

TEST_P(CudaFixtureTest, UncachedLogitsMatchTheCpuEngineAndTransformers) {
  const int64_t V = gpu_->n_vocab();
  double worst_cpu = 0, worst_ref = 0, worst_ref_abs = 0;
  for (int i = 0; i < 4; ++i) {
    const std::vector<int32_t> ids = Get<int32_t>(*ref_, "seq" + std::to_string(i) + ".input_ids");
    const std::vector<float> want = Get<float>(*ref_, "seq" + std::to_string(i) + ".logits");
    auto g = gpu_->AllocateSlot();
    auto c = cpu_->AllocateSlot();
    ASSERT_TRUE(g.ok() && c.ok());
    const std::vector<float> got = Step(*gpu_, *g, ids, LogitsWanted::kAll);
    const std::vector<float> cpu = Step(*cpu_, *c, ids, LogitsWanted::kAll);
    ASSERT_EQ(got.size(), ids.size() * V);
    ASSERT_EQ(cpu.size(), got.size());
    worst_cpu = std::max(worst_cpu, RelErr(got, cpu.data(), got.size()));
    worst_ref = std::max(worst_ref, RelErr(got, want.data(), got.size()));
    worst_ref_abs = std::max(worst_ref_abs, MaxAbs(got, want.data(), got.size()));
    ASSERT_TRUE(gpu_->FreeSlot(*g).ok());
    ASSERT_TRUE(cpu_->FreeSlot(*c).ok());
  }
  std::printf("[ %s ] relative error vs CPU engine %.3g, vs transformers %.3g (max abs %.3g)\n", Name().c_str(),
              worst_cpu, worst_ref, worst_ref_abs);
  EXPECT_LE(worst_cpu, 2e-2);
  EXPECT_LE(worst_ref, 2e-2);
}

TEST_P(CudaFixtureTest, CachedGreedyDecodeMatchesTransformers) {
  const int64_t V = gpu_->n_vocab();
  const std::vector<int32_t> prompt = Get<int32_t>(*ref_, "decode.prompt_ids");
  const std::vector<int32_t> greedy = Get<int32_t>(*ref_, "decode.greedy_ids");
  const std::vector<float> steps = Get<float>(*ref_, "decode.step_logits");
  auto slot = gpu_->AllocateSlot();
  ASSERT_TRUE(slot.ok());
  std::vector<float> logits = Step(*gpu_, *slot, prompt, LogitsWanted::kLast);
  double worst = 0;
  for (size_t s = 0; s < greedy.size(); ++s) {
    ASSERT_EQ(logits.size(), static_cast<size_t>(V));
    worst = std::max(worst, RelErr(logits, steps.data() + s * V, V));
    const int32_t next = cpu::Argmax(logits);
    ASSERT_EQ(next, greedy[s]) << "step " << s;
    logits = Step(*gpu_, *slot, {next}, LogitsWanted::kLast);
  }
  std::printf("[ %s ] greedy ids identical over %zu steps; step logits relative error %.3g\n", Name().c_str(),
              greedy.size(), worst);
  EXPECT_LE(worst, 2e-2);
}

INSTANTIATE_TEST_SUITE_P(Models, CudaFixtureTest,
                         ::testing::Combine(::testing::Values("tiny-a", "tiny-b"), ::testing::Values("f32", "bf16"),
                                            ::testing::Values(1, 2)),
                         [](const auto& info) {
                           std::string name = std::get<0>(info.param) + "_" + std::get<1>(info.param) + "_" +
                                              std::to_string(std::get<2>(info.param)) + "stages";
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

class CudaEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MOED_REQUIRE_GPU();
    auto m = LoadModel(Dir("tiny-b") + "/tiny-b-f32.gguf");
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(m).value();
    auto p = Pipeline::Create(*model_, 1, Options(Backend::kCuda));
    ASSERT_TRUE(p.ok()) << p.status();
    gpu_ = std::move(p).value();
  }
  static std::vector<int32_t> Ids(int n, int salt) {
    std::vector<int32_t> ids;
    for (int i = 0; i < n; ++i) ids.push_back((i * 37 + salt * 101 + 5) % 1024);
    return ids;
  }
  std::unique_ptr<LoadedModel> model_;
  std::unique_ptr<Pipeline> gpu_;
};

TEST_F(CudaEngineTest, RaggedBatchEqualsSeparateRuns) {
  const std::vector<int> lengths = {1, 7, 30, 65, 1};
  std::vector<std::vector<float>> separate;
  for (size_t i = 0; i < lengths.size(); ++i) {
    auto slot = gpu_->AllocateSlot();
    ASSERT_TRUE(slot.ok());
    separate.push_back(Step(*gpu_, *slot, Ids(lengths[i], i), LogitsWanted::kAll));
    ASSERT_TRUE(gpu_->FreeSlot(*slot).ok());
  }
  std::vector<SequenceStep> batch;
  for (size_t i = 0; i < lengths.size(); ++i) {
    auto slot = gpu_->AllocateSlot();
    ASSERT_TRUE(slot.ok());
    batch.push_back({*slot, Ids(lengths[i], i), LogitsWanted::kAll});
  }
  std::vector<float> logits;
  ASSERT_TRUE(gpu_->Forward(batch, &logits).ok());
  size_t at = 0;
  for (const auto& want : separate) {
    EXPECT_LE(MaxAbs(want, logits.data() + at, want.size()), 1e-4);
    at += want.size();
  }
  EXPECT_EQ(at, logits.size());
}

TEST_F(CudaEngineTest, DecodeBatchEqualsSeparateDecodes) {
  // Eight sequences decoding together (one launch per op) against each decoding alone.
  const int64_t V = gpu_->n_vocab();
  std::vector<std::vector<float>> alone;
  for (int i = 0; i < 8; ++i) {
    auto slot = gpu_->AllocateSlot();
    ASSERT_TRUE(slot.ok());
    Step(*gpu_, *slot, Ids(5 + i, i), LogitsWanted::kNone);
    alone.push_back(Step(*gpu_, *slot, {static_cast<int32_t>(i)}, LogitsWanted::kLast));
    ASSERT_TRUE(gpu_->FreeSlot(*slot).ok());
  }
  std::vector<SequenceStep> decode;
  for (int i = 0; i < 8; ++i) {
    auto slot = gpu_->AllocateSlot();
    ASSERT_TRUE(slot.ok());
    Step(*gpu_, *slot, Ids(5 + i, i), LogitsWanted::kNone);
    decode.push_back({*slot, {static_cast<int32_t>(i)}, LogitsWanted::kLast});
  }
  std::vector<float> logits;
  ASSERT_TRUE(gpu_->Forward(decode, &logits).ok());
  ASSERT_EQ(logits.size(), static_cast<size_t>(8 * V));
  for (int i = 0; i < 8; ++i) EXPECT_LE(MaxAbs(alone[i], logits.data() + i * V, V), 1e-4) << i;
}

TEST_F(CudaEngineTest, TopRowsSummarisedOnTheDeviceMatchTheCpuTwin) {
  // Pairs of slots fed the same tokens in one decode batch: one of each pair returns its row, the
  // other the row's summary (logits_top) and, for pairs 1..3, a draw over it (logits_draw); three
  // steps, so the decode graph is captured and replayed.
  const int64_t V = gpu_->n_vocab();
  std::vector<int> slots;
  for (int i = 0; i < 8; ++i) {
    auto slot = gpu_->AllocateSlot();
    ASSERT_TRUE(slot.ok());
    slots.push_back(*slot);
    Step(*gpu_, *slot, Ids(6 + i / 2, i / 2), LogitsWanted::kNone);
  }
  for (int step = 0; step < 3; ++step) {
    std::vector<SequenceStep> decode;
    std::vector<cpu::RowDraw> draws(4);
    for (int p = 0; p < 4; ++p) {
      draws[p].inv_temperature = 1.0f / (0.5f + 0.3f * p);
      draws[p].log_min_p = p == 2 ? std::log(0.1f) : -std::numeric_limits<float>::infinity();
      draws[p].u = (0.37 * (step + 1) + 0.21 * p) - std::floor(0.37 * (step + 1) + 0.21 * p);
    }
    for (int i = 0; i < 8; ++i) {
      const int32_t token = static_cast<int32_t>(100 * step + i / 2);
      decode.push_back(i % 2 == 0 ? SequenceStep{slots[i], {token}, LogitsWanted::kLast}
                                  : SequenceStep{slots[i], {token}, LogitsWanted::kTop, i == 1 ? 20 : 3});
      if (i % 2 == 1 && i > 1) decode.back().draw = draws[i / 2];
    }
    std::vector<float> logits;
    ASSERT_TRUE(gpu_->Forward(decode, &logits).ok());
    ASSERT_EQ(logits.size(), static_cast<size_t>(4 * V));
    ASSERT_EQ(gpu_->tops().size(), 4u);
    for (int p = 0; p < 4; ++p) {
      const cpu::TopLogits& got = gpu_->tops()[p];
      const cpu::TopLogits want = cpu::TopOfLogits(std::span<const float>(logits.data() + p * V, V), p == 0 ? 20 : 3);
      ASSERT_EQ(got.best.size(), want.best.size());
      for (size_t j = 0; j < want.best.size(); ++j) {
        EXPECT_EQ(got.best[j].first, want.best[j].first) << "step " << step << " pair " << p << " rank " << j;
        EXPECT_NEAR(got.best[j].second, want.best[j].second, 1e-5);
      }
      EXPECT_NEAR(got.log_sum_exp, want.log_sum_exp, 1e-5 * (1 + std::fabs(want.log_sum_exp)));
      ASSERT_EQ(gpu_->draws().size(), 4u);
      const cpu::Drawn drawn = gpu_->draws()[p];
      if (p == 0) {
        EXPECT_EQ(drawn.id, -1) << "no draw asked";
        continue;
      }
      const cpu::Drawn want_drawn = cpu::DrawFromRow(std::span<const float>(logits.data() + p * V, V), draws[p]);
      EXPECT_EQ(drawn.id, want_drawn.id) << "step " << step << " pair " << p;
      EXPECT_NEAR(drawn.logit, want_drawn.logit, 1e-5);
    }
  }
}

TEST_F(CudaEngineTest, LongDecodeMatchesTheCpuEngine) {
  // Decode steps run as CUDA graphs; crossing position 256 changes the attention's key split and
  // so the graph. Every step must still agree with the CPU engine.
  auto cpu = Pipeline::Create(*model_, 1, Options(Backend::kCpu));
  ASSERT_TRUE(cpu.ok());
  auto g = gpu_->AllocateSlot();
  auto c = (*cpu)->AllocateSlot();
  ASSERT_TRUE(g.ok() && c.ok());
  std::vector<float> gl = Step(*gpu_, *g, Ids(250, 3), LogitsWanted::kLast);
  std::vector<float> cl = Step(**cpu, *c, Ids(250, 3), LogitsWanted::kLast);
  double worst = 0;
  for (int s = 0; s < 20; ++s) {
    worst = std::max(worst, RelErr(gl, cl.data(), cl.size()));
    const int32_t next = cpu::Argmax(cl);
    gl = Step(*gpu_, *g, {next}, LogitsWanted::kLast);
    cl = Step(**cpu, *c, {next}, LogitsWanted::kLast);
  }
  EXPECT_LE(worst, 1e-3);
}

TEST_F(CudaEngineTest, ActivationsKeptOnTheDeviceEqualTheHostPath) {
  // Two stages on one GPU handing rows over in device memory (ForwardOnDevice, as stages linked
  // over NCCL do) against the same two stages through host memory (Forward).
  auto split = SplitLayers(model_->description, 2);
  ASSERT_TRUE(split.ok());
  std::unique_ptr<StageEngine> first[2], last[2];  // [0]: host rows, [1]: device rows
  for (int i = 0; i < 2; ++i) {
    auto a = StageEngine::Create(*model_, (*split)[0].first, (*split)[0].second, Options(Backend::kCuda));
    auto b = StageEngine::Create(*model_, (*split)[1].first, (*split)[1].second, Options(Backend::kCuda));
    ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
    first[i] = std::move(a).value();
    last[i] = std::move(b).value();
    ASSERT_TRUE(first[i]->AcquireSlot(0).ok() && last[i]->AcquireSlot(0).ok());
    ASSERT_TRUE(first[i]->AcquireSlot(3).ok() && last[i]->AcquireSlot(3).ok());
  }
  std::vector<SequenceStep> step = {{0, Ids(20, 1), LogitsWanted::kLast}, {3, Ids(2, 2), LogitsWanted::kLast}};
  for (int n = 0; n < 4; ++n) {
    std::vector<float> hidden, host_logits, device_logits, unused;
    { auto st = first[0]->Forward(step, {}, &hidden, &unused); ASSERT_TRUE(st.ok()) << st; }
    { auto st = last[0]->Forward(step, hidden, nullptr, &host_logits); ASSERT_TRUE(st.ok()) << st; }
    StageEngine::DeviceRows rows;
    { auto st = first[1]->ForwardOnDevice(step, {}, &rows, &unused); ASSERT_TRUE(st.ok()) << st; }
    EXPECT_EQ(rows.floats, static_cast<int64_t>(hidden.size()));
    { auto st = last[1]->ForwardOnDevice(step, rows, nullptr, &device_logits); ASSERT_TRUE(st.ok()) << st; }
    ASSERT_EQ(device_logits.size(), host_logits.size());
    EXPECT_EQ(MaxAbs(device_logits, host_logits.data(), host_logits.size()), 0.0) << "step " << n;
    // A wrong row count is refused, as on the host path.
    EXPECT_EQ(last[1]->ForwardOnDevice(step, {rows.data, rows.floats - 1}, nullptr, &device_logits).code(),
              absl::StatusCode::kInvalidArgument);
    const int32_t next = cpu::Argmax(std::span<const float>(host_logits).first(static_cast<size_t>(last[0]->n_vocab())));
    step = {{0, {next}, LogitsWanted::kLast}, {3, {7}, LogitsWanted::kLast}};
  }
}

TEST(CudaF16PrefillTest, F16PrefillOnTinyAStaysCloseToTheCpuEngine) {
  // The fast default: F16 tensor-core GEMMs (dense and grouped experts) for prefill steps.
  MOED_REQUIRE_GPU();
  auto m = LoadModel(Dir("tiny-a") + "/tiny-a-bf16.gguf");
  ASSERT_TRUE(m.ok());
  EngineOptions f16 = Options(Backend::kCuda);
  f16.cuda_gemm = CudaGemm::kF16;
  auto gpu = Pipeline::Create(**m, 1, f16);
  auto cpu = Pipeline::Create(**m, 1, Options(Backend::kCpu));
  ASSERT_TRUE(gpu.ok() && cpu.ok());
  std::vector<int32_t> ids;
  for (int i = 0; i < 100; ++i) ids.push_back((i * 37 + 11) % 1024);
  auto g = (*gpu)->AllocateSlot();
  auto c = (*cpu)->AllocateSlot();
  ASSERT_TRUE(g.ok() && c.ok());
  const std::vector<float> gl = Step(**gpu, *g, ids, LogitsWanted::kLast);
  const std::vector<float> cl = Step(**cpu, *c, ids, LogitsWanted::kLast);
  const double err = RelErr(gl, cl.data(), cl.size());
  std::printf("[ tiny-a-bf16 F16 prefill ] relative error vs CPU engine %.3g\n", err);
  EXPECT_LE(err, 2e-2);
}

TEST(CudaF16PrefillTest, F16DecodeBatchOnTensorCoresStaysCloseToTheCpuEngine) {
  // 20 sequences decoding together: dense products through gemm_mma and the experts through
  // moe_grouped (16+ rows), in the captured decode graph from the second step on.
  MOED_REQUIRE_GPU();
  auto m = LoadModel(Dir("tiny-a") + "/tiny-a-bf16.gguf");
  ASSERT_TRUE(m.ok());
  EngineOptions f16 = Options(Backend::kCuda), f32 = Options(Backend::kCpu);
  f16.cuda_gemm = CudaGemm::kF16;
  f16.cache.max_slots = f32.cache.max_slots = 24;
  auto gpu = Pipeline::Create(**m, 1, f16);
  auto cpu = Pipeline::Create(**m, 1, f32);
  ASSERT_TRUE(gpu.ok() && cpu.ok());
  constexpr int kSeqs = 20;
  const int64_t V = (*gpu)->n_vocab();
  std::vector<SequenceStep> g_step, c_step;
  for (int i = 0; i < kSeqs; ++i) {
    auto g = (*gpu)->AllocateSlot();
    auto c = (*cpu)->AllocateSlot();
    ASSERT_TRUE(g.ok() && c.ok());
    std::vector<int32_t> prompt;
    for (int t = 0; t < 3 + i % 5; ++t) prompt.push_back((i * 131 + t * 17 + 5) % 1024);
    Step(**gpu, *g, prompt, LogitsWanted::kNone);
    Step(**cpu, *c, prompt, LogitsWanted::kNone);
    g_step.push_back({*g, {static_cast<int32_t>(i * 7)}, LogitsWanted::kLast});
    c_step.push_back({*c, {static_cast<int32_t>(i * 7)}, LogitsWanted::kLast});
  }
  // tiny-a's router has near-ties (see Options): F16 rounding upstream of a layer may flip one
  // expert of a token, which changes that row outright. So most rows, not all, must stay close;
  // a wrong row, slot or expert in the kernels would spoil nearly all of them.
  std::vector<double> errors;
  for (int step = 0; step < 3; ++step) {  // eager, captured, replayed
    std::vector<float> gl, cl;
    ASSERT_TRUE((*gpu)->Forward(g_step, &gl).ok());
    ASSERT_TRUE((*cpu)->Forward(c_step, &cl).ok());
    ASSERT_EQ(gl.size(), static_cast<size_t>(kSeqs * V));
    for (int i = 0; i < kSeqs; ++i) {
      const std::vector<float> row(gl.begin() + i * V, gl.begin() + (i + 1) * V);
      errors.push_back(RelErr(row, cl.data() + i * V, V));
    }
    for (int i = 0; i < kSeqs; ++i) g_step[i].tokens = c_step[i].tokens = {static_cast<int32_t>(step * 13 + i)};
  }
  std::sort(errors.begin(), errors.end());
  const double median = errors[errors.size() / 2], p95 = errors[errors.size() * 95 / 100 - 1];
  EXPECT_LE(median, 2e-3);
  EXPECT_LE(p95, 1e-2);
  std::printf("[ tiny-a-bf16 F16 decode batch of %d ] relative error vs CPU engine: median %.3g, 95th percentile %.3g, "
              "largest %.3g\n", kSeqs, median, p95, errors.back());
}

TEST_F(CudaEngineTest, SnapshotRestoreReplaysTheSameContinuation) {
  auto slot = gpu_->AllocateSlot();
  ASSERT_TRUE(slot.ok());
  Step(*gpu_, *slot, Ids(40, 7), LogitsWanted::kLast);
  auto snap = gpu_->Snapshot(*slot);
  ASSERT_TRUE(snap.ok()) << snap.status();
  const std::vector<float> first = Step(*gpu_, *slot, {11, 12, 13}, LogitsWanted::kAll);
  ASSERT_TRUE(gpu_->Restore(*slot, *snap).ok());
  EXPECT_EQ(gpu_->n_past(*slot), 40);
  EXPECT_EQ(first, Step(*gpu_, *slot, {11, 12, 13}, LogitsWanted::kAll));
  // A snapshot moves between backends: restored into the CPU engine, it continues the same way.
  auto cpu = Pipeline::Create(*model_, 1, Options(Backend::kCpu));
  ASSERT_TRUE(cpu.ok());
  auto cpu_slot = (*cpu)->AllocateSlot();
  ASSERT_TRUE(cpu_slot.ok());
  ASSERT_TRUE((*cpu)->Restore(*cpu_slot, *snap).ok());
  EXPECT_LE(RelErr(Step(**cpu, *cpu_slot, {11, 12, 13}, LogitsWanted::kAll), first.data(), first.size()), 1e-3);
}

TEST_F(CudaEngineTest, CpuSnapshotRestoresOnTheGpuRoundedToF16) {
  // The other direction: float32 K/V from the CPU engine go into the GPU's F16 pools.
  auto cpu = Pipeline::Create(*model_, 1, Options(Backend::kCpu));
  ASSERT_TRUE(cpu.ok());
  auto c = (*cpu)->AllocateSlot();
  auto g = gpu_->AllocateSlot();
  ASSERT_TRUE(c.ok() && g.ok());
  Step(**cpu, *c, Ids(40, 7), LogitsWanted::kLast);
  auto snap = (*cpu)->Snapshot(*c);
  ASSERT_TRUE(snap.ok()) << snap.status();
  ASSERT_TRUE(gpu_->Restore(*g, *snap).ok());
  // Taken back, the K/V rows are the CPU's rounded to nearest even F16 (and widened exactly); the
  // recurrent state comes back as it went in.
  auto back = gpu_->Snapshot(*g);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 1u);
  const SlotSnapshot &in = snap->front(), &out = back->front();
  EXPECT_EQ(out.n_past, 40);
  EXPECT_EQ(out.recurrent, in.recurrent);
  ASSERT_EQ(out.keys.size(), in.keys.size());
  size_t elements = 0, differ = 0;
  for (size_t l = 0; l < in.keys.size(); ++l) {
    for (auto [a, b] : {std::pair{&in.keys[l], &out.keys[l]}, std::pair{&in.values[l], &out.values[l]}}) {
      ASSERT_EQ(a->size(), b->size()) << "layer " << l;
      for (size_t i = 0; i < a->size(); ++i) differ += (*b)[i] != Fp16ToFp32(Fp32ToFp16((*a)[i])) ? 1 : 0;
      elements += a->size();
    }
  }
  EXPECT_GT(elements, 0u);  // the stage has full-attention layers
  EXPECT_EQ(differ, 0u) << "of " << elements << " K/V elements";
  // The continuation agrees with the CPU's as the GPU-to-CPU one does.
  const std::vector<float> want = Step(**cpu, *c, {11, 12, 13}, LogitsWanted::kAll);
  EXPECT_LE(RelErr(Step(*gpu_, *g, {11, 12, 13}, LogitsWanted::kAll), want.data(), want.size()), 1e-3);
}

TEST_F(CudaEngineTest, ErrorsLeaveTheSlotUsable) {
  auto slot = gpu_->AllocateSlot();
  ASSERT_TRUE(slot.ok());
  std::vector<float> logits;
  std::vector<SequenceStep> too_long = {{*slot, Ids(64 * 16 + 1, 1), LogitsWanted::kLast}};
  EXPECT_EQ(gpu_->Forward(too_long, &logits).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(gpu_->n_past(*slot), 0);
  EXPECT_EQ(Step(*gpu_, *slot, {5}, LogitsWanted::kLast).size(), static_cast<size_t>(gpu_->n_vocab()));
}

}  // namespace
}  // namespace moed::engine

// The ABI 1.1 kernels against their CPU twins, through the dlopen'ed library: MoE decode (gate+up+SiLU
// and down + weighted sum; reference: cpu::MatMulReference on cpu::ExpertSlice), the gated delta
// rule step (cpu::DeltaRuleRecurrent) and the conv1d state update (cpu::CausalConv1dSilu), on random
// inputs of several shapes, every supported weight type for the MoE. Without a GPU every case skips
// with the loader's message. Tolerances are derived next to each check.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/cpu/conv1d.h"
#include "kernels/cpu/delta_rule.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cuda/api.h"
#include "kernels/cuda/cuda_test_util.h"
#include "kernels/cuda/loader.h"
#include "kernels/quants/dequantize.h"
#include "kernels/quants/ggml_type.h"

namespace moed::cuda {
namespace {

// ---- MoE decode ---------------------------------------------------------------------------------

struct MoeShape {
  int64_t n_embd, n_ff, n_expert;
  int top_k, n_tokens;
};

struct MoeErrors {
  double act = 0, y = 0;  // largest |gpu - ref| / (its error scale) over the case
};

// Runs one MoE decode on the GPU and checks act and y against the CPU twin.
// Tolerance: the GPU decodes weights bit-exactly (quants.cuh), so gate, up and each down product
// differ from MatMulReference (double accumulation) only by float32 accumulation, bounded by
// (n_in + 5) * 2^-24 * abs-sum <= 2.5e-4 * abs-sum for n_in <= 4096 (cuda_gemv_test.cc). For
// act = silu(g) * u, with |silu'| <= 1.1: |d act| <= 1.1 |u| dg + |silu(g)| du (+ a few ulp of
// act from expf and the products, covered by 1e-5 |act|). y is checked against the CPU down
// product of the GPU's own act (so the two launches are tested separately): the weighted sum of k
// products adds k roundings, scale sum_s |w_s| * abs-sum_s, bound (n_ff + 5 + k) * 2^-24 < 2.5e-4.
MoeErrors CheckMoe(GgmlType gu_type, GgmlType d_type, const MoeShape& s, std::mt19937& rng,
                   bool with_skip, bool accumulate) {
  const CudaLibrary& lib = *GetBackend().lib;
  constexpr double kTol = 2.5e-4;
  const std::vector<uint8_t> gate = RandomWeights(gu_type, s.n_embd, s.n_ff * s.n_expert, rng);
  const std::vector<uint8_t> up = RandomWeights(gu_type, s.n_embd, s.n_ff * s.n_expert, rng);
  const std::vector<uint8_t> down = RandomWeights(d_type, s.n_ff, s.n_embd * s.n_expert, rng);
  const int n_pairs = s.n_tokens * s.top_k;
  std::vector<int32_t> ids(static_cast<size_t>(n_pairs));
  std::vector<float> wts(static_cast<size_t>(n_pairs));
  std::vector<int32_t> perm(static_cast<size_t>(s.n_expert));
  std::uniform_real_distribution<float> uni(0.05f, 1.0f);
  for (int t = 0; t < s.n_tokens; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int k = 0; k < s.top_k; ++k) {
      ids[t * s.top_k + k] = perm[static_cast<size_t>(k % s.n_expert)];
      wts[t * s.top_k + k] = uni(rng);
    }
  }
  if (with_skip) ids[static_cast<size_t>(n_pairs / 2)] = -1;
  const std::vector<float> x = Normal(static_cast<size_t>(s.n_tokens * s.n_embd), rng);
  const std::vector<float> y0 = Normal(static_cast<size_t>(s.n_tokens * s.n_embd), rng);

  DeviceBuffer dg(gate.size()), du(up.size()), dd(down.size()), dids(ids.size() * 4),
      dw(wts.size() * 4), dx(x.size() * 4), dact(static_cast<size_t>(n_pairs * s.n_ff) * 4),
      dy(y0.size() * 4);
  dg.Upload(gate.data());
  du.Upload(up.data());
  dd.Upload(down.data());
  dids.Upload(ids.data());
  dw.Upload(wts.data());
  dx.Upload(x.data());
  dy.Upload(y0.data());
  MoedCudaMoeArgs a{};
  a.gate_up_type = static_cast<uint32_t>(gu_type);
  a.down_type = static_cast<uint32_t>(d_type);
  a.gate_w = dg.get<void>();
  a.up_w = du.get<void>();
  a.down_w = dd.get<void>();
  a.n_embd = s.n_embd;
  a.n_ff = s.n_ff;
  a.n_expert = s.n_expert;
  a.n_tokens = s.n_tokens;
  a.top_k = s.top_k;
  a.ids = dids.get<int32_t>();
  a.weights = dw.get<float>();
  a.x = dx.get<float>();
  a.act = dact.get<float>();
  a.y = dy.get<float>();
  a.accumulate = accumulate ? 1 : 0;
  EXPECT_TRUE(lib.MoeDecode(a, nullptr).ok());
  EXPECT_TRUE(lib.Check(lib.api().synchronize(), "sync").ok());
  std::vector<float> act(static_cast<size_t>(n_pairs * s.n_ff)), y(y0.size());
  dact.Download(act.data());
  dy.Download(y.data());

  MoeErrors worst;
  int failures = 0;
  const std::string what = std::string(GgmlTypeName(gu_type)) + "/" + std::string(GgmlTypeName(d_type)) +
                           " embd=" + std::to_string(s.n_embd) + " ff=" + std::to_string(s.n_ff) +
                           " k=" + std::to_string(s.top_k) + " tokens=" + std::to_string(s.n_tokens);
  std::vector<double> y_ref(y0.size()), y_scale(y0.size(), 0.0);
  for (int t = 0; t < s.n_tokens; ++t) {
    for (int64_t o = 0; o < s.n_embd; ++o) {
      y_ref[t * s.n_embd + o] = accumulate ? y0[t * s.n_embd + o] : 0.0;
      y_scale[t * s.n_embd + o] = accumulate ? std::fabs(y0[t * s.n_embd + o]) : 0.0;
    }
  }
  std::vector<float> g_ref(static_cast<size_t>(s.n_ff)), u_ref(g_ref.size()), d_ref(static_cast<size_t>(s.n_embd));
  for (int t = 0; t < s.n_tokens; ++t) {
    const float* xt = x.data() + t * s.n_embd;
    for (int k = 0; k < s.top_k; ++k) {
      const int pair = t * s.top_k + k;
      const float* act_p = act.data() + static_cast<int64_t>(pair) * s.n_ff;
      const int32_t e = ids[pair];
      if (e < 0) {
        for (int64_t f = 0; f < s.n_ff; ++f) EXPECT_EQ(act_p[f], 0.0f) << what << " skipped slot";
        continue;
      }
      const cpu::WeightMatrix mg = cpu::ExpertSlice(gu_type, gate.data(), s.n_embd, s.n_ff, e);
      const cpu::WeightMatrix mu = cpu::ExpertSlice(gu_type, up.data(), s.n_embd, s.n_ff, e);
      const cpu::WeightMatrix md = cpu::ExpertSlice(d_type, down.data(), s.n_ff, s.n_embd, e);
      EXPECT_TRUE(cpu::MatMulReference(mg, xt, 1, g_ref.data()).ok());
      EXPECT_TRUE(cpu::MatMulReference(mu, xt, 1, u_ref.data()).ok());
      const std::vector<double> ag = AbsSums(mg, xt, 1), au = AbsSums(mu, xt, 1);
      for (int64_t f = 0; f < s.n_ff; ++f) {
        const double gv = g_ref[f], uv = u_ref[f];
        const double silu = gv / (1.0 + std::exp(-gv));
        const double ref = silu * uv;
        const double scale = 1.1 * std::fabs(uv) * ag[f] + std::fabs(silu) * au[f];
        const double err = std::fabs(act_p[f] - ref);
        const double bound = kTol * scale + 1e-5 * std::fabs(ref) + 1e-30;
        worst.act = std::max(worst.act, err / (scale + 1e-30));
        if (!(err <= bound) && ++failures <= 5) {
          ADD_FAILURE() << what << ": act[" << t << "][" << k << "][" << f << "] = " << act_p[f]
                        << ", reference " << ref << ", scale " << scale;
        }
      }
      EXPECT_TRUE(cpu::MatMulReference(md, act_p, 1, d_ref.data()).ok());
      const std::vector<double> ad = AbsSums(md, act_p, 1);
      for (int64_t o = 0; o < s.n_embd; ++o) {
        y_ref[t * s.n_embd + o] += static_cast<double>(wts[pair]) * d_ref[o];
        y_scale[t * s.n_embd + o] += std::fabs(static_cast<double>(wts[pair])) * ad[o];
      }
    }
  }
  for (size_t i = 0; i < y.size(); ++i) {
    const double err = std::fabs(y[i] - y_ref[i]);
    worst.y = std::max(worst.y, err / (y_scale[i] + 1e-30));
    if (!(err <= kTol * y_scale[i] + 1e-30) && ++failures <= 5) {
      ADD_FAILURE() << what << ": y[" << i << "] = " << y[i] << ", reference " << y_ref[i]
                    << ", scale " << y_scale[i];
    }
  }
  return worst;
}

class CudaMoeTypeTest : public ::testing::TestWithParam<GgmlType> {};

TEST_P(CudaMoeTypeTest, MatchesCpuReference) {
  MOED_REQUIRE_GPU();
  const GgmlType type = GetParam();
  const CudaLibrary& lib = *GetBackend().lib;
  ASSERT_TRUE(lib.HasAbi11());
  ASSERT_EQ(lib.api().moe_supports_type(static_cast<uint32_t>(type)), 1) << GgmlTypeName(type);
  std::vector<MoeShape> shapes = {
      {256, 256, 5, 2, 3},   // short rows: 8 units, 8 lanes per row
      {768, 256, 9, 3, 5},   // 24 units per gate/up row: 16 lanes per row, uneven split
      {1024, 512, 6, 4, 8},  // down rows of 16 units, 8 tokens
  };
  // The 35B-A3B shape (hidden 2048, expert FFN 512, top-8; 10 experts stored to keep the test's
  // quantization time small) for the types the 35B files use for experts.
  if (FindGgmlType(type)->block_size == 1) {  // rows of 96 and 24: the generic plain-float kernels
    shapes.push_back({96, 24, 16, 4, 3});
  }
  if (type == GgmlType::kQ4_K || type == GgmlType::kQ8_0 || type == GgmlType::kIq3A770) {
    shapes.push_back({2048, 512, 10, 8, 1});
    shapes.push_back({2048, 512, 10, 8, 8});
  }
  std::mt19937 rng(99 + static_cast<uint32_t>(type));
  MoeErrors worst;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const MoeErrors e = CheckMoe(type, type, shapes[i], rng, /*with_skip=*/i == 1, /*accumulate=*/i == 2);
    worst.act = std::max(worst.act, e.act);
    worst.y = std::max(worst.y, e.y);
  }
  std::printf("[ %-8s ] moe max |gpu - ref| / scale: act %.3g, y %.3g\n",
              std::string(GgmlTypeName(type)).c_str(), worst.act, worst.y);
  RecordProperty("max_rel_error_act", std::to_string(worst.act));
  RecordProperty("max_rel_error_y", std::to_string(worst.y));
}

INSTANTIATE_TEST_SUITE_P(AllTypes, CudaMoeTypeTest,
                         ::testing::Values(GgmlType::kQ4_K, GgmlType::kQ8_0, GgmlType::kIq3A770,
                                           GgmlType::kQ5_K, GgmlType::kQ6_K, GgmlType::kQ3_K,
                                           GgmlType::kIq4Xs, GgmlType::kF32, GgmlType::kBf16, GgmlType::kF16,
                                           GgmlType::kIq3Xxs, GgmlType::kMxfp4, GgmlType::kNvfp4),
                         [](const auto& info) { return std::string(GgmlTypeName(info.param)); });

// Gate/up and down in different types (as in mixed-quant files).
TEST(CudaMoeTest, MixedTypes) {
  MOED_REQUIRE_GPU();
  std::mt19937 rng(5);
  const MoeErrors e = CheckMoe(GgmlType::kQ4_K, GgmlType::kQ6_K, {512, 256, 4, 3, 2}, rng, false, false);
  EXPECT_LT(e.y, 2.5e-4);
}

TEST(CudaMoeTest, RejectsBadArguments) {
  MOED_REQUIRE_GPU();
  const CudaLibrary& lib = *GetBackend().lib;
  DeviceBuffer buf(1 << 16);
  MoedCudaMoeArgs a{};
  a.gate_up_type = a.down_type = static_cast<uint32_t>(GgmlType::kQ4_K);
  a.gate_w = a.up_w = a.down_w = buf.get<void>();
  a.n_embd = 256, a.n_ff = 256, a.n_expert = 1, a.n_tokens = 1, a.top_k = 1;
  a.ids = buf.get<int32_t>();
  a.weights = a.x = a.act = a.y = buf.get<float>();
  MoedCudaMoeArgs bad = a;
  bad.down_type = static_cast<uint32_t>(GgmlType::kQ2_K);
  EXPECT_EQ(lib.MoeDecode(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = a;
  bad.n_embd = 300;
  EXPECT_EQ(lib.MoeDecode(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = a;
  bad.n_tokens = MOED_CUDA_MAX_MOE_TOKENS + 1;
  EXPECT_EQ(lib.MoeDecode(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = a;
  bad.gate_w = buf.get<uint8_t>() + 4;
  EXPECT_EQ(lib.MoeDecode(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(lib.api().moe_supports_type(static_cast<uint32_t>(GgmlType::kQ2_K)), 0);
  EXPECT_TRUE(lib.Check(lib.api().synchronize(), "sync").ok());
}

// ---- Gated delta rule ---------------------------------------------------------------------------

struct DeltaShape {
  int64_t hk, hv, dk, dv;
  int n_seqs, n_tokens;
};

// Tolerance: every output and state entry is a float32 dot product of dk terms per token (the
// CPU twin's too, in another order), and the update is a contraction (decay <= 1, and
// (I - beta k k^T) has norm <= 1 for |k| = 1, beta in (0, 1)), so rounding errors do not grow
// across tokens beyond adding up: |err| <= T * (dk + 8) * 2^-24 * (|s| |q| or |s| |k|) sums. With
// state entries ~N(0, 0.5^2) and unit k, that is <= T * 264 * 6e-8 * 0.5 * sqrt(dk) ≈ 1e-4 * T for
// dk = 256; the check uses 2e-5 * T * (1 + |ref|) * sqrt(dk / 16) — about 1/5 of the bound, still
// far above the observed 1e-6 (random roundings grow like sqrt(dk)).
double CheckDelta(const DeltaShape& s, std::mt19937& rng) {
  const CudaLibrary& lib = *GetBackend().lib;
  const int64_t n_tok = int64_t{s.n_seqs} * s.n_tokens;
  std::vector<float> q = Normal(static_cast<size_t>(n_tok * s.hk * s.dk), rng);
  std::vector<float> k = Normal(q.size(), rng);
  const std::vector<float> v = Normal(static_cast<size_t>(n_tok * s.hv * s.dv), rng);
  std::vector<float> g(static_cast<size_t>(n_tok * s.hv)), beta(g.size());
  std::uniform_real_distribution<float> ug(-2.0f, 0.0f), ub(0.01f, 0.99f);
  for (float& x : g) x = ug(rng);
  for (float& x : beta) x = ub(rng);
  for (int64_t h = 0; h < n_tok * s.hk; ++h) {  // k: unit norm; q: unit norm / sqrt(dk)
    double nq = 0, nk = 0;
    for (int64_t i = 0; i < s.dk; ++i) nq += q[h * s.dk + i] * q[h * s.dk + i], nk += k[h * s.dk + i] * k[h * s.dk + i];
    for (int64_t i = 0; i < s.dk; ++i) {
      q[h * s.dk + i] = static_cast<float>(q[h * s.dk + i] / std::sqrt(nq) / std::sqrt(double(s.dk)));
      k[h * s.dk + i] = static_cast<float>(k[h * s.dk + i] / std::sqrt(nk));
    }
  }
  // A state pool of n_seqs + 2 slots; sequence b uses slot (2 * b + 1) % pool, the rest untouched.
  const int pool = s.n_seqs + 2;
  const int64_t state_size = s.hv * s.dv * s.dk;
  std::vector<float> state = Normal(static_cast<size_t>(pool * state_size), rng, 0.5f);
  std::vector<int32_t> slots(static_cast<size_t>(s.n_seqs));
  {
    std::vector<int32_t> perm(static_cast<size_t>(pool));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    std::copy_n(perm.begin(), s.n_seqs, slots.begin());
  }
  DeviceBuffer dq(q.size() * 4), dk(k.size() * 4), dv(v.size() * 4), dg(g.size() * 4),
      db(beta.size() * 4), ds(state.size() * 4), dslots(slots.size() * 4), dout(v.size() * 4);
  dq.Upload(q.data()), dk.Upload(k.data()), dv.Upload(v.data()), dg.Upload(g.data());
  db.Upload(beta.data()), ds.Upload(state.data()), dslots.Upload(slots.data());
  MoedCudaDeltaRuleArgs a{};
  a.n_k_heads = s.hk, a.n_v_heads = s.hv, a.dk = s.dk, a.dv = s.dv;
  a.n_seqs = s.n_seqs, a.n_tokens = s.n_tokens;
  a.q = dq.get<float>(), a.k = dk.get<float>(), a.v = dv.get<float>(), a.g = dg.get<float>();
  a.beta = db.get<float>(), a.state = ds.get<float>(), a.state_slots = dslots.get<int32_t>();
  a.out = dout.get<float>();
  EXPECT_TRUE(lib.DeltaRuleStep(a, nullptr).ok());
  std::vector<float> out(v.size()), gpu_state(state.size());
  dout.Download(out.data());
  ds.Download(gpu_state.data());

  std::vector<float> ref_state = state, ref_out(v.size());
  const cpu::DeltaRuleShape cs{s.hk, s.hv, s.dk, s.dv};
  for (int b = 0; b < s.n_seqs; ++b) {
    const int64_t t0 = int64_t{b} * s.n_tokens;
    cpu::DeltaRuleRecurrent(cs, s.n_tokens, q.data() + t0 * s.hk * s.dk, k.data() + t0 * s.hk * s.dk,
                            v.data() + t0 * s.hv * s.dv, g.data() + t0 * s.hv, beta.data() + t0 * s.hv,
                            ref_state.data() + slots[b] * state_size, ref_out.data() + t0 * s.hv * s.dv,
                            nullptr);
  }
  const double tol = 2e-5 * s.n_tokens * std::sqrt(s.dk / 16.0);
  double worst = 0;
  int failures = 0;
  auto check = [&](const std::vector<float>& got, const std::vector<float>& ref, const char* what) {
    for (size_t i = 0; i < got.size(); ++i) {
      const double err = std::fabs(got[i] - ref[i]) / (1.0 + std::fabs(ref[i]));
      worst = std::max(worst, err);
      if (!(err <= tol) && ++failures <= 5) {
        ADD_FAILURE() << what << "[" << i << "] = " << got[i] << ", reference " << ref[i] << " (dk "
                      << s.dk << " dv " << s.dv << " seqs " << s.n_seqs << " tokens " << s.n_tokens << ")";
      }
    }
  };
  check(out, ref_out, "out");
  check(gpu_state, ref_state, "state");  // includes the untouched slots (must be bit-equal)
  return worst;
}

TEST(CudaDeltaRuleTest, MatchesCpuRecurrent) {
  MOED_REQUIRE_GPU();
  const std::vector<DeltaShape> shapes = {
      {16, 32, 128, 128, 1, 1},  // 35B-A3B decode, batch 1
      {16, 32, 128, 128, 5, 1},  // batch 5
      {16, 32, 128, 128, 2, 4},  // 4 tokens per sequence (state kept in registers)
      {2, 4, 64, 48, 3, 3},      {1, 2, 32, 20, 4, 2}, {2, 2, 256, 64, 2, 2}, {3, 6, 128, 17, 2, 1},
  };
  std::mt19937 rng(11);
  double worst = 0;
  for (const DeltaShape& s : shapes) worst = std::max(worst, CheckDelta(s, rng));
  std::printf("[ delta rule ] max |gpu - ref| / (1 + |ref|) = %.3g\n", worst);
  RecordProperty("max_rel_error", std::to_string(worst));
}

TEST(CudaDeltaRuleTest, RejectsBadArguments) {
  MOED_REQUIRE_GPU();
  const CudaLibrary& lib = *GetBackend().lib;
  DeviceBuffer buf(1 << 16);
  MoedCudaDeltaRuleArgs a{};
  a.n_k_heads = 1, a.n_v_heads = 1, a.dk = 100, a.dv = 4, a.n_seqs = 1, a.n_tokens = 1;
  a.q = a.k = a.v = a.g = a.beta = buf.get<float>();
  a.state = a.out = buf.get<float>();
  EXPECT_EQ(lib.DeltaRuleStep(a, nullptr).code(), absl::StatusCode::kInvalidArgument);
  a.dk = 128;
  a.q = buf.get<float>() + 1;
  EXPECT_EQ(lib.DeltaRuleStep(a, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

// ---- Conv1d -------------------------------------------------------------------------------------

// Tolerance: d_conv <= 8 products summed in float32 on both sides (the GPU with fused
// multiply-adds), then SiLU (expf within 2 ulp): |err| <= 1e-6 * (sum_k |w_k u_k|) + 1e-6 |y|.
TEST(CudaConv1dTest, MatchesCpu) {
  MOED_REQUIRE_GPU();
  const CudaLibrary& lib = *GetBackend().lib;
  struct Case {
    int64_t channels, d_conv;
    int n_seqs, n_tokens;
  };
  // Prefills of 64+ tokens split each sequence into 8 chunks of tokens (65: chunks of 9, the last
  // one 2 tokens; d_conv 8 reaches back across a whole chunk).
  const Case cases[] = {{8192, 4, 1, 1}, {8192, 4, 3, 1}, {100, 4, 2, 2}, {300, 4, 2, 5}, {33, 1, 2, 1},
                        {257, 2, 3, 3},  {64, 8, 2, 4},   {300, 4, 2, 200}, {70, 8, 3, 65}, {40, 1, 1, 64}};
  std::mt19937 rng(3);
  double worst = 0;
  for (const Case& c : cases) {
    const int64_t hist = c.d_conv - 1;
    const int pool = c.n_seqs + 1;
    const std::vector<float> x = Normal(static_cast<size_t>(c.n_seqs * c.n_tokens * c.channels), rng);
    const std::vector<float> w = Normal(static_cast<size_t>(c.channels * c.d_conv), rng, 0.5f);
    std::vector<float> state = Normal(static_cast<size_t>(std::max<int64_t>(1, pool * hist * c.channels)), rng);
    std::vector<int32_t> slots(static_cast<size_t>(c.n_seqs));
    for (int b = 0; b < c.n_seqs; ++b) slots[b] = (b + 1) % pool;
    DeviceBuffer dx(x.size() * 4), dw(w.size() * 4), ds(state.size() * 4), dslots(slots.size() * 4),
        dy(x.size() * 4);
    dx.Upload(x.data()), dw.Upload(w.data()), ds.Upload(state.data()), dslots.Upload(slots.data());
    MoedCudaConv1dArgs a{};
    a.n_channels = c.channels, a.d_conv = c.d_conv, a.n_seqs = c.n_seqs, a.n_tokens = c.n_tokens;
    a.x = dx.get<float>(), a.w = dw.get<float>(), a.state = ds.get<float>();
    a.state_slots = dslots.get<int32_t>(), a.y = dy.get<float>();
    ASSERT_TRUE(lib.Conv1dStep(a, nullptr).ok());
    std::vector<float> y(x.size()), gpu_state(state.size());
    dy.Download(y.data());
    ds.Download(gpu_state.data());
    std::vector<float> ref_state = state, ref_y(x.size());
    for (int b = 0; b < c.n_seqs; ++b) {
      const int64_t off = int64_t{b} * c.n_tokens * c.channels;
      float* st = hist > 0 ? ref_state.data() + slots[b] * hist * c.channels : nullptr;
      cpu::CausalConv1dSilu(x.data() + off, c.n_tokens, c.channels, w.data(), c.d_conv, st,
                            ref_y.data() + off);
    }
    for (size_t i = 0; i < y.size(); ++i) {
      // Scale: sum of |w u| bounded by sum |w| * max|u| over the taps; use a per-element bound
      // of 1e-6 * (8 * 0.5 * 4 sigma) = 1.6e-5 plus 1e-6 |y|.
      const double err = std::fabs(y[i] - ref_y[i]);
      worst = std::max(worst, err / (1.0 + std::fabs(ref_y[i])));
      EXPECT_LE(err, 1.6e-5 + 1e-6 * std::fabs(ref_y[i])) << "y[" << i << "] channels " << c.channels;
    }
    for (size_t i = 0; i < state.size(); ++i) {
      ASSERT_EQ(gpu_state[i], ref_state[i]) << "state[" << i << "]";  // copies: bit-exact
    }
  }
  std::printf("[ conv1d ] max |gpu - ref| / (1 + |ref|) = %.3g\n", worst);
  RecordProperty("max_rel_error", std::to_string(worst));
}

}  // namespace
}  // namespace moed::cuda

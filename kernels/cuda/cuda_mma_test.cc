// The tensor-core products of ABI 1.4 (gemm_mma.cu) against their CPU twins: gemm_mma against
// MatMulReference and moe_grouped against per-(token, slot) MatMulReference of the expert slices,
// for every block type. Skips without a GPU.
//
// Tolerance: both round their inputs to F16 (unit roundoff u = 2^-11) and accumulate in float32.
// gemm_mma rounds W and x: |error| <= (2u + u^2 + float32 accumulation) * abs-sum < 1.5e-3 *
// abs-sum. moe_grouped rounds x and the gate/up weights (act off by <= 2u of its scale), act itself
// (u), and the down weights (u): the y error stays under 4u + float32 of the scale
// sum_s |w_s| sum_f |D[o][f]| (|act_f| + 1.1 |u_f| abs-sum(g_f) + |silu(g_f)| abs-sum(u_f)),
// i.e. below 3e-3 of it. A wrong row, slot or expert is off by O(1) of that scale.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cuda/api.h"
#include "kernels/cuda/cuda_test_util.h"
#include "kernels/cuda/loader.h"
#include "kernels/quants/dequantize.h"
#include "kernels/quants/ggml_type.h"

namespace moed::cuda {
namespace {

constexpr double kGemmTolerance = 1.5e-3;
constexpr double kMoeTolerance = 3e-3;

// RandomWeights whose rows decode to values F16 holds (max |w| in [1e-2, limit]): the types drawn
// from random block bytes can decode to millions, which rounding to F16 would turn into inf (and
// the MoE's F16 activations, products of two such dot products, even sooner). Real checkpoints'
// weights are far inside that range.
std::vector<uint8_t> F16RangeWeights(GgmlType type, int64_t n_in, int64_t n_out, std::mt19937& rng,
                                     float limit = 1e4f) {
  const auto row_bytes = static_cast<size_t>(RowBytes(type, n_in));
  std::vector<uint8_t> data(row_bytes * static_cast<size_t>(n_out));
  std::vector<float> values(static_cast<size_t>(n_in));
  for (int64_t o = 0; o < n_out; ++o) {
    for (int attempt = 0;; ++attempt) {
      const std::vector<uint8_t> row = RandomWeights(type, n_in, 1, rng);
      EXPECT_TRUE(DequantizeRow(type, row.data(), values.data(), n_in).ok());
      float top = 0;
      for (float v : values) top = std::max(top, std::fabs(v));
      if ((top >= 1e-2f && top <= limit) || attempt == 100000) {
        EXPECT_LT(attempt, 100000) << GgmlTypeName(type) << ": no row in F16 range";
        std::memcpy(data.data() + o * row_bytes, row.data(), row_bytes);
        break;
      }
    }
  }
  return data;
}

double CheckGemmMma(GgmlType type, int64_t n_in, int64_t n_out, int n_tokens, std::mt19937& rng) {
  const CudaLibrary& lib = *GetBackend().lib;
  const std::vector<uint8_t> w = F16RangeWeights(type, n_in, n_out, rng);
  const std::vector<float> x = Normal(static_cast<size_t>(n_in * n_tokens), rng);
  const cpu::WeightMatrix m{type, w.data(), n_in, n_out, static_cast<uint64_t>(RowBytes(type, n_in))};
  std::vector<float> ref(static_cast<size_t>(n_out * n_tokens));
  EXPECT_TRUE(cpu::MatMulReference(m, x.data(), n_tokens, ref.data()).ok());
  const std::vector<double> scale = AbsSums(m, x.data(), n_tokens);

  DeviceBuffer dw(w.size()), dx(x.size() * 4), dy(ref.size() * 4);
  dw.Upload(w.data());
  dx.Upload(x.data());
  MoedCudaGemvArgs a{};
  a.ggml_type = static_cast<uint32_t>(type);
  a.w = dw.get<void>();
  a.row_bytes = m.row_bytes;
  a.n_in = n_in, a.n_out = n_out, a.n_tokens = n_tokens, a.n_matrices = 1;
  a.x = dx.get<float>(), a.y = dy.get<float>();
  EXPECT_TRUE(lib.Check(lib.api().gemm_mma(&a, nullptr), "gemm_mma").ok());
  EXPECT_TRUE(lib.Check(lib.api().synchronize(), "sync").ok());
  std::vector<float> y(ref.size());
  dy.Download(y.data());
  double worst = 0;
  int failures = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double err = std::fabs(static_cast<double>(y[i]) - ref[i]);
    worst = std::max(worst, err / (scale[i] + 1e-30));
    if (!(err <= kGemmTolerance * scale[i] + 1e-30) && ++failures <= 5) {
      ADD_FAILURE() << GgmlTypeName(type) << " " << n_in << "x" << n_out << " tokens=" << n_tokens << ": y["
                    << i / n_out << "][" << i % n_out << "] = " << y[i] << ", reference " << ref[i];
    }
  }
  return worst;
}

struct MoeCase {
  int64_t n_embd, n_ff, n_expert;
  int top_k, n_tokens;
  bool skip_one, accumulate;
};

// Runs moe_grouped and checks y against the CPU twin (unless y_out is given: then it only returns
// y). Returns the largest error ratio.
double CheckMoeGrouped(GgmlType gu_type, GgmlType d_type, const MoeCase& c, std::mt19937& rng,
                       std::vector<float>* y_out = nullptr) {
  const CudaLibrary& lib = *GetBackend().lib;
  const std::vector<uint8_t> gate = F16RangeWeights(gu_type, c.n_embd, c.n_ff * c.n_expert, rng, 8);
  const std::vector<uint8_t> up = F16RangeWeights(gu_type, c.n_embd, c.n_ff * c.n_expert, rng, 8);
  const std::vector<uint8_t> down = F16RangeWeights(d_type, c.n_ff, c.n_embd * c.n_expert, rng, 8);
  const int pairs = c.n_tokens * c.top_k;
  std::vector<int32_t> ids(static_cast<size_t>(pairs)), perm(static_cast<size_t>(c.n_expert));
  std::vector<float> wts(static_cast<size_t>(pairs));
  std::uniform_real_distribution<float> uni(0.05f, 1.0f);
  for (int t = 0; t < c.n_tokens; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int k = 0; k < c.top_k; ++k) ids[t * c.top_k + k] = perm[k], wts[t * c.top_k + k] = uni(rng);
  }
  if (c.skip_one) ids[static_cast<size_t>(pairs / 2)] = -1;
  const std::vector<float> x = Normal(static_cast<size_t>(c.n_tokens * c.n_embd), rng);
  const std::vector<float> y0 = Normal(x.size(), rng);

  uint64_t scratch_bytes = 0;
  EXPECT_TRUE(lib.Check(lib.api().moe_grouped_scratch_bytes(c.n_tokens, c.top_k, c.n_embd, c.n_ff, c.n_expert,
                                                            &scratch_bytes),
                        "scratch").ok());
  DeviceBuffer dg(gate.size()), du(up.size()), dd(down.size()), dids(ids.size() * 4), dw(wts.size() * 4),
      dx(x.size() * 4), dy(y0.size() * 4), dscratch(scratch_bytes);
  dg.Upload(gate.data()), du.Upload(up.data()), dd.Upload(down.data());
  dids.Upload(ids.data()), dw.Upload(wts.data()), dx.Upload(x.data()), dy.Upload(y0.data());
  MoedCudaMoeGroupedArgs a{};
  a.gate_up_type = static_cast<uint32_t>(gu_type), a.down_type = static_cast<uint32_t>(d_type);
  a.gate_w = dg.get<void>(), a.up_w = du.get<void>(), a.down_w = dd.get<void>();
  a.n_embd = c.n_embd, a.n_ff = c.n_ff, a.n_expert = c.n_expert, a.n_tokens = c.n_tokens, a.top_k = c.top_k;
  a.ids = dids.get<int32_t>(), a.weights = dw.get<float>(), a.x = dx.get<float>(), a.y = dy.get<float>();
  a.accumulate = c.accumulate ? 1 : 0;
  a.scratch = dscratch.get<void>(), a.scratch_bytes = static_cast<int64_t>(scratch_bytes);
  EXPECT_TRUE(lib.Check(lib.api().moe_grouped(&a, nullptr), "moe_grouped").ok());
  EXPECT_TRUE(lib.Check(lib.api().synchronize(), "sync").ok());
  std::vector<float> y(y0.size());
  dy.Download(y.data());
  if (y_out != nullptr) {
    *y_out = y;
    return 0;
  }

  std::vector<double> y_ref(y.size()), y_scale(y.size());
  for (size_t i = 0; i < y.size(); ++i) {
    y_ref[i] = c.accumulate ? y0[i] : 0.0;
    y_scale[i] = c.accumulate ? std::fabs(y0[i]) : 0.0;
  }
  std::vector<float> g(static_cast<size_t>(c.n_ff)), u(g.size()), act(g.size()), act_scale(g.size()),
      d(static_cast<size_t>(c.n_embd));
  for (int p = 0; p < pairs; ++p) {
    const int t = p / c.top_k, e = ids[p];
    if (e < 0) continue;
    const float* xt = x.data() + t * c.n_embd;
    const cpu::WeightMatrix mg = cpu::ExpertSlice(gu_type, gate.data(), c.n_embd, c.n_ff, e);
    const cpu::WeightMatrix mu = cpu::ExpertSlice(gu_type, up.data(), c.n_embd, c.n_ff, e);
    const cpu::WeightMatrix md = cpu::ExpertSlice(d_type, down.data(), c.n_ff, c.n_embd, e);
    EXPECT_TRUE(cpu::MatMulReference(mg, xt, 1, g.data()).ok());
    EXPECT_TRUE(cpu::MatMulReference(mu, xt, 1, u.data()).ok());
    const std::vector<double> ag = AbsSums(mg, xt, 1), au = AbsSums(mu, xt, 1);
    for (int64_t f = 0; f < c.n_ff; ++f) {
      const double silu = g[f] / (1.0 + std::exp(-static_cast<double>(g[f])));
      act[f] = static_cast<float>(silu * u[f]);
      act_scale[f] = static_cast<float>(std::fabs(act[f]) + 1.1 * std::fabs(u[f]) * ag[f] + std::fabs(silu) * au[f]);
    }
    EXPECT_TRUE(cpu::MatMulReference(md, act.data(), 1, d.data()).ok());
    const std::vector<double> ad = AbsSums(md, act_scale.data(), 1);
    for (int64_t o = 0; o < c.n_embd; ++o) {
      y_ref[t * c.n_embd + o] += static_cast<double>(wts[p]) * d[o];
      y_scale[t * c.n_embd + o] += static_cast<double>(wts[p]) * ad[o];
    }
  }
  double worst = 0;
  int failures = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double err = std::fabs(y[i] - y_ref[i]);
    worst = std::max(worst, err / (y_scale[i] + 1e-30));
    if (!(err <= kMoeTolerance * y_scale[i] + 1e-30) && ++failures <= 5) {
      ADD_FAILURE() << GgmlTypeName(gu_type) << "/" << GgmlTypeName(d_type) << " tokens=" << c.n_tokens
                    << " experts=" << c.n_expert << ": y[" << i / c.n_embd << "][" << i % c.n_embd << "] = " << y[i]
                    << ", reference " << y_ref[i] << ", scale " << y_scale[i];
    }
  }
  return worst;
}

class CudaMmaTypeTest : public ::testing::TestWithParam<GgmlType> {};

TEST_P(CudaMmaTypeTest, GemmMatchesCpuReference) {
  MOED_REQUIRE_GPU();
  const GgmlType type = GetParam();
  std::mt19937 rng(21);
  const int64_t unit = std::max<int64_t>(32, FindGgmlType(type)->block_size);
  double worst = 0;
  // Output rows around the 64-row tile, token counts around the 32-row tile, 1..17 stages of K.
  // The last three split K over a cluster on Hopper (few output tiles, 8+ stages): 17 stages in
  // slices of 5, 5, 5, 2, and (32-weight types) 9 stages in slices of 3, 3, 3 and an empty one.
  for (const auto& [n_in, n_out, tokens] : std::vector<std::tuple<int64_t, int64_t, int>>{
           {unit, 7, 1}, {2 * unit, 64, 16}, {4 * unit, 333, 33}, {8 * unit, 130, 100}, {2176 / unit * unit, 65, 40},
           {1152 / unit * unit, 200, 9}}) {
    worst = std::max(worst, CheckGemmMma(type, n_in, n_out, tokens, rng));
  }
  std::printf("[ %-8s ] gemm_mma max |gpu - ref| / abs-sum: %.3g\n", std::string(GgmlTypeName(type)).c_str(), worst);
}

TEST_P(CudaMmaTypeTest, MoeGroupedMatchesCpuReference) {
  MOED_REQUIRE_GPU();
  const GgmlType type = GetParam();
  std::mt19937 rng(22);
  const int64_t unit = std::max<int64_t>(32, FindGgmlType(type)->block_size);
  double worst = 0;
  // One token; a skipped slot and experts of more than one 8-row tile (120 pairs over 16 experts
  // take the small tiles); 32-row tiles (140 pairs over 4 experts).
  for (const MoeCase& c : {MoeCase{unit, unit, 8, 4, 1, false, false},
                           MoeCase{2 * unit, unit, 16, 4, 30, true, true},
                           MoeCase{unit, 2 * unit, 4, 2, 70, false, true}}) {
    worst = std::max(worst, CheckMoeGrouped(type, type, c, rng));
  }
  std::printf("[ %-8s ] moe_grouped max |gpu - ref| / scale: %.3g\n", std::string(GgmlTypeName(type)).c_str(), worst);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, CudaMmaTypeTest,
                         ::testing::Values(GgmlType::kQ8_0, GgmlType::kQ4_K, GgmlType::kQ5_K, GgmlType::kQ6_K,
                                           GgmlType::kQ3_K, GgmlType::kIq4Xs, GgmlType::kIq3Xxs, GgmlType::kIq3A770,
                                           GgmlType::kMxfp4, GgmlType::kNvfp4, GgmlType::kBf16, GgmlType::kF16,
                                           GgmlType::kF32),
                         [](const auto& info) { return std::string(GgmlTypeName(info.param)); });

TEST(CudaMmaTest, MoeGroupedOnTheModelShapeIsDeterministic) {
  MOED_REQUIRE_GPU();
  // 35B-A3B's expert shape with mixed types, 64 tokens (a decode batch), run twice: the group
  // kernel orders each expert's rows by atomics, which must not change any bit of y.
  std::mt19937 rng_a(5), rng_b(5);
  std::vector<float> a, b;
  const MoeCase c{2048, 512, 64, 8, 64, false, false};
  CheckMoeGrouped(GgmlType::kQ4_K, GgmlType::kQ6_K, c, rng_a, &a);
  CheckMoeGrouped(GgmlType::kQ4_K, GgmlType::kQ6_K, c, rng_b, &b);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace moed::cuda

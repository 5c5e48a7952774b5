// Tests of RmsNorm / L2Normalize against plain double loops, and of RopeMultiNeox against a
// double-precision implementation written here from qwen35moe.md §3.3 step 4 (pairs (i, i +
// n_rot/2), theta_i = pos_s(i) * base^(-2i/n_rot), interleaved sections).
#include <array>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"

namespace moed::cpu {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

TEST(RmsNormTest, MatchesPlainLoop) {
  for (const int64_t n : {1, 7, 256, 2048}) {
    const std::vector<float> x = Random(n, 1, 3.0f);
    const std::vector<float> w = Random(n, 2);
    for (const bool with_weight : {false, true}) {
      std::vector<float> y(static_cast<size_t>(n));
      RmsNorm(x.data(), with_weight ? w.data() : nullptr, n, 1e-6f, y.data());
      double ss = 0.0;
      for (float v : x) ss += static_cast<double>(v) * v;
      const double inv = 1.0 / std::sqrt(ss / static_cast<double>(n) + 1e-6);
      for (int64_t i = 0; i < n; ++i) {
        const double expect = x[i] * inv * (with_weight ? w[i] : 1.0);
        EXPECT_NEAR(y[i], expect, 1e-6 * (std::fabs(expect) + 1e-3)) << n << " " << i;
      }
    }
  }
}

TEST(RmsNormTest, InPlaceAndEpsilon) {
  std::vector<float> x = Random(64, 3);
  const std::vector<float> w = Random(64, 4);
  std::vector<float> y(64);
  RmsNorm(x.data(), w.data(), 64, 1e-6f, y.data());
  RmsNorm(x.data(), w.data(), 64, 1e-6f, x.data());  // y aliases x
  EXPECT_EQ(x, y);
  // All zeros: eps keeps the scale finite and the output zero.
  std::vector<float> zeros(16, 0.0f);
  RmsNorm(zeros.data(), nullptr, 16, 1e-6f, zeros.data());
  for (float v : zeros) EXPECT_EQ(v, 0.0f);
  // A large eps dominates: y = x / sqrt(mean + eps).
  std::vector<float> ones(4, 1.0f), out(4);
  RmsNorm(ones.data(), nullptr, 4, 3.0f, out.data());
  for (float v : out) EXPECT_FLOAT_EQ(v, 0.5f);
}

TEST(L2NormalizeTest, MatchesPlainLoop) {
  for (const int64_t n : {1, 5, 128, 1000}) {
    std::vector<float> x = Random(n, 5, 2.0f);
    const std::vector<float> orig = x;
    L2Normalize(x.data(), n, 1e-6f);
    double ss = 0.0;
    for (float v : orig) ss += static_cast<double>(v) * v;
    const double norm = std::sqrt(ss);
    double out_ss = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(x[i], orig[i] / norm, 1e-6 * (std::fabs(orig[i] / norm) + 1e-4));
      out_ss += static_cast<double>(x[i]) * x[i];
    }
    EXPECT_NEAR(out_ss, 1.0, 1e-5);
  }
}

TEST(L2NormalizeTest, SmallVectorsDivideByEps) {
  std::vector<float> zeros(8, 0.0f);
  L2Normalize(zeros.data(), 8, 1e-6f);
  for (float v : zeros) EXPECT_EQ(v, 0.0f);
  std::vector<float> tiny = {3e-7f, 4e-7f};  // norm 5e-7 < eps 1e-6
  L2Normalize(tiny.data(), 2, 1e-6f);
  EXPECT_NEAR(tiny[0], 0.3f, 1e-6f);
  EXPECT_NEAR(tiny[1], 0.4f, 1e-6f);
}

// How the reference builds theta_i: exactly in double, or the way ggml does (and §3.9 of the doc
// describes): float32 position times a float32 ratio applied once per frequency step.
enum class Angles { kExact, kGgmlFloat };

// The doc's formula, in double, written independently of rope.cc.
void ReferenceRope(std::vector<double>& x, int64_t n_heads, int64_t head_dim, int64_t n_rot,
                   const std::array<int64_t, 3>& pos, const std::array<int32_t, 4>& sections, double base,
                   Angles angles) {
  const int64_t half = n_rot / 2;
  float theta_f[3] = {static_cast<float>(pos[0]), static_cast<float>(pos[1]), static_cast<float>(pos[2])};
  const float ratio_f = std::pow(static_cast<float>(base), -2.0f / static_cast<float>(n_rot));
  for (int64_t i = 0; i < half; ++i) {
    int s = 0;  // t
    if (i % 3 == 1 && i < 3 * sections[1]) s = 1;  // h
    if (i % 3 == 2 && i < 3 * sections[2]) s = 2;  // w
    const double theta = angles == Angles::kExact
                             ? static_cast<double>(pos[s]) * std::pow(base, -2.0 * static_cast<double>(i) / n_rot)
                             : static_cast<double>(theta_f[s]);
    for (float& t : theta_f) t *= ratio_f;
    const double c = std::cos(theta), sn = std::sin(theta);
    for (int64_t h = 0; h < n_heads; ++h) {
      double& a = x[h * head_dim + i];
      double& b = x[h * head_dim + i + half];
      const double a0 = a, b0 = b;
      a = a0 * c - b0 * sn;
      b = a0 * sn + b0 * c;
    }
  }
}

struct RopeCase {
  int64_t n_heads, head_dim, n_rot;
  std::array<int64_t, 3> pos;
  std::array<int32_t, 4> sections;
  float base;
};

// Runs RopeMultiNeox and both references; checks the rotated dims and that the others are
// untouched bit for bit.
void CheckRope(const RopeCase& c) {
  const int64_t n = c.n_heads * c.head_dim;
  const std::vector<float> in = Random(n, 17);
  std::vector<float> got = in;
  RopePosition p;
  p.p = {c.pos[0], c.pos[1], c.pos[2], c.pos[0]};
  RopeMultiNeox(got.data(), c.n_heads, c.head_dim, c.n_rot, p, c.sections, c.base);
  for (const Angles angles : {Angles::kGgmlFloat, Angles::kExact}) {
    std::vector<double> ref(in.begin(), in.end());
    ReferenceRope(ref, c.n_heads, c.head_dim, c.n_rot, c.pos, c.sections, c.base, angles);
    // Against ggml's float angles the only differences are float rounding of the rotation.
    // Against exact angles, float32 theta drifts by up to ~pos * 4e-8 rad (see rope.cc), which
    // is far below 1e-5 for positions up to a few hundred and grows linearly beyond.
    const double tol = angles == Angles::kGgmlFloat
                           ? 1e-5
                           : 1e-5 + 1e-7 * static_cast<double>(std::max({c.pos[0], c.pos[1], c.pos[2]}));
    for (int64_t h = 0; h < c.n_heads; ++h) {
      for (int64_t d = 0; d < c.head_dim; ++d) {
        const size_t k = static_cast<size_t>(h * c.head_dim + d);
        if (d < c.n_rot) {
          ASSERT_NEAR(got[k], ref[k], tol) << "head " << h << " dim " << d << " pos " << c.pos[0];
        } else {
          ASSERT_EQ(got[k], in[k]) << "pass-through dim " << d << " changed";
        }
      }
    }
  }
}

TEST(RopeTest, TextPositionsPartialRotation) {
  // qwen35moe's shape: 256-dim heads, 64 rotated, base 1e7, sections [11, 11, 10, 0].
  for (const int64_t pos : {0, 1, 7, 300, 1000, 100000}) {
    CheckRope({3, 256, 64, {pos, pos, pos}, {11, 11, 10, 0}, 1e7f});
  }
  // Full rotation and other bases/shapes.
  CheckRope({2, 16, 16, {5, 5, 5}, {11, 11, 10, 0}, 10000.0f});
  CheckRope({4, 12, 8, {123, 123, 123}, {0, 0, 0, 0}, 500000.0f});
}

TEST(RopeTest, PositionZeroIsIdentity) {
  const std::vector<float> in = Random(2 * 128, 3);
  std::vector<float> x = in;
  RopeMultiNeox(x.data(), 2, 128, 64, RopePosition::Text(0), {11, 11, 10, 0}, 1e7f);
  EXPECT_EQ(x, in);
}

TEST(RopeTest, MultiSectionUsesDistinctStreams) {
  // Distinct t, h, w: frequencies read different positions per the interleaved rule.
  CheckRope({2, 256, 64, {5, 17, 40}, {11, 11, 10, 0}, 1e7f});
  CheckRope({3, 32, 32, {100, 3, 250}, {2, 3, 1, 0}, 10000.0f});  // sections shorter than n_rot/2
  // The streams matter: with h != t the result differs from the text rotation at t.
  const std::vector<float> in = Random(64, 9);
  std::vector<float> a = in, b = in;
  RopePosition multi;
  multi.p = {5, 17, 40, 5};
  RopeMultiNeox(a.data(), 1, 64, 64, multi, {11, 11, 10, 0}, 1e7f);
  RopeMultiNeox(b.data(), 1, 64, 64, RopePosition::Text(5), {11, 11, 10, 0}, 1e7f);
  EXPECT_EQ(a[0], b[0]);   // i = 0 reads t
  EXPECT_NE(a[1], b[1]);   // i = 1 reads h
  EXPECT_NE(a[2], b[2]);   // i = 2 reads w
  EXPECT_EQ(a[3], b[3]);   // i = 3 reads t
}

}  // namespace
}  // namespace moed::cpu

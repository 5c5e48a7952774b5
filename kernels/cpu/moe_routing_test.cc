// Tests of MoE routing (qwen35moe.md §3.6) against a plain loop: softmax in double, a full
// stable sort by (probability descending, id ascending), renormalisation with llama.cpp's floor.
#include "kernels/cpu/moe_routing.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace moed::cpu {
namespace {

struct Routed {
  std::vector<int32_t> ids;
  std::vector<double> weights;
};

Routed ReferenceRoute(const std::vector<float>& logits, int64_t k) {
  const int64_t n = static_cast<int64_t>(logits.size());
  const double mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(n);
  double sum = 0.0;
  for (int64_t e = 0; e < n; ++e) sum += (p[e] = std::exp(logits[e] - mx));
  for (double& x : p) x /= sum;
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  Routed r;
  double sel = 0.0;
  for (int64_t i = 0; i < k; ++i) sel += p[order[i]];
  for (int64_t i = 0; i < k; ++i) {
    r.ids.push_back(order[i]);
    r.weights.push_back(p[order[i]] / std::max(sel, 6.103515625e-5));
  }
  return r;
}

void ExpectMatchesReference(const std::vector<float>& logits, int64_t k) {
  std::vector<int32_t> ids(k, -7);
  std::vector<float> w(k, NAN);
  RouteTopK(logits.data(), static_cast<int64_t>(logits.size()), k, ids.data(), w.data());
  const Routed ref = ReferenceRoute(logits, k);
  EXPECT_EQ(ids, ref.ids);
  for (int64_t i = 0; i < k; ++i) EXPECT_NEAR(w[i], ref.weights[i], 1e-6) << i;
}

TEST(RouteTopKTest, RandomLogitsMatchReference) {
  std::mt19937 rng(21);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (int64_t n : {8, 128, 256, 512}) {
    for (int64_t k : {1, 8, 10}) {
      if (k > n) continue;
      SCOPED_TRACE(testing::Message() << "n=" << n << " k=" << k);
      std::vector<float> logits(n);
      for (float& x : logits) x = normal(rng);
      ExpectMatchesReference(logits, k);
    }
  }
}

TEST(RouteTopKTest, TiesGoToTheLowerId) {
  // Experts 1, 3, 4 and 6 tie for first place, 0 and 5 for the next.
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 2.0f, 0.5f, 2.0f, -3.0f};
  std::vector<int32_t> ids(6);
  std::vector<float> w(6);
  RouteTopK(logits.data(), 8, 6, ids.data(), w.data());
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 3, 4, 6, 0, 5}));
  EXPECT_FLOAT_EQ(w[0], w[3]);
  EXPECT_FLOAT_EQ(w[4], w[5]);
  ExpectMatchesReference(logits, 6);
  ExpectMatchesReference(logits, 3);  // the cut falls inside the tie

  const std::vector<float> flat(16, 1.25f);
  RouteTopK(flat.data(), 16, 4, ids.data(), w.data());
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(ids[i], i);
    EXPECT_FLOAT_EQ(w[i], 0.25f);
  }
}

TEST(RouteTopKTest, AllExpertsSelectedGivesTheSoftmax) {
  std::mt19937 rng(22);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> logits(64);
  for (float& x : logits) x = normal(rng);
  ExpectMatchesReference(logits, 64);
  std::vector<int32_t> ids(64);
  std::vector<float> w(64);
  RouteTopK(logits.data(), 64, 64, ids.data(), w.data());
  double sum = 0.0;
  for (float x : w) sum += x;
  EXPECT_NEAR(sum, 1.0, 1e-5);
  std::vector<int32_t> sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 64; ++i) EXPECT_EQ(sorted[i], i);
}

// k beyond the expert count is a caller bug; it is clamped (n_expert entries written, the rest
// untouched) rather than reading or writing out of bounds.
TEST(RouteTopKTest, KLargerThanExpertCountIsClamped) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f};
  std::vector<int32_t> ids(5, -1);
  std::vector<float> w(5, -1.0f);
  RouteTopK(logits.data(), 3, 5, ids.data(), w.data());
  EXPECT_EQ(ids, (std::vector<int32_t>{2, 1, 0, -1, -1}));
  EXPECT_NEAR(w[0] + w[1] + w[2], 1.0f, 1e-6);
  EXPECT_EQ(w[3], -1.0f);
}

TEST(RouteTopKTest, SmallSumIsClampedLikeLlamaCpp) {
  // 20000 equal experts: p = 5e-5 each, below the 2^-14 floor, so one selected expert weighs
  // 5e-5 / 2^-14 = 0.8192 instead of 1.
  const std::vector<float> logits(20000, 0.0f);
  int32_t id = -1;
  float w = 0.0f;
  RouteTopK(logits.data(), 20000, 1, &id, &w);
  EXPECT_EQ(id, 0);
  EXPECT_NEAR(w, 0.8192f, 1e-5);
}

TEST(RouteTopKTest, NanLogitIsRankedLastWithoutCrashing) {
  const std::vector<float> logits = {1.0f, NAN, 3.0f, 2.0f};
  std::vector<int32_t> ids(4);
  std::vector<float> w(4);
  RouteTopK(logits.data(), 4, 4, ids.data(), w.data());
  std::vector<int32_t> sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int32_t>{0, 1, 2, 3}));
}

}  // namespace
}  // namespace moed::cpu

// Tests of the causal conv1d + SiLU (rolling state) and of paged GQA attention, each against a
// plain loop written from qwen35moe.md (§3.4 step 2 and §3.3 step 5).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/conv1d.h"
#include "kernels/cpu/thread_pool.h"

namespace moed::cpu {
namespace {

std::vector<float> RandomVector(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& e : x) e = normal(rng);
  return x;
}

// ---------------------------------------------------------------------------------------------
// Conv1d

// u = [state ‖ x]; y[t][c] = silu(sum_k w[c][k] * u[t + k][c]); new state = last d-1 rows of u.
void ReferenceConv(const std::vector<float>& x, int64_t n_tokens, int64_t n_ch,
                   const std::vector<float>& w, int64_t d_conv, std::vector<float>& state,
                   std::vector<double>& y) {
  std::vector<float> u(state);
  u.insert(u.end(), x.begin(), x.end());
  y.assign(n_tokens * n_ch, 0.0);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t c = 0; c < n_ch; ++c) {
      double s = 0.0;
      for (int64_t k = 0; k < d_conv; ++k) s += double(w[c * d_conv + k]) * u[(t + k) * n_ch + c];
      y[t * n_ch + c] = s / (1.0 + std::exp(-s));
    }
  }
  state.assign(u.end() - (d_conv - 1) * n_ch, u.end());
}

TEST(CausalConv1dSiluTest, MatchesReferenceWithIncomingState) {
  std::mt19937 rng(3);
  const int64_t n_ch = 37;
  for (int64_t d_conv : {1, 2, 4}) {
    for (int64_t n_tokens : {1, 2, 3, 5, 17}) {
      SCOPED_TRACE(testing::Message() << "d_conv=" << d_conv << " T=" << n_tokens);
      const std::vector<float> x = RandomVector(n_tokens * n_ch, rng);
      const std::vector<float> w = RandomVector(d_conv * n_ch, rng);
      const std::vector<float> state0 = RandomVector((d_conv - 1) * n_ch, rng);
      std::vector<float> ref_state = state0;
      std::vector<double> ref_y;
      ReferenceConv(x, n_tokens, n_ch, w, d_conv, ref_state, ref_y);

      std::vector<float> state = state0, y(n_tokens * n_ch, NAN);
      CausalConv1dSilu(x.data(), n_tokens, n_ch, w.data(), d_conv, state.data(), y.data());
      EXPECT_EQ(state, ref_state);
      for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], ref_y[i], 1e-5) << i;
    }
  }
}

TEST(CausalConv1dSiluTest, ZeroStateMeansSequenceStart) {
  // With a zero state, token 0 sees only tap d_conv-1: y = silu(w[c][3] * x[c]).
  const int64_t n_ch = 3, d_conv = 4;
  const std::vector<float> x = {1.0f, -2.0f, 0.5f};
  const std::vector<float> w = {9, 9, 9, 2.0f, 9, 9, 9, 1.0f, 9, 9, 9, -4.0f};
  std::vector<float> state(3 * n_ch, 0.0f), y(n_ch);
  CausalConv1dSilu(x.data(), 1, n_ch, w.data(), d_conv, state.data(), y.data());
  auto silu = [](float a) { return a / (1.0f + std::exp(-a)); };
  EXPECT_FLOAT_EQ(y[0], silu(2.0f));
  EXPECT_FLOAT_EQ(y[1], silu(-2.0f));
  EXPECT_FLOAT_EQ(y[2], silu(-2.0f));
  // The state shifted by one token: two zero rows, then x.
  EXPECT_EQ(state, (std::vector<float>{0, 0, 0, 0, 0, 0, 1.0f, -2.0f, 0.5f}));
}

// Feeding a sequence in pieces (decode steps, short prefills) gives exactly the one-pass result.
TEST(CausalConv1dSiluTest, PiecewiseEqualsOnePass) {
  std::mt19937 rng(4);
  const int64_t n_ch = 19, d_conv = 4, n = 23;
  const std::vector<float> x = RandomVector(n * n_ch, rng);
  const std::vector<float> w = RandomVector(d_conv * n_ch, rng);
  const std::vector<float> state0 = RandomVector((d_conv - 1) * n_ch, rng);
  std::vector<float> st_all = state0, y_all(n * n_ch);
  CausalConv1dSilu(x.data(), n, n_ch, w.data(), d_conv, st_all.data(), y_all.data());

  std::vector<float> st = state0, y(n * n_ch, NAN);
  int64_t t0 = 0;
  for (int64_t len : {1, 2, 1, 5, 3, 1, 10}) {
    CausalConv1dSilu(&x[t0 * n_ch], len, n_ch, w.data(), d_conv, st.data(), &y[t0 * n_ch]);
    t0 += len;
  }
  ASSERT_EQ(t0, n);
  EXPECT_EQ(y, y_all);
  EXPECT_EQ(st, st_all);
}

// ---------------------------------------------------------------------------------------------
// Paged attention

// A KV cache whose blocks live in shuffled places of one arena, like a real block allocator's.
struct TestCache {
  std::vector<float> k_arena, v_arena;
  std::vector<const float*> k_blocks, v_blocks;
  PagedKv kv;
  // Dense copies for the reference: [n_tokens][n_kv_heads][dim].
  std::vector<float> k_dense, v_dense;
};

TestCache MakeCache(int64_t n_tokens, int64_t block_size, int64_t n_kv, int64_t dk, int64_t dv,
                    std::mt19937& rng) {
  TestCache c;
  const int64_t n_blocks = (n_tokens + block_size - 1) / block_size;
  const int64_t k_block = block_size * n_kv * dk, v_block = block_size * n_kv * dv;
  c.k_arena = RandomVector(n_blocks * k_block, rng);
  c.v_arena = RandomVector(n_blocks * v_block, rng);
  std::vector<int64_t> slot(n_blocks);
  std::iota(slot.begin(), slot.end(), 0);
  std::shuffle(slot.begin(), slot.end(), rng);
  for (int64_t b = 0; b < n_blocks; ++b) {
    c.k_blocks.push_back(&c.k_arena[slot[b] * k_block]);
    c.v_blocks.push_back(&c.v_arena[slot[b] * v_block]);
  }
  c.kv = PagedKv{c.k_blocks.data(), c.v_blocks.data(), block_size, n_kv, dk, dv};
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* kr = c.k_blocks[t / block_size] + (t % block_size) * n_kv * dk;
    const float* vr = c.v_blocks[t / block_size] + (t % block_size) * n_kv * dv;
    c.k_dense.insert(c.k_dense.end(), kr, kr + n_kv * dk);
    c.v_dense.insert(c.v_dense.end(), vr, vr + n_kv * dv);
  }
  return c;
}

// Causal softmax attention in double, straight from the definition.
std::vector<double> ReferenceAttention(const std::vector<float>& q, int64_t n_queries,
                                       int64_t first_pos, int64_t n_heads, const TestCache& c,
                                       float scale) {
  const int64_t n_kv = c.kv.n_kv_heads, dk = c.kv.head_dim_k, dv = c.kv.head_dim_v;
  std::vector<double> out(n_queries * n_heads * dv, 0.0);
  for (int64_t i = 0; i < n_queries; ++i) {
    const int64_t n_ctx = first_pos + i + 1;
    for (int64_t h = 0; h < n_heads; ++h) {
      const int64_t kvh = h / (n_heads / n_kv);
      std::vector<double> s(n_ctx);
      double mx = -INFINITY;
      for (int64_t t = 0; t < n_ctx; ++t) {
        double d = 0.0;
        for (int64_t e = 0; e < dk; ++e)
          d += double(q[(i * n_heads + h) * dk + e]) * c.k_dense[(t * n_kv + kvh) * dk + e];
        s[t] = scale * d;
        mx = std::max(mx, s[t]);
      }
      double sum = 0.0;
      for (double& x : s) sum += (x = std::exp(x - mx));
      for (int64_t t = 0; t < n_ctx; ++t) {
        for (int64_t e = 0; e < dv; ++e) {
          out[(i * n_heads + h) * dv + e] += s[t] / sum * c.v_dense[(t * n_kv + kvh) * dv + e];
        }
      }
    }
  }
  return out;
}

struct AttnCase {
  int64_t block_size, n_heads, n_kv, dk, dv, first_pos, n_queries;
};

TEST(AttentionPagedTest, MatchesReferenceAcrossBlockBoundaries) {
  std::mt19937 rng(11);
  std::vector<AttnCase> cases;
  for (int64_t bs : {1, 3, 16}) {
    cases.push_back({bs, 4, 2, 24, 16, 0, 20});    // prefill from the start, GQA group 2
    cases.push_back({bs, 8, 1, 16, 16, 5, 13});    // prefill continuing a sequence, group 8
    cases.push_back({bs, 2, 2, 32, 8, 37, 1});     // decode, no grouping
    cases.push_back({bs, 4, 2, 256, 256, 40, 1});  // decode at the model's head dim
    cases.push_back({bs, 6, 3, 20, 12, 15, 4});    // dims off the 8-wide tiles
  }
  for (const AttnCase& ac : cases) {
    SCOPED_TRACE(testing::Message()
                 << "block_size=" << ac.block_size << " heads=" << ac.n_heads << "/" << ac.n_kv
                 << " first_pos=" << ac.first_pos << " n_queries=" << ac.n_queries);
    const TestCache c =
        MakeCache(ac.first_pos + ac.n_queries, ac.block_size, ac.n_kv, ac.dk, ac.dv, rng);
    const std::vector<float> q = RandomVector(ac.n_queries * ac.n_heads * ac.dk, rng);
    const float scale = 1.0f / std::sqrt(static_cast<float>(ac.dk));
    const std::vector<double> ref =
        ReferenceAttention(q, ac.n_queries, ac.first_pos, ac.n_heads, c, scale);
    std::vector<float> out(ref.size(), NAN);
    AttentionPaged(q.data(), ac.n_queries, ac.first_pos, ac.n_heads, c.kv, scale, out.data(),
                   nullptr);
    for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 2e-5) << i;
  }
}

// The first query of a sequence sees only token 0, so its output is exactly V[0] of its KV head.
TEST(AttentionPagedTest, FirstTokenReturnsItsValue) {
  std::mt19937 rng(12);
  const TestCache c = MakeCache(1, 4, 2, 8, 8, rng);
  const std::vector<float> q = RandomVector(4 * 8, rng);
  std::vector<float> out(4 * 8);
  AttentionPaged(q.data(), 1, 0, 4, c.kv, 0.3f, out.data(), nullptr);
  for (int64_t h = 0; h < 4; ++h) {
    for (int64_t e = 0; e < 8; ++e) EXPECT_FLOAT_EQ(out[h * 8 + e], c.v_dense[(h / 2) * 8 + e]);
  }
}

// Large scores must not overflow: the softmax subtracts the max.
TEST(AttentionPagedTest, LargeScoresStayFinite) {
  std::mt19937 rng(13);
  TestCache c = MakeCache(10, 3, 1, 8, 8, rng);
  std::vector<float> q(8, 100.0f);
  for (float& x : c.k_arena) x = std::abs(x) * 10.0f;
  std::vector<float> out(8);
  AttentionPaged(q.data(), 1, 9, 1, c.kv, 1.0f, out.data(), nullptr);
  for (float x : out) EXPECT_TRUE(std::isfinite(x));
}

TEST(AttentionPagedTest, ThreadedRunIsBitIdentical) {
  std::mt19937 rng(14);
  const TestCache c = MakeCache(50, 16, 2, 32, 32, rng);
  const std::vector<float> q = RandomVector(10 * 8 * 32, rng);
  std::vector<float> a(10 * 8 * 32), b(a.size());
  ThreadPool pool(3);
  AttentionPaged(q.data(), 10, 40, 8, c.kv, 0.2f, a.data(), nullptr);
  AttentionPaged(q.data(), 10, 40, 8, c.kv, 0.2f, b.data(), &pool);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace moed::cpu

// Tests of the gated delta rule: the recurrent and chunked kernels against a double-precision
// loop written straight from qwen35moe.md §3.4 step 7 (HF's [k][v] state layout), and against
// each other (the acceptance bound: max abs difference <= 1e-5).
#include "kernels/cpu/delta_rule.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/thread_pool.h"

namespace moed::cpu {
namespace {

struct Inputs {
  std::vector<float> q, k, v, g, beta, state;
};

// Normalised random inputs like the layer produces them: q, k L2-normalised per head (q also
// scaled by 1/sqrt(dk)), g <= 0, beta in (0, 1), a non-zero incoming state.
Inputs MakeInputs(const DeltaRuleShape& s, int64_t n_tokens, uint32_t seed, float min_g = -1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  Inputs in;
  auto heads = [&](std::vector<float>& x, int64_t n_heads, int64_t dim, float scale) {
    x.resize(n_tokens * n_heads * dim);
    for (int64_t h = 0; h < n_tokens * n_heads; ++h) {
      double ss = 0.0;
      for (int64_t i = 0; i < dim; ++i) {
        x[h * dim + i] = normal(rng);
        ss += double(x[h * dim + i]) * x[h * dim + i];
      }
      const float inv = static_cast<float>(scale / std::sqrt(ss));
      for (int64_t i = 0; i < dim; ++i) x[h * dim + i] *= inv;
    }
  };
  heads(in.q, s.n_k_heads, s.dk, 1.0f / std::sqrt(static_cast<float>(s.dk)));
  heads(in.k, s.n_k_heads, s.dk, 1.0f);
  in.v.resize(n_tokens * s.n_v_heads * s.dv);
  for (float& x : in.v) x = normal(rng);
  in.g.resize(n_tokens * s.n_v_heads);
  for (float& x : in.g) x = min_g * uni(rng);
  in.beta.resize(n_tokens * s.n_v_heads);
  for (float& x : in.beta) x = 1.0f / (1.0f + std::exp(-2.0f * normal(rng)));
  in.state.resize(s.n_v_heads * s.dv * s.dk);
  for (float& x : in.state) x = 0.5f * normal(rng);
  return in;
}

// §3.4 step 7 verbatim, in double, with HF's state S_j[k][v]. `state` is in the kernels' [v][k]
// layout and is converted on the way in and out.
void ReferenceDeltaRule(const DeltaRuleShape& s, int64_t n_tokens, const Inputs& in,
                        std::vector<float>& state, std::vector<double>& out) {
  const int64_t dk = s.dk, dv = s.dv;
  out.assign(n_tokens * s.n_v_heads * dv, 0.0);
  for (int64_t j = 0; j < s.n_v_heads; ++j) {
    const int64_t hk = j % s.n_k_heads;
    std::vector<double> S(dk * dv);
    for (int64_t kk = 0; kk < dk; ++kk) {
      for (int64_t vv = 0; vv < dv; ++vv) S[kk * dv + vv] = state[(j * dv + vv) * dk + kk];
    }
    std::vector<double> mem(dv), delta(dv);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* q = &in.q[(t * s.n_k_heads + hk) * dk];
      const float* k = &in.k[(t * s.n_k_heads + hk) * dk];
      const float* v = &in.v[(t * s.n_v_heads + j) * dv];
      const double decay = std::exp(double(in.g[t * s.n_v_heads + j]));
      const double beta = in.beta[t * s.n_v_heads + j];
      for (double& x : S) x *= decay;
      for (int64_t vv = 0; vv < dv; ++vv) {
        mem[vv] = 0.0;
        for (int64_t kk = 0; kk < dk; ++kk) mem[vv] += S[kk * dv + vv] * k[kk];
        delta[vv] = beta * (v[vv] - mem[vv]);
      }
      for (int64_t kk = 0; kk < dk; ++kk) {
        for (int64_t vv = 0; vv < dv; ++vv) S[kk * dv + vv] += k[kk] * delta[vv];
      }
      for (int64_t vv = 0; vv < dv; ++vv) {
        double o = 0.0;
        for (int64_t kk = 0; kk < dk; ++kk) o += S[kk * dv + vv] * q[kk];
        out[(t * s.n_v_heads + j) * dv + vv] = o;
      }
    }
    for (int64_t kk = 0; kk < dk; ++kk) {
      for (int64_t vv = 0; vv < dv; ++vv)
        state[(j * dv + vv) * dk + kk] = static_cast<float>(S[kk * dv + vv]);
    }
  }
}

template <typename A, typename B>
double MaxAbsDiff(const std::vector<A>& a, const std::vector<B>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0.0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double d = std::abs(double(a[i]) - double(b[i]));
    if (!(d <= m)) m = d;  // NaN propagates as a failure
  }
  return m;
}

struct Case {
  DeltaRuleShape shape;
  int64_t n_tokens;
};

std::vector<Case> Cases() {
  const DeltaRuleShape shapes[] = {
      {2, 4, 16, 16},    // Hv/Hk = 2
      {3, 3, 20, 12},    // Hv/Hk = 1, dims that are not multiples of the 8/16-wide tiles
      {1, 2, 128, 128},  // the model's head dims
      {2, 8, 32, 24},    // Hv/Hk = 4
  };
  std::vector<Case> cases;
  for (const DeltaRuleShape& s : shapes) {
    for (int64_t t : {1, 2, 63, 64, 65, 200}) cases.push_back({s, t});
  }
  return cases;
}

TEST(DeltaRuleTest, RecurrentAndChunkedMatchReferenceAndEachOther) {
  uint32_t seed = 1;
  for (const Case& c : Cases()) {
    const DeltaRuleShape& s = c.shape;
    SCOPED_TRACE(testing::Message() << "Hk=" << s.n_k_heads << " Hv=" << s.n_v_heads
                                    << " dk=" << s.dk << " dv=" << s.dv << " T=" << c.n_tokens);
    const Inputs in = MakeInputs(s, c.n_tokens, seed++);
    std::vector<float> ref_state = in.state;
    std::vector<double> ref_out;
    ReferenceDeltaRule(s, c.n_tokens, in, ref_state, ref_out);

    std::vector<float> rec_state = in.state, rec_out(ref_out.size(), NAN);
    DeltaRuleRecurrent(s, c.n_tokens, in.q.data(), in.k.data(), in.v.data(), in.g.data(),
                       in.beta.data(), rec_state.data(), rec_out.data(), nullptr);
    std::vector<float> chk_state = in.state, chk_out(ref_out.size(), NAN);
    DeltaRuleChunked(s, c.n_tokens, in.q.data(), in.k.data(), in.v.data(), in.g.data(),
                     in.beta.data(), chk_state.data(), chk_out.data(), nullptr);

    EXPECT_LE(MaxAbsDiff(rec_out, ref_out), 1e-5);
    EXPECT_LE(MaxAbsDiff(chk_out, ref_out), 1e-5);
    EXPECT_LE(MaxAbsDiff(chk_out, rec_out), 1e-5);
    EXPECT_LE(MaxAbsDiff(rec_state, ref_state), 1e-5);
    EXPECT_LE(MaxAbsDiff(chk_state, ref_state), 1e-5);
    EXPECT_LE(MaxAbsDiff(chk_state, rec_state), 1e-5);
  }
}

TEST(DeltaRuleTest, ChunkSizesAndStrongDecay) {
  const DeltaRuleShape s{2, 4, 24, 16};
  const int64_t n = 150;
  // g down to -12 per token: exp(G) underflows within a chunk, which must stay harmless.
  for (float min_g : {-0.05f, -1.0f, -12.0f}) {
    const Inputs in = MakeInputs(s, n, 77, min_g);
    std::vector<float> rec_state = in.state, rec_out(n * s.n_v_heads * s.dv);
    DeltaRuleRecurrent(s, n, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                       rec_state.data(), rec_out.data(), nullptr);
    for (int64_t chunk : {1, 7, 16, 64, 200}) {
      SCOPED_TRACE(testing::Message() << "min_g=" << min_g << " chunk=" << chunk);
      std::vector<float> st = in.state, out(rec_out.size(), NAN);
      DeltaRuleChunked(s, n, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                       st.data(), out.data(), nullptr, chunk);
      EXPECT_LE(MaxAbsDiff(out, rec_out), 1e-5);
      EXPECT_LE(MaxAbsDiff(st, rec_state), 1e-5);
    }
  }
}

// A prefill split over several calls, followed by decode steps, equals one pass: the state is
// carried correctly between calls.
TEST(DeltaRuleTest, StateCarriesAcrossCalls) {
  const DeltaRuleShape s{2, 4, 32, 32};
  const int64_t n = 140;
  const Inputs in = MakeInputs(s, n, 5);
  std::vector<float> ref_state = in.state;
  std::vector<double> ref_out;
  ReferenceDeltaRule(s, n, in, ref_state, ref_out);

  std::vector<float> st = in.state, out(ref_out.size(), NAN);
  const int64_t qk_row = s.n_k_heads * s.dk, v_row = s.n_v_heads * s.dv, g_row = s.n_v_heads;
  const int64_t pieces[] = {70, 1, 64, 2, 1, 1, 1};  // sums to 140
  int64_t t0 = 0;
  for (size_t p = 0; p < std::size(pieces); ++p) {
    const int64_t len = pieces[p];
    if (p % 2 == 0) {
      DeltaRuleChunked(s, len, &in.q[t0 * qk_row], &in.k[t0 * qk_row], &in.v[t0 * v_row],
                       &in.g[t0 * g_row], &in.beta[t0 * g_row], st.data(), &out[t0 * v_row],
                       nullptr);
    } else {
      DeltaRuleRecurrent(s, len, &in.q[t0 * qk_row], &in.k[t0 * qk_row], &in.v[t0 * v_row],
                         &in.g[t0 * g_row], &in.beta[t0 * g_row], st.data(), &out[t0 * v_row],
                         nullptr);
    }
    t0 += len;
  }
  ASSERT_EQ(t0, n);
  EXPECT_LE(MaxAbsDiff(out, ref_out), 1e-5);
  EXPECT_LE(MaxAbsDiff(st, ref_state), 1e-5);
}

// Heads are independent, so the thread count must not change a single bit.
TEST(DeltaRuleTest, ThreadedRunsAreBitIdentical) {
  const DeltaRuleShape s{4, 8, 32, 32};
  const int64_t n = 90;
  const Inputs in = MakeInputs(s, n, 9);
  ThreadPool pool(3);
  for (bool chunked : {false, true}) {
    std::vector<float> st1 = in.state, out1(n * s.n_v_heads * s.dv), st2 = in.state,
                       out2(out1.size());
    auto run = [&](float* st, float* o, ThreadPool* p) {
      if (chunked) {
        DeltaRuleChunked(s, n, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                         st, o, p);
      } else {
        DeltaRuleRecurrent(s, n, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                           st, o, p);
      }
    };
    run(st1.data(), out1.data(), nullptr);
    run(st2.data(), out2.data(), &pool);
    EXPECT_EQ(out1, out2) << "chunked=" << chunked;
    EXPECT_EQ(st1, st2) << "chunked=" << chunked;
  }
}

}  // namespace
}  // namespace moed::cpu

// Gated delta rule (docs: qwen35moe.md §3.4 step 7, §3.5): the per-token recurrence used for
// decode and the chunked WY/UT form used for prefill. Both parallelise over value heads: each head
// owns its state, so heads never share memory that is written. The hot functions are written on the
// 8-float helpers of vec8.h and cloned for x86-64-v3.
#include "kernels/cpu/delta_rule.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "kernels/cpu/vec8.h"

namespace moed::cpu {
namespace {

using vec8::Axpy;
using vec8::Dot;
using vec8::Dot2;
using vec8::Load;
using vec8::Mul;
using vec8::Scale;
using vec8::ScaleAxpy;
using vec8::ScaleCopy;
using vec8::Store;
using vec8::V8;

// Rows [i0, i0 + R) of C += A * B (row-major, leading dimensions lda/ldb/ldc), in register tiles
// of R x (8 * NV) floats: each B row is loaded once per R output rows.
template <int R, int NV>
MOED_CPU_INLINE void GemmTile(int64_t i0, int64_t j0, int64_t kd, const float* a, int64_t lda,
                              const float* b, int64_t ldb, float* c, int64_t ldc) {
  V8 acc[R][NV], bv[NV];
  // Fully unrolled so that the accumulators live in registers (-O2 alone keeps them in memory).
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) Load(acc[r][v], c + (i0 + r) * ldc + j0 + 8 * v);
  }
  for (int64_t kk = 0; kk < kd; ++kk) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) Load(bv[v], b + kk * ldb + j0 + 8 * v);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float ar = a[(i0 + r) * lda + kk];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] += ar * bv[v];
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) Store(c + (i0 + r) * ldc + j0 + 8 * v, acc[r][v]);
  }
}

template <int R>
MOED_CPU_INLINE void GemmRows(int64_t i0, int64_t n, int64_t kd, const float* a, int64_t lda,
                              const float* b, int64_t ldb, float* c, int64_t ldc) {
  int64_t j0 = 0;
  for (; j0 + 16 <= n; j0 += 16) GemmTile<R, 2>(i0, j0, kd, a, lda, b, ldb, c, ldc);
  for (; j0 + 8 <= n; j0 += 8) GemmTile<R, 1>(i0, j0, kd, a, lda, b, ldb, c, ldc);
  for (int r = 0; r < R; ++r) {
    for (int64_t j = j0; j < n; ++j) {
      float s = c[(i0 + r) * ldc + j];
      for (int64_t kk = 0; kk < kd; ++kk) s += a[(i0 + r) * lda + kk] * b[kk * ldb + j];
      c[(i0 + r) * ldc + j] = s;
    }
  }
}

// Which part of a product is needed inside a chunk, to skip the blocks a triangle makes zero.
enum class Tri {
  kFull,
  kLowerA,  // A is lower triangular (incl. diagonal): row i needs only kk <= i
  kLowerC,  // only C's lower triangle (incl. diagonal) is needed: row i needs only j <= i
};

// C[m x n] += A[m x kd] * B[kd x n]. With a triangle, tiles may still compute some entries just
// beyond it (kLowerC) or read the zeros of A (kLowerA); both are harmless.
MOED_CPU_MULTIVERSION
void GemmAcc(int64_t m, int64_t n, int64_t kd, const float* a, int64_t lda, const float* b,
             int64_t ldb, float* c, int64_t ldc, Tri tri = Tri::kFull) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) {
    // Rounded up to whole 16-column tiles: the scalar column tail is far slower than the excess.
    const int64_t n_i = tri == Tri::kLowerC ? std::min(n, (i + 4 + 15) / 16 * 16) : n;
    const int64_t kd_i = tri == Tri::kLowerA ? std::min(kd, i + 4) : kd;
    GemmRows<4>(i, n_i, kd_i, a, lda, b, ldb, c, ldc);
  }
  for (; i < m; ++i) {
    const int64_t n_i = tri == Tri::kLowerC ? std::min(n, i + 1) : n;
    const int64_t kd_i = tri == Tri::kLowerA ? std::min(kd, i + 1) : kd;
    GemmRows<1>(i, n_i, kd_i, a, lda, b, ldb, c, ldc);
  }
}

// dst[c][r] = src[r][c] for a rows x cols src, in 8 x 8 blocks so that neither side strides
// through a new cache line per element.
MOED_CPU_INLINE void Transpose(const float* src, int64_t rows, int64_t cols, float* dst) {
  constexpr int64_t kB = 8;
  for (int64_t r0 = 0; r0 < rows; r0 += kB) {
    const int64_t r1 = std::min(rows, r0 + kB);
    for (int64_t c0 = 0; c0 < cols; c0 += kB) {
      const int64_t c1 = std::min(cols, c0 + kB);
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = c0; c < c1; ++c) dst[c * rows + r] = src[r * cols + c];
      }
    }
  }
}

void ForEachHead(ThreadPool* pool, int64_t n_heads,
                 const std::function<void(int64_t, int64_t)>& fn) {
  if (pool != nullptr && n_heads > 1) {
    pool->ParallelFor(n_heads, 1, fn);
  } else {
    fn(0, n_heads);
  }
}

// All tokens of value head j, one token at a time; st is the head's [dv][dk] state.
MOED_CPU_MULTIVERSION
void RecurrentHead(const DeltaRuleShape& s, int64_t n_tokens, int64_t j, const float* q,
                   const float* k, const float* v, const float* g, const float* beta, float* st,
                   float* out) {
  const int64_t dk = s.dk, dv = s.dv, hk = j % s.n_k_heads;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* qt = q + (t * s.n_k_heads + hk) * dk;
    const float* kt = k + (t * s.n_k_heads + hk) * dk;
    const float* vt = v + (t * s.n_v_heads + j) * dv;
    float* ot = out + (t * s.n_v_heads + j) * dv;
    const float decay = std::exp(g[t * s.n_v_heads + j]);
    const float b = beta[t * s.n_v_heads + j];
    const float kq = Dot(kt, qt, dk);
    for (int64_t r = 0; r < dv; ++r) {
      float* row = st + r * dk;
      // With row' = decay*row + delta*k:  mem = decay*(row.k),  o = row'.q = decay*(row.q) +
      // delta*(k.q), so one read pass gives both dot products and a second pass writes the row.
      float sk, sq;
      Dot2(row, kt, qt, dk, sk, sq);
      const float delta = b * (vt[r] - decay * sk);
      ot[r] = decay * sq + delta * kq;
      ScaleAxpy(decay, delta, kt, row, dk);
    }
  }
}

// Per-worker scratch of the chunked form, sized for one chunk of C tokens.
struct ChunkScratch {
  ChunkScratch(const DeltaRuleShape& s, int64_t c)
      : state(s.dk * s.dv),
        kc(c * s.dk),
        qc(c * s.dk),
        wn(c * s.dk),
        kt(s.dk * c),
        u(c * s.dv),
        a(c * c),
        p(c * c),
        cum_g(c),
        beta(c),
        exp_g(c),
        exp_g_end(c) {}
  std::vector<float> state;   // the head's state as [dk][dv] (HF layout): products are row-wise
  std::vector<float> kc, qc;  // [c][dk] keys / scaled queries of the chunk
  std::vector<float> wn;      // [c][dk] minus W
  std::vector<float> kt;      // [dk][c] keys transposed (later decayed to the chunk end)
  std::vector<float> u;       // [c][dv] U, then V'
  std::vector<float> a;       // [c][c] K K^T, then -L
  std::vector<float> p;       // [c][c] Q K^T masked and decayed
  // G_t, the cumulative log-decay inside the chunk; double because D takes differences of sums.
  std::vector<double> cum_g;
  std::vector<float> beta;
  std::vector<float> exp_g;      // exp(G_t)
  std::vector<float> exp_g_end;  // exp(G_C - G_t)
};

// All tokens of value head j, chunk by chunk (§3.5); st is the head's [dv][dk] state.
MOED_CPU_MULTIVERSION
void ChunkedHead(const DeltaRuleShape& s, int64_t n_tokens, int64_t j, const float* q,
                 const float* k, const float* v, const float* g, const float* beta, float* st,
                 float* out, int64_t chunk, ChunkScratch& w) {
  const int64_t dk = s.dk, dv = s.dv, hk = j % s.n_k_heads, hv_stride = s.n_v_heads * dv;
  float* S = w.state.data();
  Transpose(st, dv, dk, S);
  for (int64_t t0 = 0; t0 < n_tokens; t0 += chunk) {
    const int64_t c = std::min(chunk, n_tokens - t0);
    float* kc = w.kc.data();
    float* qc = w.qc.data();
    float* wn = w.wn.data();
    float* kt = w.kt.data();
    float* u = w.u.data();
    float* a = w.a.data();
    float* p = w.p.data();
    double* cg = w.cum_g.data();
    float* bt = w.beta.data();
    float* eg = w.exp_g.data();
    float* eg_end = w.exp_g_end.data();
    double acc_g = 0.0;
    for (int64_t t = 0; t < c; ++t) {
      const int64_t tok = t0 + t;
      std::copy_n(k + (tok * s.n_k_heads + hk) * dk, dk, kc + t * dk);
      std::copy_n(q + (tok * s.n_k_heads + hk) * dk, dk, qc + t * dk);
      acc_g += g[tok * s.n_v_heads + j];
      cg[t] = acc_g;
      bt[t] = beta[tok * s.n_v_heads + j];
    }
    for (int64_t t = 0; t < c; ++t) {
      eg[t] = static_cast<float>(std::exp(cg[t]));
      eg_end[t] = static_cast<float>(std::exp(cg[c - 1] - cg[t]));
    }
    Transpose(kc, c, dk, kt);
    // Gram matrices K K^T and Q K^T (only their lower triangles are used).
    std::fill_n(a, c * c, 0.0f);
    std::fill_n(p, c * c, 0.0f);
    GemmAcc(c, c, dk, kc, dk, kt, c, a, c, Tri::kLowerC);
    GemmAcc(c, c, dk, qc, dk, kt, c, p, c, Tri::kLowerC);
    // -L = -strictly_lower((beta ⊙ K) K^T ⊙ D) (negated for the solve below);
    // P~ = lower_incl_diag(Q K^T ⊙ D). D <= 1 always.
    for (int64_t i = 0; i < c; ++i) {
      for (int64_t jj = 0; jj < i; ++jj) {
        const float d = static_cast<float>(std::exp(cg[i] - cg[jj]));
        a[i * c + jj] *= -bt[i] * d;
        p[i * c + jj] *= d;
      }
      for (int64_t jj = i + 1; jj < c; ++jj) p[i * c + jj] = 0.0f;
    }
    // U = (I + L)^{-1} (beta ⊙ V) and -W = -(I + L)^{-1} (beta ⊙ exp(G) ⊙ K) by blocked forward
    // substitution: a block of rows first takes the finished rows before it in one product, then
    // resolves its own small triangle row by row.
    constexpr int64_t kSolveBlock = 8;
    for (int64_t i0 = 0; i0 < c; i0 += kSolveBlock) {
      const int64_t i1 = std::min(c, i0 + kSolveBlock);
      for (int64_t i = i0; i < i1; ++i) {
        const float* vi = v + ((t0 + i) * s.n_v_heads + j) * dv;
        ScaleCopy(bt[i], vi, u + i * dv, dv);
        ScaleCopy(-bt[i] * eg[i], kc + i * dk, wn + i * dk, dk);
      }
      if (i0 > 0) {
        GemmAcc(i1 - i0, dv, i0, a + i0 * c, c, u, dv, u + i0 * dv, dv);
        GemmAcc(i1 - i0, dk, i0, a + i0 * c, c, wn, dk, wn + i0 * dk, dk);
      }
      for (int64_t i = i0 + 1; i < i1; ++i) {
        for (int64_t jj = i0; jj < i; ++jj) {
          Axpy(a[i * c + jj], u + jj * dv, u + i * dv, dv);
          Axpy(a[i * c + jj], wn + jj * dk, wn + i * dk, dk);
        }
      }
    }
    // V' = U - W S (in place in u).
    GemmAcc(c, dv, dk, wn, dk, S, dv, u, dv);
    // O = (Q ⊙ exp(G)) S + P~ V', written straight into the output rows.
    float* o = out + t0 * hv_stride + j * dv;
    for (int64_t t = 0; t < c; ++t) std::fill_n(o + t * hv_stride, dv, 0.0f);
    GemmAcc(c, dv, dk, qc, dk, S, dv, o, hv_stride);
    for (int64_t t = 0; t < c; ++t) Scale(eg[t], o + t * hv_stride, dv);
    GemmAcc(c, dv, c, p, c, u, dv, o, hv_stride, Tri::kLowerA);
    // S = exp(G_C) S + (K ⊙ exp(G_C - G))^T V'.
    for (int64_t i = 0; i < dk; ++i) Mul(eg_end, kt + i * c, c);
    Scale(eg[c - 1], S, dk * dv);
    GemmAcc(dk, dv, c, kt, c, u, dv, S, dv);
  }
  Transpose(S, dk, dv, st);
}

bool ShapeOk(const DeltaRuleShape& s, int64_t n_tokens) {
  return n_tokens > 0 && s.n_k_heads > 0 && s.n_v_heads > 0 && s.dk > 0 && s.dv > 0;
}

}  // namespace

void DeltaRuleRecurrent(const DeltaRuleShape& s, int64_t n_tokens, const float* q, const float* k,
                        const float* v, const float* g, const float* beta, float* state, float* out,
                        ThreadPool* pool) {
  if (!ShapeOk(s, n_tokens)) return;
  ForEachHead(pool, s.n_v_heads, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      RecurrentHead(s, n_tokens, j, q, k, v, g, beta, state + j * s.dv * s.dk, out);
    }
  });
}

void DeltaRuleChunked(const DeltaRuleShape& s, int64_t n_tokens, const float* q, const float* k,
                      const float* v, const float* g, const float* beta, float* state, float* out,
                      ThreadPool* pool, int64_t chunk_size) {
  if (!ShapeOk(s, n_tokens)) return;
  const int64_t chunk = std::min(chunk_size > 0 ? chunk_size : 64, n_tokens);
  ForEachHead(pool, s.n_v_heads, [&](int64_t begin, int64_t end) {
    ChunkScratch scratch(s, chunk);
    for (int64_t j = begin; j < end; ++j) {
      ChunkedHead(s, n_tokens, j, q, k, v, g, beta, state + j * s.dv * s.dk, out, chunk, scratch);
    }
  });
}

}  // namespace moed::cpu

// Causal GQA softmax attention over a paged KV cache (docs: qwen35moe.md §3.3 step 5). Work is
// split over (query, head) pairs, heads innermost, so the heads sharing a KV head run back to
// back on one worker and find its K/V rows in cache.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/vec8.h"

namespace moed::cpu {
namespace {

using vec8::Axpy;
using vec8::Dot;
using vec8::Scale;

// One query head against KV tokens [0, n_ctx). scores has room for n_ctx floats.
MOED_CPU_MULTIVERSION
void AttendOne(const float* qh, int64_t n_ctx, int64_t kv_head, const PagedKv& kv, float scale,
               float* scores, float* oh) {
  const int64_t dk = kv.head_dim_k, dv = kv.head_dim_v, bs = kv.block_size;
  const int64_t k_row = kv.n_kv_heads * dk, v_row = kv.n_kv_heads * dv;
  float max_s = -INFINITY;
  for (int64_t t0 = 0, b = 0; t0 < n_ctx; t0 += bs, ++b) {
    const int64_t n = std::min(bs, n_ctx - t0);
    const float* kb = kv.k_blocks[b] + kv_head * dk;
    for (int64_t r = 0; r < n; ++r) {
      const float sc = scale * Dot(qh, kb + r * k_row, dk);
      scores[t0 + r] = sc;
      max_s = std::max(max_s, sc);
    }
  }
  float sum = 0.0f;
  for (int64_t t = 0; t < n_ctx; ++t) {
    scores[t] = std::exp(scores[t] - max_s);
    sum += scores[t];
  }
  std::fill_n(oh, dv, 0.0f);
  for (int64_t t0 = 0, b = 0; t0 < n_ctx; t0 += bs, ++b) {
    const int64_t n = std::min(bs, n_ctx - t0);
    const float* vb = kv.v_blocks[b] + kv_head * dv;
    for (int64_t r = 0; r < n; ++r) Axpy(scores[t0 + r], vb + r * v_row, oh, dv);
  }
  Scale(1.0f / sum, oh, dv);
}

}  // namespace

void AttentionPaged(const float* q, int64_t n_queries, int64_t first_pos, int64_t n_heads,
                    const PagedKv& kv, float scale, float* out, ThreadPool* pool) {
  if (n_queries <= 0 || first_pos < 0 || n_heads <= 0 || kv.n_kv_heads <= 0 || kv.block_size <= 0 ||
      kv.head_dim_k <= 0 || kv.head_dim_v <= 0 || n_heads % kv.n_kv_heads != 0) {
    return;
  }
  const int64_t group = n_heads / kv.n_kv_heads;
  const int64_t dk = kv.head_dim_k, dv = kv.head_dim_v;
  const int64_t n_units = n_queries * n_heads;
  auto work = [&](int64_t begin, int64_t end) {
    // The longest context in this range is that of its last query.
    std::vector<float> scores(static_cast<size_t>(first_pos + (end - 1) / n_heads + 1));
    for (int64_t u = begin; u < end; ++u) {
      const int64_t i = u / n_heads, h = u % n_heads;
      AttendOne(q + (i * n_heads + h) * dk, first_pos + i + 1, h / group, kv, scale, scores.data(),
                out + (i * n_heads + h) * dv);
    }
  };
  if (pool != nullptr && n_units > 1) {
    pool->ParallelFor(n_units, 1, work);
  } else {
    work(0, n_units);
  }
}

}  // namespace moed::cpu

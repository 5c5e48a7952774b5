// Causal softmax attention with grouped KV heads over a paged KV cache (docs: qwen35moe.md §3.3
// step 5). Normalisation, RoPE and the output gate are the caller's.
#ifndef MOED_KERNELS_CPU_ATTENTION_H_
#define MOED_KERNELS_CPU_ATTENTION_H_

#include <cstdint>

#include "kernels/cpu/thread_pool.h"

namespace moed::cpu {

// One sequence's KV cache for one layer in fixed-size blocks: token t lives in block
// t / block_size, row t % block_size; a K row holds n_kv_heads * head_dim_k floats, a V row
// n_kv_heads * head_dim_v.
struct PagedKv {
  const float* const* k_blocks = nullptr;
  const float* const* v_blocks = nullptr;
  int64_t block_size = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim_k = 0;
  int64_t head_dim_v = 0;
};

// q: [n_queries][n_heads][head_dim_k]; query i sits at position first_pos + i and attends to
// KV tokens [0, first_pos + i] (which must already be in the cache). Query head h uses KV head
// h / (n_heads / n_kv_heads). out: [n_queries][n_heads][head_dim_v]. Softmax in float32 with
// max subtraction; scale is usually 1/sqrt(head_dim_k).
void AttentionPaged(const float* q, int64_t n_queries, int64_t first_pos, int64_t n_heads, const PagedKv& kv,
                    float scale, float* out, ThreadPool* pool);

}  // namespace moed::cpu

#endif  // MOED_KERNELS_CPU_ATTENTION_H_

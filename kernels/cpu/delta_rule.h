// The gated delta rule of Gated DeltaNet (docs: qwen35moe.md §3.4 step 7 and §3.5): a per-token
// recurrence for decode and the equivalent chunked form for prefill, which tests check against
// each other.
#ifndef MOED_KERNELS_CPU_DELTA_RULE_H_
#define MOED_KERNELS_CPU_DELTA_RULE_H_

#include <cstdint>

#include "kernels/cpu/thread_pool.h"

namespace moed::cpu {

struct DeltaRuleShape {
  int64_t n_k_heads = 0;  // Hk (q/k heads)
  int64_t n_v_heads = 0;  // Hv (value heads); value head j uses q/k head j % Hk (GGUF tiled order)
  int64_t dk = 0;
  int64_t dv = 0;
};

// Inputs for n_tokens tokens of ONE sequence:
//   q, k: [n_tokens][Hk][dk], q already L2-normalised and scaled by 1/sqrt(dk), k L2-normalised;
//   v:    [n_tokens][Hv][dv];
//   g:    [n_tokens][Hv], log-decay (<= 0): the state decays by exp(g) before the token's update;
//   beta: [n_tokens][Hv], in (0, 1).
// state: [Hv][dv][dk] float32 (element (v, k) of head j at j*dv*dk + v*dk + k), updated in place.
// out:   [n_tokens][Hv][dv], the output after each token's update.
void DeltaRuleRecurrent(const DeltaRuleShape& s, int64_t n_tokens, const float* q, const float* k, const float* v,
                        const float* g, const float* beta, float* state, float* out, ThreadPool* pool);

// The same result computed chunk by chunk (chunk_size tokens, the tail chunk shorter) with the
// WY/UT form of §3.5; equal to DeltaRuleRecurrent up to float rounding.
void DeltaRuleChunked(const DeltaRuleShape& s, int64_t n_tokens, const float* q, const float* k, const float* v,
                      const float* g, const float* beta, float* state, float* out, ThreadPool* pool,
                      int64_t chunk_size = 64);

}  // namespace moed::cpu

#endif  // MOED_KERNELS_CPU_DELTA_RULE_H_

// MoE routing (docs: qwen35moe.md §3.6): softmax over all experts, top-k, renormalise over the
// selected ones, with llama.cpp's floor on the renormalising sum.
#include "kernels/cpu/moe_routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace moed::cpu {

void RouteTopK(const float* logits, int64_t n_expert, int64_t k, int32_t* ids, float* weights) {
  if (n_expert <= 0 || k <= 0) return;
  k = std::min(k, n_expert);
  // Softmax like ggml's: max subtraction, the sum accumulated in double.
  float max_l = -INFINITY;
  for (int64_t e = 0; e < n_expert; ++e) max_l = std::max(max_l, logits[e]);
  std::vector<float> p(static_cast<size_t>(n_expert));
  double sum = 0.0;
  for (int64_t e = 0; e < n_expert; ++e) {
    p[e] = std::exp(logits[e] - max_l);
    sum += p[e];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t e = 0; e < n_expert; ++e) p[e] *= inv;
  // Sort key with NaN (a broken router) ranked last, so that the comparator stays a strict weak
  // ordering whatever the input.
  auto key = [&](int32_t e) { return std::isnan(p[e]) ? -INFINITY : p[e]; };
  std::vector<int32_t> order(static_cast<size_t>(n_expert));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    const float ka = key(a), kb = key(b);
    return ka > kb || (ka == kb && a < b);
  });
  double selected = 0.0;
  for (int64_t i = 0; i < k; ++i) selected += p[order[i]];
  // 2^-14, the smallest normal fp16: llama.cpp's ggml_clamp(weights_sum, 6.103515625e-5, INF).
  const float denom = std::max(static_cast<float>(selected), 6.103515625e-5f);
  for (int64_t i = 0; i < k; ++i) {
    ids[i] = order[i];
    weights[i] = p[order[i]] / denom;
  }
}

}  // namespace moed::cpu

// Normalisations of the qwen35moe forward pass (docs: qwen35moe.md §3.0, §3.4).
#ifndef MOED_KERNELS_CPU_NORM_H_
#define MOED_KERNELS_CPU_NORM_H_

#include <cstdint>

namespace moed::cpu {

// y = x / sqrt(mean(x^2) + eps) * w (w == nullptr: no weight). Sum of squares in double, like
// llama.cpp's CPU backend. y may alias x.
void RmsNorm(const float* x, const float* w, int64_t n, float eps, float* y);

// x /= max(||x||_2, eps) in place (ggml's l2_norm).
void L2Normalize(float* x, int64_t n, float eps);

}  // namespace moed::cpu

#endif  // MOED_KERNELS_CPU_NORM_H_

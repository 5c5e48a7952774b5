// RMSNorm and L2 normalisation as llama.cpp's CPU backend computes them: the float squares are
// accumulated in double (ggml_float), the scale is computed and applied in float, and the weight
// multiplies afterwards (a separate ggml_mul in llama.cpp's graph).
#include "kernels/cpu/norm.h"

#include <algorithm>
#include <cmath>

namespace moed::cpu {

void RmsNorm(const float* x, const float* w, int64_t n, float eps, float* y) {
  if (n <= 0) return;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  if (w == nullptr) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale;
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
  }
}

void L2Normalize(float* x, int64_t n, float eps) {
  if (n <= 0) return;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float norm = std::sqrt(static_cast<float>(sum));
  const float scale = 1.0f / std::max(norm, eps);
  for (int64_t i = 0; i < n; ++i) x[i] *= scale;
}

}  // namespace moed::cpu

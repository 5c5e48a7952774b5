// Interleaved multi-section NeoX RoPE (ggml's rope_multi with GGML_ROPE_TYPE_IMROPE, ext_factor 0,
// freq_scale 1, no frequency factors). The angle of frequency i is built like ggml builds it:
// theta = float(pos), multiplied by theta_scale = base^(-2/n_rot) in float32 once per step, so
// results match llama.cpp's CPU backend rather than an exact-angle formula (they drift apart by
// about pos * i * 2^-24 radians, which is what llama.cpp itself does).
#include "kernels/cpu/rope.h"

#include <cmath>
#include <vector>

namespace moed::cpu {
namespace {

// Which position stream frequency i reads: 0 = t, 1 = h, 2 = w.
int StreamOf(int64_t i, const std::array<int32_t, 4>& sections) {
  if (i % 3 == 1 && i < 3 * static_cast<int64_t>(sections[1])) return 1;
  if (i % 3 == 2 && i < 3 * static_cast<int64_t>(sections[2])) return 2;
  return 0;
}

}  // namespace

void RopeMultiNeox(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, const RopePosition& pos,
                   const std::array<int32_t, 4>& sections, float freq_base) {
  // Contract violations (odd or oversized n_rot) degrade to the largest valid rotary slice
  // instead of reading past a head.
  if (n_rot > head_dim) n_rot = head_dim;
  n_rot &= ~int64_t{1};
  if (n_rot <= 0 || n_heads <= 0) return;
  const int64_t half = n_rot / 2;

  // One cos/sin table per call, shared by every head of the token.
  thread_local std::vector<float> table;
  table.resize(static_cast<size_t>(2 * half));
  float* cos_t = table.data();
  float* sin_t = table.data() + half;
  const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(n_rot));
  float theta[3] = {static_cast<float>(pos.p[0]), static_cast<float>(pos.p[1]), static_cast<float>(pos.p[2])};
  for (int64_t i = 0; i < half; ++i) {
    const float angle = theta[StreamOf(i, sections)];
    cos_t[i] = std::cos(angle);
    sin_t[i] = std::sin(angle);
    for (float& t : theta) t *= theta_scale;
  }

  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const float x0 = v[i];
      const float x1 = v[i + half];
      v[i] = x0 * cos_t[i] - x1 * sin_t[i];
      v[i + half] = x0 * sin_t[i] + x1 * cos_t[i];
    }
  }
}

}  // namespace moed::cpu

// Causal depthwise conv1d + SiLU over token-major rows with a rolling (d_conv - 1)-row state.
// The loops run over channels innermost so that every tap is a contiguous multiply-add.
#include "kernels/cpu/conv1d.h"

#include <cmath>
#include <cstring>
#include <vector>

namespace moed::cpu {

void CausalConv1dSilu(const float* x, int64_t n_tokens, int64_t n_channels, const float* w,
                      int64_t d_conv, float* state, float* y) {
  if (n_tokens <= 0 || n_channels <= 0 || d_conv <= 0) return;
  const int64_t n_hist = d_conv - 1;
  // Input row r of the virtual sequence [state ‖ x]: rows 0..n_hist-1 are the state.
  auto input_row = [&](int64_t r) -> const float* {
    return r < n_hist ? state + r * n_channels : x + (r - n_hist) * n_channels;
  };
  // Taps transposed to [d_conv][n_channels] so that the inner loop is contiguous in both operands.
  std::vector<float> wt(static_cast<size_t>(d_conv * n_channels));
  for (int64_t c = 0; c < n_channels; ++c) {
    for (int64_t k = 0; k < d_conv; ++k) wt[k * n_channels + c] = w[c * d_conv + k];
  }
  for (int64_t t = 0; t < n_tokens; ++t) {
    float* yt = y + t * n_channels;
    // Output t covers virtual rows t .. t + n_hist; tap k multiplies row t + k.
    {
      const float* u = input_row(t);
      const float* wk = wt.data();
      for (int64_t c = 0; c < n_channels; ++c) yt[c] = wk[c] * u[c];
    }
    for (int64_t k = 1; k < d_conv; ++k) {
      const float* u = input_row(t + k);
      const float* wk = wt.data() + k * n_channels;
      for (int64_t c = 0; c < n_channels; ++c) yt[c] += wk[c] * u[c];
    }
    for (int64_t c = 0; c < n_channels; ++c) yt[c] = yt[c] / (1.0f + std::exp(-yt[c]));
  }
  // New state = the last n_hist rows of [state ‖ x]. When fewer than n_hist tokens came in, part
  // of the old state survives, shifted towards the front (memmove: the ranges overlap).
  if (n_hist == 0) return;
  const size_t row_bytes = static_cast<size_t>(n_channels) * sizeof(float);
  if (n_tokens >= n_hist) {
    std::memcpy(state, x + (n_tokens - n_hist) * n_channels,
                static_cast<size_t>(n_hist) * row_bytes);
  } else {
    const int64_t keep = n_hist - n_tokens;
    std::memmove(state, state + n_tokens * n_channels, static_cast<size_t>(keep) * row_bytes);
    std::memcpy(state + keep * n_channels, x, static_cast<size_t>(n_tokens) * row_bytes);
  }
}

}  // namespace moed::cpu

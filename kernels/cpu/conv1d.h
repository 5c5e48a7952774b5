// Causal depthwise 1-D convolution with a rolling state, followed by SiLU: the short convolution
// of the Gated DeltaNet layers (docs: qwen35moe.md §3.4 step 2).
#ifndef MOED_KERNELS_CPU_CONV1D_H_
#define MOED_KERNELS_CPU_CONV1D_H_

#include <cstdint>

namespace moed::cpu {

// x: n_tokens rows of n_channels (token-major). w: n_channels rows of d_conv taps (GGUF
// ssm_conv1d, ne = [d_conv, n_channels]); tap d_conv-1 multiplies the current token.
// state: (d_conv - 1) rows of n_channels, oldest first — the inputs before x[0] (zeros for a new
// sequence); on return it holds the last d_conv - 1 inputs. y (n_tokens x n_channels) =
// silu(sum_k w[c][k] * u[t - (d_conv-1) + k][c]). y must not alias x.
void CausalConv1dSilu(const float* x, int64_t n_tokens, int64_t n_channels, const float* w, int64_t d_conv,
                      float* state, float* y);

}  // namespace moed::cpu

#endif  // MOED_KERNELS_CPU_CONV1D_H_

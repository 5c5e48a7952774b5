// Partial rotary position embedding with NeoX ("rotate_half") pairing, in the interleaved
// multi-section form of qwen35moe (docs: qwen35moe.md §3.3 step 4). For text, all position
// streams equal the token position, which makes it plain partial NeoX RoPE.
#ifndef MOED_KERNELS_CPU_ROPE_H_
#define MOED_KERNELS_CPU_ROPE_H_

#include <array>
#include <cstdint>

namespace moed::cpu {

// The position of one token in each stream (t, h, w, e); text tokens have all four equal.
struct RopePosition {
  std::array<int64_t, 4> p{};
  static RopePosition Text(int64_t pos) { return {{pos, pos, pos, pos}}; }
};

// Rotates dims [0, n_rot) of each of n_heads heads (head_dim apart, starting at x) in place:
// pairs (i, i + n_rot/2), theta_i = pos_s(i) * base^(-2i/n_rot), where the stream s(i) follows the
// interleaved sections rule (i % 3 == 1 and i < 3*sections[1] -> h; i % 3 == 2 and
// i < 3*sections[2] -> w; else t). Dims [n_rot, head_dim) are untouched. Angles are computed
// the way ggml does (float32, theta *= theta_scale).
void RopeMultiNeox(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, const RopePosition& pos,
                   const std::array<int32_t, 4>& sections, float freq_base);

}  // namespace moed::cpu

#endif  // MOED_KERNELS_CPU_ROPE_H_

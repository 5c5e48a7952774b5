// Lattice codebooks ("grids") of ggml's IQ1/IQ2/IQ3 formats and the small constants their
// decoders share. A grid entry packs the unsigned magnitudes of 8 (uint64) or 4 (uint32)
// consecutive weights, one per byte, little-endian: byte j of the entry is weight j of the group.
// The IQ1 grid bytes are signed int8 values in {-1, 0, 1}. Internal to kernels/quants (CPU
// dequantizers now, the CUDA kernels later); the data lives in iq_grids.cc.
#ifndef MOED_KERNELS_QUANTS_IQ_GRIDS_H_
#define MOED_KERNELS_QUANTS_IQ_GRIDS_H_

#include <array>
#include <cstdint>

namespace moed::quants_internal {

inline constexpr int kIq2XxsGridSize = 256;
inline constexpr int kIq2XsGridSize = 512;
inline constexpr int kIq2SGridSize = 1024;
inline constexpr int kIq3XxsGridSize = 256;
inline constexpr int kIq3SGridSize = 512;
inline constexpr int kIq1SGridSize = 2048;  // ggml's NGRID_IQ1S; IQ1_M uses the same grid

// ggml's iq2xxs_grid, iq2xs_grid, iq2s_grid: 8 magnitudes per entry, bytes in {8, 25, 43}.
extern const std::array<uint64_t, kIq2XxsGridSize> kIq2XxsGrid;
extern const std::array<uint64_t, kIq2XsGridSize> kIq2XsGrid;
extern const std::array<uint64_t, kIq2SGridSize> kIq2SGrid;
// ggml's iq3xxs_grid (bytes in {4, 12, 20, 28, 36, 44, 52, 62}) and iq3s_grid (odd bytes 1..15):
// 4 magnitudes per entry.
extern const std::array<uint32_t, kIq3XxsGridSize> kIq3XxsGrid;
extern const std::array<uint32_t, kIq3SGridSize> kIq3SGrid;
// ggml's iq1s_grid: 8 int8 values in {-1, 0, 1} per entry (bytes 0xff, 0x00, 0x01).
extern const std::array<uint64_t, kIq1SGridSize> kIq1SGrid;

// ggml's IQ1S_DELTA and IQ1M_DELTA: the offset added to every IQ1 grid value before scaling,
// negated per group of 8 by a flag bit.
inline constexpr float kIq1SDelta = 0.125f;
inline constexpr float kIq1MDelta = 0.125f;

// ggml's ksigns_iq2xs: a 7-bit sign index expands to an 8-bit sign mask whose top bit is the
// parity of the other 7, so a group of 8 always has an even number of negative weights. Bit j
// set negates weight j of the group.
constexpr std::array<uint8_t, 128> MakeKsignsIq2xs() {
  std::array<uint8_t, 128> table{};
  for (int i = 0; i < 128; ++i) {
    int ones = 0;
    for (int b = 0; b < 7; ++b) ones += (i >> b) & 1;
    table[i] = static_cast<uint8_t>(i | ((ones & 1) ? 0x80 : 0));
  }
  return table;
}
inline constexpr std::array<uint8_t, 128> kKsignsIq2xs = MakeKsignsIq2xs();

}  // namespace moed::quants_internal

#endif  // MOED_KERNELS_QUANTS_IQ_GRIDS_H_

// Tests of the IQ grid tables (iq_grids.cc) and the grid-format dequantizers
// (dequantize_iq_grid.cc): structural properties of every codebook that follow from how ggml
// builds them, entries pinned to ggml-common.h, hand-built blocks with known results, and a bit
// for bit comparison with llama.cpp's decoding of the tests/data/quant-blocks fixtures.
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/base/half.h"
#include "kernels/quants/dequantize_impl.h"
#include "kernels/quants/iq_grids.h"

namespace moed::quants_internal {
namespace {

// ---------------------------------------------------------------------------------------------
// Grid tables.

template <typename T, size_t N>
void ExpectBytesIn(const std::array<T, N>& grid, const std::set<int>& allowed, const char* name) {
  for (size_t i = 0; i < N; ++i) {
    for (size_t j = 0; j < sizeof(T); ++j) {
      const int byte = static_cast<int>((static_cast<uint64_t>(grid[i]) >> (8 * j)) & 0xff);
      ASSERT_TRUE(allowed.count(byte)) << name << "[" << i << "] byte " << j << " = " << byte;
    }
  }
}

// ggml derives every IQ2/IQ3 grid from a sorted table of lattice codes (kgrid_* in
// ggml-quants.c) through a monotonic code -> byte map with element 0 in the low byte, so the
// entries are strictly increasing. A mistyped entry almost always breaks the order.
template <typename T, size_t N>
void ExpectStrictlyIncreasing(const std::array<T, N>& grid, const char* name) {
  for (size_t i = 1; i < N; ++i) {
    ASSERT_LT(grid[i - 1], grid[i]) << name << " entries " << i - 1 << " and " << i;
  }
}

TEST(IqGridsTest, Iq2GridsUseTheirMagnitudeAlphabets) {
  ExpectBytesIn(kIq2XxsGrid, {0x08, 0x19, 0x2b}, "iq2xxs_grid");
  ExpectBytesIn(kIq2XsGrid, {0x08, 0x19, 0x2b}, "iq2xs_grid");
  ExpectBytesIn(kIq2SGrid, {0x08, 0x19, 0x2b, 0x3e}, "iq2s_grid");
}

TEST(IqGridsTest, Iq3GridsUseTheirMagnitudeAlphabets) {
  ExpectBytesIn(kIq3XxsGrid, {4, 12, 20, 28, 36, 44, 52, 62}, "iq3xxs_grid");
  ExpectBytesIn(kIq3SGrid, {1, 3, 5, 7, 9, 11, 13, 15}, "iq3s_grid");
}

TEST(IqGridsTest, Iq1GridUsesMinusOneZeroOne) {
  ExpectBytesIn(kIq1SGrid, {0xff, 0x00, 0x01}, "iq1s_grid");
}

TEST(IqGridsTest, Iq2AndIq3GridsAreStrictlyIncreasing) {
  ExpectStrictlyIncreasing(kIq2XxsGrid, "iq2xxs_grid");
  ExpectStrictlyIncreasing(kIq2XsGrid, "iq2xs_grid");
  ExpectStrictlyIncreasing(kIq2SGrid, "iq2s_grid");
  ExpectStrictlyIncreasing(kIq3XxsGrid, "iq3xxs_grid");
  ExpectStrictlyIncreasing(kIq3SGrid, "iq3s_grid");
}

// The IQ1 map -1, 0, 1 -> 0xff, 0x00, 0x01 is not monotonic in bytes, so map the bytes back to
// ggml's 2-bit codes 0, 1, 2 (kgrid_1bit_2048) and check those codes are strictly increasing.
TEST(IqGridsTest, Iq1GridCodesAreStrictlyIncreasing) {
  uint32_t previous = 0;
  for (size_t i = 0; i < kIq1SGrid.size(); ++i) {
    uint32_t code = 0;
    for (int j = 0; j < 8; ++j) {
      const int8_t value = static_cast<int8_t>((kIq1SGrid[i] >> (8 * j)) & 0xff);
      code |= static_cast<uint32_t>(value + 1) << (2 * j);
    }
    if (i > 0) {
      ASSERT_LT(previous, code) << "iq1s_grid entries " << i - 1 << " and " << i;
    }
    previous = code;
  }
}

// Entries at the ends and in the middle of each table, as printed in ggml-common.h.
TEST(IqGridsTest, PinnedEntriesMatchGgmlCommon) {
  const std::pair<int, uint64_t> iq2xxs[] = {{0, 0x0808080808080808},   {1, 0x080808080808082b},
                                             {77, 0x08190808192b0808},  {100, 0x08192b0808081908},
                                             {128, 0x082b2b0808082b08}, {255, 0x2b2b2b1908081908}};
  for (const auto& [i, v] : iq2xxs) EXPECT_EQ(kIq2XxsGrid[i], v) << "iq2xxs_grid[" << i << "]";
  const std::pair<int, uint64_t> iq2xs[] = {{0, 0x0808080808080808},   {100, 0x0808192b08081908},
                                            {255, 0x1908080808081908}, {256, 0x190808080808192b},
                                            {300, 0x1908190808191908}, {511, 0x2b2b2b2b2b2b2b2b}};
  for (const auto& [i, v] : iq2xs) EXPECT_EQ(kIq2XsGrid[i], v) << "iq2xs_grid[" << i << "]";
  const std::pair<int, uint64_t> iq2s[] = {{0, 0x0808080808080808},    {100, 0x080819081919192b},
                                           {256, 0x0819081919191919},  {512, 0x19080819082b1919},
                                           {1022, 0x2b2b2b2b2b082b08}, {1023, 0x2b2b2b2b2b2b2b2b}};
  for (const auto& [i, v] : iq2s) EXPECT_EQ(kIq2SGrid[i], v) << "iq2s_grid[" << i << "]";
  const std::pair<int, uint32_t> iq3xxs[] = {{0, 0x04040404},   {1, 0x04040414},
                                             {100, 0x14040c1c}, {128, 0x141c3e04},
                                             {254, 0x3e2c1424}, {255, 0x3e341c04}};
  for (const auto& [i, v] : iq3xxs) EXPECT_EQ(kIq3XxsGrid[i], v) << "iq3xxs_grid[" << i << "]";
  const std::pair<int, uint32_t> iq3s[] = {{0, 0x01010101},   {1, 0x01010103},   {100, 0x010f0101},
                                           {256, 0x05090507}, {510, 0x0f0d0703}, {511, 0x0f0f0101}};
  for (const auto& [i, v] : iq3s) EXPECT_EQ(kIq3SGrid[i], v) << "iq3s_grid[" << i << "]";
  const std::pair<int, uint64_t> iq1s[] = {{0, 0xffffffffffffffff},    {1, 0xffffffffffffff01},
                                           {300, 0xff000000ff00ff00},  {1023, 0x0000000000ff01ff},
                                           {1024, 0x0000000000ff0100}, {2047, 0x0101010101010101}};
  for (const auto& [i, v] : iq1s) EXPECT_EQ(kIq1SGrid[i], v) << "iq1s_grid[" << i << "]";
}

// ksigns_iq2xs as printed in ggml-common.h, against the parity formula.
TEST(IqGridsTest, KsignsMatchesGgmlTable) {
  constexpr uint8_t kGgml[128] = {
      0,   129, 130, 3,   132, 5,   6,   135, 136, 9,   10,  139, 12,  141, 142, 15,  144, 17,  18,
      147, 20,  149, 150, 23,  24,  153, 154, 27,  156, 29,  30,  159, 160, 33,  34,  163, 36,  165,
      166, 39,  40,  169, 170, 43,  172, 45,  46,  175, 48,  177, 178, 51,  180, 53,  54,  183, 184,
      57,  58,  187, 60,  189, 190, 63,  192, 65,  66,  195, 68,  197, 198, 71,  72,  201, 202, 75,
      204, 77,  78,  207, 80,  209, 210, 83,  212, 85,  86,  215, 216, 89,  90,  219, 92,  221, 222,
      95,  96,  225, 226, 99,  228, 101, 102, 231, 232, 105, 106, 235, 108, 237, 238, 111, 240, 113,
      114, 243, 116, 245, 246, 119, 120, 249, 250, 123, 252, 125, 126, 255};
  for (int i = 0; i < 128; ++i) EXPECT_EQ(kKsignsIq2xs[i], kGgml[i]) << "ksigns[" << i << "]";
  for (int i = 0; i < 128; ++i) EXPECT_EQ(std::popcount(kKsignsIq2xs[i]) % 2, 0) << i;
}

// ---------------------------------------------------------------------------------------------
// Hand-built blocks (gguf-and-quants.md §2.11-2.13 and extra cases for the other formats).

constexpr uint16_t kFp16One = 0x3C00;
constexpr uint16_t kFp16Half = 0x3800;

void PutU16(std::vector<uint8_t>& block, size_t offset, uint16_t v) {
  block[offset] = static_cast<uint8_t>(v & 0xff);
  block[offset + 1] = static_cast<uint8_t>(v >> 8);
}

std::vector<float> Decode(void (*fn)(const uint8_t*, float*, int64_t),
                          const std::vector<uint8_t>& block) {
  std::vector<float> out(256, -12345.0f);
  fn(block.data(), out.data(), 1);
  return out;
}

void ExpectRange(const std::vector<float>& y, int begin, int end, float value) {
  for (int k = begin; k < end; ++k) ASSERT_EQ(y[k], value) << "weight " << k;
}

void ExpectPrefix(const std::vector<float>& y, int begin, std::vector<float> expected) {
  for (size_t k = 0; k < expected.size(); ++k) {
    EXPECT_EQ(y[begin + k], expected[k]) << "weight " << begin + k;
  }
}

TEST(DequantizeIq2XxsTest, ScaleOneGridZeroDecodesToOnes) {
  std::vector<uint8_t> block(66, 0);
  PutU16(block, 0, kFp16One);
  ExpectRange(Decode(DequantizeIq2Xxs, block), 0, 256, 1.0f);
}

TEST(DequantizeIq2XxsTest, GridSignAndScaleFields) {
  std::vector<uint8_t> block(66, 0);
  PutU16(block, 0, kFp16One);
  block[2] = 1;     // group 0 uses grid entry 1
  block[6] = 0x01;  // aux: sign index 1 for group 0 ...
  block[9] = 0x10;  // ... and scale 1: db = 1.5 * 0.25 = 0.375
  const std::vector<float> y = Decode(DequantizeIq2Xxs, block);
  ExpectPrefix(y, 0, {-16.125f, 3, 3, 3, 3, 3, 3, -3});
  ExpectRange(y, 8, 32, 3.0f);
  ExpectRange(y, 32, 256, 1.0f);
}

TEST(DequantizeIq2XsTest, IndexSignsAndTwoScalesPerSubBlock) {
  std::vector<uint8_t> block(74, 0);
  PutU16(block, 0, kFp16One);
  PutU16(block, 2, 1 | (1 << 9));  // group 0: grid 1, sign index 1 (mask 0x81)
  block[66] = 0x21;                // groups 0-1: 1.5 * 0.25; groups 2-3: 2.5 * 0.25
  const std::vector<float> y = Decode(DequantizeIq2Xs, block);
  ExpectPrefix(y, 0, {-16.125f, 3, 3, 3, 3, 3, 3, -3});
  ExpectRange(y, 8, 16, 3.0f);
  ExpectRange(y, 16, 32, 5.0f);
  ExpectRange(y, 32, 256, 1.0f);
}

TEST(DequantizeIq2STest, HighIndexBitsAndPlainSignMasks) {
  std::vector<uint8_t> block(82, 0);
  PutU16(block, 0, kFp16One);
  block[2] = 1;      // group 0: grid 1
  block[34] = 0x01;  // group 0 sign mask: weight 0 only (no parity bit in IQ2_S)
  block[66] = 0x04;  // qh: group 1 gets index bits 0x100 -> grid 256
  block[74] = 0x10;  // groups 0-1: 0.5 * 0.25; groups 2-3: 1.5 * 0.25
  const std::vector<float> y = Decode(DequantizeIq2S, block);
  ExpectPrefix(y, 0, {-5.375f, 1, 1, 1, 1, 1, 1, 1});
  // grid 256 = 0x0819081919191919: bytes 25, 25, 25, 25, 25, 8, 25, 8 (low byte first).
  ExpectPrefix(y, 8, {3.125f, 3.125f, 3.125f, 3.125f, 3.125f, 1, 3.125f, 1});
  ExpectRange(y, 16, 32, 3.0f);
  ExpectRange(y, 32, 256, 1.0f);
}

TEST(DequantizeIq3XxsTest, DocVectorA) {
  std::vector<uint8_t> block(98, 0);
  PutU16(block, 0, kFp16One);
  block[3] = 1;  // second index of group 0 -> grid 1 = {20, 4, 4, 4}
  const std::vector<float> y = Decode(DequantizeIq3Xxs, block);
  ExpectPrefix(y, 0, {1, 1, 1, 1, 5, 1, 1, 1});
  ExpectRange(y, 8, 256, 1.0f);
}

TEST(DequantizeIq3XxsTest, DocVectorB) {
  std::vector<uint8_t> block(98, 0);
  PutU16(block, 0, kFp16One);
  block[3] = 1;
  block[66] = 0x01;  // sign index 1 -> mask 0x81
  block[69] = 0x10;  // scale 1 -> db = 1.5 * 0.5
  const std::vector<float> y = Decode(DequantizeIq3Xxs, block);
  ExpectPrefix(y, 0, {-3, 3, 3, 3, 15, 3, 3, -3});
  ExpectRange(y, 8, 32, 3.0f);
  ExpectRange(y, 32, 256, 1.0f);
}

TEST(DequantizeIq3STest, DocVector) {
  std::vector<uint8_t> block(110, 0);
  PutU16(block, 0, kFp16Half);
  block[3] = 1;      // grid 1 = {3, 1, 1, 1}
  block[74] = 0x01;  // weight 0 negative
  std::vector<float> y = Decode(DequantizeIq3S, block);
  ExpectPrefix(y, 0, {-0.5f, 0.5f, 0.5f, 0.5f, 1.5f, 0.5f, 0.5f, 0.5f});
  ExpectRange(y, 8, 256, 0.5f);

  block[106] = 0x01;  // sub-block 0 scale 1 -> db = 0.5 * 3
  y = Decode(DequantizeIq3S, block);
  ExpectPrefix(y, 0, {-1.5f, 1.5f, 1.5f, 1.5f, 4.5f, 1.5f, 1.5f, 1.5f});
  ExpectRange(y, 8, 32, 1.5f);
  ExpectRange(y, 32, 256, 0.5f);
}

TEST(DequantizeIq3STest, NinthIndexBit) {
  std::vector<uint8_t> block(110, 0);
  PutU16(block, 0, kFp16One);
  block[66 + 1] = 0x02;  // sub-block 1, index 1 (second half of group 0) -> grid 256
  const std::vector<float> y = Decode(DequantizeIq3S, block);
  ExpectRange(y, 0, 36, 1.0f);
  // grid 256 = 0x05090507: bytes 7, 5, 9, 5.
  ExpectPrefix(y, 36, {7, 5, 9, 5});
  ExpectRange(y, 40, 256, 1.0f);
}

TEST(DequantizeIq1STest, ScaleDeltaSignAndIndexBits) {
  std::vector<uint8_t> block(50, 0);
  PutU16(block, 0, kFp16One);
  block[2] = 1;               // group 0: grid 1 = {+1, -1, ..., -1}
  PutU16(block, 34, 0x1000);  // sub-block 0: scale 3, delta +0.125
  PutU16(block, 36, 0x8008);  // sub-block 1: scale 1, delta -0.125, group 1 -> grid 256
  const std::vector<float> y = Decode(DequantizeIq1S, block);
  ExpectPrefix(y, 0, {3.375f, -2.625f, -2.625f, -2.625f, -2.625f, -2.625f, -2.625f, -2.625f});
  ExpectRange(y, 8, 32, -2.625f);
  ExpectRange(y, 32, 40, -1.125f);
  // Sub-block 1, group 1 uses grid 256: value v decodes to v - 0.125.
  for (int j = 0; j < 8; ++j) {
    const int8_t v = static_cast<int8_t>((kIq1SGrid[256] >> (8 * j)) & 0xff);
    EXPECT_EQ(y[40 + j], static_cast<float>(v) - 0.125f) << j;
  }
  ExpectRange(y, 48, 64, -1.125f);
  ExpectRange(y, 64, 256, -0.875f);
}

TEST(DequantizeIq1MTest, SplitScaleSubScalesAndDeltas) {
  std::vector<uint8_t> block(56, 0);
  block[0] = 1;      // group 0: grid 1 = {+1, -1, ..., -1}
  block[32] = 0x08;  // group 0: delta -0.125
  // d = 1.0 = 0x3C00 split over the top nibbles of the 4 scale words: 0x0, 0x0, 0xC, 0x3.
  PutU16(block, 48, 0x0011);  // sub-block 0: groups 0-1 scale 3, groups 2-3 scale 5
  PutU16(block, 50, 0x0000);
  PutU16(block, 52, 0xC000);
  PutU16(block, 54, 0x3000);
  const std::vector<float> y = Decode(DequantizeIq1M, block);
  ExpectPrefix(y, 0, {2.625f, -3.375f, -3.375f, -3.375f, -3.375f, -3.375f, -3.375f, -3.375f});
  ExpectRange(y, 8, 16, -2.625f);
  ExpectRange(y, 16, 32, -4.375f);
  ExpectRange(y, 32, 256, -0.875f);
}

TEST(DequantizeIq1MTest, ScaleNibbleOrder) {
  // d = 0x1234 as fp16: nibble k of d sits in the top nibble of word k.
  std::vector<uint8_t> block(56, 0);
  PutU16(block, 48, 0x4000);
  PutU16(block, 50, 0x3000);
  PutU16(block, 52, 0x2000);
  PutU16(block, 54, 0x1000);
  const std::vector<float> y = Decode(DequantizeIq1M, block);
  ExpectRange(y, 0, 256, Fp16ToFp32(0x1234) * -0.875f);
}

// ---------------------------------------------------------------------------------------------
// llama.cpp fixtures: 64 random blocks per type and their reference decoding.

std::vector<uint8_t> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct FixtureCase {
  const char* type_name;
  int bytes_per_block;
  void (*dequantize)(const uint8_t*, float*, int64_t);
};

// Keeps test listings readable (gtest would otherwise print the struct's raw bytes).
void PrintTo(const FixtureCase& c, std::ostream* os) { *os << c.type_name; }

class IqGridFixtureTest : public ::testing::TestWithParam<FixtureCase> {};

TEST_P(IqGridFixtureTest, MatchesLlamaCppBitForBit) {
  const FixtureCase& c = GetParam();
  constexpr int kBlocks = 64;
  const std::string base = std::string(MOED_TEST_DATA_DIR) + "/quant-blocks/" + c.type_name;
  const std::vector<uint8_t> blocks = ReadFileBytes(base + ".bin");
  const std::vector<uint8_t> expected_bytes = ReadFileBytes(base + ".f32");
  ASSERT_EQ(blocks.size(), static_cast<size_t>(kBlocks * c.bytes_per_block)) << base << ".bin";
  ASSERT_EQ(expected_bytes.size(), static_cast<size_t>(kBlocks * 256 * 4)) << base << ".f32";

  std::vector<float> out(kBlocks * 256);
  c.dequantize(blocks.data(), out.data(), kBlocks);

  for (size_t k = 0; k < out.size(); ++k) {
    uint32_t want;
    std::memcpy(&want, expected_bytes.data() + 4 * k, sizeof(want));
    const uint32_t got = std::bit_cast<uint32_t>(out[k]);
    ASSERT_EQ(got, want) << c.type_name << ": first mismatch at weight " << k << " (block "
                         << k / 256 << ", index " << k % 256 << "): got " << out[k] << ", want "
                         << std::bit_cast<float>(want);
  }
}

INSTANTIATE_TEST_SUITE_P(AllGridTypes, IqGridFixtureTest,
                         ::testing::Values(FixtureCase{"IQ2_XXS", 66, DequantizeIq2Xxs},
                                           FixtureCase{"IQ2_XS", 74, DequantizeIq2Xs},
                                           FixtureCase{"IQ2_S", 82, DequantizeIq2S},
                                           FixtureCase{"IQ3_XXS", 98, DequantizeIq3Xxs},
                                           FixtureCase{"IQ3_S", 110, DequantizeIq3S},
                                           FixtureCase{"IQ1_S", 50, DequantizeIq1S},
                                           FixtureCase{"IQ1_M", 56, DequantizeIq1M}),
                         [](const ::testing::TestParamInfo<FixtureCase>& info) {
                           return std::string(info.param.type_name);
                         });

}  // namespace
}  // namespace moed::quants_internal

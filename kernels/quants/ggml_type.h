// The ggml tensor types that GGUF files carry: ids, block geometry and names. This table is the
// single source of truth for tensor byte sizes; the loader validates files with it and every
// kernel dispatches on GgmlType.
#ifndef MOED_KERNELS_QUANTS_GGML_TYPE_H_
#define MOED_KERNELS_QUANTS_GGML_TYPE_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "absl/status/statusor.h"

namespace moed {

// Values equal the ggml type ids written in files, except kIq3A770: the Phase Twin fork writes
// it as id 42, which upstream assigned to Q2_0, so the loader decides per file which one a 42
// means (loader/gguf/gguf_file.cc) and FileTypeId() maps it back for writing.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIq2Xxs = 16,
  kIq2Xs = 17,
  kIq3Xxs = 18,
  kIq1S = 19,
  kIq4Nl = 20,
  kIq3S = 21,
  kIq2S = 22,
  kIq4Xs = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIq1M = 29,
  kBf16 = 30,
  kTq1_0 = 34,
  kTq2_0 = 35,
  kMxfp4 = 39,
  kNvfp4 = 40,
  kQ1_0 = 41,
  kQ2_0 = 42,
  kIq3A770 = 0x1000 + 42,  // internal id; file id 42 in Phase Twin files
};

inline constexpr uint32_t kIq3A770FileId = 42;
inline constexpr int64_t kQK_K = 256;  // super-block size of the K-quants and IQ types

struct GgmlTypeTraits {
  GgmlType type;
  std::string_view name;   // as llama.cpp prints it: "Q4_K", "IQ3_XXS", "BF16", ...
  int64_t block_size;      // weights per block
  int64_t type_size;       // bytes per block
  bool can_dequantize;     // moed has a CPU dequantizer for it
};

// Every type moed knows, in id order.
std::span<const GgmlTypeTraits> AllGgmlTypes();

// Traits of a type; nullptr for ids that are not (or no longer) valid ggml types.
const GgmlTypeTraits* FindGgmlType(GgmlType type);

// Maps a file type id to a GgmlType (42 -> kQ2_0; the caller disambiguates IQ3_A770).
std::optional<GgmlType> GgmlTypeFromFileId(uint32_t id);
uint32_t FileTypeId(GgmlType type);

// "Q4_K", "q4_k", "IQ3_A770", ... -> type. Unknown names: InvalidArgument listing the choices.
absl::StatusOr<GgmlType> GgmlTypeFromName(std::string_view name);
std::string_view GgmlTypeName(GgmlType type);

// Bytes of a row of n weights. REQUIRES: n % block_size == 0 and the type is known.
int64_t RowBytes(GgmlType type, int64_t n);

}  // namespace moed

#endif  // MOED_KERNELS_QUANTS_GGML_TYPE_H_

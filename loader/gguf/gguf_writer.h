// GGUF v3 writer, byte-compatible with llama.cpp's: metadata in insertion order, tensor infos
// with contiguous offsets in file order, every tensor padded with zeros to the alignment.
// Tensor data is streamed: a tensor's bytes are produced by a callback when the writer reaches
// it, so files larger than memory (synthetic 397B models) can be written.
#ifndef MOED_LOADER_GGUF_GGUF_WRITER_H_
#define MOED_LOADER_GGUF_GGUF_WRITER_H_

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kernels/quants/ggml_type.h"
#include "loader/gguf/gguf_file.h"
#include "loader/gguf/gguf_value.h"

namespace moed::gguf {

// Writes the tensor's nbytes into `out` (a buffer of exactly that size).
using TensorFill = std::function<absl::Status(std::span<uint8_t> out)>;

class GgufWriter {
 public:
  GgufWriter() = default;

  // Adds or replaces a key; insertion order is kept (replacing keeps the old position).
  void SetValue(std::string key, Value value);
  // Removes a key if present.
  void RemoveValue(std::string_view key);
  const std::vector<KeyValue>& metadata() const { return metadata_; }

  // Adds a tensor of shape `ne` (innermost first). ne.size() is the n_dims written: gguf-py keeps
  // trailing 1s (an HF [1, H] weight is written as [H, 1]), so the caller decides; CountDims()
  // gives ggml's convention.
  // Errors: InvalidArgument for a bad name (empty, > 63 bytes, duplicate), shape or type.
  absl::Status AddTensor(std::string name, GgmlType type, std::span<const int64_t> ne,
                         TensorFill fill);
  // Adds a tensor whose bytes are copied from `data` (must be exactly nbytes long).
  absl::Status AddTensorBytes(std::string name, GgmlType type, std::span<const int64_t> ne,
                              std::span<const uint8_t> data);

  // Copies every key of `file` (in order).
  void CopyMetadataFrom(const GgufFile& file);

  // Writes the file. Alignment comes from general.alignment if set (must be UINT32, a power of
  // two), else 32. On error the partial output is removed.
  absl::Status WriteFile(const std::string& path) const;

 private:
  struct PendingTensor {
    TensorInfo info;
    TensorFill fill;
  };
  std::vector<KeyValue> metadata_;
  std::vector<PendingTensor> tensors_;
};

// ggml_n_dims: index of the last dimension with ne > 1, plus one (at least 1).
uint32_t CountDims(std::span<const int64_t> ne);

}  // namespace moed::gguf

#endif  // MOED_LOADER_GGUF_GGUF_WRITER_H_

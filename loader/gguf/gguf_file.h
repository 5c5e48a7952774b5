// GGUF reader: parses and validates the header of a GGUF v2/v3 file (little-endian) and gives
// access to its metadata and tensor data. The file is mmap'ed; opening it reads only the header
// pages, and tensor bytes are touched only when a caller reads them.
//
// Every count, size and offset is checked against the file before it is used (overflow-safe):
// a truncated, corrupt or hostile file yields InvalidArgument / DataLoss naming the key or
// tensor and the byte offset, never a crash, an over-read or an allocation larger than the file.
#ifndef MOED_LOADER_GGUF_GGUF_FILE_H_
#define MOED_LOADER_GGUF_GGUF_FILE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "kernels/quants/ggml_type.h"
#include "loader/gguf/gguf_value.h"

namespace moed::gguf {

inline constexpr uint32_t kDefaultAlignment = 32;
inline constexpr int kMaxDims = 4;
inline constexpr size_t kMaxTensorNameBytes = 63;

struct TensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  std::array<int64_t, kMaxDims> ne = {1, 1, 1, 1};  // element counts, innermost first
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  // Bytes of one row (ne[0] weights).
  uint64_t row_bytes() const { return static_cast<uint64_t>(RowBytes(type, ne[0])); }
  // "[2048, 512, 256]"
  std::string ShapeString() const;
};

struct KeyValue {
  std::string key;
  Value value;
};

class GgufFile {
 public:
  // Maps and parses `path`. Errors: NotFound / PermissionDenied for the file itself,
  // InvalidArgument or DataLoss (with key/tensor name and byte offset) for its contents.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Parses a copy of `bytes` (tests and the fuzzer); `name` is used in error messages.
  static absl::StatusOr<std::unique_ptr<GgufFile>> FromBytes(std::string_view bytes,
                                                              std::string name = "<memory>");

  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute file offset of tensor data
  uint64_t file_size() const { return size_; }

  // Metadata in file order.
  const std::vector<KeyValue>& metadata() const { return metadata_; }
  const Value* FindValue(std::string_view key) const;
  // Typed lookups whose errors name the key: NotFound if absent, InvalidArgument if mistyped.
  absl::StatusOr<uint64_t> GetUint(std::string_view key) const;
  absl::StatusOr<double> GetFloat(std::string_view key) const;
  absl::StatusOr<std::string_view> GetString(std::string_view key) const;
  absl::StatusOr<bool> GetBool(std::string_view key) const;

  // Tensor infos in file order.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* FindTensor(std::string_view name) const;

  // The tensor's bytes inside the mapping (validated at open). Touching them pages them in.
  std::span<const uint8_t> TensorData(const TensorInfo& info) const;
  // Absolute file offset of the tensor's first byte.
  uint64_t TensorFileOffset(const TensorInfo& info) const { return data_offset_ + info.offset; }
  // File descriptor for pread-based loading; -1 for FromBytes files.
  int fd() const { return fd_; }

  // How file type id 42 was read (see ResolveType42 in gguf_file.cc); empty if no tensor has it.
  const std::string& type42_decision() const { return type42_decision_; }

 private:
  GgufFile() = default;
  absl::Status Parse();

  std::string path_;
  int fd_ = -1;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool mapped_ = false;
  std::string owned_;  // FromBytes storage

  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<KeyValue> metadata_;
  absl::flat_hash_map<std::string, size_t> key_index_;
  std::vector<TensorInfo> tensors_;
  absl::flat_hash_map<std::string, size_t> tensor_index_;
  std::string type42_decision_;
};

}  // namespace moed::gguf

#endif  // MOED_LOADER_GGUF_GGUF_FILE_H_

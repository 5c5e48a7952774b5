// Reader (and a small writer) for Hugging Face safetensors files: an 8-byte little-endian header
// length, a JSON header naming every tensor's dtype, shape and byte range, then the raw tensor
// bytes. The file is mmap'ed; opening it parses and validates only the header.
//
// Validation follows the safetensors library: the header must be a JSON object of tensor entries
// (plus an optional "__metadata__" map of strings); every entry's byte range must match its dtype
// and shape, and the ranges must tile the data section exactly (no gaps, no overlaps, nothing past
// the end of the file). Any violation is an InvalidArgument / DataLoss naming the tensor.
#ifndef MOED_LOADER_SAFETENSORS_H_
#define MOED_LOADER_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace moed {

enum class SafetensorsDtype {
  kBool,
  kU8,
  kI8,
  kI16,
  kU16,
  kI32,
  kU32,
  kI64,
  kU64,
  kF16,
  kBf16,
  kF32,
  kF64,
  kF8E4M3,
  kF8E5M2,
};

// "F32", "BF16", ... as written in headers.
std::string_view SafetensorsDtypeName(SafetensorsDtype dtype);
absl::StatusOr<SafetensorsDtype> SafetensorsDtypeFromName(std::string_view name);
size_t SafetensorsDtypeSize(SafetensorsDtype dtype);

struct SafetensorsTensor {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::kF32;
  std::vector<int64_t> shape;  // PyTorch order: outermost dimension first
  uint64_t begin = 0;          // byte range relative to the data section
  uint64_t end = 0;

  int64_t num_elements() const;
  uint64_t nbytes() const { return end - begin; }
  // "[1024, 64]"
  std::string ShapeString() const;
};

class SafetensorsFile {
 public:
  // Maps and parses `path`. Errors: NotFound / PermissionDenied for the file itself,
  // InvalidArgument / DataLoss naming the problem for its contents.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Parses a copy of `bytes` (tests); `name` is used in error messages.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(std::string_view bytes,
                                                                    std::string name = "<memory>");

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return size_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute offset of the data section

  // Tensors in header order.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* Find(std::string_view name) const;
  // The "__metadata__" entries (string to string); empty if absent.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The tensor's bytes inside the mapping (validated at open).
  std::span<const uint8_t> Data(const SafetensorsTensor& tensor) const;

 private:
  SafetensorsFile() = default;
  absl::Status Parse();

  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool mapped_ = false;
  std::string owned_;  // FromBytes storage
  uint64_t data_offset_ = 0;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: bytes must be exactly num_elements * dtype size long.
struct SafetensorsWriteTensor {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::kF32;
  std::vector<int64_t> shape;
  std::string bytes;
};

// Serialises tensors (data laid out in the given order) into a safetensors image, as the
// safetensors library writes it: header padded with spaces to a multiple of 8 bytes.
absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<SafetensorsWriteTensor>& tensors,
    const std::map<std::string, std::string>& metadata = {});
absl::Status WriteSafetensorsFile(const std::string& path,
                                  const std::vector<SafetensorsWriteTensor>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

}  // namespace moed

#endif  // MOED_LOADER_SAFETENSORS_H_

// Reads the bytes of a list of tensors (typically the survivors of ResolveTensorVariants) into
// owned buffers with pread(2) on the GGUF file's descriptor. This is how a worker loads its stage:
// exactly the selected tensors' bytes are read, nothing else (unselected Phase Twin members and
// other stages' tensors are never touched), which the bytes-read test measures via /proc/self/io.
#ifndef MOED_LOADER_TENSOR_LOADER_H_
#define MOED_LOADER_TENSOR_LOADER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "loader/gguf/gguf_file.h"

namespace moed {

struct LoadedTensor {
  gguf::TensorInfo info;  // as passed in (canonical name, selected member's type/shape/offset)
  std::unique_ptr<uint8_t[]> data;  // info.nbytes bytes
  std::span<const uint8_t> bytes() const { return {data.get(), static_cast<size_t>(info.nbytes)}; }
};

// Reads every tensor's [data_offset + offset, + nbytes) range. The ranges are validated against the
// file size before anything is allocated (OutOfRange naming the tensor). Files opened with
// FromBytes (no descriptor) are copied from memory instead. A short read is DataLoss.
absl::StatusOr<std::vector<LoadedTensor>> LoadTensorBytes(const gguf::GgufFile& file,
                                                          std::span<const gguf::TensorInfo> tensors);

}  // namespace moed

#endif  // MOED_LOADER_TENSOR_LOADER_H_

// pread-based tensor loading (see tensor_loader.h). pread rather than touching the mmap so that the
// bytes land directly in buffers the caller owns (and later hands to the GPU), with read errors
// reported as a Status instead of a SIGBUS.
#include "loader/tensor_loader.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <string>

#include "absl/strings/str_cat.h"

namespace moed {
namespace {

// Largest single pread: Linux caps one read at 0x7ffff000 bytes anyway.
constexpr uint64_t kMaxChunk = uint64_t{1} << 30;

absl::Status PreadFully(int fd, uint8_t* dst, uint64_t size, uint64_t offset, const gguf::TensorInfo& info,
                        const std::string& path) {
  uint64_t done = 0;
  while (done < size) {
    const uint64_t want = std::min(size - done, kMaxChunk);
    const ssize_t got = ::pread(fd, dst + done, static_cast<size_t>(want), static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      return absl::DataLossError(absl::StrCat("reading tensor '", info.name, "' from ", path, " at byte ",
                                              offset + done, ": ", std::strerror(errno)));
    }
    if (got == 0) {
      return absl::DataLossError(absl::StrCat("reading tensor '", info.name, "' from ", path,
                                              ": unexpected end of file at byte ", offset + done));
    }
    done += static_cast<uint64_t>(got);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<LoadedTensor>> LoadTensorBytes(const gguf::GgufFile& file,
                                                          std::span<const gguf::TensorInfo> tensors) {
  // Validate every range first: nothing is allocated for a request the file cannot satisfy.
  for (const gguf::TensorInfo& t : tensors) {
    const uint64_t start = file.data_offset() + t.offset;
    if (start < t.offset || start > file.file_size() || t.nbytes > file.file_size() - start) {
      return absl::OutOfRangeError(absl::StrCat("tensor '", t.name, "' (offset ", t.offset, ", ", t.nbytes,
                                                " bytes) lies outside ", file.path(), " (", file.file_size(),
                                                " bytes)"));
    }
  }
  std::vector<LoadedTensor> out;
  out.reserve(tensors.size());
  for (const gguf::TensorInfo& t : tensors) {
    LoadedTensor loaded;
    loaded.info = t;
    // new[] without () leaves the buffer uninitialised: no pointless zeroing of gigabytes.
    loaded.data.reset(new (std::nothrow) uint8_t[t.nbytes == 0 ? 1 : t.nbytes]);
    if (loaded.data == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate ", t.nbytes, " bytes for tensor '", t.name, "'"));
    }
    const uint64_t start = file.data_offset() + t.offset;
    if (file.fd() >= 0) {
      absl::Status s = PreadFully(file.fd(), loaded.data.get(), t.nbytes, start, t, file.path());
      if (!s.ok()) return s;
    } else if (t.nbytes > 0) {
      std::span<const uint8_t> src = file.TensorData(t);
      if (src.size() != t.nbytes) {
        return absl::DataLossError(absl::StrCat("tensor '", t.name, "': in-memory data has ", src.size(),
                                                " bytes, expected ", t.nbytes));
      }
      std::memcpy(loaded.data.get(), src.data(), src.size());
    }
    out.push_back(std::move(loaded));
  }
  return out;
}

}  // namespace moed

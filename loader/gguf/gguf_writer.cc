#include "loader/gguf/gguf_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;
constexpr size_t kBufferBytes = 8 << 20;

// Buffered sequential writer over a file descriptor.
class Output {
 public:
  explicit Output(int fd) : fd_(fd) { buffer_.reserve(kBufferBytes); }

  template <typename T>
  void Put(T v) {
    Append(&v, sizeof(T));
  }
  void PutString(std::string_view s) {
    Put<uint64_t>(s.size());
    Append(s.data(), s.size());
  }
  void Append(const void* p, size_t n) {
    if (buffer_.size() + n > kBufferBytes) {
      status_.Update(Flush());
      if (n >= kBufferBytes) {
        status_.Update(WriteAll(static_cast<const char*>(p), n));
        position_ += n;
        return;
      }
    }
    buffer_.insert(buffer_.end(), static_cast<const char*>(p), static_cast<const char*>(p) + n);
    position_ += n;
  }
  void Pad(uint64_t alignment) {
    static const char kZeros[256] = {};
    while (position_ % alignment != 0) {
      Append(kZeros, std::min<uint64_t>(sizeof(kZeros), alignment - position_ % alignment));
    }
  }
  absl::Status Flush() {
    absl::Status s = WriteAll(buffer_.data(), buffer_.size());
    buffer_.clear();
    return s;
  }
  uint64_t position() const { return position_; }
  const absl::Status& status() const { return status_; }

 private:
  absl::Status WriteAll(const char* p, size_t n) {
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return absl::UnavailableError(absl::StrCat("write failed: ", std::strerror(errno)));
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return absl::OkStatus();
  }

  int fd_;
  std::vector<char> buffer_;
  uint64_t position_ = 0;
  absl::Status status_;
};

void PutValue(Output& out, const Value& v) {
  out.Put<uint32_t>(static_cast<uint32_t>(v.type()));
  if (v.is_array()) {
    out.Put<uint32_t>(static_cast<uint32_t>(v.element_type()));
    out.Put<uint64_t>(v.size());
  }
  if (v.element_type() == ValueType::kString) {
    for (const std::string& s : v.strings()) out.PutString(s);
  } else {
    out.Append(v.raw().data(), v.raw().size());
  }
}

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

uint32_t CountDims(std::span<const int64_t> ne) {
  uint32_t n = 1;
  for (size_t i = 0; i < ne.size(); ++i) {
    if (ne[i] > 1) n = static_cast<uint32_t>(i + 1);
  }
  return n;
}

void GgufWriter::SetValue(std::string key, Value value) {
  for (KeyValue& kv : metadata_) {
    if (kv.key == key) {
      kv.value = std::move(value);
      return;
    }
  }
  metadata_.push_back({std::move(key), std::move(value)});
}

void GgufWriter::RemoveValue(std::string_view key) {
  std::erase_if(metadata_, [&](const KeyValue& kv) { return kv.key == key; });
}

void GgufWriter::CopyMetadataFrom(const GgufFile& file) {
  for (const KeyValue& kv : file.metadata()) SetValue(kv.key, kv.value);
}

absl::Status GgufWriter::AddTensor(std::string name, GgmlType type, std::span<const int64_t> ne,
                                   TensorFill fill) {
  if (name.empty() || name.size() > kMaxTensorNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor name '", name, "' must be 1..", kMaxTensorNameBytes, " bytes"));
  }
  for (const PendingTensor& t : tensors_) {
    if (t.info.name == name) return absl::InvalidArgumentError(absl::StrCat("duplicate tensor '", name, "'"));
  }
  const GgmlTypeTraits* traits = FindGgmlType(type);
  if (traits == nullptr) return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': unknown type"));
  if (ne.empty() || ne.size() > kMaxDims) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': needs 1..4 dimensions"));
  }
  TensorInfo info;
  info.name = std::move(name);
  info.type = type;
  uint64_t elements = 1;
  for (size_t d = 0; d < ne.size(); ++d) {
    if (ne[d] <= 0) return absl::InvalidArgumentError(absl::StrCat("tensor '", info.name, "': bad dimension"));
    info.ne[d] = ne[d];
    elements *= static_cast<uint64_t>(ne[d]);
  }
  if (info.ne[0] % traits->block_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", info.name, "': ne[0] = ", info.ne[0],
                                                   " is not a multiple of the ", Sv(traits->name),
                                                   " block size ", traits->block_size));
  }
  info.n_dims = static_cast<uint32_t>(ne.size());
  info.nbytes = elements / traits->block_size * traits->type_size;
  tensors_.push_back({std::move(info), std::move(fill)});
  return absl::OkStatus();
}

absl::Status GgufWriter::AddTensorBytes(std::string name, GgmlType type, std::span<const int64_t> ne,
                                        std::span<const uint8_t> data) {
  return AddTensor(std::move(name), type, ne, [data](std::span<uint8_t> out) -> absl::Status {
    if (out.size() != data.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor data has ", data.size(), " bytes, expected ", out.size()));
    }
    std::memcpy(out.data(), data.data(), data.size());
    return absl::OkStatus();
  });
}

absl::Status GgufWriter::WriteFile(const std::string& path) const {
  uint64_t alignment = kDefaultAlignment;
  for (const KeyValue& kv : metadata_) {
    if (kv.key != "general.alignment") continue;
    if (kv.value.type() != ValueType::kUint32) {
      return absl::InvalidArgumentError("general.alignment must be UINT32");
    }
    alignment = *kv.value.GetUint();
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("general.alignment ", alignment, " is not a power of two"));
    }
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot create '", path, "': ", std::strerror(errno)));

  auto write_all = [&]() -> absl::Status {
    Output out(fd);
    out.Put<uint32_t>(kMagic);
    out.Put<uint32_t>(3);
    out.Put<int64_t>(static_cast<int64_t>(tensors_.size()));
    out.Put<int64_t>(static_cast<int64_t>(metadata_.size()));
    for (const KeyValue& kv : metadata_) {
      out.PutString(kv.key);
      PutValue(out, kv.value);
    }
    uint64_t offset = 0;
    for (const PendingTensor& t : tensors_) {
      out.PutString(t.info.name);
      out.Put<uint32_t>(t.info.n_dims);
      for (uint32_t d = 0; d < t.info.n_dims; ++d) out.Put<int64_t>(t.info.ne[d]);
      out.Put<uint32_t>(FileTypeId(t.info.type));
      out.Put<uint64_t>(offset);
      offset += AlignUp(t.info.nbytes, alignment);
    }
    out.Pad(alignment);
    std::vector<uint8_t> data;
    for (const PendingTensor& t : tensors_) {
      data.assign(t.info.nbytes, 0);
      absl::Status filled = t.fill(std::span<uint8_t>(data));
      if (!filled.ok()) {
        return absl::Status(filled.code(), absl::StrCat("tensor '", t.info.name, "': ", filled.message()));
      }
      out.Append(data.data(), data.size());
      out.Pad(alignment);
      RETURN_IF_ERROR(out.status());
    }
    RETURN_IF_ERROR(out.Flush());
    return out.status();
  };
  absl::Status status = write_all();
  if (::close(fd) != 0 && status.ok()) {
    status = absl::UnavailableError(absl::StrCat("closing '", path, "': ", std::strerror(errno)));
  }
  if (!status.ok()) {
    ::unlink(path.c_str());
    return absl::Status(status.code(), absl::StrCat("writing '", path, "': ", status.message()));
  }
  return absl::OkStatus();
}

}  // namespace moed::gguf

#include "loader/gguf/gguf_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/base/log.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr uint64_t kMaxArrayElements = uint64_t{1} << 30;  // llama.cpp's limit
constexpr uint64_t kMaxStringBytes = uint64_t{1} << 30;

// Bounds-checked little-endian reads from the mapped header. Every error names what was being
// read and the absolute byte offset.
class Cursor {
 public:
  Cursor(const uint8_t* data, uint64_t size) : data_(data), size_(size) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  template <typename T>
  absl::StatusOr<T> Read(std::string_view what) {
    if (remaining() < sizeof(T)) return Truncated(what, sizeof(T));
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  absl::StatusOr<std::string> ReadString(std::string_view what, uint64_t max_bytes) {
    const uint64_t at = pos_;
    ASSIGN_OR_RETURN(uint64_t len, Read<uint64_t>(what));
    if (len > max_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(Sv(what), ": string length ", len, " at byte ", at,
                                                     " exceeds the limit of ", max_bytes, " bytes"));
    }
    if (len > remaining()) return Truncated(what, len);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return s;
  }

  absl::StatusOr<std::string> ReadBytes(std::string_view what, uint64_t n) {
    if (n > remaining()) return Truncated(what, n);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

  absl::Status Truncated(std::string_view what, uint64_t need) const {
    return absl::DataLossError(absl::StrCat("truncated file: ", Sv(what), " needs ", need, " bytes at byte ",
                                            pos_, " but only ", remaining(), " remain"));
  }

 private:
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

absl::StatusOr<Value> ReadValue(Cursor& cur, const std::string& key) {
  const std::string what = absl::StrCat("value of key '", key, "'");
  const uint64_t type_at = cur.pos();
  ASSIGN_OR_RETURN(uint32_t type_id, cur.Read<uint32_t>(what));
  if (!IsValidValueType(type_id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("key '", key, "': invalid value type ", type_id, " at byte ", type_at));
  }
  ValueType type = static_cast<ValueType>(type_id);
  bool is_array = false;
  uint64_t count = 1;
  if (type == ValueType::kArray) {
    is_array = true;
    const uint64_t elem_at = cur.pos();
    ASSIGN_OR_RETURN(uint32_t elem_id, cur.Read<uint32_t>(what));
    if (!IsValidValueType(elem_id) || elem_id == static_cast<uint32_t>(ValueType::kArray)) {
      return absl::InvalidArgumentError(absl::StrCat("key '", key, "': invalid array element type ", elem_id,
                                                     " at byte ", elem_at, " (nested arrays are not supported)"));
    }
    type = static_cast<ValueType>(elem_id);
    const uint64_t count_at = cur.pos();
    ASSIGN_OR_RETURN(count, cur.Read<uint64_t>(what));
    // Every element needs at least one byte (eight for a string's length), so a count larger than
    // the rest of the file is corrupt; checking it first bounds every allocation by the file size.
    const uint64_t min_elem = type == ValueType::kString ? 8 : ValueTypeSize(type);
    if (count > kMaxArrayElements || count > cur.remaining() / min_elem) {
      return absl::InvalidArgumentError(absl::StrCat("key '", key, "': array of ", count, " elements at byte ",
                                                     count_at, " does not fit in the file"));
    }
  }
  if (type == ValueType::kString) {
    std::vector<std::string> strings;
    strings.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      ASSIGN_OR_RETURN(std::string s, cur.ReadString(what, kMaxStringBytes));
      strings.push_back(std::move(s));
    }
    return is_array ? Value::StringArray(std::move(strings)) : Value::String(std::move(strings[0]));
  }
  ASSIGN_OR_RETURN(std::string raw, cur.ReadBytes(what, count * ValueTypeSize(type)));
  return Value::FromRaw(type, is_array, std::move(raw), count);
}

uint64_t AlignUp(uint64_t x, uint64_t alignment) { return (x + alignment - 1) / alignment * alignment; }

// A tensor info as stored, before its type id is interpreted.
struct RawTensorInfo {
  std::string name;
  uint32_t n_dims;
  std::array<int64_t, kMaxDims> ne;
  uint32_t type_id;
  uint64_t offset;
};

// Byte size of a tensor of `type` and shape `ne`, overflow-checked.
absl::StatusOr<uint64_t> TensorBytes(const RawTensorInfo& t, GgmlType type) {
  const GgmlTypeTraits* traits = FindGgmlType(type);
  if (t.ne[0] % traits->block_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "': ne[0] = ", t.ne[0],
                                                   " is not a multiple of the ", Sv(traits->name),
                                                   " block size ", traits->block_size));
  }
  uint64_t elements = 1;
  for (int64_t n : t.ne) {
    if (__builtin_mul_overflow(elements, static_cast<uint64_t>(n), &elements)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "': element count overflows"));
    }
  }
  uint64_t bytes;
  if (__builtin_mul_overflow(elements / traits->block_size, static_cast<uint64_t>(traits->type_size), &bytes) ||
      bytes > (uint64_t{1} << 62)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "': byte size overflows"));
  }
  return bytes;
}

// Checks llama.cpp's layout rule: offsets strictly contiguous in file order, each tensor padded to
// the alignment. Returns the first violation.
absl::Status CheckContiguous(const std::vector<RawTensorInfo>& raw, const std::vector<GgmlType>& types,
                             uint32_t alignment) {
  uint64_t expected = 0;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i].offset != expected) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", raw[i].name, "' has offset ", raw[i].offset,
                                                     ", expected ", expected, " (offsets must be contiguous)"));
    }
    ASSIGN_OR_RETURN(uint64_t bytes, TensorBytes(raw[i], types[i]));
    expected += AlignUp(bytes, alignment);
  }
  return absl::OkStatus();
}

}  // namespace

std::string TensorInfo::ShapeString() const {
  return absl::StrCat("[", absl::StrJoin(ne.begin(), ne.begin() + std::max<uint32_t>(n_dims, 1), ", "), "]");
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  file->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file->fd_ < 0) {
    const int err = errno;
    const std::string msg = absl::StrCat("cannot open '", path, "': ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::UnavailableError(msg);
  }
  struct stat st {};
  if (fstat(file->fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a regular file"));
  }
  file->size_ = static_cast<uint64_t>(st.st_size);
  if (file->size_ == 0) return absl::InvalidArgumentError(absl::StrCat("'", path, "' is empty"));
  void* map = mmap(nullptr, file->size_, PROT_READ, MAP_SHARED, file->fd_, 0);
  if (map == MAP_FAILED) {
    return absl::UnavailableError(absl::StrCat("cannot mmap '", path, "': ", std::strerror(errno)));
  }
  file->data_ = static_cast<const uint8_t*>(map);
  file->mapped_ = true;
  absl::Status status = file->Parse();
  if (!status.ok()) return absl::Status(status.code(), absl::StrCat(path, ": ", status.message()));
  return file;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::FromBytes(std::string_view bytes, std::string name) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = std::move(name);
  file->owned_.assign(bytes.data(), bytes.size());
  file->data_ = reinterpret_cast<const uint8_t*>(file->owned_.data());
  file->size_ = file->owned_.size();
  absl::Status status = file->Parse();
  if (!status.ok()) return absl::Status(status.code(), absl::StrCat(file->path_, ": ", status.message()));
  return file;
}

GgufFile::~GgufFile() {
  if (mapped_) munmap(const_cast<uint8_t*>(data_), size_);
  if (fd_ >= 0) ::close(fd_);
}

absl::Status GgufFile::Parse() {
  Cursor cur(data_, size_);
  ASSIGN_OR_RETURN(uint32_t magic, cur.Read<uint32_t>("magic"));
  if (magic != kMagic) return absl::InvalidArgumentError("not a GGUF file (bad magic at byte 0)");
  ASSIGN_OR_RETURN(version_, cur.Read<uint32_t>("version"));
  if ((version_ & 0xFFFF) == 0) {
    return absl::InvalidArgumentError("big-endian or byte-swapped GGUF files are not supported");
  }
  if (version_ != 2 && version_ != 3) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported GGUF version ", version_, " (2 and 3 are)"));
  }
  ASSIGN_OR_RETURN(int64_t n_tensors, cur.Read<int64_t>("tensor count"));
  ASSIGN_OR_RETURN(int64_t n_kv, cur.Read<int64_t>("key/value count"));
  // Every record takes at least one byte, so larger counts are corrupt (and must not size an
  // allocation).
  if (n_tensors < 0 || static_cast<uint64_t>(n_tensors) > cur.remaining()) {
    return absl::InvalidArgumentError(absl::StrCat("implausible tensor count ", n_tensors, " at byte 8"));
  }
  if (n_kv < 0 || static_cast<uint64_t>(n_kv) > cur.remaining()) {
    return absl::InvalidArgumentError(absl::StrCat("implausible key/value count ", n_kv, " at byte 16"));
  }

  bool has_variant_keys = false;
  for (int64_t i = 0; i < n_kv; ++i) {
    const uint64_t at = cur.pos();
    ASSIGN_OR_RETURN(std::string key, cur.ReadString(absl::StrCat("key #", i), 65535));
    if (key_index_.contains(key)) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate key '", key, "' at byte ", at));
    }
    ASSIGN_OR_RETURN(Value value, ReadValue(cur, key));
    if (absl::StartsWith(key, "general.tensor_variant.")) has_variant_keys = true;
    key_index_.emplace(key, metadata_.size());
    metadata_.push_back({std::move(key), std::move(value)});
  }

  if (const Value* a = FindValue("general.alignment")) {
    if (a->type() != ValueType::kUint32) {
      return absl::InvalidArgumentError(
          absl::StrCat("general.alignment must be UINT32, found ", Sv(ValueTypeName(a->type()))));
    }
    alignment_ = static_cast<uint32_t>(*a->GetUint());
    if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("general.alignment ", alignment_, " is not a power of two"));
    }
  }

  std::vector<RawTensorInfo> raw;
  raw.reserve(n_tensors);
  for (int64_t i = 0; i < n_tensors; ++i) {
    RawTensorInfo t;
    const uint64_t at = cur.pos();
    ASSIGN_OR_RETURN(t.name, cur.ReadString(absl::StrCat("name of tensor #", i), 65535));
    if (t.name.empty() || t.name.size() > kMaxTensorNameBytes) {
      return absl::InvalidArgumentError(absl::StrCat("tensor #", i, " at byte ", at, ": name length ",
                                                     t.name.size(), " is not in 1..", kMaxTensorNameBytes));
    }
    if (tensor_index_.contains(t.name)) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate tensor '", t.name, "' at byte ", at));
    }
    tensor_index_.emplace(t.name, i);
    const std::string what = absl::StrCat("tensor '", t.name, "'");
    ASSIGN_OR_RETURN(t.n_dims, cur.Read<uint32_t>(what));
    if (t.n_dims > kMaxDims) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", t.n_dims, " dimensions (at most 4)"));
    }
    t.ne = {1, 1, 1, 1};
    for (uint32_t d = 0; d < t.n_dims; ++d) {
      ASSIGN_OR_RETURN(t.ne[d], cur.Read<int64_t>(what));
      if (t.ne[d] < 0) return absl::InvalidArgumentError(absl::StrCat(what, ": negative dimension ", t.ne[d]));
    }
    ASSIGN_OR_RETURN(t.type_id, cur.Read<uint32_t>(what));
    if (!GgmlTypeFromFileId(t.type_id)) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": unknown or removed ggml type id ", t.type_id));
    }
    ASSIGN_OR_RETURN(t.offset, cur.Read<uint64_t>(what));
    raw.push_back(std::move(t));
  }

  // File type id 42 is IQ3_A770 in Phase Twin files and Q2_0 upstream (gguf-and-quants.md §5.3):
  // IQ3_A770 iff the file has tensor_variant keys, or only the 102-byte reading is contiguous.
  std::vector<GgmlType> types;
  bool has_42 = false;
  for (const RawTensorInfo& t : raw) {
    types.push_back(*GgmlTypeFromFileId(t.type_id));
    has_42 |= t.type_id == kIq3A770FileId;
  }
  if (has_42) {
    std::vector<GgmlType> as_a770 = types;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i].type_id == kIq3A770FileId) as_a770[i] = GgmlType::kIq3A770;
    }
    if (has_variant_keys) {
      types = as_a770;
      type42_decision_ = "type 42 read as IQ3_A770 (the file has general.tensor_variant.* keys)";
    } else if (CheckContiguous(raw, types, alignment_).ok()) {
      type42_decision_ = "type 42 read as Q2_0 (no tensor_variant keys; Q2_0 sizes are contiguous)";
    } else if (CheckContiguous(raw, as_a770, alignment_).ok()) {
      types = as_a770;
      type42_decision_ = "type 42 read as IQ3_A770 (only its 102-byte blocks give contiguous offsets)";
    } else {
      type42_decision_ = "type 42 read as Q2_0 (neither reading is contiguous)";
    }
    MOED_LOG(INFO) << path_ << ": " << type42_decision_;
  }

  data_offset_ = AlignUp(cur.pos(), alignment_);
  RETURN_IF_ERROR(CheckContiguous(raw, types, alignment_));
  tensors_.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    TensorInfo info;
    info.name = std::move(raw[i].name);
    info.n_dims = raw[i].n_dims;
    info.ne = raw[i].ne;
    info.type = types[i];
    info.offset = raw[i].offset;
    ASSIGN_OR_RETURN(info.nbytes, TensorBytes(raw[i], types[i]));
    // The last tensor's padding may be missing at EOF; its bytes may not.
    if (data_offset_ > size_ || info.offset > size_ - data_offset_ || info.nbytes > size_ - data_offset_ - info.offset) {
      return absl::DataLossError(absl::StrCat("truncated file: tensor '", info.name, "' needs bytes [",
                                              data_offset_ + info.offset, ", ", data_offset_ + info.offset + info.nbytes,
                                              ") but the file has ", size_));
    }
    tensors_.push_back(std::move(info));
  }
  return absl::OkStatus();
}

const Value* GgufFile::FindValue(std::string_view key) const {
  auto it = key_index_.find(Sv(key));
  return it == key_index_.end() ? nullptr : &metadata_[it->second].value;
}

namespace {
template <typename T>
absl::StatusOr<T> Annotate(std::string_view key, absl::StatusOr<T> v) {
  if (v.ok()) return v;
  return absl::Status(v.status().code(), absl::StrCat("key '", Sv(key), "': ", v.status().message()));
}
absl::Status Missing(std::string_view key) {
  return absl::NotFoundError(absl::StrCat("missing key '", Sv(key), "'"));
}
}  // namespace

absl::StatusOr<uint64_t> GgufFile::GetUint(std::string_view key) const {
  const Value* v = FindValue(key);
  if (!v) return Missing(key);
  return Annotate(key, v->GetUint());
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  const Value* v = FindValue(key);
  if (!v) return Missing(key);
  return Annotate(key, v->GetFloat());
}

absl::StatusOr<std::string_view> GgufFile::GetString(std::string_view key) const {
  const Value* v = FindValue(key);
  if (!v) return Missing(key);
  return Annotate(key, v->GetString());
}

absl::StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  const Value* v = FindValue(key);
  if (!v) return Missing(key);
  return Annotate(key, v->GetBool());
}

const TensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(Sv(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> GgufFile::TensorData(const TensorInfo& info) const {
  return std::span<const uint8_t>(data_ + data_offset_ + info.offset, info.nbytes);
}

}  // namespace moed::gguf

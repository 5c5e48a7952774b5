// Safetensors reader/writer (safetensors.h): header parsing and validation over an mmap.
#include "loader/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"
#include "nlohmann/json.hpp"

namespace moed {
namespace {

// The safetensors library refuses headers above 100 MB; so do we, before reading one.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DtypeInfo {
  SafetensorsDtype dtype;
  std::string_view name;
  size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {SafetensorsDtype::kBool, "BOOL", 1},      {SafetensorsDtype::kU8, "U8", 1},
    {SafetensorsDtype::kI8, "I8", 1},          {SafetensorsDtype::kI16, "I16", 2},
    {SafetensorsDtype::kU16, "U16", 2},        {SafetensorsDtype::kI32, "I32", 4},
    {SafetensorsDtype::kU32, "U32", 4},        {SafetensorsDtype::kI64, "I64", 8},
    {SafetensorsDtype::kU64, "U64", 8},        {SafetensorsDtype::kF16, "F16", 2},
    {SafetensorsDtype::kBf16, "BF16", 2},      {SafetensorsDtype::kF32, "F32", 4},
    {SafetensorsDtype::kF64, "F64", 8},        {SafetensorsDtype::kF8E4M3, "F8_E4M3", 1},
    {SafetensorsDtype::kF8E5M2, "F8_E5M2", 1},
};

const DtypeInfo& Info(SafetensorsDtype dtype) {
  for (const DtypeInfo& info : kDtypes) {
    if (info.dtype == dtype) return info;
  }
  return kDtypes[0];  // unreachable: every enumerator is in the table
}

std::string ErrnoMessage(int err) { return std::strerror(err); }

absl::Status FileError(int err, const std::string& what, const std::string& path) {
  const std::string msg = absl::StrCat(what, " '", path, "': ", ErrnoMessage(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::InternalError(msg);
}

using Json = nlohmann::ordered_json;

absl::StatusOr<uint64_t> JsonUint(const Json& j, std::string_view what) {
  if (!j.is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Sv(what), " must be a non-negative integer, found ", Sv(j.type_name())));
  }
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  const int64_t v = j.get<int64_t>();
  if (v < 0) return absl::InvalidArgumentError(absl::StrCat(Sv(what), " is negative (", v, ")"));
  return static_cast<uint64_t>(v);
}

}  // namespace

std::string_view SafetensorsDtypeName(SafetensorsDtype dtype) { return Info(dtype).name; }

size_t SafetensorsDtypeSize(SafetensorsDtype dtype) { return Info(dtype).size; }

absl::StatusOr<SafetensorsDtype> SafetensorsDtypeFromName(std::string_view name) {
  for (const DtypeInfo& info : kDtypes) {
    if (info.name == name) return info.dtype;
  }
  std::vector<std::string> names;
  for (const DtypeInfo& info : kDtypes) names.emplace_back(info.name);
  return absl::InvalidArgumentError(absl::StrCat("unknown safetensors dtype '", Sv(name),
                                                 "' (known: ", absl::StrJoin(names, ", "), ")"));
}

int64_t SafetensorsTensor::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string SafetensorsTensor::ShapeString() const {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FileError(errno, "cannot open safetensors file", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return FileError(err, "cannot stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a regular file"));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->size_ = static_cast<uint64_t>(st.st_size);
  if (file->size_ > 0) {
    void* addr = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return FileError(err, "cannot mmap", path);
    }
    file->data_ = static_cast<const uint8_t*>(addr);
    file->mapped_ = true;
  }
  ::close(fd);  // the mapping keeps the file alive
  RETURN_IF_ERROR(file->Parse());
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(std::string_view bytes,
                                                                            std::string name) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = std::move(name);
  file->owned_.assign(bytes.data(), bytes.size());
  file->data_ = reinterpret_cast<const uint8_t*>(file->owned_.data());
  file->size_ = file->owned_.size();
  RETURN_IF_ERROR(file->Parse());
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

absl::Status SafetensorsFile::Parse() {
  const auto error = [this](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", parts...));
  };
  if (size_ < 8) {
    return absl::DataLossError(absl::StrCat(path_, ": truncated safetensors file: ", size_,
                                            " bytes, the header length alone needs 8"));
  }
  uint64_t header_len;
  std::memcpy(&header_len, data_, 8);
  if (header_len > kMaxHeaderBytes) {
    return error("header length ", header_len, " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  }
  if (header_len > size_ - 8) {
    return absl::DataLossError(
        absl::StrCat(path_, ": truncated safetensors file: the header needs ", header_len,
                     " bytes but only ", size_ - 8, " follow the length field"));
  }
  data_offset_ = 8 + header_len;
  const uint64_t data_size = size_ - data_offset_;
  const char* text = reinterpret_cast<const char*>(data_ + 8);
  if (header_len == 0 || text[0] != '{')
    return error("the header is not a JSON object (it must start with '{')");

  Json header;
  try {
    header = Json::parse(text, text + header_len);
  } catch (const Json::parse_error& e) {
    return error("the header is not valid JSON: ", e.what());
  }
  if (!header.is_object()) return error("the header is not a JSON object");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const Json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) return error("\"__metadata__\" must be an object of strings");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string())
          return error("\"__metadata__\" entry '", m.key(), "' is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor '", name, "'");
    if (!entry.is_object()) return error(where, ": entry is not an object");
    SafetensorsTensor t;
    t.name = name;
    auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end() || !dtype_it->is_string())
      return error(where, ": missing string field \"dtype\"");
    auto dtype = SafetensorsDtypeFromName(dtype_it->get<std::string>());
    if (!dtype.ok()) return error(where, ": ", dtype.status().message());
    t.dtype = *dtype;

    auto shape_it = entry.find("shape");
    if (shape_it == entry.end() || !shape_it->is_array())
      return error(where, ": missing array field \"shape\"");
    uint64_t elements = 1;
    bool overflow = false;
    for (const Json& d : *shape_it) {
      auto dim = JsonUint(d, absl::StrCat(where, ": shape entry"));
      if (!dim.ok()) return error(dim.status().message());
      if (*dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) overflow = true;
      if (*dim != 0 && elements > std::numeric_limits<uint64_t>::max() / *dim) overflow = true;
      elements *= *dim;
      t.shape.push_back(static_cast<int64_t>(*dim));
    }
    const size_t elem_size = SafetensorsDtypeSize(t.dtype);
    if (overflow || elements > std::numeric_limits<uint64_t>::max() / elem_size ||
        elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return error(where, ": shape ", t.ShapeString(), " overflows");
    }

    auto offsets_it = entry.find("data_offsets");
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
      return error(where, ": missing field \"data_offsets\" of two integers");
    }
    auto begin = JsonUint((*offsets_it)[0], absl::StrCat(where, ": data_offsets[0]"));
    if (!begin.ok()) return error(begin.status().message());
    auto end = JsonUint((*offsets_it)[1], absl::StrCat(where, ": data_offsets[1]"));
    if (!end.ok()) return error(end.status().message());
    t.begin = *begin;
    t.end = *end;
    if (t.end < t.begin)
      return error(where, ": data_offsets [", t.begin, ", ", t.end, "] end before they begin");
    if (t.end > data_size) {
      return absl::DataLossError(absl::StrCat(path_, ": ", where, ": data_offsets [", t.begin, ", ",
                                              t.end, "] run past the end of the data section (",
                                              data_size, " bytes)"));
    }
    if (t.end - t.begin != elements * elem_size) {
      return error(where, ": data_offsets [", t.begin, ", ", t.end, "] hold ", t.end - t.begin,
                   " bytes but ", Sv(SafetensorsDtypeName(t.dtype)), " ", t.ShapeString(),
                   " needs ", elements * elem_size);
    }
    index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  // The byte ranges must tile the data section: no gaps, no overlaps, nothing left over.
  std::vector<const SafetensorsTensor*> by_offset;
  by_offset.reserve(tensors_.size());
  for (const SafetensorsTensor& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const SafetensorsTensor* a, const SafetensorsTensor* b) {
              return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
            });
  uint64_t expect = 0;
  for (const SafetensorsTensor* t : by_offset) {
    if (t->begin != expect) {
      return error("tensor '", t->name, "' starts at data offset ", t->begin, ", expected ", expect,
                   t->begin < expect ? " (overlaps the previous tensor)" : " (gap before it)");
    }
    expect = t->end;
  }
  if (expect != data_size) {
    return error("the tensors cover ", expect, " bytes of a ", data_size, "-byte data section");
  }
  return absl::OkStatus();
}

const SafetensorsTensor* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> SafetensorsFile::Data(const SafetensorsTensor& tensor) const {
  return std::span<const uint8_t>(data_ + data_offset_ + tensor.begin, tensor.nbytes());
}

absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<SafetensorsWriteTensor>& tensors,
    const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) {
    Json meta = Json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const SafetensorsWriteTensor& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) {
      if (d < 0)
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", t.name, "': negative dimension"));
      n *= d;
    }
    const uint64_t nbytes = static_cast<uint64_t>(n) * SafetensorsDtypeSize(t.dtype);
    if (t.bytes.size() != nbytes) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "': ", t.bytes.size(),
                                                     " bytes given, its dtype and shape need ",
                                                     nbytes));
    }
    if (header.contains(t.name)) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate tensor name '", t.name, "'"));
    }
    header[t.name] = {{"dtype", std::string(SafetensorsDtypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');
  std::string out(8, '\0');
  const uint64_t len = text.size();
  std::memcpy(out.data(), &len, 8);
  out += text;
  for (const SafetensorsWriteTensor& t : tensors) out += t.bytes;
  return out;
}

absl::Status WriteSafetensorsFile(const std::string& path,
                                  const std::vector<SafetensorsWriteTensor>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  ASSIGN_OR_RETURN(std::string image, SerializeSafetensors(tensors, metadata));
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return FileError(errno, "cannot create", path);
  const bool ok = std::fwrite(image.data(), 1, image.size(), f) == image.size();
  const int err = errno;
  if (std::fclose(f) != 0 || !ok) {
    std::remove(path.c_str());
    return FileError(err, "cannot write", path);
  }
  return absl::OkStatus();
}

}  // namespace moed

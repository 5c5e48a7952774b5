// moed-model dequant: decodes a file of raw ggml blocks (no header, blocks back to back, as a
// tensor row is stored) into raw little-endian float32, using the same DequantizeRow as the
// engine. Handy to compare moed's decoding with another implementation's, e.g. on the
// tests/data/quant-blocks fixtures. The file is streamed, so its size does not bound memory.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"
#include "kernels/quants/dequantize.h"
#include "kernels/quants/ggml_type.h"
#include "tools/moed_model/subcommand.h"

namespace moed::tool {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;

absl::StatusOr<File> OpenFile(const std::string& path, const char* mode) {
  FILE* f = std::fopen(path.c_str(), mode);
  if (f == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  return File(f);
}

absl::StatusOr<int64_t> FileSize(FILE* f, const std::string& path) {
  if (std::fseek(f, 0, SEEK_END) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a seekable file"));
  }
  const long size = std::ftell(f);
  if (size < 0 || std::fseek(f, 0, SEEK_SET) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot determine the size of ", path));
  }
  return static_cast<int64_t>(size);
}

absl::Status RunDequant(const Args& args) {
  RETURN_IF_ERROR(args.CheckKnown({"type"}));
  ASSIGN_OR_RETURN(const std::string type_name, args.Require("type"));
  ASSIGN_OR_RETURN(const GgmlType type, GgmlTypeFromName(type_name));
  const GgmlTypeTraits& traits = *FindGgmlType(type);
  if (!traits.can_dequantize) {
    return absl::InvalidArgumentError(
        absl::StrCat("type ", Sv(traits.name), " has no CPU dequantizer"));
  }
  if (args.positional().size() != 2) {
    return absl::InvalidArgumentError("expected two files: IN.bin OUT.f32");
  }
  const std::string& in_path = args.positional()[0];
  const std::string& out_path = args.positional()[1];

  ASSIGN_OR_RETURN(File in, OpenFile(in_path, "rb"));
  ASSIGN_OR_RETURN(const int64_t size, FileSize(in.get(), in_path));
  if (size % traits.type_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        in_path, " has ", size, " bytes, not a whole number of ", Sv(traits.name), " blocks (",
        traits.type_size, " bytes each; ", size % traits.type_size, " bytes left over)"));
  }
  ASSIGN_OR_RETURN(File out, OpenFile(out_path, "wb"));

  // About 1 MiB of blocks per step.
  const int64_t chunk_blocks = std::max<int64_t>(1, (int64_t{1} << 20) / traits.type_size);
  std::vector<uint8_t> blocks(static_cast<size_t>(chunk_blocks * traits.type_size));
  std::vector<float> values(static_cast<size_t>(chunk_blocks * traits.block_size));
  for (int64_t left = size / traits.type_size; left > 0;) {
    const int64_t nb = std::min(left, chunk_blocks);
    const size_t nbytes = static_cast<size_t>(nb * traits.type_size);
    if (std::fread(blocks.data(), 1, nbytes, in.get()) != nbytes) {
      return absl::DataLossError(absl::StrCat("short read from ", in_path));
    }
    const int64_t n = nb * traits.block_size;
    RETURN_IF_ERROR(DequantizeRow(type, blocks.data(), values.data(), n));
    if (std::fwrite(values.data(), sizeof(float), static_cast<size_t>(n), out.get()) !=
        static_cast<size_t>(n)) {
      return absl::InternalError(
          absl::StrCat("cannot write ", out_path, ": ", std::strerror(errno)));
    }
    left -= nb;
  }
  if (std::fclose(out.release()) != 0) {
    return absl::InternalError(absl::StrCat("cannot write ", out_path, ": ", std::strerror(errno)));
  }
  std::printf("%s: %lld %s blocks -> %lld float32 values in %s\n", in_path.c_str(),
              static_cast<long long>(size / traits.type_size), std::string(traits.name).c_str(),
              static_cast<long long>(size / traits.type_size * traits.block_size),
              out_path.c_str());
  return absl::OkStatus();
}

MOED_SUBCOMMAND(
    kDequantRegistered,
    Subcommand{
        .name = "dequant",
        .usage = "--type TYPE IN.bin OUT.f32",
        .help = "Decode a file of raw ggml blocks of TYPE (Q4_K, IQ3_XXS, ...) to raw float32.",
        .bool_flags = {},
        .run = &RunDequant,
    });

}  // namespace
}  // namespace moed::tool

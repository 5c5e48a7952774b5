// libFuzzer target over the GGUF reader: any byte string must parse or fail with a Status, and a
// parsed file's values and tensor bytes must be readable without an over-read (ASan checks).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "loader/gguf/gguf_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = moed::gguf::GgufFile::FromBytes(
      std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!file.ok()) return 0;
  size_t sink = 0;
  for (const auto& kv : (*file)->metadata()) sink += kv.value.DebugString(4).size();
  for (const auto& t : (*file)->tensors()) {
    std::span<const uint8_t> bytes = (*file)->TensorData(t);
    if (!bytes.empty()) sink += bytes.front() + bytes.back();
    sink += t.ShapeString().size();
  }
  return sink == 0xdeadbeef ? 1 : 0;
}

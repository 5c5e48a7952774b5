// dlopen/dlsym behind a Status (see dynamic_library.h).
#include "daemon/devices/dynamic_library.h"

#include <dlfcn.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moed {

absl::StatusOr<DynamicLibrary> DynamicLibrary::Open(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("empty library path");
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* error = dlerror();
    return absl::NotFoundError(error != nullptr ? error : absl::StrCat(path, ": dlopen failed"));
  }
  return DynamicLibrary(handle);
}

void* DynamicLibrary::FindSymbol(const char* name) const { return dlsym(handle_, name); }

std::string FormatUuid(const uint8_t bytes[16]) {
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    absl::StrAppendFormat(&out, "%02x", bytes[i]);
  }
  return out;
}

}  // namespace moed

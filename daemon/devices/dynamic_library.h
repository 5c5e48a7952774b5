// dlopen/dlsym behind a Status, for the vendor driver libraries discovery loads at run time.
#ifndef MOED_DAEMON_DEVICES_DYNAMIC_LIBRARY_H_
#define MOED_DAEMON_DEVICES_DYNAMIC_LIBRARY_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace moed {

// A loaded shared library. It is never unloaded: GPU drivers register exit handlers and threads
// that do not survive dlclose, and the handful of driver libraries a process opens are loaded once.
// Copyable (the handle is shared, never closed). Thread-safe.
class DynamicLibrary {
 public:
  // dlopen(path, RTLD_NOW | RTLD_LOCAL). NotFound carries dlerror()'s text, which names the path
  // and the reason ("cannot open shared object file: No such file or directory").
  static absl::StatusOr<DynamicLibrary> Open(const std::string& path);

  // The symbol's address as a function pointer of type Fn*, or nullptr when absent.
  template <typename Fn>
  Fn* Find(const char* name) const {
    return reinterpret_cast<Fn*>(FindSymbol(name));
  }

 private:
  explicit DynamicLibrary(void* handle) : handle_(handle) {}
  void* FindSymbol(const char* name) const;

  void* handle_;
};

// 16 UUID bytes as 8-4-4-4-12 lower-case hex.
std::string FormatUuid(const uint8_t bytes[16]);

}  // namespace moed

#endif  // MOED_DAEMON_DEVICES_DYNAMIC_LIBRARY_H_

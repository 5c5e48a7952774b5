// NVIDIA GPU discovery through the CUDA driver API, loaded at run time with dlopen so that moed
// builds and starts on machines without the NVIDIA driver. No CUDA header is included anywhere.
#ifndef MOED_DAEMON_DEVICES_CUDA_DISCOVERY_H_
#define MOED_DAEMON_DEVICES_CUDA_DISCOVERY_H_

#include <string>

#include "absl/status/statusor.h"
#include "daemon/devices/device.h"

namespace moed {

struct CudaProbeOptions {
  std::string library = "libcuda.so.1";  // soname or path handed to dlopen
  // Free memory needs a context on each device: the primary context is retained, queried and
  // released again (it costs some 100s of ms and a few hundred MiB while it lives).
  bool query_free_memory = true;
};

// Loads the driver library, calls cuInit and describes every visible device.
// A missing library, a library without the driver entry points, or a failing cuInit (no device,
// driver/library mismatch, stub library) yield present == false and a one-line reason. A failing
// query after cuInit succeeded (name, memory, attributes) is an error naming the call and the
// CUDA error. A device whose context cannot be created gets free_bytes = nullopt, not an error.
// The library stays loaded for the life of the process (drivers do not support being unloaded).
// Thread-safe as far as the driver is; it does not log.
absl::StatusOr<BackendProbe> ProbeCuda(const CudaProbeOptions& options);

}  // namespace moed

#endif  // MOED_DAEMON_DEVICES_CUDA_DISCOVERY_H_

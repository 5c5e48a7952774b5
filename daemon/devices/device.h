// What moed knows about one compute device, whichever API found it. Plain value types only: the
// planner, the admin API and `moed-devices` read these; nothing here talks to a driver.
#ifndef MOED_DAEMON_DEVICES_DEVICE_H_
#define MOED_DAEMON_DEVICES_DEVICE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moed {

enum class DeviceBackend { kCuda, kLevelZero, kCpu };

// Stable lower-case names, used in logs, JSON and device ids ("cuda:0").
inline std::string_view DeviceBackendName(DeviceBackend backend) {
  switch (backend) {
    case DeviceBackend::kCuda:
      return "cuda";
    case DeviceBackend::kLevelZero:
      return "level_zero";
    case DeviceBackend::kCpu:
      return "cpu";
  }
  return "unknown";
}

struct Device {
  DeviceBackend backend = DeviceBackend::kCpu;
  // Ordinal in the vendor API's own enumeration order (CUDA: the cuDeviceGet ordinal, which
  // honours CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER; Level Zero: GPUs only, drivers in order).
  int index = 0;
  std::string name;
  // 16 bytes as 8-4-4-4-12 lower-case hex, no prefix (nvidia-smi prints CUDA ones as "GPU-<uuid>",
  // or "MIG-<uuid>" for a MIG instance). Empty when the driver cannot say.
  std::string uuid;
  // "dddd:bb:dd.f" when known (CUDA), else empty.
  std::string pci_bus_id;
  uint64_t total_bytes = 0;
  // Unknown when the driver cannot tell without privileges or a context (then nullopt).
  std::optional<uint64_t> free_bytes;
  // CUDA compute capability; both 0 for other backends.
  int compute_major = 0;
  int compute_minor = 0;
  // The compute-capability equivalent in one word: "sm_90" (CUDA), "8086:0bd5" (Level Zero PCI
  // vendor:device), the machine name for the CPU.
  std::string arch;
  // Whether moed has a compute backend for this device. When false, `note` says why, and the
  // planner reports the device and skips it.
  bool can_compute = false;
  // Why can_compute is false, and anything else an operator should know (e.g. why free_bytes is
  // unknown); "; "-separated, empty when there is nothing to say.
  std::string note;
};

// What probing one backend found. Absence (no library, no driver, no device) is not an error: it
// is `present == false` plus a one-line `detail` saying why.
struct BackendProbe {
  DeviceBackend backend = DeviceBackend::kCpu;
  bool enabled = true;       // false when the options switched the backend off
  bool present = false;      // library loaded and the driver initialised
  std::string library;       // the path or soname that was dlopen'ed
  std::string detail;        // driver version when present, the reason when absent
  std::vector<Device> devices;
};

}  // namespace moed

#endif  // MOED_DAEMON_DEVICES_DEVICE_H_

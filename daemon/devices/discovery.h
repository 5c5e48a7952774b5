// Device discovery for the router: every backend moed knows (CUDA, Level Zero), tried in turn,
// each loaded at run time. No GPU at all is an ordinary outcome (moed then runs on the CPU).
#ifndef MOED_DAEMON_DEVICES_DISCOVERY_H_
#define MOED_DAEMON_DEVICES_DISCOVERY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/devices/device.h"

namespace moed {

struct DiscoveryOptions {
  bool enable_cuda = true;
  bool enable_level_zero = true;
  // Library overrides (tests point these at fake drivers; operators at unusual install paths).
  std::string cuda_library = "libcuda.so.1";
  std::string level_zero_library = "libze_loader.so.1";
  // See CudaProbeOptions / LevelZeroProbeOptions.
  bool query_free_memory = true;
};

struct DiscoveryReport {
  std::vector<BackendProbe> backends;  // CUDA, then Level Zero; disabled ones too (enabled=false)

  // All devices found, CUDA first, each backend in its own enumeration order.
  std::vector<Device> Devices() const;
};

// Probes every enabled backend without logging. Absent backends are not errors (see the probes);
// a backend that is present but fails a query is, and its error names the backend.
// REQUIRES: called before other threads start (see ProbeLevelZero).
absl::StatusOr<DiscoveryReport> ProbeDevices(const DiscoveryOptions& options);

// ProbeDevices, then one log line per backend (found, absent with its reason, or disabled) and
// one per device. An empty list means: no GPU, run on the CPU.
absl::StatusOr<std::vector<Device>> DiscoverDevices(const DiscoveryOptions& options);

// The host CPU as a Device: model name, physical memory, available memory (MemAvailable).
// Never fails: unknown fields stay empty.
Device DescribeHostCpu();

// One line, e.g. "cuda:0 NVIDIA H100 80GB HBM3, 79.2 GiB total, 78.7 GiB free, sm_90,
// uuid 5f3c..., pci 0000:19:00.0".
std::string FormatDevice(const Device& device);

// "79.2 GiB" style, for logs and the human-readable tool output.
std::string FormatBytes(uint64_t bytes);

}  // namespace moed

#endif  // MOED_DAEMON_DEVICES_DISCOVERY_H_

// Device discovery across backends, its log lines, and the host CPU description (see discovery.h).
#include "daemon/devices/discovery.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "daemon/devices/cuda_discovery.h"
#include "daemon/devices/level_zero_discovery.h"
#include "kernels/base/log.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed {
namespace {

std::string BackendTitle(DeviceBackend backend) {
  switch (backend) {
    case DeviceBackend::kCuda:
      return "CUDA";
    case DeviceBackend::kLevelZero:
      return "Level Zero";
    case DeviceBackend::kCpu:
      return "CPU";
  }
  return "unknown";
}

BackendProbe Disabled(DeviceBackend backend, const std::string& library) {
  BackendProbe probe;
  probe.backend = backend;
  probe.enabled = false;
  probe.library = library;
  probe.detail = "disabled by configuration";
  return probe;
}

// "MemAvailable:   12345678 kB" -> bytes; nullopt when absent.
std::optional<uint64_t> MemAvailableBytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    absl::string_view rest(line);
    if (!absl::ConsumePrefix(&rest, "MemAvailable:")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    absl::ConsumeSuffix(&rest, "kB");
    uint64_t kib = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kib)) return kib * 1024;
    return std::nullopt;
  }
  return std::nullopt;
}

std::string CpuModelName() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    absl::string_view rest(line);
    if (!absl::ConsumePrefix(&rest, "model name")) continue;
    const size_t colon = rest.find(':');
    if (colon == absl::string_view::npos) continue;
    return std::string(absl::StripAsciiWhitespace(rest.substr(colon + 1)));
  }
  return "";
}

}  // namespace

std::vector<Device> DiscoveryReport::Devices() const {
  std::vector<Device> devices;
  for (const BackendProbe& probe : backends) {
    devices.insert(devices.end(), probe.devices.begin(), probe.devices.end());
  }
  return devices;
}

absl::StatusOr<DiscoveryReport> ProbeDevices(const DiscoveryOptions& options) {
  DiscoveryReport report;
  if (options.enable_cuda) {
    CudaProbeOptions cuda;
    cuda.library = options.cuda_library;
    cuda.query_free_memory = options.query_free_memory;
    ASSIGN_OR_RETURN(BackendProbe probe, ProbeCuda(cuda));
    report.backends.push_back(std::move(probe));
  } else {
    report.backends.push_back(Disabled(DeviceBackend::kCuda, options.cuda_library));
  }
  if (options.enable_level_zero) {
    LevelZeroProbeOptions level_zero;
    level_zero.library = options.level_zero_library;
    level_zero.query_free_memory = options.query_free_memory;
    ASSIGN_OR_RETURN(BackendProbe probe, ProbeLevelZero(level_zero));
    report.backends.push_back(std::move(probe));
  } else {
    report.backends.push_back(Disabled(DeviceBackend::kLevelZero, options.level_zero_library));
  }
  return report;
}

absl::StatusOr<std::vector<Device>> DiscoverDevices(const DiscoveryOptions& options) {
  ASSIGN_OR_RETURN(DiscoveryReport report, ProbeDevices(options));
  for (const BackendProbe& probe : report.backends) {
    const std::string title = BackendTitle(probe.backend);
    if (!probe.enabled) {
      MOED_LOG(INFO) << title << ": disabled by configuration";
    } else if (!probe.present) {
      MOED_LOG(INFO) << title << ": absent (" << probe.detail << ")";
    } else {
      MOED_LOG(INFO) << title << ": " << probe.detail << " [" << probe.library << "]";
    }
    for (const Device& device : probe.devices) {
      MOED_LOG(INFO) << "device " << FormatDevice(device);
    }
  }
  std::vector<Device> devices = report.Devices();
  if (devices.empty()) {
    MOED_LOG(INFO) << "no GPU found: moed runs on the CPU";
  }
  return devices;
}

Device DescribeHostCpu() {
  Device cpu;
  cpu.backend = DeviceBackend::kCpu;
  cpu.index = 0;
  cpu.name = CpuModelName();
  if (cpu.name.empty()) cpu.name = "cpu";
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page_size > 0) {
    cpu.total_bytes = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
  }
  cpu.free_bytes = MemAvailableBytes();
  struct utsname uts = {};
  if (uname(&uts) == 0) cpu.arch = uts.machine;
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (cores > 0) cpu.note = absl::StrCat(cores, " logical CPU(s) online");
  cpu.can_compute = true;
  return cpu;
}

std::string FormatBytes(uint64_t bytes) {
  constexpr double kKiB = 1024.0;
  const double b = static_cast<double>(bytes);
  if (b >= kKiB * kKiB * kKiB) return absl::StrFormat("%.1f GiB", b / (kKiB * kKiB * kKiB));
  if (b >= kKiB * kKiB) return absl::StrFormat("%.1f MiB", b / (kKiB * kKiB));
  if (b >= kKiB) return absl::StrFormat("%.1f KiB", b / kKiB);
  return absl::StrCat(bytes, " B");
}

std::string FormatDevice(const Device& device) {
  std::string out = absl::StrCat(Sv(DeviceBackendName(device.backend)), ":", device.index, " ",
                                 device.name, ", ", FormatBytes(device.total_bytes), " total, ",
                                 device.free_bytes.has_value() ? FormatBytes(*device.free_bytes)
                                                               : std::string("unknown"),
                                 " free");
  if (!device.arch.empty()) absl::StrAppend(&out, ", ", device.arch);
  if (!device.uuid.empty()) absl::StrAppend(&out, ", uuid ", device.uuid);
  if (!device.pci_bus_id.empty()) absl::StrAppend(&out, ", pci ", device.pci_bus_id);
  if (!device.can_compute) absl::StrAppend(&out, ", not used for compute");
  if (!device.note.empty()) absl::StrAppend(&out, " (", device.note, ")");
  return out;
}

}  // namespace moed

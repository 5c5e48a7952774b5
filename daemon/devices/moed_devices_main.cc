// moed-devices: prints what device discovery finds on this machine (each backend's status, every
// GPU with memory, compute capability, UUID and PCI address, and the host CPU), human-readable or
// as JSON with --json. Exit status: 0 when discovery ran (finding no GPU included), 1 when a backend
// failed, 2 on a usage error.
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "daemon/devices/discovery.h"
#include "kernels/base/strings.h"
#include "nlohmann/json.hpp"

namespace moed {
namespace {

constexpr const char kUsage[] =
    "usage: moed-devices [--json] [--no-cuda] [--no-level-zero] [--no-free-memory]\n"
    "                    [--cuda-library=PATH] [--level-zero-library=PATH]\n"
    "Lists the GPUs moed can see (CUDA driver API, oneAPI Level Zero; both loaded at run time)\n"
    "and the host CPU. --no-free-memory skips creating a CUDA context per device.\n";

struct Args {
  bool json = false;
  DiscoveryOptions options;
};

// Returns false (after printing why) on an unknown or malformed argument.
bool ParseArgs(int argc, char** argv, Args* args, bool* help) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    auto value_of = [&](std::string_view prefix, std::string* out) {
      if (arg.substr(0, prefix.size()) != prefix) return false;
      *out = std::string(arg.substr(prefix.size()));
      return true;
    };
    if (arg == "--json") {
      args->json = true;
    } else if (arg == "--no-cuda") {
      args->options.enable_cuda = false;
    } else if (arg == "--no-level-zero") {
      args->options.enable_level_zero = false;
    } else if (arg == "--no-free-memory") {
      args->options.query_free_memory = false;
    } else if (value_of("--cuda-library=", &args->options.cuda_library) ||
               value_of("--level-zero-library=", &args->options.level_zero_library)) {
    } else if (arg == "--help" || arg == "-h") {
      *help = true;
    } else {
      std::cerr << "moed-devices: unknown argument '" << arg << "'\n" << kUsage;
      return false;
    }
  }
  return true;
}

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

std::string DeviceId(const Device& device) {
  return absl::StrCat(Sv(DeviceBackendName(device.backend)), ":", device.index);
}

nlohmann::json DeviceJson(const Device& device) {
  nlohmann::json j;
  j["id"] = DeviceId(device);
  j["backend"] = std::string(DeviceBackendName(device.backend));
  j["index"] = device.index;
  j["name"] = device.name;
  j["uuid"] = device.uuid.empty() ? nlohmann::json() : nlohmann::json(device.uuid);
  j["pci_bus_id"] =
      device.pci_bus_id.empty() ? nlohmann::json() : nlohmann::json(device.pci_bus_id);
  j["total_bytes"] = device.total_bytes;
  j["free_bytes"] = device.free_bytes.has_value() ? nlohmann::json(*device.free_bytes)
                                                  : nlohmann::json();
  j["compute_capability"] =
      device.backend == DeviceBackend::kCuda
          ? nlohmann::json(absl::StrCat(device.compute_major, ".", device.compute_minor))
          : nlohmann::json();
  j["arch"] = device.arch;
  j["can_compute"] = device.can_compute;
  j["note"] = device.note;
  return j;
}

void PrintJson(const DiscoveryReport& report, const Device& cpu) {
  nlohmann::json out;
  out["backends"] = nlohmann::json::array();
  for (const BackendProbe& probe : report.backends) {
    out["backends"].push_back({{"backend", std::string(DeviceBackendName(probe.backend))},
                               {"enabled", probe.enabled},
                               {"present", probe.present},
                               {"library", probe.library},
                               {"detail", probe.detail},
                               {"device_count", probe.devices.size()}});
  }
  out["devices"] = nlohmann::json::array();
  int usable = 0;
  for (const Device& device : report.Devices()) {
    out["devices"].push_back(DeviceJson(device));
    if (device.can_compute) ++usable;
  }
  out["cpu"] = DeviceJson(cpu);
  out["compute_target"] = usable > 0 ? "gpu" : "cpu";
  std::cout << out.dump(2) << "\n";
}

void PrintHuman(const DiscoveryReport& report, const Device& cpu) {
  for (const BackendProbe& probe : report.backends) {
    std::string state = !probe.enabled ? "disabled" : probe.present ? "present" : "absent";
    std::printf("%-11s %-8s %s [%s]\n", BackendTitle(probe.backend).c_str(), state.c_str(),
                probe.detail.c_str(), probe.library.c_str());
  }
  int usable = 0;
  auto print_device = [](const Device& d) {
    std::printf("\n%-8s %s\n", DeviceId(d).c_str(), d.name.c_str());
    std::string memory = absl::StrCat(FormatBytes(d.total_bytes), " total (", d.total_bytes,
                                      " bytes), ");
    if (d.free_bytes.has_value()) {
      absl::StrAppend(&memory, FormatBytes(*d.free_bytes), " free (", *d.free_bytes, " bytes)");
    } else {
      absl::StrAppend(&memory, "free unknown");
    }
    std::printf("  memory   %s\n", memory.c_str());
    if (d.backend == DeviceBackend::kCuda) {
      std::printf("  compute  %s (compute capability %d.%d)\n", d.arch.c_str(), d.compute_major,
                  d.compute_minor);
    } else if (!d.arch.empty()) {
      std::printf("  arch     %s\n", d.arch.c_str());
    }
    if (!d.uuid.empty()) std::printf("  uuid     %s\n", d.uuid.c_str());
    if (!d.pci_bus_id.empty()) std::printf("  pci      %s\n", d.pci_bus_id.c_str());
    std::printf("  moed     %s\n", d.can_compute ? "computes on it" : "does not compute on it");
    if (!d.note.empty()) std::printf("  note     %s\n", d.note.c_str());
  };
  for (const Device& device : report.Devices()) {
    print_device(device);
    if (device.can_compute) ++usable;
  }
  print_device(cpu);
  std::printf("\n%s\n", usable > 0 ? absl::StrCat("moed computes on ", usable, " GPU(s)").c_str()
                                   : "no usable GPU: moed runs on the CPU");
}

int Main(int argc, char** argv) {
  Args args;
  bool help = false;
  if (!ParseArgs(argc, argv, &args, &help)) return 2;
  if (help) {
    std::cout << kUsage;
    return 0;
  }
  absl::StatusOr<DiscoveryReport> report = ProbeDevices(args.options);
  if (!report.ok()) {
    std::cerr << "moed-devices: " << report.status().message() << "\n";
    return 1;
  }
  const Device cpu = DescribeHostCpu();
  if (args.json) {
    PrintJson(*report, cpu);
  } else {
    PrintHuman(*report, cpu);
  }
  return 0;
}

}  // namespace
}  // namespace moed

int main(int argc, char** argv) { return moed::Main(argc, argv); }

// Intel GPU discovery through oneAPI Level Zero (libze_loader), resolved with dlsym. The structs
// below repeat the layouts of the Level Zero 1.x headers (ze_api.h / zes_api.h, plain C structs
// whose layout the spec keeps stable and extends only through pNext chains). The daemon includes no
// vendor header; the test fixture fake_level_zero.cc is compiled against the real headers, so the
// tests check these layouts field by field.
#include "daemon/devices/level_zero_discovery.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "daemon/devices/dynamic_library.h"

namespace moed {
namespace {

using ze_result_t = uint32_t;
struct ZeDriverOpaque;
struct ZeDeviceOpaque;
struct ZesMemOpaque;
using ZeDriver = ZeDriverOpaque*;
using ZeDevice = ZeDeviceOpaque*;  // a zes_device_handle_t too, in legacy Sysman mode
using ZesMem = ZesMemOpaque*;

constexpr ze_result_t kZeSuccess = 0;
constexpr uint32_t kZeInitFlagGpuOnly = 1;                // ZE_INIT_FLAG_GPU_ONLY
constexpr uint32_t kZeDeviceTypeGpu = 1;                  // ZE_DEVICE_TYPE_GPU
constexpr uint32_t kZeDevicePropertyFlagIntegrated = 1;   // ZE_DEVICE_PROPERTY_FLAG_INTEGRATED
constexpr uint32_t kZeStypeDeviceProperties = 0x3;        // ZE_STRUCTURE_TYPE_DEVICE_PROPERTIES
constexpr uint32_t kZeStypeDeviceMemoryProperties = 0x7;  // ..._DEVICE_MEMORY_PROPERTIES
constexpr uint32_t kZesStypeDeviceProperties = 0x1;       // ZES_STRUCTURE_TYPE_DEVICE_PROPERTIES
constexpr uint32_t kZesStypeMemProperties = 0xb;          // ZES_STRUCTURE_TYPE_MEM_PROPERTIES
constexpr uint32_t kZesStypeMemState = 0x1e;              // ZES_STRUCTURE_TYPE_MEM_STATE
constexpr uint32_t kZesMemLocDevice = 1;                  // ZES_MEM_LOC_DEVICE
constexpr uint32_t kMaxCount = 4096;  // bound on any count a driver reports, against bad drivers

struct ZeDeviceProperties {  // ze_device_properties_t
  uint32_t stype;
  void* next;
  uint32_t type;
  uint32_t vendor_id;
  uint32_t device_id;
  uint32_t flags;
  uint32_t subdevice_id;
  uint32_t core_clock_rate;
  uint64_t max_mem_alloc_size;
  uint32_t max_hardware_contexts;
  uint32_t max_command_queue_priority;
  uint32_t num_threads_per_eu;
  uint32_t physical_eu_simd_width;
  uint32_t num_eus_per_subslice;
  uint32_t num_subslices_per_slice;
  uint32_t num_slices;
  uint64_t timer_resolution;
  uint32_t timestamp_valid_bits;
  uint32_t kernel_timestamp_valid_bits;
  uint8_t uuid[16];
  char name[256];
};

struct ZeDeviceMemoryProperties {  // ze_device_memory_properties_t
  uint32_t stype;
  void* next;
  uint32_t flags;
  uint32_t max_clock_rate;
  uint32_t max_bus_width;
  uint64_t total_size;
  char name[256];
};

struct ZesDeviceProperties {  // zes_device_properties_t
  uint32_t stype;
  void* next;
  ZeDeviceProperties core;
  uint32_t num_subdevices;
  char serial_number[64];
  char board_number[64];
  char brand_name[64];
  char model_name[64];
  char vendor_name[64];
  char driver_version[64];
};

struct ZesMemProperties {  // zes_mem_properties_t
  uint32_t stype;
  void* next;
  uint32_t type;
  uint8_t on_subdevice;  // ze_bool_t
  uint32_t subdevice_id;
  uint32_t location;
  uint64_t physical_size;
  int32_t bus_width;
  int32_t num_channels;
};

struct ZesMemState {  // zes_mem_state_t
  uint32_t stype;
  const void* next;
  uint32_t health;
  uint64_t free;
  uint64_t size;
};

struct ZeApi {
  // Required.
  ze_result_t (*init)(uint32_t flags) = nullptr;
  ze_result_t (*driver_get)(uint32_t* count, ZeDriver* drivers) = nullptr;
  ze_result_t (*device_get)(ZeDriver driver, uint32_t* count, ZeDevice* devices) = nullptr;
  ze_result_t (*device_get_properties)(ZeDevice device, ZeDeviceProperties* props) = nullptr;
  ze_result_t (*device_get_memory_properties)(ZeDevice device, uint32_t* count,
                                              ZeDeviceMemoryProperties* props) = nullptr;
  // Optional.
  ze_result_t (*driver_get_api_version)(ZeDriver driver, uint32_t* version) = nullptr;
  ze_result_t (*zes_init)(uint32_t flags) = nullptr;
  ze_result_t (*zes_driver_get)(uint32_t* count, ZeDriver* drivers) = nullptr;
  ze_result_t (*zes_device_get)(ZeDriver driver, uint32_t* count, ZeDevice* devices) = nullptr;
  ze_result_t (*zes_device_get_properties)(ZeDevice device, ZesDeviceProperties* props) = nullptr;
  ze_result_t (*zes_enum_memory_modules)(ZeDevice device, uint32_t* count, ZesMem* mems) = nullptr;
  ze_result_t (*zes_memory_get_properties)(ZesMem mem, ZesMemProperties* props) = nullptr;
  ze_result_t (*zes_memory_get_state)(ZesMem mem, ZesMemState* state) = nullptr;

  bool HasSysmanMemory() const {
    return zes_enum_memory_modules && zes_memory_get_properties && zes_memory_get_state;
  }
  bool HasZesInit() const {
    return zes_init && zes_driver_get && zes_device_get && zes_device_get_properties;
  }
};

ZeApi ResolveZeApi(const DynamicLibrary& lib, std::string* missing) {
  ZeApi api;
  api.init = lib.Find<ze_result_t(uint32_t)>("zeInit");
  api.driver_get = lib.Find<ze_result_t(uint32_t*, ZeDriver*)>("zeDriverGet");
  api.device_get = lib.Find<ze_result_t(ZeDriver, uint32_t*, ZeDevice*)>("zeDeviceGet");
  api.device_get_properties =
      lib.Find<ze_result_t(ZeDevice, ZeDeviceProperties*)>("zeDeviceGetProperties");
  api.device_get_memory_properties =
      lib.Find<ze_result_t(ZeDevice, uint32_t*, ZeDeviceMemoryProperties*)>(
          "zeDeviceGetMemoryProperties");
  const std::pair<const char*, bool> required[] = {
      {"zeInit", api.init != nullptr},
      {"zeDriverGet", api.driver_get != nullptr},
      {"zeDeviceGet", api.device_get != nullptr},
      {"zeDeviceGetProperties", api.device_get_properties != nullptr},
      {"zeDeviceGetMemoryProperties", api.device_get_memory_properties != nullptr},
  };
  for (const auto& [name, found] : required) {
    if (!found) {
      *missing = name;
      return api;
    }
  }

  api.driver_get_api_version =
      lib.Find<ze_result_t(ZeDriver, uint32_t*)>("zeDriverGetApiVersion");
  api.zes_init = lib.Find<ze_result_t(uint32_t)>("zesInit");
  api.zes_driver_get = lib.Find<ze_result_t(uint32_t*, ZeDriver*)>("zesDriverGet");
  api.zes_device_get = lib.Find<ze_result_t(ZeDriver, uint32_t*, ZeDevice*)>("zesDeviceGet");
  api.zes_device_get_properties =
      lib.Find<ze_result_t(ZeDevice, ZesDeviceProperties*)>("zesDeviceGetProperties");
  api.zes_enum_memory_modules =
      lib.Find<ze_result_t(ZeDevice, uint32_t*, ZesMem*)>("zesDeviceEnumMemoryModules");
  api.zes_memory_get_properties =
      lib.Find<ze_result_t(ZesMem, ZesMemProperties*)>("zesMemoryGetProperties");
  api.zes_memory_get_state = lib.Find<ze_result_t(ZesMem, ZesMemState*)>("zesMemoryGetState");
  return api;
}

// "ZE_RESULT_ERROR_DEVICE_LOST (0x70000001)".
std::string ZeResultText(ze_result_t r) {
  static const std::map<ze_result_t, const char*> kNames = {
      {0x0, "ZE_RESULT_SUCCESS"},
      {0x1, "ZE_RESULT_NOT_READY"},
      {0x70000001, "ZE_RESULT_ERROR_DEVICE_LOST"},
      {0x70000002, "ZE_RESULT_ERROR_OUT_OF_HOST_MEMORY"},
      {0x70000003, "ZE_RESULT_ERROR_OUT_OF_DEVICE_MEMORY"},
      {0x70000006, "ZE_RESULT_ERROR_DEVICE_REQUIRES_RESET"},
      {0x70000007, "ZE_RESULT_ERROR_DEVICE_IN_LOW_POWER_STATE"},
      {0x70010000, "ZE_RESULT_ERROR_INSUFFICIENT_PERMISSIONS"},
      {0x70010001, "ZE_RESULT_ERROR_NOT_AVAILABLE"},
      {0x70020000, "ZE_RESULT_ERROR_DEPENDENCY_UNAVAILABLE"},
      {0x78000001, "ZE_RESULT_ERROR_UNINITIALIZED"},
      {0x78000002, "ZE_RESULT_ERROR_UNSUPPORTED_VERSION"},
      {0x78000003, "ZE_RESULT_ERROR_UNSUPPORTED_FEATURE"},
      {0x78000004, "ZE_RESULT_ERROR_INVALID_ARGUMENT"},
      {0x78000005, "ZE_RESULT_ERROR_INVALID_NULL_HANDLE"},
      {0x78000007, "ZE_RESULT_ERROR_INVALID_NULL_POINTER"},
      {0x7800000c, "ZE_RESULT_ERROR_INVALID_ENUMERATION"},
      {0x7ffffffe, "ZE_RESULT_ERROR_UNKNOWN"},
  };
  auto it = kNames.find(r);
  return absl::StrFormat("%s (0x%x)", it == kNames.end() ? "ze_result_t" : it->second, r);
}

absl::Status ZeCallError(const char* call, ze_result_t r) {
  return absl::InternalError(absl::StrCat("Level Zero: ", call, " failed: ", ZeResultText(r)));
}

// The two-call enumeration idiom of Level Zero: ask for the count, then fill. The count is
// bounded so that a misbehaving driver cannot make us allocate without limit.
template <typename Handle, typename Fn>
ze_result_t Enumerate(Fn&& fn, std::vector<Handle>* out) {
  uint32_t count = 0;
  ze_result_t r = fn(&count, static_cast<Handle*>(nullptr));
  if (r != kZeSuccess) return r;
  if (count > kMaxCount) count = kMaxCount;
  out->assign(count, Handle{});
  if (count == 0) return kZeSuccess;
  r = fn(&count, out->data());
  if (r == kZeSuccess) out->resize(std::min<uint32_t>(count, out->size()));
  return r;
}

// How free memory is read, decided before zeInit because legacy Sysman must be requested first.
enum class SysmanMode {
  kNone,     // not asked for, unavailable, or ZES_ENABLE_SYSMAN set to something other than "1"
  kZesInit,  // zesInit: separate Sysman handles, matched to core devices by UUID
  kLegacy,   // ZES_ENABLE_SYSMAN=1 before zeInit: a core device handle is a Sysman handle
};

SysmanMode ChooseSysmanMode(const ZeApi& api, bool query_free) {
  if (!query_free || !api.HasSysmanMemory()) return SysmanMode::kNone;
  if (api.HasZesInit() && api.zes_init(0) == kZeSuccess) return SysmanMode::kZesInit;
  const char* env = std::getenv("ZES_ENABLE_SYSMAN");
  if (env == nullptr) {
    setenv("ZES_ENABLE_SYSMAN", "1", /*overwrite=*/0);
    return SysmanMode::kLegacy;
  }
  return std::strcmp(env, "1") == 0 ? SysmanMode::kLegacy : SysmanMode::kNone;
}

// Sysman device handles by core-device UUID (zesInit mode). Failures leave the map short: free
// memory is then unknown for the devices concerned, which is not an error.
std::map<std::string, ZeDevice> SysmanDevicesByUuid(const ZeApi& api) {
  std::map<std::string, ZeDevice> by_uuid;
  std::vector<ZeDriver> drivers;
  if (Enumerate<ZeDriver>(api.zes_driver_get, &drivers) != kZeSuccess) return by_uuid;
  for (ZeDriver driver : drivers) {
    std::vector<ZeDevice> devices;
    auto get = [&](uint32_t* n, ZeDevice* d) { return api.zes_device_get(driver, n, d); };
    if (Enumerate<ZeDevice>(get, &devices) != kZeSuccess) continue;
    for (ZeDevice device : devices) {
      ZesDeviceProperties props = {};
      props.stype = kZesStypeDeviceProperties;
      props.core.stype = kZeStypeDeviceProperties;
      if (api.zes_device_get_properties(device, &props) != kZeSuccess) continue;
      by_uuid.emplace(FormatUuid(props.core.uuid), device);
    }
  }
  return by_uuid;
}

// Sums free bytes over the device-local memory modules. nullopt plus *why when unknown.
std::optional<uint64_t> SysmanFreeMemory(const ZeApi& api, ZeDevice sysman_device,
                                         std::string* why) {
  std::vector<ZesMem> mems;
  auto get = [&](uint32_t* n, ZesMem* m) { return api.zes_enum_memory_modules(sysman_device, n, m); };
  ze_result_t r = Enumerate<ZesMem>(get, &mems);
  if (r != kZeSuccess) {
    *why = absl::StrCat("free memory unknown: zesDeviceEnumMemoryModules failed: ",
                        ZeResultText(r));
    return std::nullopt;
  }
  uint64_t free_bytes = 0;
  int local_modules = 0;
  for (ZesMem mem : mems) {
    ZesMemProperties props = {};
    props.stype = kZesStypeMemProperties;
    r = api.zes_memory_get_properties(mem, &props);
    if (r != kZeSuccess) {
      *why = absl::StrCat("free memory unknown: zesMemoryGetProperties failed: ", ZeResultText(r));
      return std::nullopt;
    }
    if (props.location != kZesMemLocDevice) continue;
    ZesMemState state = {};
    state.stype = kZesStypeMemState;
    r = api.zes_memory_get_state(mem, &state);
    if (r != kZeSuccess) {
      *why = absl::StrCat("free memory unknown: zesMemoryGetState failed: ", ZeResultText(r));
      return std::nullopt;
    }
    free_bytes += state.free;
    ++local_modules;
  }
  if (local_modules == 0) {
    *why = "free memory unknown: no device-local memory module (shares system memory)";
    return std::nullopt;
  }
  return free_bytes;
}

void AppendNote(Device* device, const std::string& note) {
  if (note.empty()) return;
  if (!device->note.empty()) device->note += "; ";
  device->note += note;
}

}  // namespace

absl::StatusOr<BackendProbe> ProbeLevelZero(const LevelZeroProbeOptions& options) {
  BackendProbe probe;
  probe.backend = DeviceBackend::kLevelZero;
  probe.library = options.library;

  absl::StatusOr<DynamicLibrary> lib = DynamicLibrary::Open(options.library);
  if (!lib.ok()) {
    probe.detail = absl::StrCat("loader library not loadable: ", lib.status().message());
    return probe;
  }
  std::string missing;
  const ZeApi api = ResolveZeApi(*lib, &missing);
  if (!missing.empty()) {
    probe.detail = absl::StrCat(options.library, " has no symbol ", missing,
                                ": not a Level Zero loader, or one too old");
    return probe;
  }

  const SysmanMode sysman = ChooseSysmanMode(api, options.query_free_memory);
  ze_result_t r = api.init(kZeInitFlagGpuOnly);
  if (r != kZeSuccess) {
    // The loader is installed (it is a dependency of many packages) but no GPU driver is: the
    // common case on NVIDIA and CPU-only machines.
    probe.detail = absl::StrCat("zeInit failed: ", ZeResultText(r), " (no Level Zero GPU driver)");
    return probe;
  }
  probe.present = true;

  std::vector<ZeDriver> drivers;
  r = Enumerate<ZeDriver>(api.driver_get, &drivers);
  if (r != kZeSuccess) return ZeCallError("zeDriverGet", r);

  std::map<std::string, ZeDevice> sysman_by_uuid;
  if (sysman == SysmanMode::kZesInit) sysman_by_uuid = SysmanDevicesByUuid(api);

  uint32_t api_version = 0;
  int gpu_index = 0;
  for (ZeDriver driver : drivers) {
    if (api_version == 0 && api.driver_get_api_version != nullptr) {
      api.driver_get_api_version(driver, &api_version);
    }
    std::vector<ZeDevice> handles;
    auto get = [&](uint32_t* n, ZeDevice* d) { return api.device_get(driver, n, d); };
    r = Enumerate<ZeDevice>(get, &handles);
    if (r != kZeSuccess) return ZeCallError("zeDeviceGet", r);
    for (ZeDevice handle : handles) {
      ZeDeviceProperties props = {};
      props.stype = kZeStypeDeviceProperties;
      r = api.device_get_properties(handle, &props);
      if (r != kZeSuccess) return ZeCallError("zeDeviceGetProperties", r);
      if (props.type != kZeDeviceTypeGpu) continue;

      Device device;
      device.backend = DeviceBackend::kLevelZero;
      device.index = gpu_index++;
      props.name[sizeof(props.name) - 1] = '\0';
      device.name = props.name;
      device.uuid = FormatUuid(props.uuid);
      device.arch = absl::StrFormat("%04x:%04x", props.vendor_id, props.device_id);
      device.can_compute = false;
      device.note = "discovered, no compute backend yet";

      std::vector<ZeDeviceMemoryProperties> memory;
      uint32_t count = 0;
      r = api.device_get_memory_properties(handle, &count, nullptr);
      if (r != kZeSuccess) return ZeCallError("zeDeviceGetMemoryProperties", r);
      count = std::min(count, kMaxCount);
      ZeDeviceMemoryProperties blank = {};
      blank.stype = kZeStypeDeviceMemoryProperties;
      memory.assign(count, blank);
      if (count > 0) {
        r = api.device_get_memory_properties(handle, &count, memory.data());
        if (r != kZeSuccess) return ZeCallError("zeDeviceGetMemoryProperties", r);
      }
      for (uint32_t i = 0; i < std::min<size_t>(count, memory.size()); ++i) {
        device.total_bytes += memory[i].total_size;
      }

      if ((props.flags & kZeDevicePropertyFlagIntegrated) != 0) {
        AppendNote(&device, "integrated GPU (shares system memory)");
      }
      if (options.query_free_memory) {
        std::string why;
        ZeDevice sysman_device = nullptr;
        if (sysman == SysmanMode::kLegacy) {
          sysman_device = handle;
        } else if (sysman == SysmanMode::kZesInit) {
          auto it = sysman_by_uuid.find(device.uuid);
          if (it != sysman_by_uuid.end()) sysman_device = it->second;
        }
        if (sysman_device != nullptr) {
          device.free_bytes = SysmanFreeMemory(api, sysman_device, &why);
        } else {
          why = "free memory unknown: Sysman unavailable";
        }
        AppendNote(&device, why);
      }
      probe.devices.push_back(std::move(device));
    }
  }
  probe.detail = absl::StrCat(drivers.size(), " driver(s), ", probe.devices.size(), " GPU(s)");
  if (api_version != 0) {
    probe.detail = absl::StrCat("API ", api_version >> 16, ".", api_version & 0xffff, ", ",
                                probe.detail);
  }
  return probe;
}

}  // namespace moed

// Test fixture: a shared library exporting the Level Zero loader symbols moed's discovery dlopens,
// with fixed answers. Unlike moed itself it is compiled against the real Level Zero headers
// (Debian's libze-dev), so a layout mistake in level_zero_discovery.cc's own declarations shows
// up as a wrong value in the tests. Built twice:
//   moed_fake_level_zero          a 1.x loader without zesInit: Sysman works only when
//                                 ZES_ENABLE_SYSMAN=1 was set at zeInit, on core device handles
//   moed_fake_level_zero_zesinit  (MOED_FAKE_ZE_WITH_ZESINIT) exports zesInit/zesDriverGet/
//                                 zesDeviceGet; its Sysman handles are separate objects listed in
//                                 reverse order, so discovery must match them by UUID
// The environment variable MOED_FAKE_ZE picks a scenario:
//   unset or "two"     one driver, three devices: two GPUs and an NPU (type VPU, to be skipped)
//   "init_fails"       zeInit returns ZE_RESULT_ERROR_UNINITIALIZED (no GPU driver installed)
//   "props_fail"       zeDeviceGetProperties fails for the second GPU with DEVICE_LOST
//   "no_sysman_memory" zesDeviceEnumMemoryModules returns UNSUPPORTED_FEATURE
#include <level_zero/ze_api.h>
#include <level_zero/zes_api.h>

#include <cstdlib>
#include <cstring>
#include <string>

struct _ze_driver_handle_t {
  int id;
};
struct _ze_device_handle_t {
  int index;     // into kDevices
  bool sysman;   // a zesDeviceGet handle (zesInit variant) rather than a core one
};
struct _zes_mem_handle_t {
  int device;
  int module;
};

namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;

struct FakeMemoryModule {
  zes_mem_loc_t location;
  uint64_t free;
  uint64_t size;
};

struct FakeDevice {
  ze_device_type_t type;
  const char* name;
  uint32_t device_id;
  uint32_t flags;
  unsigned char uuid_seed;
  uint64_t memory[2];  // zeDeviceGetMemoryProperties totals (0 = absent)
  FakeMemoryModule modules[3];
  int module_count;
};

const FakeDevice kDevices[3] = {
    {ZE_DEVICE_TYPE_GPU, "Intel(R) Data Center GPU Max 1550", 0x0bd5, 0, 0x20,
     {64 * kGiB, 64 * kGiB},
     {{ZES_MEM_LOC_DEVICE, 60 * kGiB, 64 * kGiB},
      {ZES_MEM_LOC_SYSTEM, 500 * kGiB, 512 * kGiB},
      {ZES_MEM_LOC_DEVICE, 61 * kGiB, 64 * kGiB}},
     3},
    {ZE_DEVICE_TYPE_VPU, "Intel(R) AI Boost", 0x7d1d, ZE_DEVICE_PROPERTY_FLAG_INTEGRATED, 0x40,
     {0, 0},
     {},
     0},
    {ZE_DEVICE_TYPE_GPU, "Intel(R) Arc(TM) A770 Graphics", 0x56a0, 0, 0x60,
     {16 * kGiB, 0},
     {{ZES_MEM_LOC_DEVICE, 15 * kGiB, 16 * kGiB}},
     1},
};
constexpr int kDeviceCount = 3;

_ze_driver_handle_t g_driver = {1};
_ze_device_handle_t g_core[kDeviceCount] = {{0, false}, {1, false}, {2, false}};
_zes_mem_handle_t g_mems[kDeviceCount][3] = {
    {{0, 0}, {0, 1}, {0, 2}}, {{1, 0}, {1, 1}, {1, 2}}, {{2, 0}, {2, 1}, {2, 2}}};

bool g_initialized = false;
bool g_legacy_sysman = false;  // ZES_ENABLE_SYSMAN=1 was set when zeInit ran
#ifdef MOED_FAKE_ZE_WITH_ZESINIT
_ze_device_handle_t g_sysman[kDeviceCount] = {{0, true}, {1, true}, {2, true}};
bool g_zes_initialized = false;
#endif

std::string Mode() {
  const char* mode = std::getenv("MOED_FAKE_ZE");
  return mode == nullptr ? "two" : mode;
}

bool IsCore(ze_device_handle_t device) {
  return device != nullptr && !device->sysman && device == &g_core[device->index];
}

// Whether `device` may be used with the Sysman API in this variant.
bool SysmanHandleOk(zes_device_handle_t device) {
  if (device == nullptr) return false;
#ifdef MOED_FAKE_ZE_WITH_ZESINIT
  return g_zes_initialized && device->sysman && device == &g_sysman[device->index];
#else
  return g_legacy_sysman && IsCore(device);
#endif
}

void FillCore(int index, ze_device_properties_t* props) {
  const FakeDevice& d = kDevices[index];
  props->type = d.type;
  props->vendorId = 0x8086;
  props->deviceId = d.device_id;
  props->flags = d.flags;
  props->subdeviceId = 0;
  props->coreClockRate = 1600;
  props->maxMemAllocSize = 4 * kGiB;
  props->numThreadsPerEU = 8;
  props->physicalEUSimdWidth = 16;
  props->numEUsPerSubslice = 8;
  props->numSubslicesPerSlice = 64;
  props->numSlices = 2;
  props->timerResolution = 1;
  props->timestampValidBits = 64;
  props->kernelTimestampValidBits = 32;
  for (int i = 0; i < ZE_MAX_DEVICE_UUID_SIZE; ++i) {
    props->uuid.id[i] = static_cast<uint8_t>(d.uuid_seed + i);
  }
  std::memset(props->name, 0, sizeof(props->name));
  std::strncpy(props->name, d.name, sizeof(props->name) - 1);
}

}  // namespace

extern "C" {

ze_result_t ZE_APICALL zeInit(ze_init_flags_t flags) {
  if (flags != 0 && flags != ZE_INIT_FLAG_GPU_ONLY) return ZE_RESULT_ERROR_INVALID_ENUMERATION;
  if (Mode() == "init_fails") return ZE_RESULT_ERROR_UNINITIALIZED;
  const char* sysman = std::getenv("ZES_ENABLE_SYSMAN");
  g_legacy_sysman = sysman != nullptr && std::strcmp(sysman, "1") == 0;
  g_initialized = true;
  return ZE_RESULT_SUCCESS;
}

ze_result_t ZE_APICALL zeDriverGet(uint32_t* count, ze_driver_handle_t* drivers) {
  if (!g_initialized) return ZE_RESULT_ERROR_UNINITIALIZED;
  if (count == nullptr) return ZE_RESULT_ERROR_INVALID_NULL_POINTER;
  if (drivers == nullptr) {
    *count = 1;
    return ZE_RESULT_SUCCESS;
  }
  if (*count >= 1) drivers[0] = &g_driver;
  *count = *count >= 1 ? 1 : 0;
  return ZE_RESULT_SUCCESS;
}

ze_result_t ZE_APICALL zeDriverGetApiVersion(ze_driver_handle_t driver, ze_api_version_t* v) {
  if (driver != &g_driver || v == nullptr) return ZE_RESULT_ERROR_INVALID_ARGUMENT;
  *v = static_cast<ze_api_version_t>(ZE_MAKE_VERSION(1, 3));
  return ZE_RESULT_SUCCESS;
}

ze_result_t ZE_APICALL zeDeviceGet(ze_driver_handle_t driver, uint32_t* count,
                                   ze_device_handle_t* devices) {
  if (!g_initialized) return ZE_RESULT_ERROR_UNINITIALIZED;
  if (driver != &g_driver) return ZE_RESULT_ERROR_INVALID_NULL_HANDLE;
  if (count == nullptr) return ZE_RESULT_ERROR_INVALID_NULL_POINTER;
  if (devices == nullptr || *count == 0) {
    *count = kDeviceCount;
    return ZE_RESULT_SUCCESS;
  }
  uint32_t n = *count < kDeviceCount ? *count : kDeviceCount;
  for (uint32_t i = 0; i < n; ++i) devices[i] = &g_core[i];
  *count = n;
  return ZE_RESULT_SUCCESS;
}

ze_result_t ZE_APICALL zeDeviceGetProperties(ze_device_handle_t device,
                                             ze_device_properties_t* props) {
  if (!g_initialized) return ZE_RESULT_ERROR_UNINITIALIZED;
  if (!IsCore(device)) return ZE_RESULT_ERROR_INVALID_NULL_HANDLE;
  if (props == nullptr) return ZE_RESULT_ERROR_INVALID_NULL_POINTER;
  if (props->stype != ZE_STRUCTURE_TYPE_DEVICE_PROPERTIES) return ZE_RESULT_ERROR_INVALID_ARGUMENT;
  if (Mode() == "props_fail" && device->index == 2) return ZE_RESULT_ERROR_DEVICE_LOST;
  FillCore(device->index, props);
  return ZE_RESULT_SUCCESS;
}

ze_result_t ZE_APICALL zeDeviceGetMemoryProperties(ze_device_handle_t device, uint32_t* count,
                                                   ze_device_memory_properties_t* props) {
  if (!g_initialized) return ZE_RESULT_ERROR_UNINITIALIZED;
  if (!IsCore(device)) return ZE_RESULT_ERROR_INVALID_NULL_HANDLE;
  if (count == nullptr) return ZE_RESULT_ERROR_INVALID_NULL_POINTER;
  const FakeDevice& d = kDevices[device->index];
  const uint32_t available = (d.memory[0] != 0 ? 1 : 0) + (d.memory[1] != 0 ? 1 : 0);
  if (props == nullptr || *count == 0) {
    *count = available;
    return ZE_RESULT_SUCCESS;
  }
  const uint32_t n = *count < available ? *count : available;
  for (uint32_t i = 0; i < n; ++i) {
    if (props[i].stype != ZE_STRUCTURE_TYPE_DEVICE_MEMORY_PROPERTIES) {
      return ZE_RESULT_ERROR_INVALID_ARGUMENT;
    }
    props[i].flags = 0;
    props[i].maxClockRate = 1600;
    props[i].maxBusWidth = 4096;
    props[i].totalSize = d.memory[i];
    std::strncpy(props[i].name, "HBM", sizeof(props[i].name) - 1);
  }
  *count = n;
  return ZE_RESULT_SUCCESS;
}

#ifdef MOED_FAKE_ZE_WITH_ZESINIT
// Not declared by the 1.4 headers Debian ships (zesInit arrived in Level Zero 1.5); the signatures
// are the spec's.
ze_result_t ZE_APICALL zesInit(uint32_t flags) {
  if (flags != 0) return ZE_RESULT_ERROR_INVALID_ENUMERATION;
  if (Mode() == "init_fails") return ZE_RESULT_ERROR_UNINITIALIZED;
  g_zes_initialized = true;
  return ZE_RESULT_SUCCESS;
}

ze_result_t ZE_APICALL zesDriverGet(uint32_t* count, zes_driver_handle_t* drivers) {
  if (!g_zes_initialized) return ZE_RESULT_ERROR_UNINITIALIZED;
  if (count == nullptr) return ZE_RESULT_ERROR_INVALID_NULL_POINTER;
  if (drivers == nullptr) {
    *count = 1;
    return ZE_RESULT_SUCCESS;
  }
  if (*count >= 1) drivers[0] = &g_driver;
  *count = *count >= 1 ? 1 : 0;
  return ZE_RESULT_SUCCESS;
}

ze_result_t ZE_APICALL zesDeviceGet(zes_driver_handle_t driver, uint32_t* count,
                                    zes_device_handle_t* devices) {
  if (!g_zes_initialized) return ZE_RESULT_ERROR_UNINITIALIZED;
  if (driver != &g_driver) return ZE_RESULT_ERROR_INVALID_NULL_HANDLE;
  if (count == nullptr) return ZE_RESULT_ERROR_INVALID_NULL_POINTER;
  if (devices == nullptr || *count == 0) {
    *count = kDeviceCount;
    return ZE_RESULT_SUCCESS;
  }
  const uint32_t n = *count < kDeviceCount ? *count : kDeviceCount;
  for (uint32_t i = 0; i < n; ++i) devices[i] = &g_sysman[kDeviceCount - 1 - i];
  *count = n;
  return ZE_RESULT_SUCCESS;
}
#endif  // MOED_FAKE_ZE_WITH_ZESINIT

ze_result_t ZE_APICALL zesDeviceGetProperties(zes_device_handle_t device,
                                              zes_device_properties_t* props) {
  if (!SysmanHandleOk(device)) return ZE_RESULT_ERROR_UNINITIALIZED;
  if (props == nullptr) return ZE_RESULT_ERROR_INVALID_NULL_POINTER;
  if (props->stype != ZES_STRUCTURE_TYPE_DEVICE_PROPERTIES) return ZE_RESULT_ERROR_INVALID_ARGUMENT;
  FillCore(device->index, &props->core);
  props->numSubdevices = 0;
  std::strncpy(props->serialNumber, "unknown", sizeof(props->serialNumber) - 1);
  std::strncpy(props->driverVersion, "1.3.0", sizeof(props->driverVersion) - 1);
  return ZE_RESULT_SUCCESS;
}

ze_result_t ZE_APICALL zesDeviceEnumMemoryModules(zes_device_handle_t device, uint32_t* count,
                                                  zes_mem_handle_t* mems) {
  if (!SysmanHandleOk(device)) return ZE_RESULT_ERROR_UNINITIALIZED;
  if (count == nullptr) return ZE_RESULT_ERROR_INVALID_NULL_POINTER;
  if (Mode() == "no_sysman_memory") return ZE_RESULT_ERROR_UNSUPPORTED_FEATURE;
  const uint32_t available = static_cast<uint32_t>(kDevices[device->index].module_count);
  if (mems == nullptr || *count == 0) {
    *count = available;
    return ZE_RESULT_SUCCESS;
  }
  const uint32_t n = *count < available ? *count : available;
  for (uint32_t i = 0; i < n; ++i) mems[i] = &g_mems[device->index][i];
  *count = n;
  return ZE_RESULT_SUCCESS;
}

ze_result_t ZE_APICALL zesMemoryGetProperties(zes_mem_handle_t mem, zes_mem_properties_t* props) {
  if (mem == nullptr) return ZE_RESULT_ERROR_INVALID_NULL_HANDLE;
  if (props == nullptr) return ZE_RESULT_ERROR_INVALID_NULL_POINTER;
  if (props->stype != ZES_STRUCTURE_TYPE_MEM_PROPERTIES) return ZE_RESULT_ERROR_INVALID_ARGUMENT;
  const FakeMemoryModule& m = kDevices[mem->device].modules[mem->module];
  props->type = ZES_MEM_TYPE_HBM;
  props->onSubdevice = 0;
  props->subdeviceId = 0;
  props->location = m.location;
  props->physicalSize = m.size;
  props->busWidth = -1;
  props->numChannels = -1;
  return ZE_RESULT_SUCCESS;
}

ze_result_t ZE_APICALL zesMemoryGetState(zes_mem_handle_t mem, zes_mem_state_t* state) {
  if (mem == nullptr) return ZE_RESULT_ERROR_INVALID_NULL_HANDLE;
  if (state == nullptr) return ZE_RESULT_ERROR_INVALID_NULL_POINTER;
  if (state->stype != ZES_STRUCTURE_TYPE_MEM_STATE) return ZE_RESULT_ERROR_INVALID_ARGUMENT;
  const FakeMemoryModule& m = kDevices[mem->device].modules[mem->module];
  state->health = ZES_MEM_HEALTH_OK;
  state->free = m.free;
  state->size = m.size;
  return ZE_RESULT_SUCCESS;
}

}  // extern "C"

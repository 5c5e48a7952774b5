// NVIDIA discovery through the CUDA driver API (libcuda), resolved with dlsym. The few types and
// constants used are declared here from the driver API's documentation instead of including
// cuda.h: the daemon never includes a vendor header, and builds without the CUDA toolkit.
#include "daemon/devices/cuda_discovery.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "daemon/devices/dynamic_library.h"

namespace moed {
namespace {

// --- The driver API subset moed uses (values as documented in cuda.h / the driver API docs). ---
using CUresult = int;
using CUdevice = int;
struct CUctx_st;
using CUcontext = CUctx_st*;
struct CUuuid {
  unsigned char bytes[16];
};

constexpr CUresult kCudaSuccess = 0;
constexpr CUresult kCudaErrorNoDevice = 100;
constexpr int kAttrComputeCapabilityMajor = 75;  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
constexpr int kAttrComputeCapabilityMinor = 76;  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR

// Entry points. cuda.h maps several names onto versioned symbols (cuDeviceTotalMem ->
// cuDeviceTotalMem_v2, cuMemGetInfo -> _v2, cuCtxPushCurrent/PopCurrent -> _v2,
// cuDevicePrimaryCtxRelease -> _v2, cuDeviceGetUuid -> _v2); dlsym needs the real symbol names.
struct CudaApi {
  // Required: without these the library is not a usable CUDA driver.
  CUresult (*init)(unsigned int flags) = nullptr;
  CUresult (*device_get_count)(int* count) = nullptr;
  CUresult (*device_get)(CUdevice* device, int ordinal) = nullptr;
  CUresult (*device_get_name)(char* name, int len, CUdevice device) = nullptr;
  CUresult (*device_total_mem)(size_t* bytes, CUdevice device) = nullptr;
  CUresult (*device_get_attribute)(int* value, int attribute, CUdevice device) = nullptr;
  // Optional: missing ones leave the corresponding field unknown.
  CUresult (*driver_get_version)(int* version) = nullptr;
  CUresult (*get_error_name)(CUresult error, const char** name) = nullptr;
  CUresult (*get_error_string)(CUresult error, const char** text) = nullptr;
  CUresult (*device_get_uuid)(CUuuid* uuid, CUdevice device) = nullptr;
  CUresult (*device_get_pci_bus_id)(char* id, int len, CUdevice device) = nullptr;
  CUresult (*primary_ctx_retain)(CUcontext* context, CUdevice device) = nullptr;
  CUresult (*primary_ctx_release)(CUdevice device) = nullptr;
  CUresult (*ctx_push_current)(CUcontext context) = nullptr;
  CUresult (*ctx_pop_current)(CUcontext* context) = nullptr;
  CUresult (*mem_get_info)(size_t* free_bytes, size_t* total_bytes) = nullptr;

  bool CanQueryFreeMemory() const {
    return primary_ctx_retain && primary_ctx_release && ctx_push_current && ctx_pop_current &&
           mem_get_info;
  }
};

// Resolves the entry points; on a missing required one returns its name in *missing.
CudaApi ResolveCudaApi(const DynamicLibrary& lib, std::string* missing) {
  CudaApi api;
  struct Required {
    const char* name;
    bool found;
  };
  api.init = lib.Find<CUresult(unsigned int)>("cuInit");
  api.device_get_count = lib.Find<CUresult(int*)>("cuDeviceGetCount");
  api.device_get = lib.Find<CUresult(CUdevice*, int)>("cuDeviceGet");
  api.device_get_name = lib.Find<CUresult(char*, int, CUdevice)>("cuDeviceGetName");
  api.device_total_mem = lib.Find<CUresult(size_t*, CUdevice)>("cuDeviceTotalMem_v2");
  api.device_get_attribute = lib.Find<CUresult(int*, int, CUdevice)>("cuDeviceGetAttribute");
  const Required required[] = {
      {"cuInit", api.init != nullptr},
      {"cuDeviceGetCount", api.device_get_count != nullptr},
      {"cuDeviceGet", api.device_get != nullptr},
      {"cuDeviceGetName", api.device_get_name != nullptr},
      {"cuDeviceTotalMem_v2", api.device_total_mem != nullptr},
      {"cuDeviceGetAttribute", api.device_get_attribute != nullptr},
  };
  for (const Required& r : required) {
    if (!r.found) {
      *missing = r.name;
      return api;
    }
  }
  api.driver_get_version = lib.Find<CUresult(int*)>("cuDriverGetVersion");
  api.get_error_name = lib.Find<CUresult(CUresult, const char**)>("cuGetErrorName");
  api.get_error_string = lib.Find<CUresult(CUresult, const char**)>("cuGetErrorString");
  // _v2 reports a MIG instance's own UUID (the one CUDA_VISIBLE_DEVICES takes); v1 predates it.
  api.device_get_uuid = lib.Find<CUresult(CUuuid*, CUdevice)>("cuDeviceGetUuid_v2");
  if (api.device_get_uuid == nullptr) {
    api.device_get_uuid = lib.Find<CUresult(CUuuid*, CUdevice)>("cuDeviceGetUuid");
  }
  api.device_get_pci_bus_id = lib.Find<CUresult(char*, int, CUdevice)>("cuDeviceGetPCIBusId");
  api.primary_ctx_retain = lib.Find<CUresult(CUcontext*, CUdevice)>("cuDevicePrimaryCtxRetain");
  api.primary_ctx_release = lib.Find<CUresult(CUdevice)>("cuDevicePrimaryCtxRelease_v2");
  if (api.primary_ctx_release == nullptr) {
    api.primary_ctx_release = lib.Find<CUresult(CUdevice)>("cuDevicePrimaryCtxRelease");
  }
  api.ctx_push_current = lib.Find<CUresult(CUcontext)>("cuCtxPushCurrent_v2");
  api.ctx_pop_current = lib.Find<CUresult(CUcontext*)>("cuCtxPopCurrent_v2");
  api.mem_get_info = lib.Find<CUresult(size_t*, size_t*)>("cuMemGetInfo_v2");
  return api;
}

// "CUDA_ERROR_NO_DEVICE (100): no CUDA-capable device is detected", or "CUDA error 100" when the
// library cannot name it.
std::string CudaErrorText(const CudaApi& api, CUresult error) {
  const char* name = nullptr;
  const char* text = nullptr;
  if (api.get_error_name == nullptr || api.get_error_name(error, &name) != kCudaSuccess ||
      name == nullptr) {
    return absl::StrCat("CUDA error ", error);
  }
  std::string out = absl::StrCat(name, " (", error, ")");
  if (api.get_error_string != nullptr && api.get_error_string(error, &text) == kCudaSuccess &&
      text != nullptr) {
    absl::StrAppend(&out, ": ", text);
  }
  return out;
}

absl::Status CudaCallError(const CudaApi& api, const char* call, int ordinal, CUresult error) {
  return absl::InternalError(absl::StrCat("CUDA: ", call, "(device ", ordinal,
                                          ") failed: ", CudaErrorText(api, error)));
}

// Free memory needs a current context: retain the device's primary context (shared with any
// other user in this process, so nothing is created twice), push it, ask, pop, release. The
// release drops the context again when moed was its only user, so the router holds no GPU memory.
std::optional<uint64_t> QueryFreeMemory(const CudaApi& api, CUdevice device, std::string* why) {
  CUcontext context = nullptr;
  CUresult r = api.primary_ctx_retain(&context, device);
  if (r != kCudaSuccess) {
    *why = absl::StrCat("free memory unknown: cuDevicePrimaryCtxRetain failed: ",
                        CudaErrorText(api, r));
    return std::nullopt;
  }
  std::optional<uint64_t> result;
  r = api.ctx_push_current(context);
  if (r != kCudaSuccess) {
    *why = absl::StrCat("free memory unknown: cuCtxPushCurrent failed: ", CudaErrorText(api, r));
  } else {
    size_t free_bytes = 0;
    size_t total_bytes = 0;
    r = api.mem_get_info(&free_bytes, &total_bytes);
    if (r == kCudaSuccess) {
      result = free_bytes;
    } else {
      *why = absl::StrCat("free memory unknown: cuMemGetInfo failed: ", CudaErrorText(api, r));
    }
    CUcontext popped = nullptr;
    api.ctx_pop_current(&popped);
  }
  api.primary_ctx_release(device);
  return result;
}

absl::StatusOr<Device> DescribeCudaDevice(const CudaApi& api, int ordinal, bool query_free) {
  CUdevice handle = 0;
  CUresult r = api.device_get(&handle, ordinal);
  if (r != kCudaSuccess) return CudaCallError(api, "cuDeviceGet", ordinal, r);

  Device device;
  device.backend = DeviceBackend::kCuda;
  device.index = ordinal;
  device.can_compute = true;

  char name[256] = {};
  r = api.device_get_name(name, static_cast<int>(sizeof(name)), handle);
  if (r != kCudaSuccess) return CudaCallError(api, "cuDeviceGetName", ordinal, r);
  name[sizeof(name) - 1] = '\0';
  device.name = name;

  size_t total = 0;
  r = api.device_total_mem(&total, handle);
  if (r != kCudaSuccess) return CudaCallError(api, "cuDeviceTotalMem", ordinal, r);
  device.total_bytes = total;

  r = api.device_get_attribute(&device.compute_major, kAttrComputeCapabilityMajor, handle);
  if (r != kCudaSuccess) {
    return CudaCallError(api, "cuDeviceGetAttribute(COMPUTE_CAPABILITY_MAJOR)", ordinal, r);
  }
  r = api.device_get_attribute(&device.compute_minor, kAttrComputeCapabilityMinor, handle);
  if (r != kCudaSuccess) {
    return CudaCallError(api, "cuDeviceGetAttribute(COMPUTE_CAPABILITY_MINOR)", ordinal, r);
  }
  device.arch = absl::StrCat("sm_", device.compute_major, device.compute_minor);

  // Identification is best effort: a driver too old for these still computes.
  if (api.device_get_uuid != nullptr) {
    CUuuid uuid = {};
    if (api.device_get_uuid(&uuid, handle) == kCudaSuccess) device.uuid = FormatUuid(uuid.bytes);
  }
  if (api.device_get_pci_bus_id != nullptr) {
    char bus_id[64] = {};
    if (api.device_get_pci_bus_id(bus_id, static_cast<int>(sizeof(bus_id)), handle) ==
        kCudaSuccess) {
      bus_id[sizeof(bus_id) - 1] = '\0';
      device.pci_bus_id = absl::AsciiStrToLower(bus_id);
    }
  }

  if (query_free) {
    if (api.CanQueryFreeMemory()) {
      device.free_bytes = QueryFreeMemory(api, handle, &device.note);
    } else {
      device.note = "free memory unknown: the driver lacks the context entry points";
    }
  }
  return device;
}

}  // namespace

absl::StatusOr<BackendProbe> ProbeCuda(const CudaProbeOptions& options) {
  BackendProbe probe;
  probe.backend = DeviceBackend::kCuda;
  probe.library = options.library;

  absl::StatusOr<DynamicLibrary> lib = DynamicLibrary::Open(options.library);
  if (!lib.ok()) {
    probe.detail = absl::StrCat("driver library not loadable: ", lib.status().message());
    return probe;
  }
  std::string missing;
  const CudaApi api = ResolveCudaApi(*lib, &missing);
  if (!missing.empty()) {
    probe.detail = absl::StrCat(options.library, " has no symbol ", missing,
                                ": not a CUDA driver library, or one too old");
    return probe;
  }

  std::string version;
  int driver_version = 0;
  if (api.driver_get_version != nullptr &&
      api.driver_get_version(&driver_version) == kCudaSuccess && driver_version > 0) {
    version = absl::StrFormat("driver supports CUDA %d.%d", driver_version / 1000,
                              (driver_version % 1000) / 10);
  }

  CUresult r = api.init(0);
  if (r != kCudaSuccess) {
    // No device, no kernel module, a stub library, a driver/library mismatch: all mean "no CUDA
    // here", which is not an error for a daemon that can run on the CPU.
    probe.detail = absl::StrCat("cuInit failed: ", CudaErrorText(api, r),
                                r == kCudaErrorNoDevice ? "" : " (driver present but unusable)");
    return probe;
  }
  probe.present = true;

  int count = 0;
  r = api.device_get_count(&count);
  if (r != kCudaSuccess) {
    return absl::InternalError(
        absl::StrCat("CUDA: cuDeviceGetCount failed: ", CudaErrorText(api, r)));
  }
  probe.detail = version.empty() ? absl::StrCat(count, " device(s)")
                                 : absl::StrCat(version, ", ", count, " device(s)");
  for (int ordinal = 0; ordinal < count; ++ordinal) {
    absl::StatusOr<Device> device = DescribeCudaDevice(api, ordinal, options.query_free_memory);
    if (!device.ok()) return device.status();
    probe.devices.push_back(*std::move(device));
  }
  return probe;
}

}  // namespace moed

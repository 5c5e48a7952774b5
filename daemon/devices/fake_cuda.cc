// Test fixture: a shared library exporting the CUDA driver API symbols that moed's discovery
// dlopens, with fixed answers, so the real dlopen/dlsym path runs in CI without a GPU. It behaves
// like the driver where discovery depends on it: calls before cuInit fail with
// CUDA_ERROR_NOT_INITIALIZED, unknown attributes with CUDA_ERROR_INVALID_VALUE, cuMemGetInfo
// needs a current context. The environment variable MOED_FAKE_CUDA picks a scenario:
//   unset or "two"  two devices (an H100-like and an L4-like)
//   "no_device"     cuInit returns CUDA_ERROR_NO_DEVICE
//   "init_fails"    cuInit returns CUDA_ERROR_INSUFFICIENT_DRIVER
//   "zero"          cuInit succeeds, cuDeviceGetCount reports 0
//   "name_fails"    cuDeviceGetName fails for device 1 with CUDA_ERROR_INVALID_DEVICE
//   "ctx_fails"     cuDevicePrimaryCtxRetain fails for device 1 with CUDA_ERROR_OUT_OF_MEMORY
// moed_fake_cuda_open_contexts() / moed_fake_cuda_context_depth() let tests check that every
// retained primary context was released and every push popped.
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

using CUresult = int;
using CUdevice = int;
struct CUctx_st {
  int device;
};
using CUcontext = CUctx_st*;
struct CUuuid {
  unsigned char bytes[16];
};

constexpr CUresult kSuccess = 0;
constexpr CUresult kInvalidValue = 1;
constexpr CUresult kOutOfMemory = 2;
constexpr CUresult kNotInitialized = 3;
constexpr CUresult kInsufficientDriver = 35;
constexpr CUresult kNoDevice = 100;
constexpr CUresult kInvalidDevice = 101;
constexpr CUresult kInvalidContext = 201;

struct FakeDevice {
  const char* name;
  size_t total;
  size_t free;
  int major;
  int minor;
  unsigned char uuid_seed;
  const char* pci_bus_id;
};

constexpr size_t kGiB = size_t{1} << 30;
const FakeDevice kDevices[2] = {
    {"NVIDIA Fake H100 80GB HBM3", 80 * kGiB, 79 * kGiB + 512 * (kGiB >> 10), 9, 0, 0x10,
     "0000:19:00.0"},
    {"NVIDIA Fake L4", 24 * kGiB, 20 * kGiB, 8, 9, 0xa0, "0000:3B:00.0"},
};

bool g_initialized = false;
int g_open_contexts = 0;  // retained primary contexts not yet released
CUctx_st g_contexts[2] = {{0}, {1}};
CUcontext g_stack[16];
int g_depth = 0;

std::string Mode() {
  const char* mode = std::getenv("MOED_FAKE_CUDA");
  return mode == nullptr ? "two" : mode;
}

int DeviceCount() { return Mode() == "zero" ? 0 : 2; }

bool ValidDevice(CUdevice device) { return device >= 0 && device < DeviceCount(); }

}  // namespace

extern "C" {

CUresult cuGetErrorName(CUresult error, const char** name) {
  switch (error) {
    case kSuccess: *name = "CUDA_SUCCESS"; return kSuccess;
    case kInvalidValue: *name = "CUDA_ERROR_INVALID_VALUE"; return kSuccess;
    case kOutOfMemory: *name = "CUDA_ERROR_OUT_OF_MEMORY"; return kSuccess;
    case kNotInitialized: *name = "CUDA_ERROR_NOT_INITIALIZED"; return kSuccess;
    case kInsufficientDriver: *name = "CUDA_ERROR_INSUFFICIENT_DRIVER"; return kSuccess;
    case kNoDevice: *name = "CUDA_ERROR_NO_DEVICE"; return kSuccess;
    case kInvalidDevice: *name = "CUDA_ERROR_INVALID_DEVICE"; return kSuccess;
    case kInvalidContext: *name = "CUDA_ERROR_INVALID_CONTEXT"; return kSuccess;
  }
  *name = nullptr;
  return kInvalidValue;
}

CUresult cuGetErrorString(CUresult error, const char** text) {
  switch (error) {
    case kNoDevice: *text = "no CUDA-capable device is detected"; return kSuccess;
    case kInsufficientDriver:
      *text = "CUDA driver version is insufficient for CUDA runtime version";
      return kSuccess;
    case kInvalidDevice: *text = "invalid device ordinal"; return kSuccess;
    case kOutOfMemory: *text = "out of memory"; return kSuccess;
  }
  *text = "fake error";
  return kSuccess;
}

CUresult cuDriverGetVersion(int* version) {
  if (version == nullptr) return kInvalidValue;
  *version = 12040;
  return kSuccess;
}

CUresult cuInit(unsigned int flags) {
  if (flags != 0) return kInvalidValue;
  const std::string mode = Mode();
  if (mode == "no_device") return kNoDevice;
  if (mode == "init_fails") return kInsufficientDriver;
  g_initialized = true;
  return kSuccess;
}

CUresult cuDeviceGetCount(int* count) {
  if (!g_initialized) return kNotInitialized;
  if (count == nullptr) return kInvalidValue;
  *count = DeviceCount();
  return kSuccess;
}

CUresult cuDeviceGet(CUdevice* device, int ordinal) {
  if (!g_initialized) return kNotInitialized;
  if (device == nullptr) return kInvalidValue;
  if (!ValidDevice(ordinal)) return kInvalidDevice;
  *device = ordinal;
  return kSuccess;
}

CUresult cuDeviceGetName(char* name, int len, CUdevice device) {
  if (!g_initialized) return kNotInitialized;
  if (name == nullptr || len <= 0) return kInvalidValue;
  if (!ValidDevice(device) || (Mode() == "name_fails" && device == 1)) return kInvalidDevice;
  std::strncpy(name, kDevices[device].name, static_cast<size_t>(len));
  return kSuccess;
}

CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice device) {
  if (!g_initialized) return kNotInitialized;
  if (bytes == nullptr) return kInvalidValue;
  if (!ValidDevice(device)) return kInvalidDevice;
  *bytes = kDevices[device].total;
  return kSuccess;
}

CUresult cuDeviceGetAttribute(int* value, int attribute, CUdevice device) {
  if (!g_initialized) return kNotInitialized;
  if (value == nullptr) return kInvalidValue;
  if (!ValidDevice(device)) return kInvalidDevice;
  if (attribute == 75) {  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    *value = kDevices[device].major;
  } else if (attribute == 76) {  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
    *value = kDevices[device].minor;
  } else {
    return kInvalidValue;
  }
  return kSuccess;
}

CUresult cuDeviceGetUuid_v2(CUuuid* uuid, CUdevice device) {
  if (!g_initialized) return kNotInitialized;
  if (uuid == nullptr) return kInvalidValue;
  if (!ValidDevice(device)) return kInvalidDevice;
  for (int i = 0; i < 16; ++i) {
    uuid->bytes[i] = static_cast<unsigned char>(kDevices[device].uuid_seed + i);
  }
  return kSuccess;
}

CUresult cuDeviceGetPCIBusId(char* id, int len, CUdevice device) {
  if (!g_initialized) return kNotInitialized;
  if (id == nullptr || len < 13) return kInvalidValue;
  if (!ValidDevice(device)) return kInvalidDevice;
  std::strncpy(id, kDevices[device].pci_bus_id, static_cast<size_t>(len));
  return kSuccess;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext* context, CUdevice device) {
  if (!g_initialized) return kNotInitialized;
  if (context == nullptr) return kInvalidValue;
  if (!ValidDevice(device)) return kInvalidDevice;
  if (Mode() == "ctx_fails" && device == 1) return kOutOfMemory;
  *context = &g_contexts[device];
  ++g_open_contexts;
  return kSuccess;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) {
  if (!g_initialized) return kNotInitialized;
  if (!ValidDevice(device)) return kInvalidDevice;
  if (g_open_contexts <= 0) return kInvalidContext;
  --g_open_contexts;
  return kSuccess;
}

CUresult cuCtxPushCurrent_v2(CUcontext context) {
  if (!g_initialized) return kNotInitialized;
  if (context == nullptr || g_depth >= 16) return kInvalidValue;
  g_stack[g_depth++] = context;
  return kSuccess;
}

CUresult cuCtxPopCurrent_v2(CUcontext* context) {
  if (!g_initialized) return kNotInitialized;
  if (g_depth == 0) return kInvalidContext;
  CUcontext top = g_stack[--g_depth];
  if (context != nullptr) *context = top;
  return kSuccess;
}

CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total_bytes) {
  if (!g_initialized) return kNotInitialized;
  if (g_depth == 0) return kInvalidContext;  // needs a current context, as the real one does
  if (free_bytes == nullptr || total_bytes == nullptr) return kInvalidValue;
  const FakeDevice& device = kDevices[g_stack[g_depth - 1]->device];
  *free_bytes = device.free;
  *total_bytes = device.total;
  return kSuccess;
}

int moed_fake_cuda_open_contexts() { return g_open_contexts; }
int moed_fake_cuda_context_depth() { return g_depth; }

}  // extern "C"

// libmoed_cuda.so's C ABI (api.h): device, memory and event functions over the CUDA runtime,
// which is linked statically and finds the driver at run time, plus the op launchers of
// gemv.cu, norm.cu, moe.cu, ssm.cu, attention.cu and pointwise.cu. Every failure is recorded per thread for last_error().
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "kernels/cuda/api.h"
#include "kernels/cuda/ops.h"

namespace moed::cuda {
namespace {

thread_local std::string t_last_error;

int DeviceCount(int* count) {
  *count = 0;
  return FailCuda(cudaGetDeviceCount(count), "cudaGetDeviceCount");
}

int DeviceInfo(int device, MoedCudaDeviceInfo* info) {
  cudaDeviceProp prop;
  if (const int err = FailCuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties")) {
    return err;
  }
  std::memset(info, 0, sizeof(*info));
  std::snprintf(info->name, sizeof(info->name), "%s", prop.name);
  info->compute_major = prop.major;
  info->compute_minor = prop.minor;
  info->multiprocessor_count = prop.multiProcessorCount;
  info->total_memory_bytes = prop.totalGlobalMem;
  info->l2_cache_bytes = static_cast<uint64_t>(prop.l2CacheSize);
  info->memory_bus_width_bits = prop.memoryBusWidth;
  return 0;
}

int SetDevice(int device) { return FailCuda(cudaSetDevice(device), "cudaSetDevice"); }
int MallocDevice(void** ptr, size_t bytes) { return FailCuda(cudaMalloc(ptr, bytes), "cudaMalloc"); }
int FreeDevice(void* ptr) { return FailCuda(cudaFree(ptr), "cudaFree"); }
int CopyToDevice(void* dst, const void* src, size_t bytes) {
  return FailCuda(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to device");
}
int CopyToHost(void* dst, const void* src, size_t bytes) {
  return FailCuda(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
}
int MemsetDevice(void* ptr, int value, size_t bytes) {
  return FailCuda(cudaMemset(ptr, value, bytes), "cudaMemset");
}
int Synchronize() { return FailCuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }
int EventCreate(void** event) {
  cudaEvent_t e = nullptr;
  const int err = FailCuda(cudaEventCreate(&e), "cudaEventCreate");
  *event = e;
  return err;
}
int EventDestroy(void* event) {
  return FailCuda(cudaEventDestroy(static_cast<cudaEvent_t>(event)), "cudaEventDestroy");
}
int EventRecord(void* event, void* stream) {
  return FailCuda(cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream)),
                  "cudaEventRecord");
}
int EventElapsedMs(void* start, void* end, float* ms) {
  return FailCuda(cudaEventElapsedTime(ms, static_cast<cudaEvent_t>(start),
                                       static_cast<cudaEvent_t>(end)),
                  "cudaEventElapsedTime");
}
int SupportsType(uint32_t type) { return GemvSupportsType(type) ? 1 : 0; }
int Gemv(const MoedCudaGemvArgs* args, void* stream) {
  if (args == nullptr) return Fail(MOED_CUDA_EINVAL, "gemv: null args");
  return GemvLaunch(*args, stream);
}
const char* LastError() { return t_last_error.c_str(); }
int MoeSupports(uint32_t type) { return MoeSupportsType(type) ? 1 : 0; }
int MoeDecode(const MoedCudaMoeArgs* args, void* stream) {
  if (args == nullptr) return Fail(MOED_CUDA_EINVAL, "moe_decode: null args");
  return MoeDecodeLaunch(*args, stream);
}
int DeltaRuleStep(const MoedCudaDeltaRuleArgs* args, void* stream) {
  if (args == nullptr) return Fail(MOED_CUDA_EINVAL, "delta_rule_step: null args");
  return DeltaRuleStepLaunch(*args, stream);
}
int Conv1dStep(const MoedCudaConv1dArgs* args, void* stream) {
  if (args == nullptr) return Fail(MOED_CUDA_EINVAL, "conv1d_step: null args");
  return Conv1dStepLaunch(*args, stream);
}

int AttentionPrepKv(const MoedCudaAttentionPrepArgs* args, int32_t kv_type, void* stream) {
  if (args == nullptr) return Fail(MOED_CUDA_EINVAL, "attention_prep: null args");
  return AttentionPrepLaunch(*args, kv_type, stream);
}
int AttentionKv(const MoedCudaAttentionArgs* args, int32_t kv_type, void* stream) {
  if (args == nullptr) return Fail(MOED_CUDA_EINVAL, "attention: null args");
  return AttentionLaunch(*args, kv_type, stream);
}
// ABI 1.2's entry points: float32 pools.
int AttentionPrep(const MoedCudaAttentionPrepArgs* args, void* stream) {
  return AttentionPrepKv(args, MOED_CUDA_KV_F32, stream);
}
int Attention(const MoedCudaAttentionArgs* args, void* stream) { return AttentionKv(args, MOED_CUDA_KV_F32, stream); }
int DeltaNetPrep(const MoedCudaDeltaNetPrepArgs* args, void* stream) {
  if (args == nullptr) return Fail(MOED_CUDA_EINVAL, "deltanet_prep: null args");
  return DeltaNetPrepLaunch(*args, stream);
}
// cudaMemcpyDefault: the direction follows from the pointers (unified addressing), so the same
// call also copies device to device.
int CopyToDeviceAsync(void* dst, const void* src, size_t bytes, void* stream) {
  return FailCuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, static_cast<cudaStream_t>(stream)),
                  "cudaMemcpyAsync to device");
}
int CopyToHostAsync(void* dst, const void* src, size_t bytes, void* stream) {
  return FailCuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, static_cast<cudaStream_t>(stream)),
                  "cudaMemcpyAsync to host");
}
int StreamCreate(void** stream) {
  cudaStream_t s = nullptr;
  const int err = FailCuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  *stream = s;
  return err;
}
int StreamDestroy(void* stream) {
  return FailCuda(cudaStreamDestroy(static_cast<cudaStream_t>(stream)), "cudaStreamDestroy");
}
int StreamSynchronize(void* stream) {
  return FailCuda(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)), "cudaStreamSynchronize");
}
int StreamQuery(void* stream, int* done) {
  const cudaError_t e = cudaStreamQuery(static_cast<cudaStream_t>(stream));
  *done = e == cudaSuccess ? 1 : 0;
  return e == cudaErrorNotReady ? 0 : FailCuda(e, "cudaStreamQuery");
}
int MemoryInfo(size_t* free_bytes, size_t* total_bytes) {
  return FailCuda(cudaMemGetInfo(free_bytes, total_bytes), "cudaMemGetInfo");
}

int Gemm(const MoedCudaGemmArgs* args, void* stream) {
  if (args == nullptr) return Fail(MOED_CUDA_EINVAL, "gemm: null args");
  return GemmLaunch(*args, stream);
}
int MoeGrouped(const MoedCudaMoeGroupedArgs* args, void* stream) {
  if (args == nullptr) return Fail(MOED_CUDA_EINVAL, "moe_grouped: null args");
  return MoeGroupedLaunch(*args, stream);
}
int GemmMma(const MoedCudaGemvArgs* args, void* stream) {
  if (args == nullptr) return Fail(MOED_CUDA_EINVAL, "gemm_mma: null args");
  return GemmMmaLaunch(*args, stream);
}
int GraphCaptureBegin(void* stream) {
  return FailCuda(cudaStreamBeginCapture(static_cast<cudaStream_t>(stream), cudaStreamCaptureModeThreadLocal),
                  "cudaStreamBeginCapture");
}
int GraphCaptureEnd(void* stream, void** graph) {
  *graph = nullptr;
  cudaGraph_t g = nullptr;
  if (const int err = FailCuda(cudaStreamEndCapture(static_cast<cudaStream_t>(stream), &g), "cudaStreamEndCapture")) {
    return err;
  }
  cudaGraphExec_t exec = nullptr;
  const int err = FailCuda(cudaGraphInstantiate(&exec, g, 0), "cudaGraphInstantiate");
  cudaGraphDestroy(g);
  *graph = exec;
  return err;
}
int GraphLaunch(void* graph, void* stream) {
  return FailCuda(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), static_cast<cudaStream_t>(stream)),
                  "cudaGraphLaunch");
}
int GraphDestroy(void* graph) {
  return FailCuda(cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph)), "cudaGraphExecDestroy");
}

#define MOED_STR2(x) #x
#define MOED_STR(x) MOED_STR2(x)
constexpr MoedCudaApiV1 kApi = {
    MOED_CUDA_API_VERSION,
    sizeof(MoedCudaApiV1),
    "CUDA " MOED_STR(__CUDACC_VER_MAJOR__) "." MOED_STR(__CUDACC_VER_MINOR__)
    ", sm_90a + compute_80 PTX",
    DeviceCount,
    DeviceInfo,
    SetDevice,
    MallocDevice,
    FreeDevice,
    CopyToDevice,
    CopyToHost,
    MemsetDevice,
    Synchronize,
    EventCreate,
    EventDestroy,
    EventRecord,
    EventElapsedMs,
    SupportsType,
    Gemv,
    RmsNormLaunch,
    LastError,
    // ABI 1.1
    MoeSupports,
    MoeDecode,
    DeltaRuleStep,
    Conv1dStep,
    // ABI 1.2
    AttentionPrep,
    Attention,
    RouteTopKLaunch,
    DeltaNetPrep,
    RmsNormGatedLaunch,
    SiluMulLaunch,
    AddRowsLaunch,
    GatherRowsLaunch,
    CopyToDeviceAsync,
    CopyToHostAsync,
    StreamCreate,
    StreamDestroy,
    StreamSynchronize,
    MemoryInfo,
    GraphCaptureBegin,
    GraphCaptureEnd,
    GraphLaunch,
    GraphDestroy,
    GemmAvailable,
    Gemm,
    DequantizeF16Launch,
    MoeCombineLaunch,
    // ABI 1.3
    AttentionPrepKv,
    AttentionKv,
    NcclAvailable,
    NcclUniqueId,
    NcclCommInit,
    NcclCommStatus,
    NcclSend,
    NcclRecv,
    NcclCommAbort,
    StreamQuery,
    // ABI 1.4
    MoeGroupedScratchBytes,
    MoeGrouped,
    GemmMma,
    // ABI 1.5
    LogitsTopLaunch,
    // ABI 1.6
    LogitsDrawLaunch,
};

}  // namespace

int Fail(int code, const std::string& message) {
  t_last_error = message;
  return code;
}

int FailCuda(int err, const char* what) {
  if (err == cudaSuccess) return 0;
  const auto e = static_cast<cudaError_t>(err);
  return Fail(err, std::string(what) + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
}

}  // namespace moed::cuda

extern "C" __attribute__((visibility("default"))) const MoedCudaApiV1* moed_cuda_api_v1(void) {
  return &moed::cuda::kApi;
}

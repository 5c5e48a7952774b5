// Host side of the CUDA backend: finds and dlopens libmoed_cuda.so at run time and hands out its
// C ABI (api.h), so that no host translation unit includes a CUDA header and a CPU-only machine
// runs every binary: Load() then answers with a Status that says the backend is absent.
//
//   ASSIGN_OR_RETURN(auto cuda, moed::cuda::CudaLibrary::Load({}));
//   const MoedCudaApiV1& api = cuda->api();
//   RETURN_IF_ERROR(cuda->Check(api.gemv(&args, nullptr), "gemv"));
//   RETURN_IF_ERROR(cuda->MoeDecode(moe_args, stream));  // ABI 1.1 ops have Status wrappers
//
// Thread-safety: a loaded CudaLibrary is immutable; api() functions are thread-safe (api.h).
#ifndef MOED_KERNELS_CUDA_LOADER_H_
#define MOED_KERNELS_CUDA_LOADER_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/api.h"

namespace moed::cuda {

inline constexpr std::string_view kLibraryName = "libmoed_cuda.so";
// Environment variable naming the library file to load (tried before the default search).
inline constexpr std::string_view kLibraryEnv = "MOED_CUDA_LIBRARY";

struct LoadOptions {
  // A path to libmoed_cuda.so. Empty: $MOED_CUDA_LIBRARY, then the directory of the running
  // executable, then ../lib/moed from it (the installed layout), then the dynamic loader's search
  // (LD_LIBRARY_PATH, rpath, system directories).
  std::string library_path;
  // Also require a working driver and at least one device (the usual case). When false, Load()
  // succeeds on a machine with the library but without a GPU, e.g. to print build_info.
  bool require_device = true;
};

class CudaLibrary {
 public:
  // Errors (all Unavailable, never a crash):
  //   "CUDA backend absent: <each path tried>: <dlerror>"  no loadable library;
  //   "CUDA backend absent: ... has no moed_cuda_api_v1"    a wrong file;
  //   "CUDA backend too old/new: ..."                        ABI version mismatch;
  //   "no CUDA driver or device: <runtime message>"          library present, no usable GPU.
  static absl::StatusOr<std::unique_ptr<CudaLibrary>> Load(const LoadOptions& options);

  // The library is never dlclose'd: the statically linked CUDA runtime registers process-exit
  // teardown that must find its code still mapped.
  ~CudaLibrary() = default;
  CudaLibrary(const CudaLibrary&) = delete;
  CudaLibrary& operator=(const CudaLibrary&) = delete;

  const MoedCudaApiV1& api() const { return *api_; }
  const std::string& path() const { return path_; }
  int device_count() const { return device_count_; }

  // OK for rc == 0; otherwise Internal (InvalidArgument for MOED_CUDA_EINVAL) with
  // "<what>: <last_error()>".
  absl::Status Check(int rc, std::string_view what) const;

  // ABI 1.1 (api.h): true if the loaded library has moe_decode, delta_rule_step and conv1d_step.
  // Load() accepts a 1.0 library too (its callers keep working); the wrappers below then answer
  // Unimplemented instead of calling through a field the library does not have.
  bool HasAbi11() const { return MOED_CUDA_API_HAS(api_, conv1d_step); }
  // ABI 1.2: the rest of a layer (attention, routing, ...), which a whole stage on the GPU needs.
  bool HasAbi12() const { return MOED_CUDA_API_HAS(api_, moe_combine); }
  // ABI 1.3's attention over F16 K/V pools (attention_prep_kv, attention_kv).
  bool HasF16Kv() const { return MOED_CUDA_API_HAS(api_, attention_kv); }
  // ABI 1.3's NCCL links (nccl_*, stream_query).
  bool HasNccl() const { return MOED_CUDA_API_HAS(api_, stream_query); }
  // ABI 1.4's tensor-core products (moe_grouped, gemm_mma).
  bool HasMma() const { return MOED_CUDA_API_HAS(api_, gemm_mma); }
  // ABI 1.5's row summaries for sampling (logits_top).
  bool HasLogitsTop() const { return MOED_CUDA_API_HAS(api_, logits_top); }
  bool HasLogitsDraw() const { return MOED_CUDA_API_HAS(api_, logits_draw); }
  // api().moe_decode / delta_rule_step / conv1d_step through Check().
  absl::Status MoeDecode(const MoedCudaMoeArgs& args, void* stream) const;
  absl::Status DeltaRuleStep(const MoedCudaDeltaRuleArgs& args, void* stream) const;
  absl::Status Conv1dStep(const MoedCudaConv1dArgs& args, void* stream) const;

 private:
  CudaLibrary(const MoedCudaApiV1* api, std::string path, int device_count)
      : api_(api), path_(std::move(path)), device_count_(device_count) {}

  const MoedCudaApiV1* api_;
  std::string path_;
  int device_count_;
};

// The candidate paths Load() tries for `options`, in order (exposed for tests and messages).
std::vector<std::string> LibraryCandidates(const LoadOptions& options);

}  // namespace moed::cuda

#endif  // MOED_KERNELS_CUDA_LOADER_H_

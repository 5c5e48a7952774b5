#include "kernels/cuda/loader.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/base/strings.h"

namespace moed::cuda {
namespace {

// The ABI 1.0 table (version, struct_size, build_info and 17 functions) is frozen: 1.1 appends.
static_assert(sizeof(void*) != 8 || MOED_CUDA_API_V1_0_SIZE == 152, "ABI 1.0 layout changed");

std::string ExecutableDir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  const std::string exe(buf, static_cast<size_t>(n));
  const size_t slash = exe.rfind('/');
  return slash == std::string::npos ? "" : exe.substr(0, slash);
}

}  // namespace

std::vector<std::string> LibraryCandidates(const LoadOptions& options) {
  if (!options.library_path.empty()) return {options.library_path};
  std::vector<std::string> out;
  if (const char* env = std::getenv(std::string(kLibraryEnv).c_str()); env != nullptr && *env) {
    out.emplace_back(env);
  }
  if (const std::string dir = ExecutableDir(); !dir.empty()) {
    out.push_back(absl::StrCat(dir, "/", Sv(kLibraryName)));
    out.push_back(absl::StrCat(dir, "/../lib/moed/", Sv(kLibraryName)));  // where cmake --install puts it
  }
  out.emplace_back(kLibraryName);  // no slash: the dynamic loader's own search
  return out;
}

absl::StatusOr<std::unique_ptr<CudaLibrary>> CudaLibrary::Load(const LoadOptions& options) {
  std::vector<std::string> failures;
  for (const std::string& path : LibraryCandidates(options)) {
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* err = dlerror();
      failures.push_back(err != nullptr ? std::string(err) : absl::StrCat(path, ": dlopen failed"));
      continue;
    }
    dlerror();
    using EntryFn = const MoedCudaApiV1* (*)();
    auto entry = reinterpret_cast<EntryFn>(dlsym(handle, "moed_cuda_api_v1"));
    if (entry == nullptr) {
      dlclose(handle);
      failures.push_back(absl::StrCat(path, " has no moed_cuda_api_v1"));
      continue;
    }
    const MoedCudaApiV1* api = entry();
    if (api == nullptr || api->version != MOED_CUDA_API_VERSION ||
        api->struct_size < MOED_CUDA_API_V1_0_SIZE) {
      return absl::UnavailableError(absl::StrCat(
          "CUDA backend too old/new: ", path, " has ABI version ", api ? api->version : 0,
          " (size ", api ? api->struct_size : 0, "), this build needs ", MOED_CUDA_API_VERSION,
          " (size >= ", MOED_CUDA_API_V1_0_SIZE, ")"));
    }
    int count = 0;
    const int rc = api->device_count(&count);
    if (options.require_device && (rc != 0 || count < 1)) {
      return absl::UnavailableError(
          absl::StrCat("no CUDA driver or device: ", path, ": ",
                       rc != 0 ? std::string(api->last_error()) : "0 CUDA devices"));
    }
    // The handle is deliberately kept open for the life of the process (see the destructor).
    return std::unique_ptr<CudaLibrary>(new CudaLibrary(api, path, rc == 0 ? count : 0));
  }
  return absl::UnavailableError(
      absl::StrCat("CUDA backend absent: ", absl::StrJoin(failures, "; ")));
}

absl::Status CudaLibrary::Check(int rc, std::string_view what) const {
  if (rc == 0) return absl::OkStatus();
  const std::string message = absl::StrCat(Sv(what), ": ", api_->last_error());
  if (rc == MOED_CUDA_EINVAL) return absl::InvalidArgumentError(message);
  return absl::InternalError(message);
}

absl::Status CudaLibrary::MoeDecode(const MoedCudaMoeArgs& args, void* stream) const {
  if (!HasAbi11()) return absl::UnimplementedError(absl::StrCat(path_, " has no moe_decode (ABI 1.0)"));
  return Check(api_->moe_decode(&args, stream), "moe_decode");
}

absl::Status CudaLibrary::DeltaRuleStep(const MoedCudaDeltaRuleArgs& args, void* stream) const {
  if (!HasAbi11()) {
    return absl::UnimplementedError(absl::StrCat(path_, " has no delta_rule_step (ABI 1.0)"));
  }
  return Check(api_->delta_rule_step(&args, stream), "delta_rule_step");
}

absl::Status CudaLibrary::Conv1dStep(const MoedCudaConv1dArgs& args, void* stream) const {
  if (!HasAbi11()) return absl::UnimplementedError(absl::StrCat(path_, " has no conv1d_step (ABI 1.0)"));
  return Check(api_->conv1d_step(&args, stream), "conv1d_step");
}

}  // namespace moed::cuda

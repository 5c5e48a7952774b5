// ABI 1.3's point-to-point links (api.h): NCCL, dlopen'ed on first use so that the library loads
// (and every other op works) on a machine without libnccl.so.2. nccl.h is included for its types
// only; every call goes through the pointers resolved here.
#include <dlfcn.h>
#include <nccl.h>

#include <cstring>
#include <mutex>
#include <string>

#include "kernels/cuda/api.h"
#include "kernels/cuda/ops.h"

static_assert(sizeof(ncclUniqueId) == MOED_CUDA_NCCL_ID_BYTES, "api.h's id size is NCCL's");

namespace moed::cuda {
namespace {

struct Nccl {
  bool loaded = false;
  std::string why_absent;
  decltype(&ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&ncclCommInitRankConfig) init_rank_config = nullptr;
  decltype(&ncclCommGetAsyncError) get_async_error = nullptr;
  decltype(&ncclCommAbort) abort = nullptr;
  decltype(&ncclSend) send = nullptr;
  decltype(&ncclRecv) recv = nullptr;
  decltype(&ncclGetErrorString) error_string = nullptr;
  decltype(&ncclGetLastError) last_error = nullptr;
};

const Nccl& Library() {
  static Nccl nccl;
  static std::once_flag once;
  std::call_once(once, [] {
    void* h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      const char* e = dlerror();
      nccl.why_absent = std::string("NCCL absent: ") + (e != nullptr ? e : "dlopen libnccl.so.2 failed");
      return;
    }
    bool all = true;
    auto resolve = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
      if (fn == nullptr) {
        all = false;
        nccl.why_absent = std::string("NCCL absent: libnccl.so.2 has no ") + name;
      }
    };
    resolve(nccl.get_unique_id, "ncclGetUniqueId");
    resolve(nccl.init_rank_config, "ncclCommInitRankConfig");
    resolve(nccl.get_async_error, "ncclCommGetAsyncError");
    resolve(nccl.abort, "ncclCommAbort");
    resolve(nccl.send, "ncclSend");
    resolve(nccl.recv, "ncclRecv");
    resolve(nccl.error_string, "ncclGetErrorString");
    resolve(nccl.last_error, "ncclGetLastError");
    nccl.loaded = all;
  });
  return nccl;
}

int FailNccl(const Nccl& nccl, ncclResult_t r, ncclComm_t comm, const char* what) {
  std::string message = std::string(what) + ": " + nccl.error_string(r);
  const char* detail = nccl.last_error(comm);
  if (detail != nullptr && detail[0] != '\0') message += std::string(" (") + detail + ")";
  return Fail(MOED_CUDA_ENCCL, message);
}

// ncclInProgress is not a failure on a non-blocking communicator: the caller polls.
int CheckNccl(ncclResult_t r, ncclComm_t comm, const char* what) {
  if (r == ncclSuccess || r == ncclInProgress) return 0;
  return FailNccl(Library(), r, comm, what);
}

}  // namespace

int NcclAvailable() {
  const Nccl& nccl = Library();
  if (nccl.loaded) return 1;
  (void)Fail(MOED_CUDA_ENCCL, nccl.why_absent);  // for last_error()
  return 0;
}

int NcclUniqueId(uint8_t* id) {
  const Nccl& nccl = Library();
  if (!nccl.loaded) return Fail(MOED_CUDA_ENCCL, nccl.why_absent);
  if (id == nullptr) return Fail(MOED_CUDA_EINVAL, "nccl_unique_id: null id");
  ncclUniqueId u;
  if (int rc = CheckNccl(nccl.get_unique_id(&u), nullptr, "ncclGetUniqueId")) return rc;
  std::memcpy(id, &u, sizeof(u));
  return 0;
}

int NcclCommInit(void** comm, int n_ranks, const uint8_t* id, int rank) {
  const Nccl& nccl = Library();
  if (!nccl.loaded) return Fail(MOED_CUDA_ENCCL, nccl.why_absent);
  if (comm == nullptr || id == nullptr || n_ranks < 1 || rank < 0 || rank >= n_ranks)
    return Fail(MOED_CUDA_EINVAL, "nccl_comm_init: bad arguments");
  ncclUniqueId u;
  std::memcpy(&u, id, sizeof(u));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t c = nullptr;
  const ncclResult_t r = nccl.init_rank_config(&c, n_ranks, u, rank, &config);
  *comm = c;
  return CheckNccl(r, c, "ncclCommInitRankConfig");
}

int NcclCommStatus(void* comm, int* pending) {
  const Nccl& nccl = Library();
  if (!nccl.loaded) return Fail(MOED_CUDA_ENCCL, nccl.why_absent);
  if (comm == nullptr || pending == nullptr) return Fail(MOED_CUDA_EINVAL, "nccl_comm_status: bad arguments");
  auto c = static_cast<ncclComm_t>(comm);
  ncclResult_t state = ncclSuccess;
  ncclResult_t r = nccl.get_async_error(c, &state);
  if (r != ncclSuccess) return FailNccl(nccl, r, c, "ncclCommGetAsyncError");
  *pending = state == ncclInProgress ? 1 : 0;
  if (state != ncclSuccess && state != ncclInProgress) return FailNccl(nccl, state, c, "NCCL communicator");
  return 0;
}

int NcclSend(void* comm, const void* data, size_t bytes, int peer, void* stream) {
  const Nccl& nccl = Library();
  if (!nccl.loaded) return Fail(MOED_CUDA_ENCCL, nccl.why_absent);
  auto c = static_cast<ncclComm_t>(comm);
  return CheckNccl(nccl.send(data, bytes, ncclChar, peer, c, static_cast<cudaStream_t>(stream)), c, "ncclSend");
}

int NcclRecv(void* comm, void* data, size_t bytes, int peer, void* stream) {
  const Nccl& nccl = Library();
  if (!nccl.loaded) return Fail(MOED_CUDA_ENCCL, nccl.why_absent);
  auto c = static_cast<ncclComm_t>(comm);
  return CheckNccl(nccl.recv(data, bytes, ncclChar, peer, c, static_cast<cudaStream_t>(stream)), c, "ncclRecv");
}

int NcclCommAbort(void* comm) {
  const Nccl& nccl = Library();
  if (!nccl.loaded) return Fail(MOED_CUDA_ENCCL, nccl.why_absent);
  if (comm == nullptr) return 0;
  auto c = static_cast<ncclComm_t>(comm);
  return CheckNccl(nccl.abort(c), nullptr, "ncclCommAbort");
}

}  // namespace moed::cuda

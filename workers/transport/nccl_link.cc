// NCCL point-to-point activations under a Unix socket control link (see the header).
#include "workers/transport/nccl_link.h"

#include <sched.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"

namespace moed::transport {
namespace {

constexpr int kSender = 0, kReceiver = 1;

}  // namespace

NcclLink::NcclLink(std::unique_ptr<UnixSocketTransport> control, std::unique_ptr<cuda::CudaLibrary> lib, int device,
                   const UnixSocketOptions& options)
    : control_(std::move(control)), lib_(std::move(lib)), device_(device), options_(options) {}

NcclLink::~NcclLink() {
  if (lib_ == nullptr) return;
  const MoedCudaApiV1& api = lib_->api();
  if (api.set_device(device_) != 0) return;
  if (comm_ != nullptr) (void)api.nccl_comm_abort(comm_);
  if (stream_ != nullptr) (void)api.stream_destroy(stream_);
  if (buffer_ != nullptr) (void)api.free_device(buffer_);
}

absl::StatusOr<std::unique_ptr<NcclLink>> NcclLink::Offer(std::unique_ptr<UnixSocketTransport> control, int device,
                                                          const UnixSocketOptions& options) {
  return Join(std::move(control), device, options, true);
}

absl::StatusOr<std::unique_ptr<NcclLink>> NcclLink::Accept(std::unique_ptr<UnixSocketTransport> control, int device,
                                                           const UnixSocketOptions& options) {
  return Join(std::move(control), device, options, false);
}

absl::StatusOr<std::unique_ptr<NcclLink>> NcclLink::Join(std::unique_ptr<UnixSocketTransport> control, int device,
                                                         const UnixSocketOptions& options, bool offer) {
  auto lib = cuda::CudaLibrary::Load({});
  if (!lib.ok()) return absl::UnavailableError(absl::StrCat("NCCL link: ", lib.status().message()));
  if (!(*lib)->HasNccl()) {
    return absl::UnavailableError(absl::StrCat("NCCL link: ", (*lib)->path(),
                                               " predates ABI 1.3 (no NCCL links); rebuild it or set "
                                               "workers.activation_link: socket"));
  }
  const MoedCudaApiV1& api = (*lib)->api();
  if (api.nccl_available() != 1) {
    return absl::UnavailableError(absl::StrCat("NCCL link: ", api.last_error(),
                                               " (install NCCL or set workers.activation_link: socket)"));
  }
  std::unique_ptr<NcclLink> link(new NcclLink(std::move(control), std::move(lib).value(), device, options));
  const cuda::CudaLibrary& cu = *link->lib_;
  RETURN_IF_ERROR(cu.Check(api.set_device(device), "cudaSetDevice"));
  std::string id(MOED_CUDA_NCCL_ID_BYTES, '\0');
  auto* id_bytes = reinterpret_cast<uint8_t*>(id.data());
  if (offer) {
    RETURN_IF_ERROR(cu.Check(api.nccl_unique_id(id_bytes), "NCCL link id"));
    RETURN_IF_ERROR(link->control_->SendLinkId(id));
  } else {
    ASSIGN_OR_RETURN(id, link->control_->ReceiveLinkId());
    if (id.size() != MOED_CUDA_NCCL_ID_BYTES) {
      return absl::DataLossError(absl::StrCat("NCCL link: an id of ", id.size(), " bytes"));
    }
    id_bytes = reinterpret_cast<uint8_t*>(id.data());
  }
  RETURN_IF_ERROR(cu.Check(api.stream_create(&link->stream_), "NCCL link stream"));
  RETURN_IF_ERROR(cu.Check(api.nccl_comm_init(&link->comm_, 2, id_bytes, offer ? kSender : kReceiver),
                           "NCCL link init"));
  RETURN_IF_ERROR(link->Wait(false, "joining the NCCL link"));
  return link;
}

absl::Status NcclLink::Wait(bool with_stream, const char* what) {
  const MoedCudaApiV1& api = lib_->api();
  const absl::Time deadline = absl::Now() + options_.timeout;
  // Spin first: a decode step's rows arrive within microseconds of the notice.
  for (int round = 0;; ++round) {
    int pending = 0;
    RETURN_IF_ERROR(lib_->Check(api.nccl_comm_status(comm_, &pending), what));
    if (pending == 0) {
      if (!with_stream) return absl::OkStatus();
      int done = 0;
      RETURN_IF_ERROR(lib_->Check(api.stream_query(stream_, &done), what));
      if (done == 1) return absl::OkStatus();
    }
    if (round % 256 == 255) {
      absl::Status peer = control_->CheckPeer();
      if (!peer.ok()) return absl::Status(peer.code(), absl::StrCat(what, ": ", peer.message()));
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat(what, ": nothing moved for ", absl::FormatDuration(options_.timeout)));
      }
    }
    if (round < 4096) {
      sched_yield();
    } else {
      usleep(50);
    }
  }
}

absl::Status NcclLink::Send(const float* rows, uint64_t floats) {
  const MoedCudaApiV1& api = lib_->api();
  RETURN_IF_ERROR(lib_->Check(api.set_device(device_), "cudaSetDevice"));
  RETURN_IF_ERROR(control_->SendDeviceNotice(floats * sizeof(float)));
  RETURN_IF_ERROR(lib_->Check(api.nccl_send(comm_, rows, floats * sizeof(float), kReceiver, stream_), "ncclSend"));
  return Wait(true, "sending activations over NCCL");
}

absl::StatusOr<NcclLink::Rows> NcclLink::Receive() {
  ASSIGN_OR_RETURN(const uint64_t bytes, control_->ReceiveDeviceNotice());
  if (bytes % sizeof(float) != 0) {
    return absl::DataLossError(absl::StrCat("NCCL link: a notice of ", bytes, " bytes"));
  }
  const MoedCudaApiV1& api = lib_->api();
  RETURN_IF_ERROR(lib_->Check(api.set_device(device_), "cudaSetDevice"));
  const uint64_t floats = bytes / sizeof(float);
  if (floats > buffer_floats_) {
    if (buffer_ != nullptr) RETURN_IF_ERROR(lib_->Check(api.free_device(buffer_), "cudaFree"));
    buffer_ = nullptr;
    buffer_floats_ = 0;
    void* p = nullptr;
    RETURN_IF_ERROR(lib_->Check(api.malloc_device(&p, bytes), "NCCL link buffer"));
    buffer_ = static_cast<float*>(p);
    buffer_floats_ = floats;
  }
  RETURN_IF_ERROR(lib_->Check(api.nccl_recv(comm_, buffer_, bytes, kSender, stream_), "ncclRecv"));
  RETURN_IF_ERROR(Wait(true, "receiving activations over NCCL"));
  return Rows{buffer_, floats};
}

}  // namespace moed::transport

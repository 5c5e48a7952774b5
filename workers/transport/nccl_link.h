// The activation link between two CUDA stages on different GPUs: the rows stay in device memory
// and travel over a two-rank NCCL communicator (rank 0 the sending stage, rank 1 the receiving
// one) on a stream of the link's own.
//
// The stages' Unix socket link stays underneath as the control half (the link owns it): it
// carries the communicator's id once, then per step a notice of the bytes that follow, or an
// error frame, so the receiver knows what to post and never waits for rows that will not come.
// NCCL calls are non-blocking and every wait polls, bounded by the timeout and cut short when the
// socket closes (the peer died) or the interrupt descriptor fires; a link that failed aborts its
// communicator, which NCCL guarantees to return whatever the peer did. The router then reloads
// every stage and the links are made anew, with a new id.
//
// Thread-compatible: one thread uses a link at a time (the worker's step thread).
#ifndef MOED_WORKERS_TRANSPORT_NCCL_LINK_H_
#define MOED_WORKERS_TRANSPORT_NCCL_LINK_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kernels/cuda/loader.h"
#include "workers/transport/unix_socket_transport.h"

namespace moed::transport {

class NcclLink {
 public:
  // The sending end: creates the id, sends it over `control`, joins as rank 0 on `device`.
  // The receiving end: reads the id from `control`, joins as rank 1. Both wait for each other.
  // Errors: Unavailable when NCCL is absent (naming what is missing) or the peer went away;
  // DeadlineExceeded; Cancelled (interrupted); Internal for an NCCL failure.
  static absl::StatusOr<std::unique_ptr<NcclLink>> Offer(std::unique_ptr<UnixSocketTransport> control, int device,
                                                         const UnixSocketOptions& options);
  static absl::StatusOr<std::unique_ptr<NcclLink>> Accept(std::unique_ptr<UnixSocketTransport> control, int device,
                                                          const UnixSocketOptions& options);
  // Aborts the communicator (cancelling anything queued) and frees the buffer and stream.
  ~NcclLink();
  NcclLink(const NcclLink&) = delete;
  NcclLink& operator=(const NcclLink&) = delete;

  // Sends `floats` floats at `rows` (device memory, stable until Send returns) and waits until
  // they have left.
  absl::Status Send(const float* rows, uint64_t floats);
  // The step's frame as an error (see UnixSocketTransport::SendError).
  absl::Status SendError(const absl::Status& why) { return control_->SendError(why); }

  struct Rows {
    const float* data = nullptr;  // device memory, valid until the next Receive
    uint64_t floats = 0;
  };
  // Waits for the next step's rows. Errors: the peer's error frame (IsPeerError); as Offer's.
  absl::StatusOr<Rows> Receive();

 private:
  NcclLink(std::unique_ptr<UnixSocketTransport> control, std::unique_ptr<cuda::CudaLibrary> lib, int device,
           const UnixSocketOptions& options);
  static absl::StatusOr<std::unique_ptr<NcclLink>> Join(std::unique_ptr<UnixSocketTransport> control, int device,
                                                        const UnixSocketOptions& options, bool offer);
  // Polls until the communicator is set up and (with_stream) the link's stream is idle.
  absl::Status Wait(bool with_stream, const char* what);

  std::unique_ptr<UnixSocketTransport> control_;
  std::unique_ptr<cuda::CudaLibrary> lib_;
  int device_;
  UnixSocketOptions options_;
  void* comm_ = nullptr;
  void* stream_ = nullptr;
  float* buffer_ = nullptr;  // the receiving end's rows
  uint64_t buffer_floats_ = 0;
};

}  // namespace moed::transport

#endif  // MOED_WORKERS_TRANSPORT_NCCL_LINK_H_

// The step channel: the hot path of the router <-> worker contract. Each Worker.Step request and
// response (moed.worker.v1.StepRequest / StepResponse) travels as one length-prefixed frame over
// a Unix stream socket whose path the router gives in LoadRequest.step_channel, instead of
// through gRPC; the control RPCs stay on gRPC. Overhead of one decode step over the in-process
// engine (bench/worker_step_bench.cc, 2-vCPU VM, all processes on one vCPU so that the VM's
// cross-CPU wake-ups do not hide the path's own cost), 1 / 2 workers: this channel 14 / 30 us,
// a gRPC Step stream 53 / 118 us, unary gRPC calls 97 / 235 us. The budget is 50 us.
//
// Frame: {u32 magic "MOES", u32 reserved (0), u64 length} in host byte order (one host), then
// `length` bytes of the serialized message.
//
// Thread-compatible: one thread reads and one writes a socket at a time.
#ifndef MOED_PROTO_STEP_CHANNEL_H_
#define MOED_PROTO_STEP_CHANNEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/message_lite.h"
#include "proto/unix_socket_io.h"

namespace moed::wire {

class StepSocket {
 public:
  // Connects to a listener at `path`. Errors: InvalidArgument for a path too long;
  // Unavailable when nothing listens there.
  static absl::StatusOr<std::unique_ptr<StepSocket>> Connect(const std::string& path);
  ~StepSocket();
  StepSocket(const StepSocket&) = delete;
  StepSocket& operator=(const StepSocket&) = delete;

  // Sends one message. Errors: Unavailable (peer gone), DeadlineExceeded.
  absl::Status Write(const google::protobuf::MessageLite& message, absl::Duration timeout);
  // Waits for one message until `deadline`, or until `interrupt_fd` (when >= 0; never read) is
  // readable. Errors: Unavailable when the peer closed the socket; DeadlineExceeded; Cancelled
  // (interrupted); DataLoss for a malformed frame.
  absl::Status Read(google::protobuf::MessageLite* message, absl::Time deadline,
                    int interrupt_fd = -1);
  int fd() const { return fd_; }
  // True when bytes of a next message were already read from the socket (a peer that sends
  // several messages at once): poll(2) on fd() does not report them, Read returns them.
  bool has_buffered() const { return rx_.size() > 0; }
  // See ReceiveBuffer::set_spin.
  void set_spin(absl::Duration spin) { rx_.set_spin(spin); }

 private:
  friend class StepListener;
  explicit StepSocket(int fd) : fd_(fd) {}
  int fd_;
  std::string buffer_;  // reused storage of the frame being written
  ReceiveBuffer rx_;
};

class StepListener {
 public:
  // Listens at `path`, replacing a stale socket file. Errors as for Connect, or the errno.
  static absl::StatusOr<std::unique_ptr<StepListener>> Listen(const std::string& path);
  // Closes and removes the socket file.
  ~StepListener();
  StepListener(const StepListener&) = delete;
  StepListener& operator=(const StepListener&) = delete;

  // Takes a pending connection. Errors: Unavailable when none is pending (poll fd() first).
  absl::StatusOr<std::unique_ptr<StepSocket>> Accept();
  int fd() const { return fd_; }

 private:
  StepListener(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  int fd_;
  std::string path_;
};

}  // namespace moed::wire

#endif  // MOED_PROTO_STEP_CHANNEL_H_

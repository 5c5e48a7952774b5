// Activations between two worker processes on one host, over a Unix domain stream socket: the
// ActivationTransport of pipeline.h with one framed float buffer per step. The next stage listens
// (UnixSocketListener); the previous stage connects. Both ends count frames, so a frame from the
// wrong step is detected, not consumed silently.
//
// A stage that fails a step still sends exactly one frame for it: SendError carries the cause, and
// the receiver's Receive returns it, so the next stage never waits for activations that will not
// come. Every wait is bounded by the timeout (and cut short by the interrupt descriptor), and a
// peer that dies closes the socket: Receive and Send then return Unavailable at once. Never
// raises SIGPIPE.
//
// Frame: 24-byte header {u32 magic "MOEA", u32 kind, u64 sequence, u64 bytes} in host byte order
// (both ends are on one host), then `bytes` of payload. Kinds: 0 float32 activations; 1 an error,
// a u32 absl::StatusCode followed by the message; 2 a device notice, the u64 size of activations
// that travel over a device link (NcclLink); 3 that link's id.
//
// Thread-compatible: one thread uses an end at a time.
#ifndef MOED_WORKERS_TRANSPORT_UNIX_SOCKET_TRANSPORT_H_
#define MOED_WORKERS_TRANSPORT_UNIX_SOCKET_TRANSPORT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/unix_socket_io.h"
#include "workers/engine/pipeline.h"

namespace moed::transport {

struct UnixSocketOptions {
  // Longest wait for a connection, a whole frame to arrive, or a whole frame to be sent.
  absl::Duration timeout = absl::Seconds(120);
  // Largest payload accepted from the peer (a corrupt length must not allocate gigabytes).
  uint64_t max_frame_bytes = uint64_t{1} << 30;
  // When >= 0: a descriptor (an eventfd) that, while readable, makes every wait return Cancelled
  // at once; the transport never reads it. The owner uses it to abandon a step on a dead pipeline.
  int interrupt_fd = -1;
  // Receive checks for a frame without sleeping for this long first (wire::ReceiveBuffer::set_spin).
  absl::Duration spin = absl::ZeroDuration();
};

// True when `status` is a previous stage's error delivered by Receive (that stage failed the step),
// false for a failure of the transport itself.
bool IsPeerError(const absl::Status& status);

class UnixSocketTransport : public engine::ActivationTransport {
 public:
  // Connects to the listener at `path`, retrying while it is not there yet, until the timeout.
  // Errors: InvalidArgument for a path too long for a socket address; DeadlineExceeded.
  static absl::StatusOr<std::unique_ptr<UnixSocketTransport>> Connect(
      const std::string& path, const UnixSocketOptions& options);
  ~UnixSocketTransport() override;
  UnixSocketTransport(const UnixSocketTransport&) = delete;
  UnixSocketTransport& operator=(const UnixSocketTransport&) = delete;

  // Sends one step's activations. Errors: Unavailable (peer gone), DeadlineExceeded.
  absl::Status Send(std::vector<float> hidden) override;
  // Sends the step's frame as an error: the peer's Receive returns `why` (not OK).
  absl::Status SendError(const absl::Status& why);
  // Waits for the next frame. Errors: the peer's SendError status; Unavailable when the peer
  // closed the connection; DeadlineExceeded; DataLoss for a malformed or out-of-order frame.
  absl::StatusOr<std::vector<float>> Receive() override;

  // Activations kept on the GPUs (NcclLink): the socket carries, per step, only a notice of how
  // many bytes follow over the device link, and once, first, the device link's id. Receive*
  // errors as Receive's; a frame of another kind than expected is DataLoss.
  absl::Status SendDeviceNotice(uint64_t bytes);
  absl::StatusOr<uint64_t> ReceiveDeviceNotice();
  absl::Status SendLinkId(std::string_view id);
  absl::StatusOr<std::string> ReceiveLinkId();
  // Returns at once: Unavailable once the peer has closed the connection, Cancelled while the
  // interrupt descriptor is readable, else OK. For waits that are not on the socket itself.
  absl::Status CheckPeer() const;

 private:
  UnixSocketTransport(int fd, const UnixSocketOptions& options) : fd_(fd), options_(options) {
    rx_.set_spin(options.spin);
  }
  friend class UnixSocketListener;

  absl::Status SendFrame(uint32_t kind, const void* payload, uint64_t bytes);
  // Reads the next frame's header, of kind `want` or an error frame, and returns its payload size
  // (the payload is left to read); an error frame is consumed and returned as the peer's status.
  absl::StatusOr<uint64_t> NextFrame(uint32_t want, absl::Time deadline);
  // Receives straight into `data` (the buffer must be empty: a frame larger than it).
  absl::Status ReadExactly(void* data, size_t size, absl::Time deadline);
  // Receives until at least `need` unread bytes are buffered, taking whatever has arrived: a
  // decode step's frame costs one recv(2).
  absl::Status Fill(size_t need, absl::Time deadline);

  int fd_;
  UnixSocketOptions options_;
  wire::ReceiveBuffer rx_;
  uint64_t sent_ = 0;      // frames sent
  uint64_t received_ = 0;  // frames received
};

class UnixSocketListener {
 public:
  // Binds and listens at `path`, replacing a stale socket file there. Errors: InvalidArgument for
  // a path too long; the errno of socket/bind/listen otherwise.
  static absl::StatusOr<std::unique_ptr<UnixSocketListener>> Listen(
      const std::string& path, const UnixSocketOptions& options);
  // Closes the socket and removes its file.
  ~UnixSocketListener();
  UnixSocketListener(const UnixSocketListener&) = delete;
  UnixSocketListener& operator=(const UnixSocketListener&) = delete;

  // Takes the next connection, waiting up to the timeout. Errors: DeadlineExceeded.
  absl::StatusOr<std::unique_ptr<UnixSocketTransport>> Accept();
  const std::string& path() const { return path_; }

 private:
  UnixSocketListener(int fd, std::string path, const UnixSocketOptions& options)
      : fd_(fd), path_(std::move(path)), options_(options) {}

  int fd_;
  std::string path_;
  UnixSocketOptions options_;
};

}  // namespace moed::transport

#endif  // MOED_WORKERS_TRANSPORT_UNIX_SOCKET_TRANSPORT_H_

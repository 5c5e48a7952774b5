// Non-blocking Unix stream socket I/O shared by the two framed channels between moed's processes:
// the step channel (router <-> worker, proto/step_channel.h) and the activation transport
// (worker -> worker, workers/transport/). Every read or write is tried first; poll(2) waits only
// when the kernel has nothing yet, bounded by a deadline and cut short by an interrupt descriptor.
//
// `context` names the channel in every message ("step channel", "activation transport").
#ifndef MOED_PROTO_UNIX_SOCKET_IO_H_
#define MOED_PROTO_UNIX_SOCKET_IO_H_

#include <sys/un.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace moed::wire {

// "<context>: <what>: <strerror>". Unavailable when the peer is gone or absent (EPIPE,
// ECONNRESET, ENOTCONN, ECONNREFUSED, ENOENT), Internal otherwise.
absl::Status SocketError(std::string_view context, std::string_view what, int err);

// The address of `path`. Errors: InvalidArgument for an empty path or one too long for sun_path.
absl::StatusOr<sockaddr_un> UnixSocketAddress(std::string_view context, const std::string& path);

// A non-blocking listening socket at `path`, replacing a socket file left there by a process that
// died; any other file at `path` is refused (FailedPrecondition).
absl::StatusOr<int> ListenUnixSocket(std::string_view context, const std::string& path);

// Whether `fd` becomes readable within `spin`, checked without sleeping.
bool SpinUntilReadable(int fd, absl::Duration spin);

// Waits until `fd` is ready for `events`, until `deadline` (InfiniteFuture: no limit), or until
// `interrupt_fd` (when >= 0; never read) is readable. Errors: DeadlineExceeded and Cancelled,
// "<context>: timed out|interrupted <waiting_for>". Socket errors surface in the next read/write.
absl::Status WaitForSocket(int fd, short events, absl::Time deadline, int interrupt_fd, std::string_view context,
                           std::string_view waiting_for);

// Received bytes not consumed yet, over one socket. Grows without zero-filling and takes whatever
// has arrived in one recv(2), so a small frame costs one system call.
class ReceiveBuffer {
 public:
  // Receives from `fd` until at least `need` unread bytes are buffered. Errors: Unavailable when
  // the peer closed the socket ("<context>: <closed>"); those of WaitForSocket; SocketError.
  absl::Status Fill(int fd, size_t need, absl::Time deadline, int interrupt_fd, std::string_view context,
                    std::string_view waiting_for, std::string_view closed);

  // Before sleeping in poll(2), Fill checks for data without sleeping for up to `spin`: a peer that
  // answers within it costs no wake-up of this thread (tens of microseconds on a VM). Only worth
  // it when every process of the pipeline has a core of its own. Default: zero.
  void set_spin(absl::Duration spin) { spin_ = spin; }

  const char* data() const { return rx_.get() + begin_; }
  size_t size() const { return end_ - begin_; }
  // REQUIRES: n <= size().
  void Consume(size_t n) { begin_ += n; }

 private:
  std::unique_ptr<char[]> rx_;
  size_t capacity_ = 0, begin_ = 0, end_ = 0;  // [begin_, end_) unread
  absl::Duration spin_ = absl::ZeroDuration();
};

}  // namespace moed::wire

#endif  // MOED_PROTO_UNIX_SOCKET_IO_H_

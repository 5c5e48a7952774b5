// Length-prefixed protobuf frames over a non-blocking Unix stream socket: each read or write is
// tried first, and poll(2) waits only when the kernel has nothing yet.
#include "proto/step_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "proto/unix_socket_io.h"

namespace moed::wire {
namespace {

constexpr uint32_t kMagic = 0x53454f4d;             // "MOES" in little-endian memory order
constexpr uint64_t kMaxFrame = uint64_t{64} << 20;  // a step description is kilobytes

struct FrameHeader {
  uint32_t magic;
  uint32_t reserved;
  uint64_t length;
};
static_assert(sizeof(FrameHeader) == 16);

constexpr char kContext[] = "step channel";

}  // namespace

absl::StatusOr<std::unique_ptr<StepSocket>> StepSocket::Connect(const std::string& path) {
  ASSIGN_OR_RETURN(sockaddr_un addr, UnixSocketAddress(kContext, path));
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return SocketError(kContext, "socket", errno);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
    const int err = errno;
    close(fd);
    return SocketError(kContext, absl::StrCat("connect to ", path), err);
  }
  return std::unique_ptr<StepSocket>(new StepSocket(fd));
}

StepSocket::~StepSocket() { close(fd_); }

absl::Status StepSocket::Write(const google::protobuf::MessageLite& message,
                               absl::Duration timeout) {
  const size_t length = message.ByteSizeLong();
  buffer_.resize(sizeof(FrameHeader) + length);
  const FrameHeader header{kMagic, 0, length};
  std::memcpy(buffer_.data(), &header, sizeof(header));
  if (!message.SerializeToArray(buffer_.data() + sizeof(header), static_cast<int>(length))) {
    return absl::InternalError("step channel: cannot serialize the message");
  }
  const absl::Time deadline = absl::Now() + timeout;
  const char* p = buffer_.data();
  size_t left = buffer_.size();
  while (left > 0) {
    const ssize_t n = send(fd_, p, left, MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      left -= static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      RETURN_IF_ERROR(WaitForSocket(fd_, POLLOUT, deadline, -1, kContext, "sending"));
    } else if (n < 0 && errno != EINTR) {
      return SocketError(kContext, "send", errno);
    }
  }
  return absl::OkStatus();
}

absl::Status StepSocket::Read(google::protobuf::MessageLite* message, absl::Time deadline,
                              int interrupt_fd) {
  auto fill = [&](size_t need) {
    return rx_.Fill(fd_, need, deadline, interrupt_fd, kContext, "", "the peer closed the connection");
  };
  FrameHeader header;
  RETURN_IF_ERROR(fill(sizeof(header)));
  std::memcpy(&header, rx_.data(), sizeof(header));
  if (header.magic != kMagic || header.length > kMaxFrame) {
    return absl::DataLossError("step channel: malformed frame header");
  }
  RETURN_IF_ERROR(fill(sizeof(header) + header.length));
  const char* body = rx_.data() + sizeof(header);
  rx_.Consume(sizeof(header) + header.length);
  if (!message->ParseFromArray(body, static_cast<int>(header.length))) {
    return absl::DataLossError("step channel: the frame does not hold a valid message");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<StepListener>> StepListener::Listen(const std::string& path) {
  ASSIGN_OR_RETURN(const int fd, ListenUnixSocket(kContext, path));
  return std::unique_ptr<StepListener>(new StepListener(fd, path));
}

StepListener::~StepListener() {
  close(fd_);
  unlink(path_.c_str());
}

absl::StatusOr<std::unique_ptr<StepSocket>> StepListener::Accept() {
  for (;;) {
    const int fd = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) return std::unique_ptr<StepSocket>(new StepSocket(fd));
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return absl::UnavailableError("step channel: no pending connection");
    return SocketError(kContext, absl::StrCat("accept on ", path_), errno);
  }
}

}  // namespace moed::wire

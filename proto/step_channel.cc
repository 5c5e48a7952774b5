// Length-prefixed protobuf frames over a non-blocking Unix stream socket: each read or write is
// tried first, and poll(2) waits only when the kernel has nothing yet.
#include "proto/step_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"

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

absl::Status ErrnoError(const std::string& what, int err) {
  const std::string message = absl::StrCat("step channel: ", what, ": ", std::strerror(err));
  if (err == EPIPE || err == ECONNRESET || err == ENOTCONN || err == ECONNREFUSED ||
      err == ENOENT) {
    return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

absl::StatusOr<sockaddr_un> Address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("step channel path \"", path,
                                                   "\" must have 1 to ", sizeof(addr.sun_path) - 1,
                                                   " characters"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// Waits for `events` on `fd` until `deadline` or until `interrupt_fd` is readable.
absl::Status Wait(int fd, short events, absl::Time deadline, int interrupt_fd) {
  for (;;) {
    int ms = -1;
    if (deadline != absl::InfiniteFuture()) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration())
        return absl::DeadlineExceededError("step channel: timed out");
      ms = static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1 << 30));
    }
    pollfd p[2] = {{fd, events, 0}, {interrupt_fd, POLLIN, 0}};
    const int r = poll(p, interrupt_fd >= 0 ? 2 : 1, ms);
    if (r < 0 && errno != EINTR) return ErrnoError("poll", errno);
    if (r > 0 && (p[1].revents & POLLIN) != 0)
      return absl::CancelledError("step channel: interrupted");
    if (r > 0) return absl::OkStatus();
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<StepSocket>> StepSocket::Connect(const std::string& path) {
  ASSIGN_OR_RETURN(sockaddr_un addr, Address(path));
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket", errno);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoError(absl::StrCat("connect to ", path), err);
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
      RETURN_IF_ERROR(Wait(fd_, POLLOUT, deadline, -1));
    } else if (n < 0 && errno != EINTR) {
      return ErrnoError("send", errno);
    }
  }
  return absl::OkStatus();
}

absl::Status StepSocket::Fill(size_t need, absl::Time deadline, int interrupt_fd) {
  while (end_ - begin_ < need) {
    if (begin_ > 0) {  // move the unread bytes to the front
      std::memmove(rx_.get(), rx_.get() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (capacity_ < need || capacity_ - end_ < 4096) {  // grow, without zero-filling
      const size_t capacity = std::max({need, 2 * capacity_, size_t{64} << 10});
      auto bigger = std::make_unique<char[]>(capacity);
      std::memcpy(bigger.get(), rx_.get(), end_);
      rx_ = std::move(bigger);
      capacity_ = capacity;
    }
    // Take whatever has arrived, up to the free space: usually a whole frame in one call.
    const ssize_t n = recv(fd_, rx_.get() + end_, capacity_ - end_, 0);
    if (n > 0) {
      end_ += static_cast<size_t>(n);
    } else if (n == 0) {
      return absl::UnavailableError("step channel: the peer closed the connection");
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      RETURN_IF_ERROR(Wait(fd_, POLLIN, deadline, interrupt_fd));
    } else if (errno != EINTR) {
      return ErrnoError("receive", errno);
    }
  }
  return absl::OkStatus();
}

absl::Status StepSocket::Read(google::protobuf::MessageLite* message, absl::Time deadline,
                              int interrupt_fd) {
  FrameHeader header;
  RETURN_IF_ERROR(Fill(sizeof(header), deadline, interrupt_fd));
  std::memcpy(&header, rx_.get() + begin_, sizeof(header));
  if (header.magic != kMagic || header.length > kMaxFrame) {
    return absl::DataLossError("step channel: malformed frame header");
  }
  RETURN_IF_ERROR(Fill(sizeof(header) + header.length, deadline, interrupt_fd));
  const char* body = rx_.get() + begin_ + sizeof(header);
  begin_ += sizeof(header) + header.length;
  if (!message->ParseFromArray(body, static_cast<int>(header.length))) {
    return absl::DataLossError("step channel: the frame does not hold a valid message");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<StepListener>> StepListener::Listen(const std::string& path) {
  ASSIGN_OR_RETURN(sockaddr_un addr, Address(path));
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a socket"));
    unlink(path.c_str());
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ErrnoError("socket", errno);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 4) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoError(absl::StrCat("listen on ", path), err);
  }
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
    return ErrnoError(absl::StrCat("accept on ", path_), errno);
  }
}

}  // namespace moed::wire

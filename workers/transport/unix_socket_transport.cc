// Framed activations over a Unix stream socket. Sockets are non-blocking: every read and write is
// tried first and poll(2) waits only when the kernel has nothing, bounded by one deadline per
// frame, so a stalled peer costs at most the timeout and a live one costs no extra system call.
#include "workers/transport/unix_socket_transport.h"

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
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"

namespace moed::transport {
namespace {

constexpr uint32_t kMagic = 0x41454f4d;  // "MOEA" in little-endian memory order
constexpr uint32_t kData = 0;
constexpr uint32_t kError = 1;

constexpr char kPeerErrorPayload[] = "moed.transport/peer-error";

struct FrameHeader {
  uint32_t magic;
  uint32_t kind;
  uint64_t sequence;
  uint64_t bytes;
};
static_assert(sizeof(FrameHeader) == 24);

absl::Status ErrnoError(const std::string& what, int err) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(err));
  if (err == EPIPE || err == ECONNRESET || err == ENOTCONN) return absl::UnavailableError(message);
  return absl::InternalError(message);
}

absl::StatusOr<sockaddr_un> Address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("activation socket path \"", path,
                                                   "\" must have 1 to ", sizeof(addr.sun_path) - 1,
                                                   " characters"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

absl::Status SetNonBlocking(int fd) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return ErrnoError("fcntl", errno);
  return absl::OkStatus();
}

// Waits until `fd` is ready for `events` or the deadline passes or `interrupt_fd` is readable.
absl::Status Wait(int fd, short events, absl::Time deadline, int interrupt_fd, const char* what) {
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat("activation transport: timed out ", what));
    }
    pollfd p[2] = {{fd, events, 0}, {interrupt_fd, POLLIN, 0}};
    const int ms =
        static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1 << 30));
    const int r = poll(p, interrupt_fd >= 0 ? 2 : 1, ms);
    if (r < 0 && errno != EINTR) return ErrnoError("poll", errno);
    if (r > 0 && (p[1].revents & POLLIN) != 0) {
      return absl::CancelledError(absl::StrCat("activation transport: interrupted ", what));
    }
    if (r > 0) return absl::OkStatus();  // errors and hang-ups surface in the next read/write
  }
}

}  // namespace

bool IsPeerError(const absl::Status& status) {
  return status.GetPayload(kPeerErrorPayload).has_value();
}

// --- UnixSocketTransport ---------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<UnixSocketTransport>> UnixSocketTransport::Connect(
    const std::string& path, const UnixSocketOptions& options) {
  ASSIGN_OR_RETURN(sockaddr_un addr, Address(path));
  const absl::Time deadline = absl::Now() + options.timeout;
  for (;;) {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return ErrnoError("socket", errno);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) {
      absl::Status s = SetNonBlocking(fd);
      if (!s.ok()) {
        close(fd);
        return s;
      }
      return std::unique_ptr<UnixSocketTransport>(new UnixSocketTransport(fd, options));
    }
    const int err = errno;
    close(fd);
    // Not listening yet (no file, or a file without a listener, or a full backlog): retry.
    if (err != ENOENT && err != ECONNREFUSED && err != EAGAIN && err != EINTR) {
      return ErrnoError(absl::StrCat("connect to ", path), err);
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("activation transport: nothing accepts connections at ", path, " (",
                       std::strerror(err), ")"));
    }
    pollfd interrupt{options.interrupt_fd, POLLIN, 0};
    if (poll(&interrupt, options.interrupt_fd >= 0 ? 1 : 0, 2) > 0) {
      return absl::CancelledError(
          absl::StrCat("activation transport: interrupted connecting to ", path));
    }
  }
}

UnixSocketTransport::~UnixSocketTransport() { close(fd_); }

absl::Status UnixSocketTransport::Send(std::vector<float> hidden) {
  return SendFrame(kData, hidden.data(), hidden.size() * sizeof(float));
}

absl::Status UnixSocketTransport::SendError(const absl::Status& why) {
  const absl::Status status = why.ok() ? absl::UnknownError("SendError called with OK") : why;
  std::string payload(sizeof(uint32_t), '\0');
  const auto code = static_cast<uint32_t>(status.code());
  std::memcpy(payload.data(), &code, sizeof(code));
  payload.append(status.message().data(), status.message().size());
  return SendFrame(kError, payload.data(), payload.size());
}

absl::Status UnixSocketTransport::SendFrame(uint32_t kind, const void* payload, uint64_t bytes) {
  const FrameHeader header{kMagic, kind, sent_, bytes};
  const absl::Time deadline = absl::Now() + options_.timeout;
  iovec iov[2] = {{const_cast<FrameHeader*>(&header), sizeof(header)},
                  {const_cast<void*>(payload), static_cast<size_t>(bytes)}};
  int first = 0;
  while (first < 2) {
    msghdr msg{};
    msg.msg_iov = iov + first;
    msg.msg_iovlen = static_cast<size_t>(2 - first);
    const ssize_t n = sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        RETURN_IF_ERROR(Wait(fd_, POLLOUT, deadline, options_.interrupt_fd,
                             "sending activations (is the next stage stalled?)"));
        continue;
      }
      return ErrnoError("activation transport: send to the next stage failed", errno);
    }
    auto left = static_cast<size_t>(n);
    while (first < 2 && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (first < 2) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  ++sent_;
  return absl::OkStatus();
}

absl::Status UnixSocketTransport::ReadExactly(void* data, size_t size, absl::Time deadline) {
  auto* p = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t n = recv(fd_, p, size, 0);
    if (n > 0) {
      p += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0)
      return absl::UnavailableError(
          "activation transport: the previous stage closed the connection");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      RETURN_IF_ERROR(Wait(fd_, POLLIN, deadline, options_.interrupt_fd,
                           "waiting for the previous stage's activations"));
      continue;
    }
    return ErrnoError("activation transport: receive failed", errno);
  }
  return absl::OkStatus();
}

absl::Status UnixSocketTransport::Fill(size_t need, absl::Time deadline) {
  while (end_ - begin_ < need) {
    if (begin_ > 0) {
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
    const ssize_t n = recv(fd_, rx_.get() + end_, capacity_ - end_, 0);
    if (n > 0) {
      end_ += static_cast<size_t>(n);
    } else if (n == 0) {
      return absl::UnavailableError(
          "activation transport: the previous stage closed the connection");
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      RETURN_IF_ERROR(Wait(fd_, POLLIN, deadline, options_.interrupt_fd,
                           "waiting for the previous stage's activations"));
    } else if (errno != EINTR) {
      return ErrnoError("activation transport: receive failed", errno);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> UnixSocketTransport::Receive() {
  const absl::Time deadline = absl::Now() + options_.timeout;
  FrameHeader header;
  RETURN_IF_ERROR(Fill(sizeof(header), deadline));
  std::memcpy(&header, rx_.get() + begin_, sizeof(header));
  if (header.magic != kMagic || (header.kind != kData && header.kind != kError)) {
    return absl::DataLossError("activation transport: malformed frame header");
  }
  if (header.sequence != received_) {
    return absl::DataLossError(absl::StrCat("activation transport: got frame ", header.sequence,
                                            ", expected frame ", received_));
  }
  if (header.bytes > options_.max_frame_bytes ||
      (header.kind == kData && header.bytes % sizeof(float) != 0) ||
      (header.kind == kError && header.bytes < sizeof(uint32_t))) {
    return absl::DataLossError(
        absl::StrCat("activation transport: frame of ", header.bytes, " bytes rejected"));
  }
  begin_ += sizeof(header);
  if (header.kind == kError) {
    RETURN_IF_ERROR(Fill(header.bytes, deadline));
    uint32_t code;
    std::memcpy(&code, rx_.get() + begin_, sizeof(code));
    std::string message(rx_.get() + begin_ + sizeof(code), header.bytes - sizeof(code));
    begin_ += header.bytes;
    ++received_;
    if (code == 0 || code > static_cast<uint32_t>(absl::StatusCode::kUnauthenticated)) {
      code = static_cast<uint32_t>(absl::StatusCode::kUnknown);
    }
    absl::Status peer(static_cast<absl::StatusCode>(code), message);
    peer.SetPayload(kPeerErrorPayload, absl::Cord("1"));
    return peer;
  }
  // What already arrived is copied; the rest of a large frame is received in place.
  std::vector<float> hidden(header.bytes / sizeof(float));
  char* out = reinterpret_cast<char*>(hidden.data());
  const size_t buffered = std::min<size_t>(end_ - begin_, header.bytes);
  std::memcpy(out, rx_.get() + begin_, buffered);
  begin_ += buffered;
  RETURN_IF_ERROR(ReadExactly(out + buffered, header.bytes - buffered, deadline));
  ++received_;
  return hidden;
}

// --- UnixSocketListener ----------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<UnixSocketListener>> UnixSocketListener::Listen(
    const std::string& path, const UnixSocketOptions& options) {
  ASSIGN_OR_RETURN(sockaddr_un addr, Address(path));
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a socket"));
    }
    unlink(path.c_str());  // a socket left by a previous worker at this path
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ErrnoError("socket", errno);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 4) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoError(absl::StrCat("listen on ", path), err);
  }
  return std::unique_ptr<UnixSocketListener>(new UnixSocketListener(fd, path, options));
}

UnixSocketListener::~UnixSocketListener() {
  close(fd_);
  unlink(path_.c_str());
}

absl::StatusOr<std::unique_ptr<UnixSocketTransport>> UnixSocketListener::Accept() {
  const absl::Time deadline = absl::Now() + options_.timeout;
  for (;;) {
    const int fd = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) return std::unique_ptr<UnixSocketTransport>(new UnixSocketTransport(fd, options_));
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return ErrnoError(absl::StrCat("accept on ", path_), errno);
    RETURN_IF_ERROR(Wait(fd_, POLLIN, deadline, options_.interrupt_fd,
                         "waiting for the previous stage to connect"));
  }
}

}  // namespace moed::transport

#include "proto/unix_socket_io.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::wire {

absl::Status SocketError(std::string_view context, std::string_view what, int err) {
  const std::string message = absl::StrCat(Sv(context), ": ", Sv(what), ": ", std::strerror(err));
  if (err == EPIPE || err == ECONNRESET || err == ENOTCONN || err == ECONNREFUSED || err == ENOENT) {
    return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

absl::StatusOr<sockaddr_un> UnixSocketAddress(std::string_view context, const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(context), ": socket path \"", path, "\" must have 1 to ",
                                                   sizeof(addr.sun_path) - 1, " characters"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

absl::StatusOr<int> ListenUnixSocket(std::string_view context, const std::string& path) {
  ASSIGN_OR_RETURN(sockaddr_un addr, UnixSocketAddress(context, path));
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a socket"));
    unlink(path.c_str());
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return SocketError(context, "socket", errno);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 4) != 0) {
    const int err = errno;
    close(fd);
    return SocketError(context, absl::StrCat("listen on ", path), err);
  }
  return fd;
}

absl::Status WaitForSocket(int fd, short events, absl::Time deadline, int interrupt_fd, std::string_view context,
                           std::string_view waiting_for) {
  const std::string_view space = waiting_for.empty() ? "" : " ";
  for (;;) {
    int ms = -1;
    if (deadline != absl::InfiniteFuture()) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        return absl::DeadlineExceededError(absl::StrCat(Sv(context), ": timed out", Sv(space), Sv(waiting_for)));
      }
      ms = static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1 << 30));
    }
    pollfd p[2] = {{fd, events, 0}, {interrupt_fd, POLLIN, 0}};
    const int r = poll(p, interrupt_fd >= 0 ? 2 : 1, ms);
    if (r < 0 && errno != EINTR) return SocketError(context, "poll", errno);
    if (r > 0 && (p[1].revents & POLLIN) != 0) {
      return absl::CancelledError(absl::StrCat(Sv(context), ": interrupted", Sv(space), Sv(waiting_for)));
    }
    if (r > 0) return absl::OkStatus();
  }
}

bool SpinUntilReadable(int fd, absl::Duration spin) {
  const absl::Time until = absl::Now() + spin;
  do {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 0) > 0) return true;
  } while (absl::Now() < until);
  return false;
}

absl::Status ReceiveBuffer::Fill(int fd, size_t need, absl::Time deadline, int interrupt_fd, std::string_view context,
                                 std::string_view waiting_for, std::string_view closed) {
  bool spun = spin_ <= absl::ZeroDuration();
  while (end_ - begin_ < need) {
    if (begin_ > 0) {  // move the unread bytes to the front
      std::memmove(rx_.get(), rx_.get() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (capacity_ < need || capacity_ - end_ < 4096) {  // grow, without zero-filling
      const size_t capacity = std::max({need, 2 * capacity_, size_t{64} << 10});
      auto bigger = std::make_unique<char[]>(capacity);
      if (end_ > 0) std::memcpy(bigger.get(), rx_.get(), end_);
      rx_ = std::move(bigger);
      capacity_ = capacity;
    }
    // Take whatever has arrived, up to the free space: usually a whole frame in one call.
    const ssize_t n = recv(fd, rx_.get() + end_, capacity_ - end_, 0);
    if (n > 0) {
      end_ += static_cast<size_t>(n);
    } else if (n == 0) {
      return absl::UnavailableError(absl::StrCat(Sv(context), ": ", Sv(closed)));
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!spun) {
        spun = true;
        if (SpinUntilReadable(fd, spin_)) continue;
      }
      RETURN_IF_ERROR(WaitForSocket(fd, POLLIN, deadline, interrupt_fd, context, waiting_for));
    } else if (errno != EINTR) {
      return SocketError(context, "receive", errno);
    }
  }
  return absl::OkStatus();
}

}  // namespace moed::wire

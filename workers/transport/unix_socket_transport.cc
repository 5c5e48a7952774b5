// Framed activations over a Unix stream socket. Sockets are non-blocking: every read and write is
// tried first and poll(2) waits only when the kernel has nothing, bounded by one deadline per
// frame, so a stalled peer costs at most the timeout and a live one costs no extra system call.
#include "workers/transport/unix_socket_transport.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
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
#include "proto/unix_socket_io.h"

namespace moed::transport {
namespace {

constexpr uint32_t kMagic = 0x41454f4d;  // "MOEA" in little-endian memory order
constexpr uint32_t kData = 0;
constexpr uint32_t kError = 1;
constexpr uint32_t kDeviceNotice = 2;  // payload: u64 bytes that follow over the device link
constexpr uint32_t kLinkId = 3;        // payload: the device link's id (the first frame only)

constexpr char kPeerErrorPayload[] = "moed.transport/peer-error";

struct FrameHeader {
  uint32_t magic;
  uint32_t kind;
  uint64_t sequence;
  uint64_t bytes;
};
static_assert(sizeof(FrameHeader) == 24);

constexpr char kContext[] = "activation transport";
constexpr char kWaitingForActivations[] = "waiting for the previous stage's activations";
constexpr char kPreviousStageClosed[] = "the previous stage closed the connection";

absl::Status SetNonBlocking(int fd) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return wire::SocketError(kContext, "fcntl", errno);
  return absl::OkStatus();
}

}  // namespace

bool IsPeerError(const absl::Status& status) {
  return status.GetPayload(kPeerErrorPayload).has_value();
}

// --- UnixSocketTransport ---------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<UnixSocketTransport>> UnixSocketTransport::Connect(
    const std::string& path, const UnixSocketOptions& options) {
  ASSIGN_OR_RETURN(sockaddr_un addr, wire::UnixSocketAddress(kContext, path));
  const absl::Time deadline = absl::Now() + options.timeout;
  for (;;) {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return wire::SocketError(kContext, "socket", errno);
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
      return wire::SocketError(kContext, absl::StrCat("connect to ", path), err);
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
        RETURN_IF_ERROR(wire::WaitForSocket(fd_, POLLOUT, deadline, options_.interrupt_fd, kContext,
                                            "sending activations (is the next stage stalled?)"));
        continue;
      }
      return wire::SocketError(kContext, "send to the next stage", errno);
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
    if (n == 0) return absl::UnavailableError(absl::StrCat(kContext, ": ", kPreviousStageClosed));
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      RETURN_IF_ERROR(wire::WaitForSocket(fd_, POLLIN, deadline, options_.interrupt_fd, kContext,
                                          kWaitingForActivations));
      continue;
    }
    return wire::SocketError(kContext, "receive", errno);
  }
  return absl::OkStatus();
}

absl::Status UnixSocketTransport::Fill(size_t need, absl::Time deadline) {
  return rx_.Fill(fd_, need, deadline, options_.interrupt_fd, kContext, kWaitingForActivations, kPreviousStageClosed);
}

absl::StatusOr<uint64_t> UnixSocketTransport::NextFrame(uint32_t want, absl::Time deadline) {
  FrameHeader header;
  RETURN_IF_ERROR(Fill(sizeof(header), deadline));
  std::memcpy(&header, rx_.data(), sizeof(header));
  if (header.magic != kMagic || header.kind > kLinkId) {
    return absl::DataLossError("activation transport: malformed frame header");
  }
  if (header.sequence != received_) {
    return absl::DataLossError(absl::StrCat("activation transport: got frame ", header.sequence,
                                            ", expected frame ", received_));
  }
  if (header.kind != kError && header.kind != want) {
    return absl::DataLossError(absl::StrCat("activation transport: got a frame of kind ", header.kind,
                                            ", expected kind ", want,
                                            " (do both stages use the same activation link?)"));
  }
  if (header.bytes > options_.max_frame_bytes ||
      (header.kind == kData && header.bytes % sizeof(float) != 0) ||
      (header.kind == kDeviceNotice && header.bytes != sizeof(uint64_t)) ||
      (header.kind == kError && header.bytes < sizeof(uint32_t))) {
    return absl::DataLossError(
        absl::StrCat("activation transport: frame of ", header.bytes, " bytes rejected"));
  }
  rx_.Consume(sizeof(header));
  ++received_;
  if (header.kind != kError) return header.bytes;
  RETURN_IF_ERROR(Fill(header.bytes, deadline));
  uint32_t code;
  std::memcpy(&code, rx_.data(), sizeof(code));
  std::string message(rx_.data() + sizeof(code), header.bytes - sizeof(code));
  rx_.Consume(header.bytes);
  if (code == 0 || code > static_cast<uint32_t>(absl::StatusCode::kUnauthenticated)) {
    code = static_cast<uint32_t>(absl::StatusCode::kUnknown);
  }
  absl::Status peer(static_cast<absl::StatusCode>(code), message);
  peer.SetPayload(kPeerErrorPayload, absl::Cord("1"));
  return peer;
}

absl::StatusOr<std::vector<float>> UnixSocketTransport::Receive() {
  const absl::Time deadline = absl::Now() + options_.timeout;
  ASSIGN_OR_RETURN(const uint64_t bytes, NextFrame(kData, deadline));
  // What already arrived is copied; the rest of a large frame is received in place.
  std::vector<float> hidden(bytes / sizeof(float));
  char* out = reinterpret_cast<char*>(hidden.data());
  const size_t buffered = std::min<size_t>(rx_.size(), bytes);
  std::memcpy(out, rx_.data(), buffered);
  rx_.Consume(buffered);
  RETURN_IF_ERROR(ReadExactly(out + buffered, bytes - buffered, deadline));
  return hidden;
}

absl::Status UnixSocketTransport::SendDeviceNotice(uint64_t bytes) {
  return SendFrame(kDeviceNotice, &bytes, sizeof(bytes));
}

absl::StatusOr<uint64_t> UnixSocketTransport::ReceiveDeviceNotice() {
  const absl::Time deadline = absl::Now() + options_.timeout;
  RETURN_IF_ERROR(NextFrame(kDeviceNotice, deadline).status());
  uint64_t bytes;
  RETURN_IF_ERROR(Fill(sizeof(bytes), deadline));
  std::memcpy(&bytes, rx_.data(), sizeof(bytes));
  rx_.Consume(sizeof(bytes));
  return bytes;
}

absl::Status UnixSocketTransport::SendLinkId(std::string_view id) {
  return SendFrame(kLinkId, id.data(), id.size());
}

absl::StatusOr<std::string> UnixSocketTransport::ReceiveLinkId() {
  const absl::Time deadline = absl::Now() + options_.timeout;
  ASSIGN_OR_RETURN(const uint64_t bytes, NextFrame(kLinkId, deadline));
  RETURN_IF_ERROR(Fill(bytes, deadline));
  std::string id(rx_.data(), bytes);
  rx_.Consume(bytes);
  return id;
}

absl::Status UnixSocketTransport::CheckPeer() const {
  pollfd fds[2] = {{fd_, POLLRDHUP, 0}, {options_.interrupt_fd, POLLIN, 0}};
  const int n = poll(fds, options_.interrupt_fd >= 0 ? 2 : 1, 0);
  if (n < 0 && errno != EINTR) return wire::SocketError(kContext, "poll", errno);
  if (n > 0 && (fds[1].revents & POLLIN) != 0) return absl::CancelledError("activation transport: interrupted");
  if (n > 0 && (fds[0].revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
    return absl::UnavailableError("activation transport: the other stage closed the connection");
  }
  return absl::OkStatus();
}

// --- UnixSocketListener ----------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<UnixSocketListener>> UnixSocketListener::Listen(
    const std::string& path, const UnixSocketOptions& options) {
  ASSIGN_OR_RETURN(const int fd, wire::ListenUnixSocket(kContext, path));
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
      return wire::SocketError(kContext, absl::StrCat("accept on ", path_), errno);
    RETURN_IF_ERROR(wire::WaitForSocket(fd_, POLLIN, deadline, options_.interrupt_fd, kContext,
                                        "waiting for the previous stage to connect"));
  }
}

}  // namespace moed::transport

// Raw-socket HTTP client for tests (see http_test_client.h).
#include "daemon/gateway/testing/http_test_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::gateway::testing {

absl::StatusOr<TestConnection> TestConnection::Open(uint16_t port, int receive_timeout_seconds) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  timeval tv{};
  tv.tv_sec = receive_timeout_seconds;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("connect: ", std::strerror(err)));
  }
  return TestConnection(fd);
}

TestConnection::TestConnection(TestConnection&& other) noexcept
    : fd_(other.fd_), buffer_(std::move(other.buffer_)),
      body_so_far_(std::move(other.body_so_far_)), eof_(other.eof_) {
  other.fd_ = -1;
}

TestConnection& TestConnection::operator=(TestConnection&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = other.fd_;
    buffer_ = std::move(other.buffer_);
    body_so_far_ = std::move(other.body_so_far_);
    eof_ = other.eof_;
    other.fd_ = -1;
  }
  return *this;
}

TestConnection::~TestConnection() { Close(); }

void TestConnection::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

absl::Status TestConnection::Send(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("send: ", std::strerror(errno)));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status TestConnection::Fill() {
  if (eof_) return absl::OutOfRangeError("connection closed by the server");
  char chunk[16384];
  while (true) {
    const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<size_t>(n));
      return absl::OkStatus();
    }
    if (n == 0) {
      eof_ = true;
      return absl::OutOfRangeError("connection closed by the server");
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return absl::DeadlineExceededError("receive timed out");
    }
    return absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno)));
  }
}

absl::StatusOr<std::string> TestConnection::ReadLine() {
  size_t pos;
  while ((pos = buffer_.find("\r\n")) == std::string::npos) RETURN_IF_ERROR(Fill());
  std::string line = buffer_.substr(0, pos);
  buffer_.erase(0, pos + 2);
  return line;
}

absl::StatusOr<std::string> TestConnection::ReadExactly(size_t n) {
  while (buffer_.size() < n) RETURN_IF_ERROR(Fill());
  std::string out = buffer_.substr(0, n);
  buffer_.erase(0, n);
  return out;
}

absl::StatusOr<ClientResponse> TestConnection::ReadHead() {
  ClientResponse response;
  std::string status_line;
  do {
    ASSIGN_OR_RETURN(status_line, ReadLine());
    // Skip interim responses (100 Continue) and their empty line.
    if (status_line.rfind("HTTP/1.1 100", 0) == 0) {
      ASSIGN_OR_RETURN(std::string blank, ReadLine());
      status_line.clear();
    }
  } while (status_line.empty());
  std::vector<std::string> parts = absl::StrSplit(status_line, absl::MaxSplits(' ', 2));
  if (parts.size() < 2 || !absl::SimpleAtoi(parts[1], &response.status)) {
    return absl::DataLossError(absl::StrCat("bad status line: ", status_line));
  }
  while (true) {
    ASSIGN_OR_RETURN(std::string line, ReadLine());
    if (line.empty()) break;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) return absl::DataLossError("bad header line");
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    response.headers[name] = value;
  }
  body_so_far_.clear();
  return response;
}

absl::StatusOr<std::string> TestConnection::ReadChunk(bool* last) {
  ASSIGN_OR_RETURN(std::string size_line, ReadLine());
  size_t size = 0;
  if (!absl::SimpleHexAtoi(size_line, &size)) return absl::DataLossError("bad chunk size");
  if (size == 0) {
    ASSIGN_OR_RETURN(std::string trailer_end, ReadLine());
    *last = true;
    return std::string();
  }
  ASSIGN_OR_RETURN(std::string data, ReadExactly(size));
  ASSIGN_OR_RETURN(std::string crlf, ReadLine());
  *last = false;
  return data;
}

absl::StatusOr<std::string> TestConnection::ReadBodyUntil(std::string_view marker) {
  while (body_so_far_.find(marker) == std::string::npos) {
    bool last = false;
    ASSIGN_OR_RETURN(std::string data, ReadChunk(&last));
    body_so_far_ += data;
    if (last) return absl::OutOfRangeError("body ended before the marker");
  }
  return body_so_far_;
}

absl::StatusOr<ClientResponse> TestConnection::ReadResponse() {
  ASSIGN_OR_RETURN(ClientResponse response, ReadHead());
  auto it = response.headers.find("content-length");
  if (it != response.headers.end()) {
    size_t length = 0;
    if (!absl::SimpleAtoi(it->second, &length)) return absl::DataLossError("bad content-length");
    ASSIGN_OR_RETURN(response.body, ReadExactly(length));
    return response;
  }
  auto te = response.headers.find("transfer-encoding");
  if (te != response.headers.end() && te->second == "chunked") {
    bool last = false;
    while (!last) {
      ASSIGN_OR_RETURN(std::string data, ReadChunk(&last));
      response.body += data;
    }
    return response;
  }
  while (Fill().ok()) {
  }
  response.body = std::move(buffer_);
  buffer_.clear();
  return response;
}

bool TestConnection::WaitClosed() {
  while (true) {
    absl::Status s = Fill();
    if (absl::IsOutOfRange(s)) return true;
    if (!s.ok()) return false;
    buffer_.clear();
  }
}

std::string FormatRequest(std::string_view method, std::string_view path, std::string_view body,
                          const std::vector<std::pair<std::string, std::string>>& headers,
                          bool close) {
  std::string out = absl::StrCat(Sv(method), " ", Sv(path), " HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  for (const auto& [name, value] : headers) absl::StrAppend(&out, name, ": ", value, "\r\n");
  if (method == "POST") {
    absl::StrAppend(&out, "Content-Type: application/json\r\nContent-Length: ", body.size(), "\r\n");
  }
  if (close) absl::StrAppend(&out, "Connection: close\r\n");
  absl::StrAppend(&out, "\r\n", Sv(body));
  return out;
}

absl::StatusOr<ClientResponse> HttpRequestOnce(
    uint16_t port, std::string_view method, std::string_view path, std::string_view body,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  ASSIGN_OR_RETURN(TestConnection connection, TestConnection::Open(port));
  RETURN_IF_ERROR(connection.Send(FormatRequest(method, path, body, headers, /*close=*/true)));
  return connection.ReadResponse();
}

std::vector<std::string> SseEvents(std::string_view body) {
  std::vector<std::string> events;
  for (absl::string_view piece : absl::StrSplit(Sv(body), "\n\n", absl::SkipEmpty())) {
    const std::string_view block = StdSv(piece);
    constexpr std::string_view kData = "data: ";
    if (block.substr(0, kData.size()) == kData) events.emplace_back(block.substr(kData.size()));
  }
  return events;
}

}  // namespace moed::gateway::testing

// A raw-socket HTTP/1.1 client for the gateway's protocol tests: exact bytes out (bad bodies,
// pipelining, half-sent requests), responses parsed by hand (Content-Length, chunked, or until
// close). Blocking with a receive timeout, so a server bug fails a test instead of hanging it.
#ifndef MOED_DAEMON_GATEWAY_TESTING_HTTP_TEST_CLIENT_H_
#define MOED_DAEMON_GATEWAY_TESTING_HTTP_TEST_CLIENT_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace moed::gateway::testing {

struct ClientResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;                            // de-chunked
};

// An open connection.
class TestConnection {
 public:
  static absl::StatusOr<TestConnection> Open(uint16_t port, int receive_timeout_seconds = 30);
  TestConnection(TestConnection&& other) noexcept;
  TestConnection& operator=(TestConnection&& other) noexcept;
  ~TestConnection();

  absl::Status Send(std::string_view bytes);
  // Reads one response (its whole body).
  absl::StatusOr<ClientResponse> ReadResponse();
  // Reads the head of a response only (status and headers).
  absl::StatusOr<ClientResponse> ReadHead();
  // For a chunked body after ReadHead: the data of the next chunk(s) until `marker` appears in
  // what was read (returns all body text read so far, marker included).
  absl::StatusOr<std::string> ReadBodyUntil(std::string_view marker);
  // True if the peer closed (read returns 0) within the timeout.
  bool WaitClosed();
  void Close();
  int fd() const { return fd_; }

 private:
  explicit TestConnection(int fd) : fd_(fd) {}
  absl::Status Fill();  // reads more bytes into buffer_
  absl::StatusOr<std::string> ReadLine();
  absl::StatusOr<std::string> ReadExactly(size_t n);
  absl::StatusOr<std::string> ReadChunk(bool* last);

  int fd_ = -1;
  std::string buffer_;
  std::string body_so_far_;
  bool eof_ = false;
};

// One request on a fresh connection ("Connection: close" added).
absl::StatusOr<ClientResponse> HttpRequestOnce(
    uint16_t port, std::string_view method, std::string_view path, std::string_view body,
    const std::vector<std::pair<std::string, std::string>>& headers = {});

// The request bytes (Content-Length set from the body).
std::string FormatRequest(std::string_view method, std::string_view path, std::string_view body,
                          const std::vector<std::pair<std::string, std::string>>& headers,
                          bool close = false);

// The "data: ..." payloads of an SSE body, in order ("[DONE]" included); comments skipped.
std::vector<std::string> SseEvents(std::string_view body);

}  // namespace moed::gateway::testing

#endif  // MOED_DAEMON_GATEWAY_TESTING_HTTP_TEST_CLIENT_H_

// The gateway's settings: filled from configs/config.h by GatewayOptionsFromConfig
// (gateway_config.h), or set directly by tests.
#ifndef MOED_DAEMON_GATEWAY_GATEWAY_OPTIONS_H_
#define MOED_DAEMON_GATEWAY_GATEWAY_OPTIONS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace moed::gateway {

struct GatewayOptions {
  std::string host = "127.0.0.1";  // address to listen on (IPv4 or IPv6 literal, or "localhost")
  uint16_t port = 8080;            // 0: any free port (HttpServer::port() tells which)
  int io_threads = 2;              // threads running every connection (not one per connection)
  std::vector<std::string> api_keys;  // empty: no authentication
  uint64_t max_request_body = 4ull << 20;  // larger bodies get 413
  int64_t max_tokens_limit = 32768;        // largest max_tokens a request may ask for
  absl::Duration sse_keepalive = absl::Seconds(15);  // idle SSE streams get ": keep-alive"; 0: off
  absl::Duration request_read_timeout = absl::Seconds(60);  // whole request, headers and body
  absl::Duration idle_timeout = absl::Seconds(120);         // kept-alive connection with no request
  uint64_t max_stream_backlog = 16ull << 20;  // unsent bytes after which a slow client is dropped
  int queue_full_status = 429;   // answer when the scheduler queue is full: 429 or 503
  int retry_after_seconds = 5;   // Retry-After on 429 / 503
  int max_json_depth = 64;       // deeper request bodies get 400 before parsing
  int max_choices = 16;          // largest n (chat) / prompts x n (completions)
  int max_stop_strings = 16;
};

// "host:port", "[v6]:port" -> host and port. InvalidArgument naming `listen` otherwise.
absl::Status ParseListenAddress(std::string_view listen, std::string* host, uint16_t* port);

}  // namespace moed::gateway

#endif  // MOED_DAEMON_GATEWAY_GATEWAY_OPTIONS_H_

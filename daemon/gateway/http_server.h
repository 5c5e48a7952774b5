// The HTTP/1.1 server under the gateway: Boost.Beast parsing on a fixed pool of io_context
// threads, every connection an asynchronous state machine on its own strand, so 1,000 open SSE
// streams cost 1,000 sockets and a little memory, not 1,000 threads. It enforces the body limit
// (413, then a lingering close so the client reads the answer), read and idle timeouts,
// keep-alive and pipelined requests, chunked streaming with SSE keep-alive comments, and drops a
// client whose unsent backlog grows past a bound. While a request is being answered it keeps
// reading, so a disconnect is seen at once and reported to the handler (the gateway cancels the
// generation). Beast stays inside http_server.cc.
#ifndef MOED_DAEMON_GATEWAY_HTTP_SERVER_H_
#define MOED_DAEMON_GATEWAY_HTTP_SERVER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/gateway/gateway_options.h"
#include "daemon/gateway/http_message.h"

namespace moed::gateway {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  int threads = 2;
  uint64_t max_body = 4ull << 20;
  uint32_t max_header = 64 << 10;
  absl::Duration read_timeout = absl::Seconds(60);
  absl::Duration idle_timeout = absl::Seconds(120);
  absl::Duration sse_keepalive = absl::Seconds(15);  // 0: off
  uint64_t max_backlog = 16ull << 20;
  int max_connections = 16384;  // beyond: accepted and closed at once

  static HttpServerOptions FromGateway(const GatewayOptions& options);
};

class HttpServer {
 public:
  // `handler` must outlive the server.
  HttpServer(HttpServerOptions options, HttpHandler* handler);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds, listens and starts the threads; returns the bound port (useful with port 0).
  // Errors: InvalidArgument for a bad host, Unavailable when the address cannot be bound.
  absl::StatusOr<uint16_t> Start();
  // Stops accepting, closes every connection (handlers see their clients gone), joins the
  // threads. Events posted to closed exchanges afterwards are dropped. Idempotent.
  void Stop();

  uint16_t port() const;
  size_t open_connections() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace moed::gateway

#endif  // MOED_DAEMON_GATEWAY_HTTP_SERVER_H_

// The HTTP exchange as the gateway's handlers see it, free of Boost.Beast so that only
// http_server.cc compiles Beast: a parsed request, a response, and the channel a handler answers
// on, at once or later (generation) and either whole or as a Server-Sent Events stream.
#ifndef MOED_DAEMON_GATEWAY_HTTP_MESSAGE_H_
#define MOED_DAEMON_GATEWAY_HTTP_MESSAGE_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moed::gateway {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as sent: path and query
  std::string path;    // target without "?query"
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  std::string body;

  // The first header named `lower_name`, or "" when absent.
  std::string_view Header(std::string_view lower_name) const {
    for (const auto& [name, value] : headers) {
      if (name == lower_name) return value;
    }
    return {};
  }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  std::string body;
};

// One request's way back to its client. Every method is thread-safe; once the exchange has ended
// (Send, EndStream, or the client went away) further calls are ignored.
class ResponseChannel {
 public:
  virtual ~ResponseChannel() = default;
  // The whole response; ends the exchange.
  virtual void Send(HttpResponse response) = 0;
  // Starts a streamed response with `head`'s status and headers (its body is ignored). While a
  // stream is open the server writes an SSE comment (": keep-alive") whenever it has been idle
  // for the keep-alive interval.
  virtual void BeginStream(HttpResponse head) = 0;
  virtual void Write(std::string data) = 0;
  virtual void EndStream() = 0;
  // Runs `fn` on the exchange's executor, serialised with the handler call and with every other
  // posted function; dropped if the server has stopped. Never blocks (callable from the
  // scheduler thread).
  virtual void Post(std::function<void()> fn) = 0;
  // `fn` runs once, on the executor, if the client disconnects before the exchange ends.
  virtual void SetOnClientGone(std::function<void()> fn) = 0;
};

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // Called on the connection's executor for each complete request; answers on `channel` now or
  // later (the connection reads the next request only after the exchange ended).
  virtual void Handle(HttpRequest request, std::shared_ptr<ResponseChannel> channel) = 0;
  // The answer to a request the server rejects before a handler sees it (413 body too large,
  // 400 malformed HTTP, 431 headers too large).
  virtual HttpResponse ProtocolError(int status, std::string_view message) = 0;
};

}  // namespace moed::gateway

#endif  // MOED_DAEMON_GATEWAY_HTTP_MESSAGE_H_

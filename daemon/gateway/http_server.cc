// The Beast HTTP/1.1 server (see http_server.h). The only translation unit of moed that includes
// Boost.Beast/Asio.
//
// Threads: `threads` io_context threads run every connection; each connection is a state
// machine on its own strand. Handlers' channels reach their connection through a weak_ptr:
// from an io thread directly, from any other thread (the scheduler's) by posting under the
// core's mutex, which Stop() closes before the io_context goes away, so nothing ever touches an
// io object after the server stopped.
#include "daemon/gateway/http_server.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/base/log.h"
#include "kernels/base/strings.h"

namespace moed::gateway {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Strand = net::strand<net::io_context::executor_type>;
using ErrorCode = boost::system::error_code;

constexpr size_t kWatchChunk = 4096;
constexpr size_t kMaxPipelined = 1 << 20;   // buffered bytes of a next request while answering
constexpr uint64_t kMaxLingerBytes = 64ull << 20;
constexpr auto kLingerTime = std::chrono::seconds(5);

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(absl::ToChronoNanoseconds(d));
}

// Header values from handlers must not split the response.
std::string HeaderSafe(std::string_view value) {
  std::string out(value);
  for (char& c : out) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  return out;
}

std::string StatusLine(int status) {
  beast::string_view reason = http::obsolete_reason(http::int_to_status(static_cast<unsigned>(status)));
  return absl::StrCat("HTTP/1.1 ", status, " ", std::string(reason.data(), reason.size()), "\r\n");
}

std::string ChunkOf(std::string_view data) {
  return absl::StrCat(absl::Hex(data.size()), "\r\n", Sv(data), "\r\n");
}

class Connection;

// What the server, its connections and their channels share.
struct Core {
  HttpServerOptions options;
  HttpHandler* handler = nullptr;
  // Guards posting from non-io threads; `stopped` closes that door before the io_context dies.
  std::mutex post_mu;
  bool stopped = false;
  // Open connections (Stop closes them; tests count them).
  std::mutex registry_mu;
  std::condition_variable registry_cv;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> connections;
};

// Set on the server's io threads: code running there may touch connections directly.
thread_local const Core* tl_core = nullptr;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Strand strand, tcp::socket socket, std::shared_ptr<Core> core)
      : strand_(std::move(strand)), socket_(std::move(socket)), core_(std::move(core)),
        timer_(strand_), keepalive_(strand_) {}

  ~Connection() {
    std::lock_guard<std::mutex> lock(core_->registry_mu);
    core_->connections.erase(this);
    core_->registry_cv.notify_all();
  }

  const Strand& strand() const { return strand_; }

  void Start() {
    net::dispatch(strand_, [self = shared_from_this()] {
      self->ReadRequest(self->core_->options.read_timeout);
    });
  }

  // --- Channel operations (on the strand; stale exchange ids are ignored) -------------------
  void SendResponse(uint64_t exchange, HttpResponse response);
  void BeginStream(uint64_t exchange, HttpResponse head);
  void WriteStream(uint64_t exchange, std::string data);
  void EndStream(uint64_t exchange);
  void SetOnGone(uint64_t exchange, std::function<void()> fn);
  void Close();

 private:
  enum class Phase { kReading, kExchange, kIdle, kLinger, kClosed };

  void ReadRequest(absl::Duration timeout);
  void OnHeader(ErrorCode ec);
  void OnRead(ErrorCode ec);
  bool HandleReadError(ErrorCode ec);
  void Dispatch();
  void Reject(int status, std::string_view message);
  void StartWatch();
  void OnWatch(ErrorCode ec, size_t n);
  void FinishExchange();
  void Linger();
  void ClientGone();
  void Enqueue(std::string data);
  void Flush();
  void OnWrite(ErrorCode ec);
  void MaybeFinish();
  void ArmTimer(std::chrono::steady_clock::duration d);
  void CancelTimer();
  void StartKeepalive(uint64_t exchange);
  std::string Head(const HttpResponse& response, bool stream, size_t length) const;
  bool Current(uint64_t exchange) const {
    return !closed_ && exchange == exchange_ && exchange_open_ && !ending_;
  }

  Strand strand_;
  tcp::socket socket_;
  std::shared_ptr<Core> core_;
  net::steady_timer timer_;      // read, idle and linger deadlines
  net::steady_timer keepalive_;  // SSE keep-alive ticks
  uint64_t timer_generation_ = 0;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;

  Phase phase_ = Phase::kReading;
  bool closed_ = false;
  uint64_t exchange_ = 0;
  bool exchange_open_ = false;  // a request was handed over and its response has not ended
  bool ending_ = false;         // the response is complete; the queue is draining
  bool streaming_ = false;
  bool chunked_ = false;
  bool keep_alive_ = false;
  bool client_gone_ = false;
  std::function<void()> on_gone_;
  bool watch_pending_ = false;
  bool read_after_watch_ = false;  // the watch read was cancelled to parse buffered bytes
  uint64_t lingered_ = 0;
  bool wrote_since_tick_ = false;

  std::deque<std::string> queue_;
  std::vector<std::string> inflight_;
  bool writing_ = false;
  uint64_t backlog_ = 0;
};

// A ResponseChannel bound to one exchange of one connection.
class ExchangeChannel final : public ResponseChannel {
 public:
  ExchangeChannel(std::shared_ptr<Core> core, std::weak_ptr<Connection> connection,
                  uint64_t exchange)
      : core_(std::move(core)), connection_(std::move(connection)), exchange_(exchange) {}

  void Send(HttpResponse response) override {
    Run([ex = exchange_, r = std::move(response)](Connection& c) mutable {
      c.SendResponse(ex, std::move(r));
    });
  }
  void BeginStream(HttpResponse head) override {
    Run([ex = exchange_, h = std::move(head)](Connection& c) mutable {
      c.BeginStream(ex, std::move(h));
    });
  }
  void Write(std::string data) override {
    Run([ex = exchange_, d = std::move(data)](Connection& c) mutable {
      c.WriteStream(ex, std::move(d));
    });
  }
  void EndStream() override {
    Run([ex = exchange_](Connection& c) { c.EndStream(ex); });
  }
  void Post(std::function<void()> fn) override {
    Run([f = std::move(fn)](Connection&) { f(); });
  }
  void SetOnClientGone(std::function<void()> fn) override {
    Run([ex = exchange_, f = std::move(fn)](Connection& c) mutable {
      c.SetOnGone(ex, std::move(f));
    });
  }

 private:
  template <typename F>
  void Run(F f) {
    if (tl_core == core_.get()) {  // an io thread of this server: the io_context is alive
      std::shared_ptr<Connection> c = connection_.lock();
      if (c == nullptr) return;
      if (c->strand().running_in_this_thread()) {
        f(*c);
        return;
      }
      net::post(c->strand(), [c, f = std::move(f)]() mutable { f(*c); });
      return;
    }
    std::lock_guard<std::mutex> lock(core_->post_mu);
    if (core_->stopped) return;
    std::shared_ptr<Connection> c = connection_.lock();
    if (c == nullptr) return;
    net::post(c->strand(), [c, f = std::move(f)]() mutable { f(*c); });
  }

  std::shared_ptr<Core> core_;
  std::weak_ptr<Connection> connection_;
  uint64_t exchange_;
};

void Connection::ArmTimer(std::chrono::steady_clock::duration d) {
  const uint64_t generation = ++timer_generation_;
  timer_.expires_after(d);
  timer_.async_wait([self = shared_from_this(), generation](ErrorCode ec) {
    if (ec || generation != self->timer_generation_ || self->closed_) return;
    if (self->phase_ != Phase::kExchange) self->Close();
  });
}

void Connection::CancelTimer() {
  ++timer_generation_;
  timer_.cancel();
}

void Connection::ReadRequest(absl::Duration timeout) {
  if (closed_) return;
  phase_ = Phase::kReading;
  parser_.emplace();
  parser_->body_limit(core_->options.max_body);
  parser_->header_limit(core_->options.max_header);
  ArmTimer(ToChrono(timeout));
  http::async_read_header(socket_, buffer_, *parser_,
                          [self = shared_from_this()](ErrorCode ec, size_t) { self->OnHeader(ec); });
}

// Returns true when `ec` ended the read (answered or closed).
bool Connection::HandleReadError(ErrorCode ec) {
  if (!ec) return false;
  CancelTimer();
  if (closed_) return true;
  if (ec == http::error::body_limit) {
    Reject(413, absl::StrCat("The request body exceeds the limit of ", core_->options.max_body,
                             " bytes."));
  } else if (ec == http::error::header_limit) {
    Reject(431, "The request headers are too large.");
  } else if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
             ec != http::error::end_of_stream && ec != http::error::partial_message) {
    Reject(400, absl::StrCat("Malformed HTTP request: ", ec.message(), "."));
  } else {
    Close();  // end of stream, reset, timeout (socket closed by the timer)
  }
  return true;
}

void Connection::OnHeader(ErrorCode ec) {
  if (HandleReadError(ec)) return;
  const beast::string_view expect = parser_->get()[http::field::expect];
  if (parser_->get().version() >= 11 &&
      absl::AsciiStrToLower(Sv(std::string_view(expect.data(), expect.size()))) ==
          "100-continue") {
    Enqueue("HTTP/1.1 100 Continue\r\n\r\n");
  }
  http::async_read(socket_, buffer_, *parser_,
                   [self = shared_from_this()](ErrorCode ec, size_t) { self->OnRead(ec); });
}

void Connection::OnRead(ErrorCode ec) {
  if (HandleReadError(ec)) return;
  CancelTimer();
  Dispatch();
}

void Connection::Dispatch() {
  auto& message = parser_->get();
  HttpRequest request;
  request.method = std::string(message.method_string().data(), message.method_string().size());
  request.target = std::string(message.target().data(), message.target().size());
  request.path = request.target.substr(0, request.target.find('?'));
  for (const auto& field : message) {
    std::string name(field.name_string().data(), field.name_string().size());
    absl::AsciiStrToLower(&name);
    request.headers.emplace_back(std::move(name),
                                 std::string(field.value().data(), field.value().size()));
  }
  request.body = std::move(message.body());
  keep_alive_ = message.keep_alive();
  chunked_ = message.version() >= 11;
  parser_.reset();

  ++exchange_;
  exchange_open_ = true;
  ending_ = false;
  streaming_ = false;
  client_gone_ = false;
  on_gone_ = nullptr;
  phase_ = Phase::kExchange;
  auto channel = std::make_shared<ExchangeChannel>(core_, weak_from_this(), exchange_);
  core_->handler->Handle(std::move(request), std::move(channel));
  if (!closed_ && phase_ == Phase::kExchange && !watch_pending_) StartWatch();
}

void Connection::Reject(int status, std::string_view message) {
  keep_alive_ = false;
  ++exchange_;
  exchange_open_ = true;
  ending_ = false;
  streaming_ = false;
  phase_ = Phase::kExchange;
  SendResponse(exchange_, core_->handler->ProtocolError(status, message));
}

// While a request is answered the socket is still read: EOF or an error means the client left;
// bytes are the next (pipelined) request and stay in the buffer.
void Connection::StartWatch() {
  watch_pending_ = true;
  socket_.async_read_some(buffer_.prepare(kWatchChunk),
                          [self = shared_from_this()](ErrorCode ec, size_t n) {
                            self->OnWatch(ec, n);
                          });
}

void Connection::OnWatch(ErrorCode ec, size_t n) {
  watch_pending_ = false;
  if (closed_) return;
  if (ec == net::error::operation_aborted && read_after_watch_) {
    read_after_watch_ = false;
    ReadRequest(core_->options.read_timeout);
    return;
  }
  if (ec) {
    Close();  // reports the client gone if a response is still open
    return;
  }
  buffer_.commit(n);
  switch (phase_) {
    case Phase::kExchange:
      if (buffer_.size() < kMaxPipelined) StartWatch();
      return;
    case Phase::kIdle:
      CancelTimer();
      ReadRequest(core_->options.read_timeout);
      return;
    case Phase::kLinger:
      lingered_ += n;
      buffer_.consume(buffer_.size());
      if (lingered_ > kMaxLingerBytes) {
        Close();
      } else {
        StartWatch();
      }
      return;
    default:
      return;
  }
}

void Connection::FinishExchange() {
  exchange_open_ = false;
  ending_ = false;
  streaming_ = false;
  on_gone_ = nullptr;
  keepalive_.cancel();
  if (!keep_alive_) {
    Linger();
    return;
  }
  phase_ = Phase::kIdle;
  if (watch_pending_) {
    if (buffer_.size() > 0) {  // a pipelined request is already buffered: parse it now
      read_after_watch_ = true;
      ErrorCode ignored;
      socket_.cancel(ignored);
    } else {
      ArmTimer(ToChrono(core_->options.idle_timeout));
    }
    return;
  }
  ReadRequest(buffer_.size() > 0 ? core_->options.read_timeout : core_->options.idle_timeout);
}

// Close gracefully: stop sending, then read and drop what the client still sends (the rest of
// a refused body) until it closes, so it reads our answer instead of a reset.
void Connection::Linger() {
  phase_ = Phase::kLinger;
  ErrorCode ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  buffer_.consume(buffer_.size());
  ArmTimer(kLingerTime);
  if (!watch_pending_) StartWatch();
}

void Connection::ClientGone() {
  if (!exchange_open_ || client_gone_) return;
  client_gone_ = true;
  exchange_open_ = false;
  std::function<void()> fn = std::move(on_gone_);
  on_gone_ = nullptr;
  if (fn) fn();
}

void Connection::Close() {
  if (closed_) return;
  closed_ = true;
  phase_ = Phase::kClosed;
  ClientGone();
  CancelTimer();
  keepalive_.cancel();
  ErrorCode ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  queue_.clear();
}

std::string Connection::Head(const HttpResponse& response, bool stream, size_t length) const {
  std::string head = StatusLine(response.status);
  absl::StrAppend(&head, "Server: moed\r\nContent-Type: ", HeaderSafe(response.content_type), "\r\n");
  if (!stream) {
    absl::StrAppend(&head, "Content-Length: ", length, "\r\n");
  } else if (chunked_) {
    absl::StrAppend(&head, "Transfer-Encoding: chunked\r\n");
  }
  absl::StrAppend(&head, "Connection: ", keep_alive_ ? "keep-alive" : "close", "\r\n");
  for (const auto& [name, value] : response.headers) {
    absl::StrAppend(&head, HeaderSafe(name), ": ", HeaderSafe(value), "\r\n");
  }
  absl::StrAppend(&head, "\r\n");
  return head;
}

void Connection::SendResponse(uint64_t exchange, HttpResponse response) {
  if (!Current(exchange) || streaming_) return;
  ending_ = true;
  Enqueue(Head(response, false, response.body.size()));
  if (!response.body.empty()) Enqueue(std::move(response.body));
  MaybeFinish();
}

void Connection::BeginStream(uint64_t exchange, HttpResponse head) {
  if (!Current(exchange) || streaming_) return;
  streaming_ = true;
  if (!chunked_) keep_alive_ = false;  // HTTP/1.0: the body ends when the connection does
  Enqueue(Head(head, true, 0));
  StartKeepalive(exchange);
}

void Connection::WriteStream(uint64_t exchange, std::string data) {
  if (!Current(exchange) || !streaming_ || data.empty()) return;
  Enqueue(chunked_ ? ChunkOf(data) : std::move(data));
}

void Connection::EndStream(uint64_t exchange) {
  if (!Current(exchange) || !streaming_) return;
  ending_ = true;
  if (chunked_) Enqueue("0\r\n\r\n");
  MaybeFinish();
}

void Connection::SetOnGone(uint64_t exchange, std::function<void()> fn) {
  if (exchange != exchange_) return;  // that exchange ended normally
  if (client_gone_ || closed_) {
    if (fn) fn();
    return;
  }
  on_gone_ = std::move(fn);
}

void Connection::StartKeepalive(uint64_t exchange) {
  if (core_->options.sse_keepalive <= absl::ZeroDuration()) return;
  wrote_since_tick_ = false;
  keepalive_.expires_after(ToChrono(core_->options.sse_keepalive));
  keepalive_.async_wait([self = shared_from_this(), exchange](ErrorCode ec) {
    if (ec || !self->Current(exchange) || !self->streaming_) return;
    if (!self->wrote_since_tick_) self->WriteStream(exchange, ": keep-alive\n\n");
    self->StartKeepalive(exchange);
  });
}

void Connection::Enqueue(std::string data) {
  if (closed_) return;
  wrote_since_tick_ = true;
  backlog_ += data.size();
  queue_.push_back(std::move(data));
  if (backlog_ > core_->options.max_backlog) {
    MOED_LOG(WARNING) << "http: dropping a client that does not read (" << backlog_
                      << " bytes unsent)";
    Close();
    return;
  }
  if (!writing_) Flush();
}

void Connection::Flush() {
  inflight_.clear();
  while (!queue_.empty()) {
    inflight_.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  std::vector<net::const_buffer> buffers;
  buffers.reserve(inflight_.size());
  for (const std::string& s : inflight_) buffers.emplace_back(s.data(), s.size());
  writing_ = true;
  net::async_write(socket_, buffers, [self = shared_from_this()](ErrorCode ec, size_t) {
    self->OnWrite(ec);
  });
}

void Connection::OnWrite(ErrorCode ec) {
  writing_ = false;
  if (closed_) return;
  if (ec) {
    Close();
    return;
  }
  for (const std::string& s : inflight_) backlog_ -= s.size();
  inflight_.clear();
  if (!queue_.empty()) {
    Flush();
    return;
  }
  MaybeFinish();
}

void Connection::MaybeFinish() {
  if (ending_ && !writing_ && queue_.empty() && !closed_) FinishExchange();
}

}  // namespace

HttpServerOptions HttpServerOptions::FromGateway(const GatewayOptions& options) {
  HttpServerOptions out;
  out.host = options.host;
  out.port = options.port;
  out.threads = options.io_threads;
  out.max_body = options.max_request_body;
  out.read_timeout = options.request_read_timeout;
  out.idle_timeout = options.idle_timeout;
  out.sse_keepalive = options.sse_keepalive;
  out.max_backlog = options.max_stream_backlog;
  return out;
}

struct HttpServer::Impl {
  Impl(HttpServerOptions options, HttpHandler* handler)
      : core(std::make_shared<Core>()),
        ioc(std::max(1, options.threads)),
        accept_strand(net::make_strand(ioc)),
        acceptor(accept_strand),
        retry_timer(accept_strand) {
    core->options = std::move(options);
    core->handler = handler;
  }

  void Accept() {
    auto strand = net::make_strand(ioc);
    acceptor.async_accept(strand, [this, strand](ErrorCode ec, tcp::socket socket) mutable {
      if (!acceptor.is_open()) return;
      if (ec) {
        // Out of descriptors and the like: back off instead of spinning.
        MOED_LOG(WARNING) << "http: accept failed: " << ec.message();
        retry_timer.expires_after(std::chrono::milliseconds(100));
        retry_timer.async_wait([this](ErrorCode e) {
          if (!e) Accept();
        });
        return;
      }
      ErrorCode ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      std::shared_ptr<Connection> connection;
      {
        std::lock_guard<std::mutex> lock(core->registry_mu);
        if (core->connections.size() < static_cast<size_t>(core->options.max_connections)) {
          connection = std::make_shared<Connection>(strand, std::move(socket), core);
          core->connections.emplace(connection.get(), connection);
        }
      }
      if (connection != nullptr) {
        connection->Start();
      } else {
        socket.close(ignored);
      }
      Accept();
    });
  }

  std::shared_ptr<Core> core;
  net::io_context ioc;
  Strand accept_strand;
  tcp::acceptor acceptor;
  net::steady_timer retry_timer;
  std::vector<std::thread> threads;
  uint16_t port = 0;
  bool started = false;
  bool stopped = false;
};

HttpServer::HttpServer(HttpServerOptions options, HttpHandler* handler)
    : impl_(std::make_shared<Impl>(std::move(options), handler)) {}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<uint16_t> HttpServer::Start() {
  Impl& s = *impl_;
  if (s.started) return absl::FailedPreconditionError("http server already started");
  const HttpServerOptions& options = s.core->options;
  ErrorCode ec;
  std::string host = options.host == "localhost" ? "127.0.0.1" : options.host;
  net::ip::address address = net::ip::make_address(host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen host \"", options.host, "\" is not an IP address"));
  }
  tcp::endpoint endpoint(address, options.port);
  auto fail = [&](std::string_view what) {
    return absl::UnavailableError(absl::StrCat("http: cannot ", Sv(what), " ", host, ":",
                                               options.port, ": ", ec.message()));
  };
  s.acceptor.open(endpoint.protocol(), ec);
  if (ec) return fail("open");
  s.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (ec) return fail("configure");
  s.acceptor.bind(endpoint, ec);
  if (ec) return fail("bind");
  s.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen on");
  s.port = s.acceptor.local_endpoint(ec).port();
  s.started = true;
  s.Accept();
  for (int i = 0; i < std::max(1, options.threads); ++i) {
    s.threads.emplace_back([impl = impl_.get()] {
      tl_core = impl->core.get();
      impl->ioc.run();
      tl_core = nullptr;
    });
  }
  return s.port;
}

void HttpServer::Stop() {
  Impl& s = *impl_;
  if (!s.started || s.stopped) return;
  s.stopped = true;
  {
    std::lock_guard<std::mutex> lock(s.core->post_mu);
    s.core->stopped = true;
  }
  net::post(s.accept_strand, [impl = impl_.get()] {
    ErrorCode ignored;
    impl->acceptor.close(ignored);
    impl->retry_timer.cancel();
  });
  std::vector<std::shared_ptr<Connection>> open;
  {
    std::lock_guard<std::mutex> lock(s.core->registry_mu);
    for (auto& [ptr, weak] : s.core->connections) {
      if (auto c = weak.lock()) open.push_back(std::move(c));
    }
  }
  for (auto& c : open) net::post(c->strand(), [c] { c->Close(); });
  open.clear();
  {
    // Closed sockets complete their pending operations, which releases the connections.
    std::unique_lock<std::mutex> lock(s.core->registry_mu);
    s.core->registry_cv.wait_for(lock, std::chrono::seconds(2),
                                 [&] { return s.core->connections.empty(); });
  }
  s.ioc.stop();
  for (std::thread& t : s.threads) t.join();
  s.threads.clear();
}

uint16_t HttpServer::port() const { return impl_->port; }

size_t HttpServer::open_connections() const {
  std::lock_guard<std::mutex> lock(impl_->core->registry_mu);
  return impl_->core->connections.size();
}

}  // namespace moed::gateway

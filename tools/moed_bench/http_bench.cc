// moed-bench http: a concurrency sweep against a running moed's OpenAI-compatible gateway,
// measured the way vLLM's benchmark_serving measures a server. For each concurrency C, C client
// threads (one keep-alive connection each) send streaming /v1/completions requests back to back
// until the level's requests have all finished; each request records its time to first token,
// the gaps between content chunks and its completion tokens (from the usage chunk). A request
// that fails still finishes, so a sick server cannot stall the sweep. One markdown row per level
// goes to stdout; progress and each level's first error go to stderr.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"
#include "nlohmann/json.hpp"
#include "tools/moed_bench/bench.h"

namespace moed::bench {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;  // monotonic: latencies must not jump with the wall clock

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The server: host and port as the URL spells them (for messages and the Host header) and the
// addresses they resolve to.
struct Server {
  std::string host;
  std::string port;
  std::vector<tcp::endpoint> endpoints;
  std::string Address() const {
    return absl::StrContains(host, ':') ? absl::StrCat("[", host, "]:", port)
                                        : absl::StrCat(host, ":", port);
  }
};

struct Options {
  std::string model;
  int64_t prompt_tokens = 128;
  int64_t max_tokens = 64;
  double temperature = 0;  // 0: greedy; above 0 the rows are sampled (OpenAI's default is 1)
  std::string api_key;
  double timeout_s = 300;
};

absl::Status BadUrl(std::string_view url, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("bad URL '", Sv(url), "': ", Sv(why)));
}

// http://HOST[:PORT][/]. Only plain HTTP: moed's gateway does not terminate TLS itself.
absl::Status ParseUrl(std::string_view url, Server* out) {
  constexpr std::string_view kScheme = "http://";
  if (!absl::StartsWithIgnoreCase(Sv(url), Sv(kScheme))) {
    return BadUrl(url, "only http:// is supported (e.g. http://127.0.0.1:8080)");
  }
  std::string_view rest = url.substr(kScheme.size());
  if (const size_t slash = rest.find('/'); slash != std::string_view::npos) {
    // The routes are fixed (/v1/...), so a path would be silently ignored or doubled.
    if (rest.substr(slash) != "/") return BadUrl(url, "give the server's root, without a path");
    rest = rest.substr(0, slash);
  }
  std::string_view host = rest, port = "80";
  if (rest.starts_with('[')) {  // [IPv6]:PORT
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) return BadUrl(url, "unterminated '[' in the host");
    host = rest.substr(1, close - 1);
    const std::string_view after = rest.substr(close + 1);
    if (!after.empty() && !after.starts_with(':')) return BadUrl(url, "expected ':PORT' after ']'");
    if (!after.empty()) port = after.substr(1);
  } else if (const size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  uint32_t number = 0;
  if (host.empty()) return BadUrl(url, "no host");
  if (!absl::SimpleAtoi(Sv(port), &number) || number == 0 || number > 65535) {
    return BadUrl(url, "the port must be a number from 1 to 65535");
  }
  out->host = std::string(host);
  out->port = std::string(port);
  return absl::OkStatus();
}

absl::Status Resolve(Server* server) {
  net::io_context ioc;
  tcp::resolver resolver(ioc);
  beast::error_code ec;
  const auto results = resolver.resolve(server->host, server->port, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", server->Address(), ": ", ec.message()));
  }
  for (const auto& entry : results) server->endpoints.push_back(entry.endpoint());
  return absl::OkStatus();
}

// One keep-alive HTTP/1.1 connection, used by one thread. The calls block, but each runs one of
// asio's asynchronous operations on a private io_context: only those honour tcp_stream's
// deadline (a blocking asio read treats SO_RCVTIMEO's EAGAIN as "poll again", forever).
class Connection {
 public:
  Connection(const Server& server, double timeout_s) : server_(server), timeout_s_(timeout_s) {}

  // Sends `request` and returns the HTTP status; on_body gets each piece of the body as it
  // arrives. The whole exchange must end within the timeout. Errors name the address; the
  // connection is then closed, and the next call opens a new one.
  absl::StatusOr<int> Exchange(const http::request<http::string_body>& request,
                               const std::function<void(std::string_view)>& on_body) {
    const bool reused = open_;
    bool answered = false;
    absl::StatusOr<int> status = Attempt(request, on_body, &answered);
    // A kept-alive connection that the server closed while idle fails before any answer: not
    // the request's fault, so it goes once more on a new connection, as browsers do.
    if (!status.ok() && reused && !answered && absl::IsUnavailable(status.status())) {
      status = Attempt(request, on_body, &answered);
    }
    return status;
  }

 private:
  template <typename Start>
  beast::error_code Await(Start&& start) {
    beast::error_code result;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    ioc_.restart();
    ioc_.run();
    return result;
  }

  absl::Status Fail(std::string_view what, beast::error_code ec) {
    Close();
    if (ec == beast::error::timeout) {
      return absl::DeadlineExceededError(
          absl::StrFormat("%s timed out after %g s (--timeout)", server_.Address(), timeout_s_));
    }
    return absl::UnavailableError(
        absl::StrCat(Sv(what), " ", server_.Address(), ": ", ec.message()));
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    buffer_.clear();
    open_ = false;
  }

  absl::StatusOr<int> Attempt(const http::request<http::string_body>& request,
                              const std::function<void(std::string_view)>& on_body,
                              bool* answered) {
    // One deadline for connect, write and the whole stream: a server that keeps a stream alive
    // with comments but never finishes it must not hold the sweep.
    stream_.expires_after(
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s_)));
    if (!open_) {
      beast::error_code ec =
          Await([&](auto handler) { stream_.async_connect(server_.endpoints, handler); });
      if (ec) return Fail("cannot connect to", ec);
      stream_.socket().set_option(tcp::no_delay(true), ec);  // small requests, latency measured
      open_ = true;
    }
    beast::error_code ec =
        Await([&](auto handler) { http::async_write(stream_, request, handler); });
    if (ec) return Fail("cannot send to", ec);
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());  // a long stream is not an error
    ec = Await([&](auto handler) { http::async_read_header(stream_, buffer_, parser, handler); });
    if (ec) return Fail("no answer from", ec);
    *answered = true;
    char piece[16384];
    while (!parser.is_done()) {
      parser.get().body().data = piece;
      parser.get().body().size = sizeof(piece);
      ec = Await([&](auto handler) { http::async_read_some(stream_, buffer_, parser, handler); });
      if (ec == http::error::need_buffer) ec = {};  // `piece` is full: hand it over, read on
      if (ec) return Fail("the answer broke off from", ec);
      on_body(std::string_view(piece, sizeof(piece) - parser.get().body().size));
    }
    if (!parser.get().keep_alive()) Close();
    return parser.get().result_int();
  }

  const Server& server_;
  const double timeout_s_;
  net::io_context ioc_;
  beast::tcp_stream stream_{ioc_};
  beast::flat_buffer buffer_;
  bool open_ = false;
};

http::request<http::string_body> MakeRequest(http::verb verb, const std::string& target,
                                             const Server& server, const Options& options,
                                             std::string body) {
  http::request<http::string_body> request{verb, target, 11};
  request.set(http::field::host, server.Address());
  request.set(http::field::user_agent, "moed-bench");
  if (!options.api_key.empty()) {
    request.set(http::field::authorization, "Bearer " + options.api_key);
  }
  if (verb == http::verb::post) {
    request.set(http::field::content_type, "application/json");
    request.body() = std::move(body);
  }
  request.prepare_payload();
  return request;
}

// The message of an OpenAI error object ({"error": {"message": ...}}), else the text itself.
std::string ErrorMessage(std::string_view text) {
  const Json body = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_object() && body.contains("error")) {
    const Json& error = body["error"];
    if (error.is_object() && error.contains("message") && error["message"].is_string()) {
      return error["message"].get<std::string>();
    }
    return error.dump();
  }
  return std::string(text.substr(0, 300));
}

// The first model GET /v1/models lists. Also the reachability check: it is the first request.
absl::StatusOr<std::string> FirstModel(const Server& server, const Options& options) {
  Connection connection(server, options.timeout_s);
  std::string body;
  ASSIGN_OR_RETURN(int status, connection.Exchange(
                                   MakeRequest(http::verb::get, "/v1/models", server, options, ""),
                                   [&](std::string_view piece) { body.append(piece); }));
  if (status != 200) {
    return absl::FailedPreconditionError(absl::StrCat("GET /v1/models on ", server.Address(),
                                                      " answered HTTP ", status, ": ",
                                                      ErrorMessage(body)));
  }
  const Json models = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (models.is_object() && models.contains("data") && models["data"].is_array() &&
      !models["data"].empty() && models["data"][0].contains("id") &&
      models["data"][0]["id"].is_string()) {
    return models["data"][0]["id"].get<std::string>();
  }
  return absl::FailedPreconditionError(
      absl::StrCat("GET /v1/models on ", server.Address(), " lists no model; pass --model"));
}

// What one request measured.
struct Sample {
  std::optional<std::string> error;
  double ttft_s = -1;         // to the first chunk with text; -1 when none came
  std::vector<double> itl_s;  // between consecutive chunks with text
  int64_t content_chunks = 0;
  std::optional<int64_t> completion_tokens;  // from the usage chunk
  std::optional<int64_t> prompt_tokens;
  int64_t OutputTokens() const { return completion_tokens.value_or(content_chunks); }
};

// Reads an SSE body as it arrives (an event may span reads) and measures the stream.
class StreamMeter {
 public:
  explicit StreamMeter(Clock::time_point sent) : sent_(sent), last_(sent) {}

  void Feed(std::string_view bytes) {
    const Clock::time_point now = Clock::now();
    pending_.append(bytes);
    size_t start = 0;
    for (size_t end; (end = pending_.find('\n', start)) != std::string::npos; start = end + 1) {
      std::string_view line(pending_.data() + start, end - start);
      if (line.ends_with('\r')) line.remove_suffix(1);
      if (!line.starts_with("data:")) continue;  // blank separators, ": keep-alive" comments
      line.remove_prefix(5);
      if (line.starts_with(' ')) line.remove_prefix(1);
      OnData(line, now);
    }
    pending_.erase(0, start);
  }

  Sample Finish() {
    if (!sample_.error && !done_) sample_.error = "the stream ended without 'data: [DONE]'";
    return std::move(sample_);
  }

 private:
  void OnData(std::string_view data, Clock::time_point now) {
    if (done_) return;
    if (data == "[DONE]") {
      done_ = true;
      return;
    }
    const Json event = Json::parse(data, nullptr, /*allow_exceptions=*/false);
    if (!event.is_object()) return Stop(absl::StrCat("malformed event: ", Sv(data.substr(0, 200))));
    if (event.contains("error")) return Stop(ErrorMessage(data));
    const auto choices = event.find("choices");
    if (choices != event.end() && choices->is_array() && !choices->empty()) {
      const auto text = (*choices)[0].find("text");
      if (text != (*choices)[0].end() && text->is_string() &&
          !text->get_ref<const std::string&>().empty()) {
        if (sample_.content_chunks++ == 0) {
          sample_.ttft_s = Seconds(now - sent_);
        } else {
          sample_.itl_s.push_back(Seconds(now - last_));
        }
        last_ = now;
      }
    }
    const auto usage = event.find("usage");
    if (usage != event.end() && usage->is_object()) {
      if (usage->contains("completion_tokens") &&
          (*usage)["completion_tokens"].is_number_integer()) {
        sample_.completion_tokens = (*usage)["completion_tokens"].get<int64_t>();
      }
      if (usage->contains("prompt_tokens") && (*usage)["prompt_tokens"].is_number_integer()) {
        sample_.prompt_tokens = (*usage)["prompt_tokens"].get<int64_t>();
      }
    }
  }

  void Stop(std::string error) {
    sample_.error = std::move(error);
    done_ = true;
  }

  const Clock::time_point sent_;
  Clock::time_point last_;
  std::string pending_;
  bool done_ = false;
  Sample sample_;
};

// About `tokens` prompt tokens: " hello" is one token in Qwen's (and most BPE) vocabularies; the
// exact count comes back in the usage chunk. The leading number makes every prompt of the sweep
// unique, so moed's prefix cache cannot turn a prefill into a cache hit.
std::string Prompt(int64_t id, int64_t tokens) {
  std::string prompt = absl::StrCat(id, ":");
  for (int64_t i = 0; i < std::max<int64_t>(1, tokens - 3); ++i) prompt += " hello";
  return prompt;
}

Sample RunRequest(Connection& connection, const Server& server, const Options& options,
                  int64_t id) {
  const Json body = {{"model", options.model},
                     {"prompt", Prompt(id, options.prompt_tokens)},
                     {"max_tokens", options.max_tokens},
                     {"stream", true},
                     {"stream_options", {{"include_usage", true}}},
                     {"temperature", options.temperature},
                     // vLLM's extension; moed ignores fields it does not know, and the
                     // completion token count comes from usage either way.
                     {"ignore_eos", true}};
  const http::request<http::string_body> request =
      MakeRequest(http::verb::post, "/v1/completions", server, options, body.dump());
  StreamMeter meter(Clock::now());
  std::string head;  // the start of the body, for the message of a non-200 answer
  absl::StatusOr<int> status = connection.Exchange(request, [&](std::string_view piece) {
    if (head.size() < 4096) head.append(piece.substr(0, 4096 - head.size()));
    meter.Feed(piece);
  });
  Sample sample = meter.Finish();
  if (!status.ok()) {
    sample.error = std::string(status.status().message());
  } else if (*status != 200) {
    sample.error = absl::StrCat("HTTP ", *status, ": ", ErrorMessage(head));
  }
  return sample;
}

struct Level {
  int64_t concurrency = 0;
  std::vector<Sample> samples;
  double wall_s = 0;
};

// `first_id` numbers this level's prompts; the sweep keeps them unique across levels.
Level RunLevel(const Server& server, const Options& options, int64_t concurrency, int64_t requests,
               int64_t first_id) {
  Level level{concurrency, std::vector<Sample>(requests), 0};
  std::atomic<int64_t> next{0};
  // Each sample slot is written by the one thread that took its index, and read after join.
  auto client = [&] {
    Connection connection(server, options.timeout_s);
    for (int64_t i; (i = next.fetch_add(1)) < requests;) {
      level.samples[i] = RunRequest(connection, server, options, first_id + i);
    }
  };
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> threads;
  for (int64_t c = 0; c < concurrency; ++c) threads.emplace_back(client);
  for (std::thread& t : threads) t.join();
  level.wall_s = Seconds(Clock::now() - start);
  return level;
}

// numpy's default (linear) percentile; q in [0, 1].
double Percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double position = q * static_cast<double>(values.size() - 1);
  const size_t low = static_cast<size_t>(std::floor(position));
  const size_t high = std::min(low + 1, values.size() - 1);
  return values[low] + (values[high] - values[low]) * (position - static_cast<double>(low));
}

std::string Ms(const std::vector<double>& seconds, double q) {
  return seconds.empty() ? "-" : absl::StrFormat("%.2f", Percentile(seconds, q) * 1e3);
}

constexpr std::string_view kHeader =
    "| concurrency | requests | errors | prompt tokens | output tokens/s | TTFT p50 ms | TTFT p95 "
    "ms "
    "| ITL p50 ms | ITL p95 ms | req/s |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";

// Latencies and prompt sizes come from the requests that succeeded; output tokens count what
// every request received, as the server did that work; req/s counts successes only.
std::string Row(const Level& level) {
  std::vector<double> ttft, itl;
  int64_t errors = 0, tokens = 0, prompt_sum = 0, prompt_count = 0;
  for (const Sample& s : level.samples) {
    tokens += s.OutputTokens();
    if (s.error) {
      ++errors;
      continue;
    }
    if (s.ttft_s >= 0) ttft.push_back(s.ttft_s);
    itl.insert(itl.end(), s.itl_s.begin(), s.itl_s.end());
    if (s.prompt_tokens) {
      prompt_sum += *s.prompt_tokens;
      ++prompt_count;
    }
  }
  const int64_t ok = static_cast<int64_t>(level.samples.size()) - errors;
  const std::string prompt =
      prompt_count == 0
          ? "-"
          : absl::StrCat(std::llround(static_cast<double>(prompt_sum) / prompt_count));
  return absl::StrFormat("| %d | %d | %d | %s | %.1f | %s | %s | %s | %s | %.2f |",
                         level.concurrency, level.samples.size(), errors, prompt,
                         tokens / level.wall_s, Ms(ttft, 0.5), Ms(ttft, 0.95), Ms(itl, 0.5),
                         Ms(itl, 0.95), ok / level.wall_s);
}

// The level's failed requests; prints its first error, and keeps the sweep's first in
// `first_error` (left as it is when already set).
int64_t CountErrors(const Level& level, std::string* first_error) {
  int64_t errors = 0;
  for (const Sample& s : level.samples) {
    if (!s.error) continue;
    if (errors++ == 0) {
      std::fprintf(stderr, "concurrency %lld: first error: %s\n",
                   static_cast<long long>(level.concurrency), s.error->c_str());
    }
    if (first_error->empty()) *first_error = *s.error;
  }
  return errors;
}

absl::StatusOr<int64_t> PositiveFlag(const tool::Args& args, std::string_view flag,
                                     int64_t default_value) {
  ASSIGN_OR_RETURN(int64_t value, args.GetInt(flag, default_value));
  if (value < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", Sv(flag), " must be at least 1, got ", value));
  }
  return value;
}

absl::StatusOr<std::vector<int64_t>> ConcurrencyLevels(const std::string& text) {
  std::vector<int64_t> levels;
  for (absl::string_view piece : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int64_t c = 0;
    if (!absl::SimpleAtoi(piece, &c) || c < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--concurrency: '", piece, "' is not a positive number"));
    }
    levels.push_back(c);
  }
  if (levels.empty()) {
    return absl::InvalidArgumentError("--concurrency needs at least one level, e.g. 1,16,64");
  }
  return levels;
}

}  // namespace

absl::Status RunHttpBench(const tool::Args& args) {
  RETURN_IF_ERROR(args.CheckKnown(
      {"model", "concurrency", "requests", "prompt-tokens", "max-tokens", "temperature", "api-key", "timeout"}));
  if (args.positional().size() != 2) {
    return absl::InvalidArgumentError(
        "usage: moed-bench http URL [flags], e.g. http://127.0.0.1:8080");
  }
  Server server;
  RETURN_IF_ERROR(ParseUrl(args.positional()[1], &server));
  ASSIGN_OR_RETURN(std::vector<int64_t> levels,
                   ConcurrencyLevels(args.Get("concurrency").value_or("1,16,64")));
  std::optional<int64_t> requests;
  if (args.Has("requests")) {
    ASSIGN_OR_RETURN(requests, PositiveFlag(args, "requests", 1));
  }
  Options options;
  ASSIGN_OR_RETURN(options.prompt_tokens,
                   PositiveFlag(args, "prompt-tokens", options.prompt_tokens));
  ASSIGN_OR_RETURN(options.max_tokens, PositiveFlag(args, "max-tokens", options.max_tokens));
  ASSIGN_OR_RETURN(options.temperature, args.GetDouble("temperature", options.temperature));
  if (!(options.temperature >= 0 && options.temperature <= 2)) {
    return absl::InvalidArgumentError("--temperature must be in [0, 2]");
  }
  ASSIGN_OR_RETURN(options.timeout_s, args.GetDouble("timeout", options.timeout_s));
  // The upper bound keeps the deadline representable as a steady_clock duration.
  if (!(options.timeout_s > 0 && options.timeout_s <= 1e6)) {
    return absl::InvalidArgumentError("--timeout must be a number of seconds in (0, 1000000]");
  }
  options.api_key = args.Get("api-key").value_or("");

  RETURN_IF_ERROR(Resolve(&server));
  ASSIGN_OR_RETURN(std::string first_model, FirstModel(server, options));
  options.model = args.Get("model").value_or(first_model);
  std::fprintf(
      stderr,
      "moed-bench http: model '%s' at %s; prompts of ~%lld tokens, %lld output tokens each, temperature %g\n",
      options.model.c_str(), server.Address().c_str(),
      static_cast<long long>(options.prompt_tokens), static_cast<long long>(options.max_tokens), options.temperature);

  std::printf("%s", std::string(kHeader).c_str());
  std::fflush(stdout);
  int64_t next_id = 0, total = 0, failed = 0;
  std::string first_error;
  for (int64_t c : levels) {
    // At least one request per client, so every connection of the level carries load.
    const int64_t n = std::max(c, requests.value_or(4 * c));
    std::fprintf(stderr, "concurrency %lld: %lld requests...\n", static_cast<long long>(c),
                 static_cast<long long>(n));
    const Level level = RunLevel(server, options, c, n, next_id);
    next_id += n;
    const int64_t errors = CountErrors(level, &first_error);
    std::fprintf(stderr, "concurrency %lld: %lld requests in %.2f s, %lld failed\n",
                 static_cast<long long>(c), static_cast<long long>(n), level.wall_s,
                 static_cast<long long>(errors));
    std::printf("%s\n", Row(level).c_str());
    std::fflush(stdout);
    total += n;
    failed += errors;
  }
  // Some errors are a finding (overload answered with 429); all of them mean no measurement.
  if (failed == total) {
    return absl::UnavailableError(absl::StrCat("every request failed; the first: ", first_error));
  }
  return absl::OkStatus();
}

}  // namespace moed::bench

// Validate(): every range and every combination the daemon relies on, checked once so that the
// code that reads a Config never re-checks it. The first problem wins; its message starts with the
// key's full path ("scheduler.prefill_chunk: ..."), which ParseConfig turns into a line number.
// Also reads the secret files (API keys, admin token): a file that is named but unreadable or
// empty is a configuration error, not something to discover at the first request.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "configs/config.h"
#include "configs/config_internal.h"
#include "configs/config_units.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::config {
namespace {

using internal::KeyError;

constexpr uint64_t kMaxSecretFileBytes = 1 << 20;
constexpr size_t kMaxUnixSocketPath = 107;  // sun_path is 108 bytes with the terminating NUL

absl::Status Error(std::string_view path, std::string_view message) {
  return absl::InvalidArgumentError(KeyError(path, message));
}

// lo <= v <= hi, with the message the common cases deserve ("must be positive, got 0").
absl::Status CheckRange(std::string_view path, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo) {
    if (lo == 1) return Error(path, absl::StrCat("must be positive, got ", v));
    if (lo == 0) return Error(path, absl::StrCat("must not be negative, got ", v));
    return Error(path, absl::StrCat("must be at least ", lo, ", got ", v));
  }
  if (v > hi) return Error(path, absl::StrCat("must be at most ", hi, ", got ", v));
  return absl::OkStatus();
}

absl::Status CheckSize(std::string_view path, uint64_t v, uint64_t lo, uint64_t hi) {
  if (v < lo) {
    return Error(path, absl::StrCat("must be at least ", FormatByteSize(lo), ", got ",
                                    FormatByteSize(v)));
  }
  if (v > hi) {
    return Error(path, absl::StrCat("must be at most ", FormatByteSize(hi), ", got ",
                                    FormatByteSize(v)));
  }
  return absl::OkStatus();
}

// lo <= d <= hi and finite; `zero_ok` admits 0 below lo (0 meaning "off").
absl::Status CheckDuration(std::string_view path, absl::Duration d, absl::Duration lo,
                           absl::Duration hi, bool zero_ok = false) {
  if (zero_ok && d == absl::ZeroDuration()) return absl::OkStatus();
  if (d < lo || d > hi) {
    std::string range = absl::StrCat("between ", FormatDurationText(lo), " and ",
                                     FormatDurationText(hi), zero_ok ? " (or 0 for off)" : "");
    return Error(path, absl::StrCat("must be ", range, ", got ", FormatDurationText(d)));
  }
  return absl::OkStatus();
}

// host:port, "[v6]:port"; port 0 asks the kernel for a free one.
absl::Status CheckHostPort(std::string_view path, std::string_view value) {
  auto bad = [&](std::string_view why) {
    return Error(path, absl::StrCat("expected host:port such as '127.0.0.1:8080' or '[::1]:8080', "
                                    "got '", Sv(value), "' (", Sv(why), ")"));
  };
  size_t colon = value.rfind(':');
  if (colon == std::string_view::npos) return bad("no port");
  std::string_view host = value.substr(0, colon);
  std::string_view port = value.substr(colon + 1);
  if (!host.empty() && host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return bad("unbalanced brackets");
    for (char c : host.substr(1, host.size() - 2)) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') {
        return bad("not an IPv6 address inside the brackets");
      }
    }
  } else {
    if (host.empty()) return bad("no host; use 0.0.0.0 to listen on every interface");
    if (host.find(':') != std::string_view::npos) return bad("IPv6 addresses go in brackets");
    for (char c : host) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' &&
          c != '_') {
        return bad("invalid character in the host");
      }
    }
  }
  uint32_t number = 0;
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string_view::npos ||
      !absl::SimpleAtoi(Sv(port), &number) || number > 65535) {
    return bad("the port must be a number from 0 to 65535");
  }
  return absl::OkStatus();
}

// A secret: printable ASCII without spaces (it travels in an HTTP header), not the placeholder
// a redacted dump writes.
absl::Status CheckSecret(std::string_view path, std::string_view secret) {
  if (secret.empty()) return Error(path, "must not be empty");
  if (secret == kRedacted) {
    return Error(path, "is the placeholder of a redacted dump; write the real secret here");
  }
  for (char c : secret) {
    if (c <= 0x20 || c >= 0x7f) {
      return Error(path, "must be printable ASCII without spaces");
    }
  }
  return absl::OkStatus();
}

// The non-empty lines of a small regular file, trimmed, '#' comment lines skipped. `line_numbers`
// receives each kept line's 1-based number.
absl::StatusOr<std::vector<std::string>> ReadSecretLines(std::string_view path_key,
                                                        const std::string& file,
                                                        std::vector<int>* line_numbers) {
  auto cannot = [&](int err) {
    return Error(path_key, absl::StrCat("cannot read '", file, "': ", std::strerror(err)));
  };
  struct stat st{};
  if (::stat(file.c_str(), &st) != 0) return cannot(errno);
  if (!S_ISREG(st.st_mode)) {
    return Error(path_key, absl::StrCat("'", file, "' is not a regular file"));
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxSecretFileBytes) {
    return Error(path_key, absl::StrCat("'", file, "' is larger than 1MiB"));
  }
  FILE* f = std::fopen(file.c_str(), "rb");
  if (f == nullptr) return cannot(errno);
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t n = std::fread(text.data(), 1, text.size(), f);
  int read_errno = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (read_errno != 0) return cannot(read_errno);
  text.resize(n);
  std::vector<std::string> lines;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    lines.emplace_back(line);
    line_numbers->push_back(number);
  }
  if (lines.empty()) return Error(path_key, absl::StrCat("'", file, "' holds no secret"));
  return lines;
}

absl::Status ValidateServer(const ServerOptions& s) {
  RETURN_IF_ERROR(CheckHostPort("server.listen", s.listen));
  RETURN_IF_ERROR(ResolveApiKeys(s).status());
  RETURN_IF_ERROR(CheckSize("server.max_request_body", s.max_request_body, kKiB, kGiB));
  RETURN_IF_ERROR(CheckRange("server.max_tokens_limit", s.max_tokens_limit, 1, int64_t{1} << 24));
  RETURN_IF_ERROR(CheckDuration("server.sse_keepalive", s.sse_keepalive, absl::Milliseconds(100),
                                absl::Hours(1), /*zero_ok=*/true));
  return absl::OkStatus();
}

absl::Status ValidateAdmin(const AdminOptions& a) {
  if (a.socket.empty() && a.tcp_listen.empty()) {
    return Error("admin.socket", "must not be empty unless admin.tcp_listen is set");
  }
  if (a.socket.size() > kMaxUnixSocketPath) {
    return Error("admin.socket", absl::StrCat("is ", a.socket.size(), " bytes long; a Unix socket "
                                              "path holds at most ", kMaxUnixSocketPath));
  }
  if (!a.token.empty() && !a.token_file.empty()) {
    return Error("admin.token_file", "cannot be set together with admin.token: pick one");
  }
  ASSIGN_OR_RETURN(std::string token, ResolveAdminToken(a));
  if (!a.tcp_listen.empty()) {
    RETURN_IF_ERROR(CheckHostPort("admin.tcp_listen", a.tcp_listen));
    if (token.empty()) {
      return Error("admin.tcp_listen", "needs admin.token or admin.token_file: the TCP endpoint "
                                       "is never open without a token");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateModel(const ModelOptions& m) {
  if (m.variant.has_value() && m.budget_mb.has_value()) {
    return Error("model.budget_mb", absl::StrCat("cannot be set together with model.variant (",
                                                 *m.variant, "): a fixed phase or a budget"));
  }
  if (m.budget_mb.has_value() && *m.budget_mb == 0) {
    return Error("model.budget_mb", "must be positive, got 0 (leave it out for phase mode)");
  }
  if (m.budget_mb.has_value() && *m.budget_mb > (uint64_t{1} << 30)) {
    return Error("model.budget_mb", absl::StrCat("must be at most ", uint64_t{1} << 30,
                                                 " (1 PiB), got ", *m.budget_mb));
  }
  if (m.path.empty()) {
    if (m.variant.has_value() || m.budget_mb.has_value() || !m.chat_template_file.empty() ||
        !m.name.empty()) {
      return Error("model.path", "must be set when other model keys are");
    }
  }
  if (m.name.size() > 256) return Error("model.name", "must be at most 256 bytes long");
  for (char c : m.name) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return Error("model.name", "must not contain spaces or control characters");
    }
  }
  if (!m.chat_template_file.empty()) {
    struct stat st{};
    if (::stat(m.chat_template_file.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
        ::access(m.chat_template_file.c_str(), R_OK) != 0) {
      return Error("model.chat_template_file",
                   absl::StrCat("cannot read '", m.chat_template_file, "'"));
    }
  }
  RETURN_IF_ERROR(CheckRange("model.context_length", m.context_length, 0, int64_t{1} << 24));
  return absl::OkStatus();
}

// "cpu", "cuda:N" or "level_zero:N". Returns the backend or an error naming `path`.
absl::StatusOr<Backend> ParseDeviceId(std::string_view path, std::string_view id) {
  if (id == "cpu") return Backend::kCpu;
  size_t colon = id.find(':');
  std::string_view backend = id.substr(0, colon == std::string_view::npos ? id.size() : colon);
  std::string_view index =
      colon == std::string_view::npos ? std::string_view() : id.substr(colon + 1);
  uint32_t n = 0;
  bool index_ok = !index.empty() && index.size() <= 4 &&
                  index.find_first_not_of("0123456789") == std::string_view::npos &&
                  absl::SimpleAtoi(Sv(index), &n);
  if (index_ok && backend == "cuda") return Backend::kCuda;
  if (index_ok && backend == "level_zero") return Backend::kLevelZero;
  return Error(path, absl::StrCat("expected a device id 'cpu', 'cuda:N' or 'level_zero:N', got '",
                                  Sv(id), "'"));
}

absl::Status ValidateDevices(const DeviceOptions& d) {
  if (d.backends.empty()) return Error("devices.backends", "must list at least one backend");
  std::set<Backend> backends;
  for (size_t i = 0; i < d.backends.size(); ++i) {
    if (!backends.insert(d.backends[i]).second) {
      return Error(absl::StrCat("devices.backends[", i, "]"),
                   absl::StrCat("'", Sv(BackendName(d.backends[i])), "' is listed twice"));
    }
  }
  auto check_id = [&](std::string_view path, std::string_view id) -> absl::Status {
    ASSIGN_OR_RETURN(Backend backend, ParseDeviceId(path, id));
    if (backends.count(backend) == 0) {
      return Error(path, absl::StrCat("'", Sv(id), "' is a ", Sv(BackendName(backend)),
                                      " device but devices.backends does not list ",
                                      Sv(BackendName(backend))));
    }
    return absl::OkStatus();
  };
  std::set<std::string> ids;
  for (size_t i = 0; i < d.ids.size(); ++i) {
    std::string path = absl::StrCat("devices.ids[", i, "]");
    RETURN_IF_ERROR(check_id(path, d.ids[i]));
    if (!ids.insert(d.ids[i]).second) {
      return Error(path, absl::StrCat("'", d.ids[i], "' is listed twice"));
    }
  }
  for (const auto& [id, bytes] : d.budgets) {
    std::string path = absl::StrCat("devices.budgets[", id, "]");
    RETURN_IF_ERROR(check_id(path, id));
    if (!ids.empty() && ids.count(id) == 0) {
      return Error(path, absl::StrCat("'", id, "' is not among devices.ids"));
    }
    RETURN_IF_ERROR(CheckSize(path, bytes, 64 * kMiB, uint64_t{1} << 50));
  }
  RETURN_IF_ERROR(CheckSize("devices.reserve", d.reserve, 0, uint64_t{1} << 40));
  return absl::OkStatus();
}

absl::Status ValidateWorkers(const WorkerOptions& w) {
  if (!w.binary.empty() && ::access(w.binary.c_str(), X_OK) != 0) {
    return Error("workers.binary", absl::StrCat("'", w.binary, "' is not an executable file: ",
                                                std::strerror(errno)));
  }
  RETURN_IF_ERROR(CheckRange("workers.cpu_stages", w.cpu_stages, 1, 64));
  RETURN_IF_ERROR(CheckRange("workers.threads", w.threads, 0, 1024));
  RETURN_IF_ERROR(CheckDuration("workers.health_check_interval", w.health_check_interval,
                                absl::Milliseconds(10), absl::Hours(1)));
  RETURN_IF_ERROR(CheckDuration("workers.health_check_timeout", w.health_check_timeout,
                                absl::Milliseconds(10), absl::Hours(1)));
  RETURN_IF_ERROR(CheckDuration("workers.restart_backoff_initial", w.restart_backoff_initial,
                                absl::Milliseconds(1), absl::Hours(1)));
  RETURN_IF_ERROR(CheckDuration("workers.restart_backoff_max", w.restart_backoff_max,
                                absl::Milliseconds(1), absl::Hours(24)));
  if (w.restart_backoff_max < w.restart_backoff_initial) {
    return Error("workers.restart_backoff_max",
                 absl::StrCat("must not be below workers.restart_backoff_initial (",
                              FormatDurationText(w.restart_backoff_initial), "), got ",
                              FormatDurationText(w.restart_backoff_max)));
  }
  return absl::OkStatus();
}

absl::Status ValidateScheduler(const SchedulerOptions& s) {
  RETURN_IF_ERROR(CheckRange("scheduler.max_running", s.max_running, 1, 4096));
  RETURN_IF_ERROR(CheckRange("scheduler.max_batch_tokens", s.max_batch_tokens, 1, 1 << 20));
  RETURN_IF_ERROR(CheckRange("scheduler.prefill_chunk", s.prefill_chunk, 1, 1 << 20));
  if (s.prefill_chunk > s.max_batch_tokens) {
    return Error("scheduler.prefill_chunk",
                 absl::StrCat("must not exceed scheduler.max_batch_tokens (", s.max_batch_tokens,
                              "), got ", s.prefill_chunk));
  }
  if (s.max_batch_tokens < s.max_running) {
    return Error("scheduler.max_batch_tokens",
                 absl::StrCat("must be at least scheduler.max_running (", s.max_running,
                              ") so that every running sequence decodes each step, got ",
                              s.max_batch_tokens));
  }
  RETURN_IF_ERROR(CheckRange("scheduler.queue_capacity", s.queue_capacity, 0, 1 << 20));
  if (s.queue_full_status != 429 && s.queue_full_status != 503) {
    return Error("scheduler.queue_full_status",
                 absl::StrCat("must be 429 or 503, got ", s.queue_full_status));
  }
  RETURN_IF_ERROR(CheckDuration("scheduler.drain_timeout", s.drain_timeout, absl::ZeroDuration(),
                                absl::Hours(24)));
  RETURN_IF_ERROR(CheckDuration("scheduler.retry_after", s.retry_after, absl::Seconds(1),
                                absl::Hours(1)));
  if (absl::Trunc(s.retry_after, absl::Seconds(1)) != s.retry_after) {
    return Error("scheduler.retry_after",
                 absl::StrCat("must be whole seconds (the Retry-After header counts seconds), got ",
                              FormatDurationText(s.retry_after)));
  }
  return absl::OkStatus();
}

absl::Status ValidateCache(const CacheOptions& c) {
  RETURN_IF_ERROR(CheckRange("cache.kv_block_size", c.kv_block_size, 1, 4096));
  RETURN_IF_ERROR(CheckRange("cache.kv_blocks", c.kv_blocks, 0, int64_t{1} << 30));
  if (!(c.kv_memory_fraction > 0 && c.kv_memory_fraction <= 1)) {
    return Error("cache.kv_memory_fraction",
                 absl::StrCat("must be in (0, 1], got ", FormatDouble(c.kv_memory_fraction)));
  }
  if (c.kv_blocks > 0 && c.kv_memory_fraction != kDefaultKvMemoryFraction) {
    return Error("cache.kv_memory_fraction",
                 absl::StrCat("cannot be set together with cache.kv_blocks (", c.kv_blocks,
                              "): size the KV pool one way"));
  }
  RETURN_IF_ERROR(CheckRange("cache.prefix_cache_snapshots", c.prefix_cache_snapshots,
                             c.prefix_cache ? 1 : 0, 1 << 16));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ResolveApiKeys(const ServerOptions& server) {
  std::vector<std::string> keys;
  for (size_t i = 0; i < server.api_keys.size(); ++i) {
    RETURN_IF_ERROR(CheckSecret(absl::StrCat("server.api_keys[", i, "]"), server.api_keys[i]));
    keys.push_back(server.api_keys[i]);
  }
  if (!server.api_key_file.empty()) {
    std::vector<int> numbers;
    ASSIGN_OR_RETURN(std::vector<std::string> lines,
                     ReadSecretLines("server.api_key_file", server.api_key_file, &numbers));
    for (size_t i = 0; i < lines.size(); ++i) {
      absl::Status s = CheckSecret("server.api_key_file", lines[i]);
      if (!s.ok()) {
        return Error("server.api_key_file",
                     absl::StrCat("'", server.api_key_file, "' line ", numbers[i], ": a key ",
                                  lines[i] == kRedacted ? "is the redaction placeholder"
                                                        : "must be printable ASCII without spaces"));
      }
      keys.push_back(std::move(lines[i]));
    }
  }
  return keys;
}

absl::StatusOr<std::string> ResolveAdminToken(const AdminOptions& admin) {
  if (!admin.token.empty()) {
    RETURN_IF_ERROR(CheckSecret("admin.token", admin.token));
    return admin.token;
  }
  if (admin.token_file.empty()) return std::string();
  std::vector<int> numbers;
  ASSIGN_OR_RETURN(std::vector<std::string> lines,
                   ReadSecretLines("admin.token_file", admin.token_file, &numbers));
  if (!CheckSecret("admin.token_file", lines[0]).ok()) {
    return Error("admin.token_file",
                 absl::StrCat("'", admin.token_file, "' line ", numbers[0],
                              ": the token must be printable ASCII without spaces"));
  }
  return lines[0];
}

absl::Status Validate(const Config& config) {
  RETURN_IF_ERROR(ValidateServer(config.server));
  RETURN_IF_ERROR(ValidateAdmin(config.admin));
  RETURN_IF_ERROR(ValidateModel(config.model));
  RETURN_IF_ERROR(ValidateDevices(config.devices));
  RETURN_IF_ERROR(ValidateWorkers(config.workers));
  RETURN_IF_ERROR(ValidateScheduler(config.scheduler));
  RETURN_IF_ERROR(ValidateCache(config.cache));
  return absl::OkStatus();
}

}  // namespace moed::config

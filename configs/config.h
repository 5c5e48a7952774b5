// The configuration of the `moed` daemon: one YAML file, parsed once into the plain structs below
// and validated, after which no YAML node exists. The structs are grouped the way Triton groups
// its server options; every member has its default in place, so `Config{}` is the configuration
// of an empty file. Keys in YAML are the member names (`scheduler.max_batch_tokens`); sizes take
// human forms ("512MiB", "2GiB"), durations take "30s", "250ms", "1m30s". Unknown keys, wrong
// types and impossible values are errors that name the key by its full path and, when the YAML
// is at hand, its line and column. configs/README.md lists the keys; configs/moed.yaml is the
// annotated default.
#ifndef MOED_CONFIGS_CONFIG_H_
#define MOED_CONFIGS_CONFIG_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kernels/base/log.h"

namespace moed::config {

inline constexpr uint64_t kKiB = uint64_t{1} << 10;
inline constexpr uint64_t kMiB = uint64_t{1} << 20;
inline constexpr uint64_t kGiB = uint64_t{1} << 30;

// The OpenAI-compatible REST gateway.
struct ServerOptions {
  std::string listen = "127.0.0.1:8080";  // host:port ("[::1]:8080" for IPv6; port 0: any free port)
  // Bearer keys accepted on every endpoint except /health; both lists are merged. No key at all:
  // the API is open. The file holds one key per line ('#' starts a comment line).
  std::vector<std::string> api_keys;
  std::string api_key_file;
  uint64_t max_request_body = 4 * kMiB;  // larger bodies get 413
  int64_t max_tokens_limit = 32768;      // largest max_tokens a request may ask for
  absl::Duration sse_keepalive = absl::Seconds(15);  // SSE comment interval; 0 disables
  bool operator==(const ServerOptions&) const = default;
};

// The gRPC admin service (moectl). The Unix socket is always the primary endpoint; TCP is
// optional and then needs a token (inline or from a file, not both).
struct AdminOptions {
  std::string socket = "/run/moed/admin.sock";
  std::string tcp_listen;  // host:port, empty: no TCP endpoint
  std::string token;
  std::string token_file;
  bool operator==(const AdminOptions&) const = default;
};

enum class ReasoningFormat {
  kSeparate,  // reasoning in message.reasoning_content ("deepseek" in llama-server)
  kRaw,       // everything in content, tags included ("none" in llama-server)
};

// The model served at start-up. An empty path starts moed without a model (the admin API loads
// one). The model file is opened by the planner, not here, so Validate() does not require it.
struct ModelOptions {
  std::string path;  // GGUF file
  std::string name;  // id in /v1/models; empty: the file name without ".gguf"
  // Phase Twin overrides (general.tensor_variant.*): a fixed phase (variant index) or a total
  // weight budget in MiB, never both. Neither: the planner picks the phase from the device count.
  std::optional<uint32_t> variant;
  std::optional<uint64_t> budget_mb;
  std::string chat_template_file;  // Jinja file replacing the GGUF's tokenizer.chat_template
  ReasoningFormat reasoning_format = ReasoningFormat::kSeparate;
  int64_t context_length = 0;  // tokens per sequence; 0: the model's trained context
  bool operator==(const ModelOptions&) const = default;
};

enum class Backend { kCpu, kCuda, kLevelZero };

// Which devices the planner may place stages on, and how much of each it may use.
struct DeviceOptions {
  // Backends in order of preference. The planner uses the GPUs of the listed GPU backends and
  // falls back to CPU stages only when "cpu" is listed and no GPU is usable.
  std::vector<Backend> backends = {Backend::kCuda, Backend::kLevelZero, Backend::kCpu};
  // Devices to use, as "cuda:0", "level_zero:1" or "cpu"; empty: every device discovered.
  std::vector<std::string> ids;
  // Per-device cap on what moed allocates there (weights, KV, state, buffers), by device id.
  std::map<std::string, uint64_t> budgets;
  uint64_t reserve = 1 * kGiB;  // left free on every GPU (driver context, NCCL, fragmentation)
  bool operator==(const DeviceOptions&) const = default;
};

// How activations go from a GPU stage to the next: kAuto is NCCL when every stage is a CUDA GPU
// (the rows stay on the GPUs), else Unix sockets through host memory.
enum class ActivationLink { kAuto, kSocket, kNccl };

// The moed-worker processes (one per stage) and their supervision.
struct WorkerOptions {
  std::string binary;     // moed-worker executable; empty: next to the moed binary
  int cpu_stages = 1;     // pipeline stages when running on the CPU backend
  int threads = 0;        // compute threads per worker; 0: the cores divided among the stages
  ActivationLink activation_link = ActivationLink::kAuto;
  absl::Duration health_check_interval = absl::Seconds(2);
  absl::Duration health_check_timeout = absl::Seconds(5);
  // After a crash a worker is restarted after `initial`, doubling per consecutive crash up to `max`.
  absl::Duration restart_backoff_initial = absl::Milliseconds(500);
  absl::Duration restart_backoff_max = absl::Seconds(30);
  bool operator==(const WorkerOptions&) const = default;
};

// Continuous batching (one scheduler thread) and admission.
struct SchedulerOptions {
  int max_running = 16;           // sequences decoding at once (= state slots per stage)
  int64_t max_batch_tokens = 2048;  // tokens per step, prefill and decode together
  int64_t prefill_chunk = 512;    // largest slice of one prompt in a step
  int queue_capacity = 256;       // requests waiting for a slot; 0: no queue
  int queue_full_status = 503;    // 429 or 503, with Retry-After
  absl::Duration drain_timeout = absl::Seconds(30);  // SIGTERM: in-flight requests get this long
  absl::Duration retry_after = absl::Seconds(5);     // Retry-After on 503/429, whole seconds
  // With several pipeline stages, keep one step per stage in flight, each over its share of the
  // running sequences, so that the stages compute at once; false: one step at a time.
  bool pipeline = true;
  bool operator==(const SchedulerOptions&) const = default;
};

inline constexpr double kDefaultKvMemoryFraction = 0.9;

// KV cache of the full-attention layers and the prefix cache of recurrent state.
struct CacheOptions {
  int64_t kv_block_size = 16;  // tokens per KV block
  // The KV pool: a fixed number of blocks per stage, or (kv_blocks == 0) this fraction of the
  // memory each device has left after weights and reserve. Setting both is an error.
  int64_t kv_blocks = 0;
  double kv_memory_fraction = kDefaultKvMemoryFraction;
  // Snapshots of the slot state at the end of prompts, reused when a prompt starts with the same
  // tokens; prefix_cache_snapshots bounds how many are kept (least recently used goes first).
  bool prefix_cache = true;
  int prefix_cache_snapshots = 64;
  bool operator==(const CacheOptions&) const = default;
};

struct LoggingOptions {
  LogLevel level = LogLevel::kInfo;
  bool operator==(const LoggingOptions&) const = default;
};

struct MetricsOptions {
  bool enabled = true;  // GET /metrics on the gateway (Prometheus text format, prefix moed_)
  bool operator==(const MetricsOptions&) const = default;
};

struct Config {
  ServerOptions server;
  AdminOptions admin;
  ModelOptions model;
  DeviceOptions devices;
  WorkerOptions workers;
  SchedulerOptions scheduler;
  CacheOptions cache;
  LoggingOptions logging;
  MetricsOptions metrics;
  bool operator==(const Config&) const = default;
};

// Reads, parses and validates a config file (at most 1 MiB). Relative paths in it (model.path,
// model.chat_template_file, server.api_key_file, admin.socket, admin.token_file, workers.binary)
// are resolved against the file's directory, as Prometheus does, so that a daemon started from
// any working directory reads the same files. Errors: NotFound / PermissionDenied for the file,
// InvalidArgument for its contents ("path:line:col: key.path: problem").
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

// Parses YAML text and validates it; relative paths stay relative to the working directory.
// `source_name` prefixes error messages. An empty document gives Config{}.
absl::StatusOr<Config> ParseConfig(std::string_view yaml, std::string_view source_name);

// Checks every value and combination; the first problem is returned as InvalidArgument naming
// the key ("scheduler.prefill_chunk: must not exceed scheduler.max_batch_tokens (2048), got
// 4096"). Reads server.api_key_file and admin.token_file (they must exist and hold a key); does
// not open the model, which the planner does.
absl::Status Validate(const Config& config);

enum class DumpSecrets {
  kRedact,  // API keys and the admin token are written as kRedacted (for moectl, --dry-run)
  kShow,    // written as they are: the output loads back into an equal Config
};
inline constexpr std::string_view kRedacted = "<redacted>";

// The effective configuration as YAML: every key, defaults included, sizes and durations in
// human form. With DumpSecrets::kShow, ParseConfig(DumpConfig(c, kShow)) == c for every valid c.
// A redacted dump does not validate until real secrets replace the placeholders.
std::string DumpConfig(const Config& config, DumpSecrets secrets = DumpSecrets::kRedact);

// The API keys of server.api_keys and server.api_key_file together, in that order.
absl::StatusOr<std::vector<std::string>> ResolveApiKeys(const ServerOptions& server);
// admin.token, or the first line of admin.token_file; empty when neither is set.
absl::StatusOr<std::string> ResolveAdminToken(const AdminOptions& admin);

std::string_view ReasoningFormatName(ReasoningFormat format);
std::string_view BackendName(Backend backend);
std::string_view LogLevelName(LogLevel level);
std::string_view ActivationLinkName(ActivationLink link);

}  // namespace moed::config

#endif  // MOED_CONFIGS_CONFIG_H_

// DumpConfig(): the effective configuration as YAML, every key in the order of the structs, for
// `moed --dry-run` and `moectl`. Values are written in the forms the parser reads (sizes and
// durations in human units, doubles in their shortest exact form), so a dump with secrets shown
// loads back into an equal Config. yaml-cpp's emitter does the quoting; it does not throw.
#include <yaml-cpp/yaml.h>

#include <string>

#include "configs/config.h"
#include "configs/config_units.h"

namespace moed::config {
namespace {

class Writer {
 public:
  explicit Writer(DumpSecrets secrets) : secrets_(secrets) {}

  void Begin(const char* section) { out_ << YAML::Key << section << YAML::Value << YAML::BeginMap; }
  void End() { out_ << YAML::EndMap; }

  void Str(const char* key, std::string_view v) {
    out_ << YAML::Key << key << YAML::Value << std::string(v);
  }
  // Strings that may hold '#', ':' or look like numbers are quoted so they read back as text.
  void QuotedStr(const char* key, std::string_view v) {
    out_ << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << std::string(v);
  }
  void Int(const char* key, int64_t v) { out_ << YAML::Key << key << YAML::Value << v; }
  void Bool(const char* key, bool v) {
    out_ << YAML::Key << key << YAML::Value << (v ? "true" : "false");
  }
  void Size(const char* key, uint64_t v) { Str(key, FormatByteSize(v)); }
  void Duration(const char* key, absl::Duration v) { Str(key, FormatDurationText(v)); }
  void Null(const char* key) { out_ << YAML::Key << key << YAML::Value << YAML::Null; }

  void Secret(const char* key, const std::string& v) {
    QuotedStr(key, v.empty() || secrets_ == DumpSecrets::kShow ? v : std::string(kRedacted));
  }
  void SecretList(const char* key, const std::vector<std::string>& values) {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const std::string& v : values) {
      out_ << YAML::DoubleQuoted
           << (secrets_ == DumpSecrets::kShow ? v : std::string(kRedacted));
    }
    out_ << YAML::EndSeq;
  }
  void StrList(const char* key, const std::vector<std::string>& values) {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const std::string& v : values) out_ << YAML::DoubleQuoted << v;
    out_ << YAML::EndSeq;
  }

  YAML::Emitter& out() { return out_; }

 private:
  DumpSecrets secrets_;
  YAML::Emitter out_;
};

void WriteServer(const ServerOptions& s, Writer& w) {
  w.Begin("server");
  w.QuotedStr("listen", s.listen);
  w.SecretList("api_keys", s.api_keys);
  w.QuotedStr("api_key_file", s.api_key_file);
  w.Size("max_request_body", s.max_request_body);
  w.Int("max_tokens_limit", s.max_tokens_limit);
  w.Duration("sse_keepalive", s.sse_keepalive);
  w.End();
}

void WriteAdmin(const AdminOptions& a, Writer& w) {
  w.Begin("admin");
  w.QuotedStr("socket", a.socket);
  w.QuotedStr("tcp_listen", a.tcp_listen);
  w.Secret("token", a.token);
  w.QuotedStr("token_file", a.token_file);
  w.End();
}

void WriteModel(const ModelOptions& m, Writer& w) {
  w.Begin("model");
  w.QuotedStr("path", m.path);
  w.QuotedStr("name", m.name);
  if (m.variant.has_value()) {
    w.Int("variant", *m.variant);
  } else {
    w.Null("variant");
  }
  if (m.budget_mb.has_value()) {
    w.Int("budget_mb", static_cast<int64_t>(*m.budget_mb));
  } else {
    w.Null("budget_mb");
  }
  w.QuotedStr("chat_template_file", m.chat_template_file);
  w.Str("reasoning_format", ReasoningFormatName(m.reasoning_format));
  w.Int("context_length", m.context_length);
  w.End();
}

void WriteDevices(const DeviceOptions& d, Writer& w) {
  w.Begin("devices");
  YAML::Emitter& out = w.out();
  out << YAML::Key << "backends" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (Backend b : d.backends) out << std::string(BackendName(b));
  out << YAML::EndSeq;
  w.StrList("ids", d.ids);
  out << YAML::Key << "budgets" << YAML::Value;
  if (d.budgets.empty()) out << YAML::Flow;
  out << YAML::BeginMap;
  for (const auto& [id, bytes] : d.budgets) {
    out << YAML::Key << YAML::DoubleQuoted << id << YAML::Value << FormatByteSize(bytes);
  }
  out << YAML::EndMap;
  w.Size("reserve", d.reserve);
  w.End();
}

void WriteWorkers(const WorkerOptions& o, Writer& w) {
  w.Begin("workers");
  w.QuotedStr("binary", o.binary);
  w.Int("cpu_stages", o.cpu_stages);
  w.Int("threads", o.threads);
  w.Str("activation_link", ActivationLinkName(o.activation_link));
  w.Duration("health_check_interval", o.health_check_interval);
  w.Duration("health_check_timeout", o.health_check_timeout);
  w.Duration("restart_backoff_initial", o.restart_backoff_initial);
  w.Duration("restart_backoff_max", o.restart_backoff_max);
  w.End();
}

void WriteScheduler(const SchedulerOptions& s, Writer& w) {
  w.Begin("scheduler");
  w.Int("max_running", s.max_running);
  w.Int("max_batch_tokens", s.max_batch_tokens);
  w.Int("prefill_chunk", s.prefill_chunk);
  w.Int("queue_capacity", s.queue_capacity);
  w.Int("queue_full_status", s.queue_full_status);
  w.Duration("drain_timeout", s.drain_timeout);
  w.Duration("retry_after", s.retry_after);
  w.Bool("pipeline", s.pipeline);
  w.End();
}

void WriteCache(const CacheOptions& c, Writer& w) {
  w.Begin("cache");
  w.Int("kv_block_size", c.kv_block_size);
  w.Int("kv_blocks", c.kv_blocks);
  // With a fixed pool the fraction does not apply, and writing both would not load back.
  if (c.kv_blocks == 0) w.Str("kv_memory_fraction", FormatDouble(c.kv_memory_fraction));
  w.Bool("prefix_cache", c.prefix_cache);
  w.Int("prefix_cache_snapshots", c.prefix_cache_snapshots);
  w.End();
}

}  // namespace

std::string DumpConfig(const Config& config, DumpSecrets secrets) {
  Writer w(secrets);
  w.out() << YAML::BeginMap;
  WriteServer(config.server, w);
  WriteAdmin(config.admin, w);
  WriteModel(config.model, w);
  WriteDevices(config.devices, w);
  WriteWorkers(config.workers, w);
  WriteScheduler(config.scheduler, w);
  WriteCache(config.cache, w);
  w.Begin("logging");
  w.Str("level", LogLevelName(config.logging.level));
  w.End();
  w.Begin("metrics");
  w.Bool("enabled", config.metrics.enabled);
  w.End();
  w.out() << YAML::EndMap;
  if (!w.out().good()) return "# DumpConfig failed: " + w.out().GetLastError() + "\n";
  return std::string(w.out().c_str()) + "\n";
}

}  // namespace moed::config

// YAML text to the Config structs. yaml-cpp throws, so every yaml-cpp call stays inside ParseYaml's
// try block and leaves as an InvalidArgument status carrying the line and column. Values are read
// from scalars with our own conversions (not Node::as<T>), so that every message names the key by
// its full path and says what was expected. Ranges and combinations are Validate()'s job; the
// parser checks only what the structs cannot express (unknown and duplicate keys, types, units,
// and keys written together that exclude each other).
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <exception>
#include <limits>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "configs/config_internal.h"
#include "configs/config_units.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::config::internal {
namespace {

Location ToLocation(const YAML::Mark& mark) {
  if (mark.is_null()) return {};
  return {mark.line + 1, mark.column + 1};
}

std::string Prefix(std::string_view source, Location loc) {
  if (loc.line == 0) return absl::StrCat(Sv(source), ": ");
  return absl::StrCat(Sv(source), ":", loc.line, ":", loc.column, ": ");
}

class Context {
 public:
  explicit Context(std::string_view source) : source_(source) {}

  absl::Status Error(const YAML::Mark& mark, std::string_view path,
                     std::string_view message) const {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(source_, ToLocation(mark)), KeyError(path, message)));
  }
  void Record(const std::string& path, const YAML::Mark& mark) {
    if (!mark.is_null()) locations_.emplace(path, ToLocation(mark));
  }
  std::map<std::string, Location> TakeLocations() { return std::move(locations_); }
  std::string_view source() const { return source_; }

 private:
  std::string source_;
  std::map<std::string, Location> locations_;
};

// One value of the document with the key path that reached it.
struct Value {
  Context* ctx;
  YAML::Node node;
  std::string path;
  YAML::Mark mark;  // the value's, or its key's when the value has none (an empty value)

  absl::Status Error(std::string_view message) const { return ctx->Error(mark, path, message); }
};

std::string_view KindName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar: return "a scalar";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined: break;
  }
  return "no value";
}

std::string JoinNames(const std::vector<std::string_view>& names) {
  std::string out;
  for (std::string_view n : names) absl::StrAppend(&out, out.empty() ? "" : ", ", Sv(n));
  return out;
}

std::string Join(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(Sv(path), ".", Sv(key));
}

Value Child(const Value& parent, const YAML::Node& node, std::string path) {
  YAML::Mark mark = node.Mark();
  if (mark.is_null()) mark = parent.mark;
  parent.ctx->Record(path, mark);
  return Value{parent.ctx, node, std::move(path), mark};
}

absl::StatusOr<std::string> ScalarText(const Value& v, std::string_view expected) {
  if (!v.node.IsScalar()) {
    return v.Error(absl::StrCat("expected ", Sv(expected), ", got ", Sv(KindName(v.node))));
  }
  return v.node.Scalar();
}

// Reads one mapping. Each Read() names a key it knows; Finish() rejects every other key, with a
// suggestion when one is a likely typo of a known key.
class MapReader {
 public:
  explicit MapReader(const Value& value) : value_(value) {}

  absl::Status Open() {
    if (value_.node.IsNull()) return absl::OkStatus();  // an empty section: all defaults
    if (!value_.node.IsMap()) {
      return value_.Error(absl::StrCat("expected a map of keys, got ", Sv(KindName(value_.node))));
    }
    for (auto it = value_.node.begin(); it != value_.node.end(); ++it) {
      // Copies: the iterator's -> yields a temporary proxy that a reference would outlive.
      const YAML::Node key = it->first;
      YAML::Mark mark = key.Mark().is_null() ? value_.mark : key.Mark();
      if (!key.IsScalar()) {
        return value_.ctx->Error(mark, value_.path, "keys must be plain strings");
      }
      for (const Entry& e : entries_) {
        if (e.key == key.Scalar()) {
          return value_.ctx->Error(mark, Join(value_.path, key.Scalar()), "duplicate key");
        }
      }
      entries_.push_back(Entry{key.Scalar(), mark, it->second});
    }
    return absl::OkStatus();
  }

  // Converts the key's value with `read(const Value&, T*)` if the key is present.
  template <typename T, typename Fn>
  absl::Status Read(std::string_view key, T* out, Fn read) {
    known_.push_back(key);
    const Entry* e = Find(key);
    if (e == nullptr) return absl::OkStatus();
    std::string path = Join(value_.path, key);
    value_.ctx->Record(path, e->mark);
    YAML::Mark mark = e->value.Mark().is_null() ? e->mark : e->value.Mark();
    return read(Value{value_.ctx, e->value, std::move(path), mark}, out);
  }

  bool Has(std::string_view key) const { return Find(key) != nullptr; }

  absl::Status Finish() const {
    for (const Entry& e : entries_) {
      bool known = false;
      for (std::string_view k : known_) known = known || k == e.key;
      if (known) continue;
      std::string_view guess = ClosestMatch(e.key, known_);
      std::string hint = guess.empty()
                             ? absl::StrCat(" (known keys: ", JoinNames(known_), ")")
                             : absl::StrCat(" (did you mean '", Sv(guess), "'?)");
      return value_.ctx->Error(e.mark, Join(value_.path, e.key),
                               absl::StrCat("unknown key '", e.key, "'", hint));
    }
    return absl::OkStatus();
  }

  YAML::Mark MarkOf(std::string_view key) const {
    const Entry* e = Find(key);
    return e == nullptr ? value_.mark : e->mark;
  }

 private:
  struct Entry {
    std::string key;
    YAML::Mark mark;
    YAML::Node value;
  };
  const Entry* Find(std::string_view key) const {
    for (const Entry& e : entries_) {
      if (e.key == key) return &e;
    }
    return nullptr;
  }

  Value value_;
  std::vector<Entry> entries_;
  std::vector<std::string_view> known_;
};

// --- Scalar conversions: (const Value&, T*) -> Status ---------------------------------------

absl::Status ReadString(const Value& v, std::string* out) {
  if (v.node.IsNull()) {  // "key:" with nothing after it reads as the empty string
    out->clear();
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(*out, ScalarText(v, "a string"));
  return absl::OkStatus();
}

absl::Status ReadBool(const Value& v, bool* out) {
  ASSIGN_OR_RETURN(std::string text, ScalarText(v, "true or false"));
  std::string lower = absl::AsciiStrToLower(text);
  if (lower == "true" || lower == "yes" || lower == "on") {
    *out = true;
  } else if (lower == "false" || lower == "no" || lower == "off") {
    *out = false;
  } else {
    return v.Error(absl::StrCat("expected true or false, got '", text, "'"));
  }
  return absl::OkStatus();
}

absl::Status ReadInt64(const Value& v, int64_t* out) {
  ASSIGN_OR_RETURN(std::string text, ScalarText(v, "an integer"));
  if (!absl::SimpleAtoi(text, out)) {
    return v.Error(absl::StrCat("expected an integer, got '", text, "'"));
  }
  return absl::OkStatus();
}

absl::Status ReadInt(const Value& v, int* out) {
  int64_t wide = 0;
  RETURN_IF_ERROR(ReadInt64(v, &wide));
  if (wide < std::numeric_limits<int>::min() || wide > std::numeric_limits<int>::max()) {
    return v.Error(absl::StrCat("integer out of range, got ", wide));
  }
  *out = static_cast<int>(wide);
  return absl::OkStatus();
}

// An optional non-negative integer: null (or no key) leaves it unset.
template <typename T>
absl::Status ReadOptionalUnsigned(const Value& v, std::optional<T>* out) {
  if (v.node.IsNull()) {
    out->reset();
    return absl::OkStatus();
  }
  int64_t wide = 0;
  RETURN_IF_ERROR(ReadInt64(v, &wide));
  if (wide < 0) return v.Error(absl::StrCat("must not be negative, got ", wide));
  if (static_cast<uint64_t>(wide) > std::numeric_limits<T>::max()) {
    return v.Error(absl::StrCat("integer out of range, got ", wide));
  }
  *out = static_cast<T>(wide);
  return absl::OkStatus();
}

absl::Status ReadDouble(const Value& v, double* out) {
  ASSIGN_OR_RETURN(std::string text, ScalarText(v, "a number"));
  if (!absl::SimpleAtod(text, out) || !std::isfinite(*out)) {
    return v.Error(absl::StrCat("expected a number, got '", text, "'"));
  }
  return absl::OkStatus();
}

absl::Status ReadSize(const Value& v, uint64_t* out) {
  ASSIGN_OR_RETURN(std::string text, ScalarText(v, "a size such as '512MiB'"));
  absl::StatusOr<uint64_t> size = ParseByteSize(text);
  if (!size.ok()) return v.Error(StdSv(size.status().message()));
  *out = *size;
  return absl::OkStatus();
}

absl::Status ReadDuration(const Value& v, absl::Duration* out) {
  ASSIGN_OR_RETURN(std::string text, ScalarText(v, "a duration such as '30s'"));
  absl::StatusOr<absl::Duration> d = ParseDurationText(text);
  if (!d.ok()) return v.Error(StdSv(d.status().message()));
  *out = *d;
  return absl::OkStatus();
}

// An enum spelled as one of `names` (lower case); aliases map to the same value.
template <typename E>
absl::Status ReadEnum(const Value& v, const std::vector<std::pair<std::string_view, E>>& names,
                      E* out) {
  ASSIGN_OR_RETURN(std::string text, ScalarText(v, "a name"));
  std::string lower = absl::AsciiStrToLower(text);
  std::vector<std::string_view> spellings;
  for (const auto& [name, value] : names) {
    if (lower == name) {
      *out = value;
      return absl::OkStatus();
    }
    spellings.push_back(name);
  }
  std::string_view guess = ClosestMatch(lower, spellings);
  return v.Error(absl::StrCat("unknown value '", text, "'",
                              guess.empty() ? "" : absl::StrCat(" (did you mean '", Sv(guess), "'?)"),
                              "; expected one of: ", JoinNames(spellings)));
}

const std::vector<std::pair<std::string_view, Backend>>& BackendNames() {
  static const auto* names = new std::vector<std::pair<std::string_view, Backend>>{
      {"cpu", Backend::kCpu}, {"cuda", Backend::kCuda}, {"level_zero", Backend::kLevelZero}};
  return *names;
}

absl::Status ReadReasoningFormat(const Value& v, ReasoningFormat* out) {
  // llama-server's spellings are accepted too: deepseek separates, none leaves the text raw.
  static const auto* names = new std::vector<std::pair<std::string_view, ReasoningFormat>>{
      {"separate", ReasoningFormat::kSeparate}, {"raw", ReasoningFormat::kRaw},
      {"deepseek", ReasoningFormat::kSeparate}, {"none", ReasoningFormat::kRaw}};
  return ReadEnum(v, *names, out);
}

absl::Status ReadActivationLink(const Value& v, ActivationLink* out) {
  static const auto* names = new std::vector<std::pair<std::string_view, ActivationLink>>{
      {"auto", ActivationLink::kAuto}, {"socket", ActivationLink::kSocket}, {"nccl", ActivationLink::kNccl}};
  return ReadEnum(v, *names, out);
}

absl::Status ReadLogLevel(const Value& v, LogLevel* out) {
  static const auto* names = new std::vector<std::pair<std::string_view, LogLevel>>{
      {"debug", LogLevel::kDebug}, {"info", LogLevel::kInfo}, {"warning", LogLevel::kWarning},
      {"error", LogLevel::kError}, {"warn", LogLevel::kWarning}};
  return ReadEnum(v, *names, out);
}

template <typename T, typename Fn>
absl::Status ReadList(const Value& v, std::vector<T>* out, Fn read_element) {
  out->clear();
  if (v.node.IsNull()) return absl::OkStatus();
  if (!v.node.IsSequence()) {
    return v.Error(absl::StrCat("expected a list, got ", Sv(KindName(v.node))));
  }
  for (size_t i = 0; i < v.node.size(); ++i) {
    Value element = Child(v, v.node[i], absl::StrCat(v.path, "[", i, "]"));
    if (element.node.IsNull()) return element.Error("empty list element");
    T item{};
    RETURN_IF_ERROR(read_element(element, &item));
    out->push_back(std::move(item));
  }
  return absl::OkStatus();
}

absl::Status ReadStringList(const Value& v, std::vector<std::string>* out) {
  return ReadList(v, out, ReadString);
}

absl::Status ReadBackendList(const Value& v, std::vector<Backend>* out) {
  return ReadList(v, out, [](const Value& e, Backend* b) { return ReadEnum(e, BackendNames(), b); });
}

// devices.budgets: device id -> size. Element paths are "devices.budgets[cuda:0]".
absl::Status ReadBudgets(const Value& v, std::map<std::string, uint64_t>* out) {
  out->clear();
  if (v.node.IsNull()) return absl::OkStatus();
  if (!v.node.IsMap()) {
    return v.Error(absl::StrCat("expected a map of device id to size, got ",
                                Sv(KindName(v.node))));
  }
  for (auto it = v.node.begin(); it != v.node.end(); ++it) {
    const YAML::Node key_node = it->first;
    const YAML::Node value_node = it->second;
    Value key = Child(v, key_node, v.path);
    ASSIGN_OR_RETURN(std::string id, ScalarText(key, "a device id such as 'cuda:0'"));
    std::string path = absl::StrCat(v.path, "[", id, "]");
    v.ctx->Record(path, key.mark);
    if (out->count(id) != 0) return v.ctx->Error(key.mark, path, "duplicate device id");
    uint64_t bytes = 0;
    RETURN_IF_ERROR(ReadSize(Child(key, value_node, path), &bytes));
    (*out)[id] = bytes;
  }
  return absl::OkStatus();
}

// --- Sections ----------------------------------------------------------------------------------

absl::Status ReadServer(const Value& v, ServerOptions* s) {
  MapReader r(v);
  RETURN_IF_ERROR(r.Open());
  RETURN_IF_ERROR(r.Read("listen", &s->listen, ReadString));
  RETURN_IF_ERROR(r.Read("api_keys", &s->api_keys, ReadStringList));
  RETURN_IF_ERROR(r.Read("api_key_file", &s->api_key_file, ReadString));
  RETURN_IF_ERROR(r.Read("max_request_body", &s->max_request_body, ReadSize));
  RETURN_IF_ERROR(r.Read("max_tokens_limit", &s->max_tokens_limit, ReadInt64));
  RETURN_IF_ERROR(r.Read("sse_keepalive", &s->sse_keepalive, ReadDuration));
  return r.Finish();
}

absl::Status ReadAdmin(const Value& v, AdminOptions* a) {
  MapReader r(v);
  RETURN_IF_ERROR(r.Open());
  RETURN_IF_ERROR(r.Read("socket", &a->socket, ReadString));
  RETURN_IF_ERROR(r.Read("tcp_listen", &a->tcp_listen, ReadString));
  RETURN_IF_ERROR(r.Read("token", &a->token, ReadString));
  RETURN_IF_ERROR(r.Read("token_file", &a->token_file, ReadString));
  return r.Finish();
}

absl::Status ReadModel(const Value& v, ModelOptions* m) {
  MapReader r(v);
  RETURN_IF_ERROR(r.Open());
  RETURN_IF_ERROR(r.Read("path", &m->path, ReadString));
  RETURN_IF_ERROR(r.Read("name", &m->name, ReadString));
  RETURN_IF_ERROR(r.Read("variant", &m->variant, ReadOptionalUnsigned<uint32_t>));
  RETURN_IF_ERROR(r.Read("budget_mb", &m->budget_mb, ReadOptionalUnsigned<uint64_t>));
  RETURN_IF_ERROR(r.Read("chat_template_file", &m->chat_template_file, ReadString));
  RETURN_IF_ERROR(r.Read("reasoning_format", &m->reasoning_format, ReadReasoningFormat));
  RETURN_IF_ERROR(r.Read("context_length", &m->context_length, ReadInt64));
  return r.Finish();
}

absl::Status ReadDevices(const Value& v, DeviceOptions* d) {
  MapReader r(v);
  RETURN_IF_ERROR(r.Open());
  RETURN_IF_ERROR(r.Read("backends", &d->backends, ReadBackendList));
  RETURN_IF_ERROR(r.Read("ids", &d->ids, ReadStringList));
  RETURN_IF_ERROR(r.Read("budgets", &d->budgets, ReadBudgets));
  RETURN_IF_ERROR(r.Read("reserve", &d->reserve, ReadSize));
  return r.Finish();
}

absl::Status ReadWorkers(const Value& v, WorkerOptions* w) {
  MapReader r(v);
  RETURN_IF_ERROR(r.Open());
  RETURN_IF_ERROR(r.Read("binary", &w->binary, ReadString));
  RETURN_IF_ERROR(r.Read("cpu_stages", &w->cpu_stages, ReadInt));
  RETURN_IF_ERROR(r.Read("threads", &w->threads, ReadInt));
  RETURN_IF_ERROR(r.Read("activation_link", &w->activation_link, ReadActivationLink));
  RETURN_IF_ERROR(r.Read("health_check_interval", &w->health_check_interval, ReadDuration));
  RETURN_IF_ERROR(r.Read("health_check_timeout", &w->health_check_timeout, ReadDuration));
  RETURN_IF_ERROR(r.Read("restart_backoff_initial", &w->restart_backoff_initial, ReadDuration));
  RETURN_IF_ERROR(r.Read("restart_backoff_max", &w->restart_backoff_max, ReadDuration));
  return r.Finish();
}

absl::Status ReadScheduler(const Value& v, SchedulerOptions* s) {
  MapReader r(v);
  RETURN_IF_ERROR(r.Open());
  RETURN_IF_ERROR(r.Read("max_running", &s->max_running, ReadInt));
  RETURN_IF_ERROR(r.Read("max_batch_tokens", &s->max_batch_tokens, ReadInt64));
  RETURN_IF_ERROR(r.Read("prefill_chunk", &s->prefill_chunk, ReadInt64));
  RETURN_IF_ERROR(r.Read("queue_capacity", &s->queue_capacity, ReadInt));
  RETURN_IF_ERROR(r.Read("queue_full_status", &s->queue_full_status, ReadInt));
  RETURN_IF_ERROR(r.Read("drain_timeout", &s->drain_timeout, ReadDuration));
  RETURN_IF_ERROR(r.Read("retry_after", &s->retry_after, ReadDuration));
  RETURN_IF_ERROR(r.Read("pipeline", &s->pipeline, ReadBool));
  return r.Finish();
}

absl::Status ReadCache(const Value& v, CacheOptions* c) {
  MapReader r(v);
  RETURN_IF_ERROR(r.Open());
  RETURN_IF_ERROR(r.Read("kv_block_size", &c->kv_block_size, ReadInt64));
  RETURN_IF_ERROR(r.Read("kv_blocks", &c->kv_blocks, ReadInt64));
  RETURN_IF_ERROR(r.Read("kv_memory_fraction", &c->kv_memory_fraction, ReadDouble));
  RETURN_IF_ERROR(r.Read("prefix_cache", &c->prefix_cache, ReadBool));
  RETURN_IF_ERROR(r.Read("prefix_cache_snapshots", &c->prefix_cache_snapshots, ReadInt));
  RETURN_IF_ERROR(r.Finish());
  // Both written: even a fraction equal to the default says the writer expected it to count.
  if (c->kv_blocks > 0 && r.Has("kv_memory_fraction")) {
    return v.ctx->Error(r.MarkOf("kv_memory_fraction"), Join(v.path, "kv_memory_fraction"),
                        absl::StrCat("cannot be set together with ", v.path, ".kv_blocks (",
                                     c->kv_blocks, "): size the KV pool one way"));
  }
  return absl::OkStatus();
}

absl::Status ReadLogging(const Value& v, LoggingOptions* l) {
  MapReader r(v);
  RETURN_IF_ERROR(r.Open());
  RETURN_IF_ERROR(r.Read("level", &l->level, ReadLogLevel));
  return r.Finish();
}

absl::Status ReadMetrics(const Value& v, MetricsOptions* m) {
  MapReader r(v);
  RETURN_IF_ERROR(r.Open());
  RETURN_IF_ERROR(r.Read("enabled", &m->enabled, ReadBool));
  return r.Finish();
}

absl::Status ReadRoot(const Value& v, Config* c) {
  MapReader r(v);
  RETURN_IF_ERROR(r.Open());
  RETURN_IF_ERROR(r.Read("server", &c->server, ReadServer));
  RETURN_IF_ERROR(r.Read("admin", &c->admin, ReadAdmin));
  RETURN_IF_ERROR(r.Read("model", &c->model, ReadModel));
  RETURN_IF_ERROR(r.Read("devices", &c->devices, ReadDevices));
  RETURN_IF_ERROR(r.Read("workers", &c->workers, ReadWorkers));
  RETURN_IF_ERROR(r.Read("scheduler", &c->scheduler, ReadScheduler));
  RETURN_IF_ERROR(r.Read("cache", &c->cache, ReadCache));
  RETURN_IF_ERROR(r.Read("logging", &c->logging, ReadLogging));
  RETURN_IF_ERROR(r.Read("metrics", &c->metrics, ReadMetrics));
  return r.Finish();
}

// Where the first two documents of `text` start. YAML::LoadAll is not used: in yaml-cpp 0.7 a
// stray token (a document that is just ",") makes it append empty documents until memory runs
// out (jbeder/yaml-cpp#1040, fixed upstream by #1319). Here the parser is asked for two documents
// at most, and a second one (a real one, or that stuck token) is an error.
class DocumentStartRecorder : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  std::vector<YAML::Mark> starts;
};

std::vector<YAML::Mark> DocumentStarts(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentStartRecorder recorder;
  while (recorder.starts.size() < 2 && parser.HandleNextDocument(recorder)) {
  }
  return std::move(recorder.starts);
}

}  // namespace

std::string KeyError(std::string_view path, std::string_view message) {
  if (path.empty()) return std::string(message);
  return absl::StrCat(Sv(path), ": ", Sv(message));
}

absl::StatusOr<ParsedConfig> ParseYaml(std::string_view yaml, std::string_view source_name) {
  Context ctx(source_name);
  ParsedConfig parsed;
  try {
    std::string text(yaml);
    std::vector<YAML::Mark> starts = DocumentStarts(text);
    if (starts.size() > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          Prefix(source_name, ToLocation(starts[1])),
          "invalid YAML: a second document or unexpected text starts here; a config is one "
          "YAML document"));
    }
    YAML::Node root = starts.empty() ? YAML::Node() : YAML::Load(text);
    YAML::Mark mark = root.Mark();
    RETURN_IF_ERROR(ReadRoot(Value{&ctx, root, "", mark}, &parsed.config));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(source_name, ToLocation(e.mark)), "invalid YAML: ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(source_name), ": invalid YAML: ", e.what()));
  }
  parsed.locations = ctx.TakeLocations();
  return parsed;
}

absl::Status Locate(const absl::Status& status, std::string_view source_name,
                    const std::map<std::string, Location>& locations) {
  if (status.ok()) return status;
  std::string_view message = StdSv(status.message());
  size_t colon = message.find(": ");
  std::string path(message.substr(0, colon == std::string_view::npos ? 0 : colon));
  // The key itself, else the nearest enclosing key that was written ("scheduler" for a default
  // scheduler.prefill_chunk that clashes with a written scheduler.max_batch_tokens).
  Location loc;
  while (!path.empty()) {
    auto it = locations.find(path);
    if (it != locations.end()) {
      loc = it->second;
      break;
    }
    size_t cut = path.find_last_of(".[");
    path.resize(cut == std::string::npos ? 0 : cut);
  }
  return absl::Status(status.code(), absl::StrCat(Prefix(source_name, loc), Sv(message)));
}

}  // namespace moed::config::internal

// Tests of the config layer: the shipped configs load, the dump round-trips, absent sections keep
// their defaults, and each class of error names the key (and its line when there is YAML).
#include "configs/config.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "configs/config_units.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moed::config {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string ConfigsDir() { return MOED_CONFIGS_DIR; }

// A fresh directory under the test's temp dir.
std::filesystem::path TempDir(std::string_view name) {
  std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) /
                              absl::StrCat("moed_config_test_", getpid(), "_", std::string(name));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

void WriteFile(const std::filesystem::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// The message of a config that must fail to parse.
std::string ParseError(std::string_view yaml) {
  absl::StatusOr<Config> c = ParseConfig(yaml, "test.yaml");
  EXPECT_FALSE(c.ok()) << "parsed:\n" << yaml;
  if (c.ok()) return "";
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(c.status().message());
}

std::string ValidateError(const Config& c) {
  absl::Status s = Validate(c);
  EXPECT_FALSE(s.ok());
  return std::string(s.message());
}

// A config with every member away from its default (secrets in `dir`).
Config EverythingSet(const std::filesystem::path& dir) {
  WriteFile(dir / "keys", "# keys\nk-one\n\n  k-two  \n");
  WriteFile(dir / "template.jinja", "{{ messages }}");
  Config c;
  c.server.listen = "[::1]:0";
  c.server.api_keys = {"sk-a", "sk-b#not-a-comment"};
  c.server.api_key_file = (dir / "keys").string();
  c.server.max_request_body = 3 * kMiB + 5;
  c.server.max_tokens_limit = 1000;
  c.server.sse_keepalive = absl::Milliseconds(1500);
  c.admin.socket = "";
  c.admin.tcp_listen = "127.0.0.1:9090";
  c.admin.token = "tok:en";
  c.model.path = "/models/a b.gguf";
  c.model.name = "123";
  c.model.budget_mb = 20480;
  c.model.chat_template_file = (dir / "template.jinja").string();
  c.model.reasoning_format = ReasoningFormat::kRaw;
  c.model.context_length = 8192;
  c.devices.backends = {Backend::kLevelZero, Backend::kCuda};
  c.devices.ids = {"cuda:1", "level_zero:0"};
  c.devices.budgets = {{"cuda:1", 10 * kGiB}, {"level_zero:0", 1536 * kMiB}};
  c.devices.reserve = 0;
  c.workers.cpu_stages = 3;
  c.workers.threads = 7;
  c.workers.activation_link = ActivationLink::kSocket;
  c.workers.health_check_interval = absl::Seconds(90);
  c.workers.health_check_timeout = absl::Milliseconds(250);
  c.workers.restart_backoff_initial = absl::Milliseconds(20);
  c.workers.restart_backoff_max = absl::Hours(2);
  c.scheduler.max_running = 3;
  c.scheduler.max_batch_tokens = 100;
  c.scheduler.prefill_chunk = 100;
  c.scheduler.queue_capacity = 0;
  c.scheduler.queue_full_status = 429;
  c.scheduler.drain_timeout = absl::ZeroDuration();
  c.scheduler.retry_after = absl::Seconds(61);
  c.scheduler.pipeline = false;
  c.cache.kv_block_size = 7;
  c.cache.kv_memory_fraction = 0.1;
  c.cache.prefix_cache = false;
  c.cache.prefix_cache_snapshots = 0;
  c.logging.level = LogLevel::kDebug;
  c.metrics.enabled = false;
  return c;
}

// --- Defaults ----------------------------------------------------------------------------------

TEST(ConfigTest, EmptyDocumentsGiveDefaults) {
  for (std::string_view yaml : {"", "\n", "# only a comment\n", "---\n", "---\n...\n", "{}"}) {
    absl::StatusOr<Config> c = ParseConfig(yaml, "empty.yaml");
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(*c, Config{}) << "for '" << yaml << "'";
  }
  EXPECT_TRUE(Validate(Config{}).ok());
  Config d;
  EXPECT_EQ(d.server.listen, "127.0.0.1:8080");
  EXPECT_EQ(d.admin.socket, "/run/moed/admin.sock");
}

TEST(ConfigTest, EmptyFileGivesDefaults) {
  std::filesystem::path dir = TempDir("empty");
  WriteFile(dir / "moed.yaml", "");
  absl::StatusOr<Config> c = LoadConfigFile((dir / "moed.yaml").string());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(*c, Config{});
}

TEST(ConfigTest, AbsentSectionsAndKeysKeepDefaults) {
  absl::StatusOr<Config> c = ParseConfig(
      "scheduler:\n  max_running: 4\ncache:\nmetrics: {}\nserver:\n  api_key_file:\n",
      "partial.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  Config expected;
  expected.scheduler.max_running = 4;
  EXPECT_EQ(*c, expected);
}

// --- Shipped configs ---------------------------------------------------------------------------

TEST(ConfigTest, ShippedConfigsLoadAndValidate) {
  for (std::string name : {"moed.yaml", "examples/cpu-demo.yaml", "examples/single-gpu.yaml",
                           "examples/two-gpu-twin.yaml"}) {
    SCOPED_TRACE(name);
    absl::StatusOr<Config> c = LoadConfigFile(ConfigsDir() + "/" + name);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE(Validate(*c).ok());
    absl::StatusOr<Config> again = ParseConfig(DumpConfig(*c, DumpSecrets::kShow), "dump");
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(*again, *c);
  }
}

TEST(ConfigTest, DefaultConfigFileStatesTheDefaults) {
  // configs/moed.yaml documents every key with its default value; only model.path differs.
  absl::StatusOr<Config> c = LoadConfigFile(ConfigsDir() + "/moed.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  Config expected;
  expected.model.path = "/var/lib/moed/models/model.gguf";
  EXPECT_EQ(*c, expected);
}

TEST(ConfigTest, ExampleValues) {
  absl::StatusOr<Config> demo = LoadConfigFile(ConfigsDir() + "/examples/cpu-demo.yaml");
  ASSERT_TRUE(demo.ok()) << demo.status();
  EXPECT_EQ(demo->workers.cpu_stages, 2);
  EXPECT_EQ(demo->devices.backends, std::vector<Backend>{Backend::kCpu});
  // Relative paths are resolved against the config's directory.
  std::string root =
      std::filesystem::path(ConfigsDir()).parent_path().lexically_normal().string();
  EXPECT_EQ(demo->model.path, root + "/build/demo/tiny-q4_k.gguf");
  EXPECT_EQ(demo->admin.socket, root + "/build/demo/moed-admin.sock");

  absl::StatusOr<Config> twin = LoadConfigFile(ConfigsDir() + "/examples/two-gpu-twin.yaml");
  ASSERT_TRUE(twin.ok()) << twin.status();
  EXPECT_EQ(twin->model.variant, std::optional<uint32_t>(1));
  EXPECT_EQ(twin->devices.budgets.at("cuda:1"), 130 * kGiB);
  EXPECT_EQ(twin->workers.restart_backoff_max, absl::Minutes(1));
}

// --- Dump --------------------------------------------------------------------------------------

TEST(ConfigTest, DumpRoundTripsEveryField) {
  std::filesystem::path dir = TempDir("roundtrip");
  Config c = EverythingSet(dir);
  ASSERT_TRUE(Validate(c).ok()) << Validate(c);
  std::string dump = DumpConfig(c, DumpSecrets::kShow);
  absl::StatusOr<Config> back = ParseConfig(dump, "dump");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << dump;
  EXPECT_EQ(*back, c) << dump;
  // A fixed pool dumps without the fraction, which would not load back beside it.
  c.cache.kv_blocks = 100;
  c.cache.kv_memory_fraction = kDefaultKvMemoryFraction;
  back = ParseConfig(DumpConfig(c, DumpSecrets::kShow), "dump");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, c);
  // The default config too, and the variant phase form.
  EXPECT_EQ(*ParseConfig(DumpConfig(Config{}), "dump"), Config{});
  Config v;
  v.model.path = "m.gguf";
  v.model.variant = 0;
  EXPECT_EQ(*ParseConfig(DumpConfig(v), "dump"), v);
}

TEST(ConfigTest, DumpRedactsSecretsByDefault) {
  std::filesystem::path dir = TempDir("redact");
  Config c = EverythingSet(dir);
  std::string dump = DumpConfig(c);
  EXPECT_THAT(dump, Not(HasSubstr("sk-a")));
  EXPECT_THAT(dump, Not(HasSubstr("tok:en")));
  EXPECT_THAT(dump, HasSubstr(std::string(kRedacted)));
  EXPECT_THAT(dump, HasSubstr("max_request_body: 3145733"));
  EXPECT_THAT(dump, HasSubstr("sse_keepalive: 1.5s"));
  // Loading a redacted dump fails rather than accepting the placeholder as a key.
  EXPECT_THAT(ParseError(dump), HasSubstr("server.api_keys[0]: is the placeholder"));
}

// --- Errors: each names the key ----------------------------------------------------------------

TEST(ConfigErrorTest, UnknownKeysAtEveryLevel) {
  EXPECT_EQ(ParseError("server:\n  listen: 127.0.0.1:1\n  lissen: x\n"),
            "test.yaml:3:3: server.lissen: unknown key 'lissen' (did you mean 'listen'?)");
  EXPECT_THAT(ParseError("sever:\n  listen: x\n"),
              HasSubstr("test.yaml:1:1: sever: unknown key 'sever' (did you mean 'server'?)"));
  EXPECT_THAT(ParseError("cache:\n  zzz: 1\n"),
              HasSubstr("cache.zzz: unknown key 'zzz' (known keys: kv_block_size, kv_blocks"));
}

TEST(ConfigErrorTest, DuplicateKey) {
  EXPECT_THAT(ParseError("scheduler:\n  max_running: 1\n  max_running: 2\n"),
              HasSubstr("test.yaml:3:3: scheduler.max_running: duplicate key"));
}

TEST(ConfigErrorTest, WrongTypes) {
  EXPECT_THAT(ParseError("server: 8080\n"),
              HasSubstr("test.yaml:1:9: server: expected a map of keys, got a scalar"));
  EXPECT_THAT(ParseError("scheduler:\n  max_running: many\n"),
              HasSubstr("test.yaml:2:16: scheduler.max_running: expected an integer, got 'many'"));
  EXPECT_THAT(ParseError("scheduler:\n  max_running: 99999999999\n"),
              HasSubstr("scheduler.max_running: integer out of range"));
  EXPECT_THAT(ParseError("metrics:\n  enabled: maybe\n"),
              HasSubstr("metrics.enabled: expected true or false, got 'maybe'"));
  EXPECT_THAT(ParseError("server:\n  api_keys: sk-1\n"),
              HasSubstr("server.api_keys: expected a list, got a scalar"));
  EXPECT_THAT(ParseError("server:\n  api_keys: [a, [b]]\n"),
              HasSubstr("server.api_keys[1]: expected a string, got a list"));
  EXPECT_THAT(ParseError("server:\n  listen: {a: 1}\n"),
              HasSubstr("server.listen: expected a string, got a map"));
  EXPECT_THAT(ParseError("cache:\n  kv_memory_fraction: nan\n"),
              HasSubstr("cache.kv_memory_fraction: expected a number"));
  EXPECT_THAT(ParseError("scheduler:\n  max_running:\n"),
              HasSubstr("scheduler.max_running: expected an integer, got no value"));
  EXPECT_THAT(ParseError("model:\n  variant: -1\n  path: m\n"),
              HasSubstr("model.variant: must not be negative, got -1"));
  EXPECT_THAT(ParseError("- a\n- b\n"), HasSubstr("expected a map of keys, got a list"));
}

TEST(ConfigErrorTest, EnumsSuggest) {
  EXPECT_THAT(ParseError("devices:\n  backends: [cpu, cuds]\n"),
              HasSubstr("devices.backends[1]: unknown value 'cuds' (did you mean 'cuda'?); "
                        "expected one of: cpu, cuda, level_zero"));
  EXPECT_THAT(ParseError("logging:\n  level: verbose\n"), HasSubstr("logging.level: unknown value"));
  absl::StatusOr<Config> c = ParseConfig(
      "model:\n  path: m\n  reasoning_format: deepseek\nlogging:\n  level: WARN\n", "t");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model.reasoning_format, ReasoningFormat::kSeparate);
  EXPECT_EQ(c->logging.level, LogLevel::kWarning);
}

TEST(ConfigErrorTest, OutOfRangeValuesNameTheKeyAndLine) {
  EXPECT_EQ(ParseError("scheduler:\n  max_batch_tokens: 0\n"),
            "test.yaml:2:3: scheduler.max_batch_tokens: must be positive, got 0");
  Config c;
  c.scheduler.max_batch_tokens = 0;
  EXPECT_EQ(ValidateError(c), "scheduler.max_batch_tokens: must be positive, got 0");
  EXPECT_THAT(ParseError("workers:\n  cpu_stages: 65\n"),
              HasSubstr("workers.cpu_stages: must be at most 64, got 65"));
  EXPECT_THAT(ParseError("workers:\n  activation_link: rdma\n"), HasSubstr("workers.activation_link"));
  EXPECT_THAT(ParseError("cache:\n  kv_memory_fraction: 1.5\n"),
              HasSubstr("cache.kv_memory_fraction: must be in (0, 1], got 1.5"));
  EXPECT_THAT(ParseError("scheduler:\n  queue_full_status: 500\n"),
              HasSubstr("scheduler.queue_full_status: must be 429 or 503, got 500"));
  EXPECT_THAT(ParseError("server:\n  max_request_body: 10\n"),
              HasSubstr("server.max_request_body: must be at least 1KiB, got 10"));
  EXPECT_THAT(ParseError("workers:\n  health_check_interval: -1s\n"),
              HasSubstr("workers.health_check_interval: must be between 10ms and 1h, got -1s"));
  EXPECT_THAT(ParseError("model:\n  path: m\n  budget_mb: 0\n"),
              HasSubstr("model.budget_mb: must be positive, got 0"));
}

TEST(ConfigErrorTest, ImpossibleCombinations) {
  EXPECT_EQ(ParseError("scheduler:\n  max_batch_tokens: 256\n  prefill_chunk: 1024\n"),
            "test.yaml:3:3: scheduler.prefill_chunk: must not exceed "
            "scheduler.max_batch_tokens (256), got 1024");
  // The clashing key is a default: the error points at its section.
  EXPECT_EQ(ParseError("scheduler:\n  max_batch_tokens: 256\n"),
            "test.yaml:1:1: scheduler.prefill_chunk: must not exceed "
            "scheduler.max_batch_tokens (256), got 512");
  EXPECT_THAT(ParseError("scheduler:\n  max_running: 64\n  max_batch_tokens: 32\n  "
                         "prefill_chunk: 32\n"),
              HasSubstr("scheduler.max_batch_tokens: must be at least scheduler.max_running (64)"));
  EXPECT_THAT(ParseError("model:\n  path: m.gguf\n  variant: 1\n  budget_mb: 20000\n"),
              HasSubstr("test.yaml:4:3: model.budget_mb: cannot be set together with "
                        "model.variant (1)"));
  EXPECT_THAT(ParseError("model:\n  variant: 1\n"),
              HasSubstr("model.path: must be set when other model keys are"));
  EXPECT_THAT(ParseError("cache:\n  kv_blocks: 100\n  kv_memory_fraction: 0.9\n"),
              HasSubstr("test.yaml:3:3: cache.kv_memory_fraction: cannot be set together with "
                        "cache.kv_blocks (100)"));
  EXPECT_THAT(ParseError("workers:\n  restart_backoff_initial: 10s\n  restart_backoff_max: 1s\n"),
              HasSubstr("workers.restart_backoff_max: must not be below "
                        "workers.restart_backoff_initial (10s), got 1s"));
  EXPECT_THAT(ParseError("admin:\n  tcp_listen: 0.0.0.0:9090\n"),
              HasSubstr("admin.tcp_listen: needs admin.token or admin.token_file"));
  EXPECT_THAT(ParseError("admin:\n  socket: \"\"\n"),
              HasSubstr("admin.socket: must not be empty unless admin.tcp_listen is set"));
  EXPECT_THAT(ParseError(absl::StrCat("admin:\n  socket: /", std::string(120, 's'), "\n")),
              HasSubstr("admin.socket: is 121 bytes long"));
  EXPECT_THAT(ParseError("admin:\n  token: a\n  token_file: /x\n"),
              HasSubstr("admin.token_file: cannot be set together with admin.token"));
  EXPECT_THAT(ParseError("devices:\n  backends: [cpu]\n  ids: [\"cuda:0\"]\n"),
              HasSubstr("devices.ids[0]: 'cuda:0' is a cuda device but devices.backends does "
                        "not list cuda"));
  EXPECT_THAT(ParseError("devices:\n  ids: [\"cuda:0\"]\n  budgets: {\"cuda:1\": 1GiB}\n"),
              HasSubstr("test.yaml:3:13: devices.budgets[cuda:1]: 'cuda:1' is not among "
                        "devices.ids"));
  EXPECT_THAT(ParseError("devices:\n  backends: [cuda, cuda]\n"),
              HasSubstr("devices.backends[1]: 'cuda' is listed twice"));
  EXPECT_THAT(ParseError("devices:\n  backends: []\n"),
              HasSubstr("devices.backends: must list at least one backend"));
  EXPECT_THAT(ParseError("devices:\n  ids: [gpu0]\n"),
              HasSubstr("devices.ids[0]: expected a device id 'cpu', 'cuda:N' or 'level_zero:N'"));
}

TEST(ConfigErrorTest, MissingOrBadSecretFiles) {
  std::filesystem::path dir = TempDir("secrets");
  std::string missing = (dir / "nope").string();
  EXPECT_THAT(ParseError(absl::StrCat("server:\n  api_key_file: ", missing, "\n")),
              HasSubstr(absl::StrCat("test.yaml:2:3: server.api_key_file: cannot read '", missing,
                                     "': No such file or directory")));
  WriteFile(dir / "empty", "# no keys yet\n\n");
  EXPECT_THAT(ParseError(absl::StrCat("server:\n  api_key_file: ", (dir / "empty").string())),
              HasSubstr("server.api_key_file: '" + (dir / "empty").string() + "' holds no secret"));
  WriteFile(dir / "spaces", "good\nnot good\n");
  EXPECT_THAT(ParseError(absl::StrCat("server:\n  api_key_file: ", (dir / "spaces").string())),
              HasSubstr("line 2: a key must be printable ASCII without spaces"));
  EXPECT_THAT(ParseError(absl::StrCat("server:\n  api_key_file: ", dir.string())),
              HasSubstr("is not a regular file"));
  EXPECT_THAT(ParseError(absl::StrCat("admin:\n  tcp_listen: 127.0.0.1:1\n  token_file: ",
                                      missing, "\n")),
              HasSubstr("admin.token_file: cannot read"));
  EXPECT_THAT(ParseError("server:\n  api_keys: [\"a b\"]\n"),
              HasSubstr("test.yaml:2:14: server.api_keys[0]: must be printable ASCII"));
  EXPECT_THAT(ParseError(absl::StrCat("model:\n  path: m\n  chat_template_file: ", missing)),
              HasSubstr("model.chat_template_file: cannot read"));
  EXPECT_THAT(ParseError(absl::StrCat("workers:\n  binary: ", missing)),
              HasSubstr("workers.binary: '" + missing + "' is not an executable file"));
}

TEST(ConfigErrorTest, BadSizesAndDurations) {
  EXPECT_THAT(ParseError("devices:\n  reserve: 12 parsecs\n"),
              HasSubstr("devices.reserve: expected a size such as '512MiB', '2GiB' or a byte "
                        "count, got '12 parsecs' (unknown unit 'parsecs'"));
  EXPECT_THAT(ParseError("devices:\n  reserve: -1GiB\n"), HasSubstr("sizes cannot be negative"));
  EXPECT_THAT(ParseError("scheduler:\n  drain_timeout: 30\n"),
              HasSubstr("scheduler.drain_timeout: expected a duration such as '30s', '250ms' or "
                        "'1m30s', got '30' (a number needs a unit"));
  EXPECT_THAT(ParseError("scheduler:\n  drain_timeout: soon\n"),
              HasSubstr("scheduler.drain_timeout: expected a duration"));
  EXPECT_THAT(ParseError("scheduler:\n  retry_after: 1500ms\n"),
              HasSubstr("scheduler.retry_after: must be whole seconds"));
}

TEST(ConfigErrorTest, BadAddresses) {
  EXPECT_THAT(ParseError("server:\n  listen: localhost\n"),
              HasSubstr("server.listen: expected host:port such as '127.0.0.1:8080'"));
  EXPECT_THAT(ParseError("server:\n  listen: 127.0.0.1:99999\n"),
              HasSubstr("the port must be a number from 0 to 65535"));
  EXPECT_THAT(ParseError("server:\n  listen: \"::1:8080\"\n"),
              HasSubstr("IPv6 addresses go in brackets"));
  EXPECT_THAT(ParseError("server:\n  listen: \":8080\"\n"), HasSubstr("no host"));
  for (std::string_view ok : {"0.0.0.0:80", "[::]:8080", "my-host.local:0"}) {
    absl::StatusOr<Config> c = ParseConfig(absl::StrCat("server:\n  listen: \"", std::string(ok), "\"\n"), "t");
    EXPECT_TRUE(c.ok()) << ok << ": " << c.status();
  }
}

TEST(ConfigErrorTest, SyntaxErrorsCarryLineAndColumn) {
  EXPECT_THAT(ParseError("server:\n  listen: [127.0.0.1\n"),
              HasSubstr("test.yaml:3:1: invalid YAML: end of sequence flow not found"));
  EXPECT_THAT(ParseError("server:\n  listen: a: b\n"),
              HasSubstr("test.yaml:2:12: invalid YAML: illegal map value"));
  EXPECT_THAT(ParseError("a: 1\n---\nb: 2\n"),
              HasSubstr("test.yaml:2:1: invalid YAML: a second document or unexpected text"));
  // yaml-cpp 0.7's LoadAll would allocate without bound on these (jbeder/yaml-cpp#1040).
  EXPECT_THAT(ParseError(","), HasSubstr("test.yaml:1:1: invalid YAML: a second document"));
  EXPECT_THAT(ParseError("# comment\n  , a:\nb: c\n"), HasSubstr("test.yaml:2:3: invalid YAML"));
  EXPECT_THAT(ParseError("---\n,\n"), HasSubstr("test.yaml:2:1: invalid YAML"));
  EXPECT_THAT(ParseError("server:\n\tlisten: x\n"), HasSubstr("invalid YAML"));
  // Deep nesting is refused by yaml-cpp's depth guard, not by a stack overflow.
  EXPECT_THAT(ParseError(std::string(100000, '[')), HasSubstr("invalid YAML"));
}

TEST(ConfigErrorTest, ValidateNamesTheKeyWithoutYaml) {
  Config c;
  c.model.path = "m";
  c.model.variant = 0;
  c.model.budget_mb = 10;
  EXPECT_THAT(ValidateError(c), HasSubstr("model.budget_mb: cannot be set together"));
  c = Config{};
  c.cache.kv_blocks = 10;
  c.cache.kv_memory_fraction = 0.5;
  EXPECT_THAT(ValidateError(c), HasSubstr("cache.kv_memory_fraction: cannot be set together"));
  c = Config{};
  c.devices.budgets["cuda:0"] = 1;
  EXPECT_THAT(ValidateError(c), HasSubstr("devices.budgets[cuda:0]: must be at least 64MiB"));
  c = Config{};
  c.scheduler.retry_after = absl::InfiniteDuration();
  EXPECT_THAT(ValidateError(c), HasSubstr("scheduler.retry_after: must be between 1s and 1h"));
}

// --- Files -------------------------------------------------------------------------------------

TEST(ConfigFileTest, RelativePathsAndSecretFiles) {
  std::filesystem::path dir = TempDir("relative");
  std::filesystem::create_directories(dir / "secrets");
  WriteFile(dir / "secrets" / "keys", "# one per line\nsk-file-1\n\n  sk-file-2\n");
  WriteFile(dir / "secrets" / "token", "\nadmin-token\nignored\n");
  WriteFile(dir / "moed.yaml",
            "server:\n  api_keys: [sk-inline]\n  api_key_file: secrets/keys\n"
            "admin:\n  socket: run/admin.sock\n  tcp_listen: 127.0.0.1:0\n"
            "  token_file: ./secrets/../secrets/token\n"
            "model:\n  path: ../models/m.gguf\n");
  absl::StatusOr<Config> c = LoadConfigFile((dir / "moed.yaml").string());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server.api_key_file, (dir / "secrets/keys").string());
  EXPECT_EQ(c->admin.socket, (dir / "run/admin.sock").string());
  EXPECT_EQ(c->admin.token_file, (dir / "secrets/token").string());
  EXPECT_EQ(c->model.path, (dir.parent_path() / "models/m.gguf").string());
  absl::StatusOr<std::vector<std::string>> keys = ResolveApiKeys(c->server);
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(*keys, (std::vector<std::string>{"sk-inline", "sk-file-1", "sk-file-2"}));
  absl::StatusOr<std::string> token = ResolveAdminToken(c->admin);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "admin-token");
}

TEST(ConfigFileTest, FileErrors) {
  std::filesystem::path dir = TempDir("file_errors");
  absl::StatusOr<Config> c = LoadConfigFile((dir / "missing.yaml").string());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr("missing.yaml"));
  c = LoadConfigFile(dir.string());
  EXPECT_THAT(c.status().message(), HasSubstr("is not a regular file"));
  WriteFile(dir / "big.yaml", std::string((1 << 20) + 1, '#'));
  c = LoadConfigFile((dir / "big.yaml").string());
  EXPECT_THAT(c.status().message(), HasSubstr("at most 1MiB"));
  std::string bad = (dir / "bad.yaml").string();
  WriteFile(bad, "workers:\n  cpu_stages: 0\n");
  c = LoadConfigFile(bad);
  EXPECT_EQ(c.status().message(),
            bad + ":2:3: workers.cpu_stages: must be positive, got 0");
}

// --- Units -------------------------------------------------------------------------------------

TEST(ConfigUnitsTest, ByteSizes) {
  EXPECT_EQ(*ParseByteSize("4096"), 4096u);
  EXPECT_EQ(*ParseByteSize("512MiB"), 512 * kMiB);
  EXPECT_EQ(*ParseByteSize("2GiB"), 2 * kGiB);
  EXPECT_EQ(*ParseByteSize("2 gib"), 2 * kGiB);
  EXPECT_EQ(*ParseByteSize("1.5GiB"), 1536 * kMiB);
  EXPECT_EQ(*ParseByteSize("1.5GB"), 1500000000u);
  EXPECT_EQ(*ParseByteSize("10KB"), 10000u);
  EXPECT_EQ(*ParseByteSize("7B"), 7u);
  EXPECT_EQ(*ParseByteSize("1TiB"), uint64_t{1} << 40);
  EXPECT_FALSE(ParseByteSize("").ok());
  EXPECT_FALSE(ParseByteSize("MiB").ok());
  EXPECT_FALSE(ParseByteSize("1.KiB").ok());
  EXPECT_FALSE(ParseByteSize("0.1KiB").ok());  // 102.4 bytes
  EXPECT_FALSE(ParseByteSize("8388608TiB").ok());  // 2^63
  EXPECT_FALSE(ParseByteSize("99999999999999999999").ok());
  EXPECT_EQ(FormatByteSize(0), "0");
  EXPECT_EQ(FormatByteSize(1536 * kMiB), "1536MiB");
  EXPECT_EQ(FormatByteSize(2 * kGiB), "2GiB");
  EXPECT_EQ(FormatByteSize(1000), "1000");
  for (uint64_t v : {uint64_t{1}, uint64_t{1023}, kKiB, 3 * kMiB + 5, (uint64_t{1} << 63) - 1}) {
    EXPECT_EQ(*ParseByteSize(FormatByteSize(v)), v);
  }
}

TEST(ConfigUnitsTest, Durations) {
  EXPECT_EQ(*ParseDurationText("30s"), absl::Seconds(30));
  EXPECT_EQ(*ParseDurationText("250ms"), absl::Milliseconds(250));
  EXPECT_EQ(*ParseDurationText("1m30s"), absl::Seconds(90));
  EXPECT_EQ(*ParseDurationText("0"), absl::ZeroDuration());
  EXPECT_FALSE(ParseDurationText("30").ok());
  EXPECT_FALSE(ParseDurationText("inf").ok());
  EXPECT_FALSE(ParseDurationText("3 days").ok());
  for (absl::Duration d : {absl::Milliseconds(1500), absl::Hours(2), absl::Nanoseconds(1),
                           absl::ZeroDuration()}) {
    EXPECT_EQ(*ParseDurationText(FormatDurationText(d)), d);
  }
}

TEST(ConfigUnitsTest, DoublesAndSuggestions) {
  for (double v : {0.9, 0.1, 1.0 / 3, 1e-7, 1.0}) {
    double back = 0;
    ASSERT_TRUE(absl::SimpleAtod(FormatDouble(v), &back));
    EXPECT_EQ(back, v);
  }
  EXPECT_EQ(FormatDouble(0.9), "0.9");
  EXPECT_EQ(EditDistance("lissen", "listen"), 1u);
  EXPECT_EQ(ClosestMatch("lissen", {"listen", "api_keys"}), "listen");
  EXPECT_EQ(ClosestMatch("zzz", {"listen", "api_keys"}), "");
}

}  // namespace
}  // namespace moed::config

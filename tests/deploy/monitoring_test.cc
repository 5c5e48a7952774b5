// The monitoring files in deploy/ against a real moed: every metric the Grafana dashboard and the
// alert rules name is one moed's /metrics exposes, and a real Prometheus server (the Debian
// package) scrapes moed, loads the alert rules and serves moed_ series through its HTTP API.
#include <signal.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/gateway/testing/http_test_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/deploy/promql_names.h"
#include "tests/deploy/tiny_moed.h"
#include "tests/integration/moed_process.h"
#include "yaml-cpp/yaml.h"

namespace moed::testing {
namespace {

using gateway::testing::HttpRequestOnce;
using Json = nlohmann::json;

const std::string kSource = MOED_SOURCE_DIR;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every PromQL expression of a dashboard: panel targets (rows nest panels) and template queries.
void CollectExpressions(const Json& panels, std::vector<std::string>* out) {
  for (const Json& panel : panels) {
    if (panel.contains("panels")) CollectExpressions(panel["panels"], out);
    for (const Json& target : panel.value("targets", Json::array())) {
      if (target.contains("expr")) out->push_back(target["expr"].get<std::string>());
    }
  }
}

class DeployMonitoringTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTestDir("monitoring"));
    auto config = PrepareTinyMoed(*dir_);
    ASSERT_TRUE(config.ok()) << config.status();
    auto moed = MoedProcess::Start(*config, *dir_ + "/moed.log");
    ASSERT_TRUE(moed.ok()) << moed.status();
    moed_ = new MoedProcess(std::move(moed).value());
    auto page = HttpRequestOnce(moed_->port(), "GET", "/metrics", "");
    ASSERT_TRUE(page.ok() && page->status == 200) << (page.ok() ? page->body : page.status().ToString());
    exported_ = new std::set<std::string>(ExposedMetricNames(page->body));
  }
  static void TearDownTestSuite() {
    // SIGTERM, so that moed stops its workers and removes their socket directory; the
    // destructor SIGKILLs whatever is left.
    if (moed_ != nullptr) (void)moed_->SignalAndWait(SIGTERM, 30);
    delete moed_;
    delete exported_;
    std::system(("rm -rf '" + *dir_ + "'").c_str());
    delete dir_;
  }
  void SetUp() override { ASSERT_NE(moed_, nullptr) << "moed did not start"; }

  // Fails for every name in `expr` that moed does not export (`allowed` excepted), and for an
  // expression that names no metric at all (a typo the lexer could not tell from syntax).
  static void ExpectExported(const std::string& where, const std::string& expr, const std::set<std::string>& allowed = {}) {
    const std::set<std::string> names = PromqlMetricNames(expr);
    EXPECT_FALSE(names.empty()) << where << ": no metric in " << expr;
    for (const std::string& name : names) {
      EXPECT_TRUE(exported_->contains(name) || allowed.contains(name))
          << where << ": `" << name << "` is not exported by moed (in " << expr << ")";
    }
  }

  static std::string* dir_;
  static MoedProcess* moed_;
  static std::set<std::string>* exported_;
};

std::string* DeployMonitoringTest::dir_ = nullptr;
MoedProcess* DeployMonitoringTest::moed_ = nullptr;
std::set<std::string>* DeployMonitoringTest::exported_ = nullptr;

TEST_F(DeployMonitoringTest, ExposedNamesIncludeHistogramSeries) {
  EXPECT_TRUE(exported_->contains("moed_time_to_first_token_seconds_bucket"));
  EXPECT_TRUE(exported_->contains("moed_worker_up"));
  EXPECT_FALSE(exported_->contains("moed_queue_length_bucket"));
}

TEST_F(DeployMonitoringTest, DashboardNamesOnlyExportedMetrics) {
  const Json dash = Json::parse(ReadFile(kSource + "/deploy/grafana/dashboards/moed.json"));
  std::vector<std::string> exprs;
  CollectExpressions(dash.at("panels"), &exprs);
  ASSERT_GE(exprs.size(), 20u);
  std::set<std::string> used;
  for (const std::string& expr : exprs) {
    ExpectExported("dashboard", expr);
    for (const std::string& n : PromqlMetricNames(expr)) used.insert(n);
  }
  for (const Json& var : dash.at("templating").at("list")) {
    const Json& query = var.at("query");
    ExpectExported("template variable " + var.value("name", ""),
                   query.is_string() ? query.get<std::string>() : query.at("query").get<std::string>());
  }
  // What the deployment issue asks the dashboard to show.
  for (const char* wanted :
       {"moed_generation_tokens_total", "moed_prompt_tokens_total", "moed_time_to_first_token_seconds_bucket",
        "moed_inter_token_latency_seconds_bucket", "moed_queue_length", "moed_running_sequences",
        "moed_slots_used", "moed_kv_blocks_used", "moed_prefix_cache_hits_total",
        "moed_worker_step_duration_seconds_bucket", "moed_worker_memory_bytes", "moed_worker_restarts_total",
        "moed_worker_idle_ratio",
        "moed_phase_info", "moed_budget_info"}) {
    EXPECT_TRUE(used.contains(wanted)) << "the dashboard does not show " << wanted;
  }
}

TEST_F(DeployMonitoringTest, DashboardPanelsUseTheProvisionedDatasource) {
  const YAML::Node ds = YAML::LoadFile(kSource + "/deploy/grafana/provisioning/datasources/prometheus.yml");
  const std::string uid = ds["datasources"][0]["uid"].as<std::string>();
  const Json dash = Json::parse(ReadFile(kSource + "/deploy/grafana/dashboards/moed.json"));
  for (const Json& panel : dash.at("panels")) {
    if (panel.at("type") == "row") continue;
    EXPECT_EQ(panel.at("datasource").at("uid"), uid) << panel.at("title");
    for (const Json& target : panel.at("targets")) EXPECT_EQ(target.at("datasource").at("uid"), uid) << panel.at("title");
  }
  // The provider's path is where docker-compose.yml mounts deploy/grafana/dashboards.
  const YAML::Node provider = YAML::LoadFile(kSource + "/deploy/grafana/provisioning/dashboards/moed.yml");
  const std::string path = provider["providers"][0]["options"]["path"].as<std::string>();
  const YAML::Node compose = YAML::LoadFile(kSource + "/deploy/docker/docker-compose.yml");
  bool mounted = false;
  for (const YAML::Node& v : compose["services"]["grafana"]["volumes"]) {
    mounted = mounted || v.as<std::string>() == "../grafana/dashboards:" + path + ":ro";
  }
  EXPECT_TRUE(mounted) << "docker-compose.yml does not mount the dashboards on " << path;
}

TEST_F(DeployMonitoringTest, AlertRulesNameOnlyExportedMetrics) {
  const YAML::Node rules = YAML::LoadFile(kSource + "/deploy/prometheus/alerts.yml");
  std::set<std::string> alerts;
  for (const YAML::Node& group : rules["groups"]) {
    for (const YAML::Node& rule : group["rules"]) {
      alerts.insert(rule["alert"].as<std::string>());
      // `up` is the series Prometheus itself records for every scrape.
      ExpectExported(rule["alert"].as<std::string>(), rule["expr"].as<std::string>(), {"up"});
    }
  }
  for (const char* wanted : {"MoedWorkerDown", "MoedWorkerRestarting", "MoedQueueSaturated",
                             "MoedTimeToFirstTokenP95High", "MoedSlotsExhausted"}) {
    EXPECT_TRUE(alerts.contains(wanted)) << wanted;
  }
}

// A free TCP port on 127.0.0.1 (bound and released; Prometheus binds it right after).
uint16_t FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string UrlEncode(std::string_view s) {
  std::string out;
  for (const char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.') {
      out += c;
    } else {
      out += absl::StrCat("%", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    }
  }
  return out;
}

// GET on Prometheus's API; the parsed body, or null when it does not answer (yet).
Json PrometheusGet(uint16_t port, const std::string& path) {
  auto r = HttpRequestOnce(port, "GET", path, "");
  if (!r.ok() || r->status != 200) return nullptr;
  Json j = Json::parse(r->body, nullptr, false);
  return j.is_discarded() || j.value("status", "") != "success" ? nullptr : j;
}

// Polls `check` every 250 ms for up to 60 s.
template <typename F>
bool Eventually(F check) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (check()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return false;
}

TEST_F(DeployMonitoringTest, PrometheusScrapesMoedAndEvaluatesTheAlertRules) {
  const uint16_t port = FreePort();
  const std::string config = *dir_ + "/prometheus.yml";
  std::ofstream(config) << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                        << "rule_files: ['" << kSource << "/deploy/prometheus/alerts.yml']\n"
                        << "scrape_configs:\n  - job_name: moed\n    static_configs:\n"
                        << "      - targets: ['127.0.0.1:" << moed_->port() << "']\n";
  const std::string log = *dir_ + "/prometheus.log";
  const std::string tsdb = *dir_ + "/tsdb";
  const std::string listen = absl::StrCat("--web.listen-address=127.0.0.1:", port);
  const std::string config_flag = "--config.file=" + config;
  const std::string tsdb_flag = "--storage.tsdb.path=" + tsdb;
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    execl("/usr/bin/prometheus", "prometheus", config_flag.c_str(), tsdb_flag.c_str(), listen.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  struct Reaper {  // stops Prometheus however the test ends
    pid_t pid;
    ~Reaper() {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  } reaper{pid};

  // A moed_ series read back through the query API.
  Json result;
  const bool scraped = Eventually([&] {
    Json j = PrometheusGet(port, "/api/v1/query?query=" + UrlEncode("moed_worker_up{job=\"moed\"}"));
    if (j == nullptr || j["data"]["result"].size() != 2) return false;
    result = j;
    return true;
  });
  ASSERT_TRUE(scraped) << "no moed_worker_up series (one per worker) in Prometheus after 60 s; its log:\n"
                       << ReadFile(log);
  for (const Json& series : result["data"]["result"]) {
    EXPECT_EQ(series["value"][1], "1") << series.dump();
  }
  Json up = PrometheusGet(port, "/api/v1/query?query=" + UrlEncode("up{job=\"moed\"}"));
  ASSERT_NE(up, nullptr);
  ASSERT_EQ(up["data"]["result"].size(), 1u) << up.dump();
  EXPECT_EQ(up["data"]["result"][0]["value"][1], "1") << up.dump();

  // Every rule of alerts.yml loaded and evaluated without error, and a healthy moed fires none.
  Json rules;
  const bool evaluated = Eventually([&] {
    rules = PrometheusGet(port, "/api/v1/rules");
    if (rules == nullptr || rules["data"]["groups"].empty()) return false;
    for (const Json& group : rules["data"]["groups"]) {
      for (const Json& rule : group["rules"]) {
        if (rule.value("health", "") != "ok") return false;
      }
    }
    return true;
  });
  ASSERT_TRUE(evaluated) << "alert rules not all evaluated with health ok: " << rules.dump(2);
  size_t count = 0;
  for (const Json& group : rules["data"]["groups"]) {
    for (const Json& rule : group["rules"]) {
      ++count;
      EXPECT_EQ(rule.value("state", ""), "inactive") << rule.dump(2);
    }
  }
  EXPECT_GE(count, 5u);
}

}  // namespace
}  // namespace moed::testing

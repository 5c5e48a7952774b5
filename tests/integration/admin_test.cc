// The admin API end to end: the real `moectl` against the real `moed` (two CPU worker stages, the
// tiny demo model made with `moed-model synth`), over the Unix socket and over TCP with a token.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "daemon/gateway/testing/http_test_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/moed_process.h"

namespace moed::testing {
namespace {

using gateway::testing::HttpRequestOnce;
using ::testing::HasSubstr;

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `moectl <args>` and returns its exit code, stdout and stderr.
CommandResult Moectl(const std::string& dir, const std::string& args) {
  const std::string out = dir + "/moectl.out";
  const std::string err = dir + "/moectl.err";
  const std::string command =
      absl::StrCat(MOED_BINARY_DIR, "/tools/moectl ", args, " > '", out, "' 2> '", err, "'");
  const int status = std::system(command.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadFile(out);
  r.err = ReadFile(err);
  return r;
}

class AdminTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/admin_test." + std::to_string(getpid()));
    ASSERT_EQ(std::system(("mkdir -p '" + *dir_ + "'").c_str()), 0);
    const std::string data = MOED_TEST_DATA_DIR;
    const std::string synth = std::string(MOED_BINARY_DIR) + "/tools/moed-model synth " + *dir_ +
                              "/demo.gguf --preset tiny --experts Q4_K --rest Q8_0 --vocab " + data +
                              "/text/vocab/ggml-vocab-qwen35.gguf --chat-template " + data +
                              "/text/templates/qwen3.5-chat-template.jinja > /dev/null";
    ASSERT_EQ(std::system(synth.c_str()), 0);
    // A Phase Twin file: variant 0 the Q4_K experts of demo.gguf, variant 1 Q8_0 experts.
    const std::string tool = std::string(MOED_BINARY_DIR) + "/tools/moed-model ";
    ASSERT_EQ(std::system((tool + "synth " + *dir_ + "/demo-q8.gguf --preset tiny --experts Q8_0 --rest Q8_0 --vocab " +
                           data + "/text/vocab/ggml-vocab-qwen35.gguf > /dev/null")
                              .c_str()),
              0);
    ASSERT_EQ(std::system((tool + "twin " + *dir_ + "/demo.gguf " + *dir_ + "/demo-q8.gguf " + *dir_ +
                           "/twin.gguf > /dev/null")
                              .c_str()),
              0);
  }
  static void TearDownTestSuite() {
    std::system(("rm -rf '" + *dir_ + "'").c_str());
    delete dir_;
  }

  // The admin socket lives in a directory moed has to create.
  static std::string Socket() { return *dir_ + "/run/admin.sock"; }
  std::string SocketFlag() const { return "--socket '" + Socket() + "'"; }

  // Starts moed on `model` (in the test directory); `admin_extra` adds lines under `admin:`.
  void StartMoed(const std::string& admin_extra = "", const std::string& model = "demo.gguf") {
    const std::string config = *dir_ + "/moed.yaml";
    std::ofstream(config) << "server:\n  listen: 127.0.0.1:0\n"
                          << "admin:\n  socket: " << Socket() << "\n"
                          << admin_extra << "model:\n  path: " << *dir_ << "/" << model << "\n  name: demo\n"
                          << "devices:\n  backends: [cpu]\n"
                          << "workers:\n  cpu_stages: 2\n  threads: 1\n"
                          << "scheduler:\n  max_running: 8\n  drain_timeout: 60s\n  retry_after: 1s\n";
    auto moed = MoedProcess::Start(config, *dir_ + "/moed.log");
    ASSERT_TRUE(moed.ok()) << moed.status();
    moed_ = std::make_unique<MoedProcess>(std::move(moed).value());
  }

  static std::string ChatBody() {
    nlohmann::json body = {{"model", "demo"},
                           {"messages", {{{"role", "user"}, {"content", "Hello"}}}},
                           {"max_tokens", 4},
                           {"temperature", 0}};
    return body.dump();
  }

  static std::string* dir_;
  std::unique_ptr<MoedProcess> moed_;
};

std::string* AdminTest::dir_ = nullptr;

TEST_F(AdminTest, StatusAndPlanAsTextAndJson) {
  ASSERT_NO_FATAL_FAILURE(StartMoed());
  CommandResult status = Moectl(*dir_, SocketFlag() + " status");
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("model:    demo"));
  EXPECT_THAT(status.out, HasSubstr("serving, workers ready"));
  EXPECT_THAT(status.out, HasSubstr("stage 1  cpu"));
  EXPECT_THAT(status.out, HasSubstr("0 queued, 0 running, 8 slots"));

  CommandResult status_json = Moectl(*dir_, SocketFlag() + " status --json");
  ASSERT_EQ(status_json.exit_code, 0) << status_json.err;
  auto s = nlohmann::json::parse(status_json.out, nullptr, false);
  ASSERT_FALSE(s.is_discarded()) << status_json.out;
  EXPECT_EQ(s["model"], "demo");
  ASSERT_EQ(s["workers"].size(), 2u);
  EXPECT_EQ(s["workers"][0]["first_layer"], 0);
  EXPECT_EQ(s["workers"][1]["restarts"], 0);
  EXPECT_EQ(s["workers"][0]["last_layer"], s["workers"][1]["first_layer"]);
  EXPECT_EQ(s["slot_capacity"], 8);
  EXPECT_EQ(s["draining"], false);
  EXPECT_EQ(s["workers_ready"], true);
  EXPECT_EQ(s["listen"], absl::StrCat("127.0.0.1:", moed_->port()));

  CommandResult plan = Moectl(*dir_, SocketFlag() + " plan");
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  EXPECT_THAT(plan.out, HasSubstr("backend   cpu, 2 stages"));
  EXPECT_THAT(plan.out, HasSubstr("stage 1"));

  CommandResult plan_json = Moectl(*dir_, SocketFlag() + " plan --json");
  ASSERT_EQ(plan_json.exit_code, 0) << plan_json.err;
  auto p = nlohmann::json::parse(plan_json.out, nullptr, false);
  ASSERT_FALSE(p.is_discarded()) << plan_json.out;
  EXPECT_EQ(p["backend"], "cpu");
  ASSERT_EQ(p["stages"].size(), 2u);
  EXPECT_EQ(p["slots"], 8);

  auto exit_code = moed_->SignalAndWait(SIGTERM, 60);
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
}

TEST_F(AdminTest, DrainRefusesNewRequestsButKeepsMoedUp) {
  ASSERT_NO_FATAL_FAILURE(StartMoed());
  auto before = HttpRequestOnce(moed_->port(), "POST", "/v1/chat/completions", ChatBody(),
                                {{"Content-Type", "application/json"}});
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->status, 200) << before->body;

  CommandResult drain = Moectl(*dir_, SocketFlag() + " drain");
  ASSERT_EQ(drain.exit_code, 0) << drain.err;
  EXPECT_THAT(drain.out, HasSubstr("draining"));

  auto after = HttpRequestOnce(moed_->port(), "POST", "/v1/chat/completions", ChatBody(),
                               {{"Content-Type", "application/json"}});
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->status, 503) << after->body;

  // Still answering the admin API, and it says so; a second drain is reported as such.
  CommandResult status = Moectl(*dir_, SocketFlag() + " status --json");
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_EQ(nlohmann::json::parse(status.out)["draining"], true);
  CommandResult again = Moectl(*dir_, SocketFlag() + " drain --json");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(nlohmann::json::parse(again.out)["already_draining"], true);

  auto exit_code = moed_->SignalAndWait(SIGTERM, 60);
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
}

TEST_F(AdminTest, ShutdownStopsMoedWithExitZero) {
  ASSERT_NO_FATAL_FAILURE(StartMoed());
  CommandResult shutdown = Moectl(*dir_, SocketFlag() + " shutdown");
  ASSERT_EQ(shutdown.exit_code, 0) << shutdown.err;
  EXPECT_THAT(shutdown.out, HasSubstr("shutting down"));
  auto exit_code = moed_->SignalAndWait(0, 60);  // signal 0: only wait
  ASSERT_TRUE(exit_code.ok()) << exit_code.status() << moed_->Log();
  EXPECT_EQ(*exit_code, 0);
  EXPECT_NE(access(Socket().c_str(), F_OK), 0) << "the socket file is removed on exit";
  // And now there is nobody to talk to.
  CommandResult gone = Moectl(*dir_, SocketFlag() + " status");
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_THAT(gone.err, HasSubstr("cannot reach moed at unix:" + Socket()));
}

TEST_F(AdminTest, StaleSocketFileIsReplaced) {
  // A moed killed with SIGKILL leaves its socket file behind; the next one must start anyway.
  ASSERT_NO_FATAL_FAILURE(StartMoed());
  moed_.reset();  // SIGKILL to moed and its workers
  ASSERT_EQ(access(Socket().c_str(), F_OK), 0) << "SIGKILL left the socket file";
  ASSERT_NO_FATAL_FAILURE(StartMoed());
  CommandResult status = Moectl(*dir_, SocketFlag() + " status");
  EXPECT_EQ(status.exit_code, 0) << status.err;
  auto exit_code = moed_->SignalAndWait(SIGTERM, 60);
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
}

TEST_F(AdminTest, SecondMoedOnTheSameSocketIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartMoed());
  auto second = MoedProcess::Start(*dir_ + "/moed.yaml", *dir_ + "/moed2.log");
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr("is in use: is another moed running?"));
  // The first one still answers.
  EXPECT_EQ(Moectl(*dir_, SocketFlag() + " status").exit_code, 0);
  auto exit_code = moed_->SignalAndWait(SIGTERM, 60);
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
}

TEST_F(AdminTest, TcpEndpointRequiresTheToken) {
  ASSERT_NO_FATAL_FAILURE(StartMoed("  tcp_listen: 127.0.0.1:0\n  token: s3cret-admin-token\n"));
  std::smatch m;
  const std::string log = moed_->Log();
  ASSERT_TRUE(std::regex_search(log, m, std::regex("admin API listening on [^ ]+ \\(port ([0-9]+)"))) << log;
  const std::string address = "--address 127.0.0.1:" + m[1].str();

  CommandResult no_token = Moectl(*dir_, address + " status");
  EXPECT_EQ(no_token.exit_code, 1);
  EXPECT_THAT(no_token.err, HasSubstr("authorization"));
  CommandResult wrong = Moectl(*dir_, address + " --token nope status");
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.err, HasSubstr("wrong admin token"));
  CommandResult wrong_shutdown = Moectl(*dir_, address + " --token nope shutdown");
  EXPECT_EQ(wrong_shutdown.exit_code, 1);
  CommandResult right = Moectl(*dir_, address + " --token s3cret-admin-token status --json");
  ASSERT_EQ(right.exit_code, 0) << right.err;
  EXPECT_EQ(nlohmann::json::parse(right.out)["model"], "demo");
  // The Unix socket needs no token.
  EXPECT_EQ(Moectl(*dir_, SocketFlag() + " status").exit_code, 0);

  auto exit_code = moed_->SignalAndWait(SIGTERM, 60);
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
}

// A phase switch on a Phase Twin file, then unload and load, all without restarting moed.
TEST_F(AdminTest, PhaseSwitchAndModelReloadWithoutRestart) {
  ASSERT_NO_FATAL_FAILURE(StartMoed("", "twin.gguf"));
  const int pid_before = moed_->pid();
  auto chat = [&](const std::string& model) {
    nlohmann::json body = nlohmann::json::parse(ChatBody());
    body["model"] = model;
    return HttpRequestOnce(moed_->port(), "POST", "/v1/chat/completions", body.dump(),
                           {{"Content-Type", "application/json"}});
  };
  // One CPU "device": the planner picks phase 0.
  CommandResult models = Moectl(*dir_, SocketFlag() + " models --json");
  ASSERT_EQ(models.exit_code, 0) << models.err;
  auto m = nlohmann::json::parse(models.out);
  ASSERT_EQ(m["models"].size(), 1u) << models.out;
  EXPECT_EQ(m["models"][0]["phase"], "variant 0");
  EXPECT_EQ(m["models"][0]["max_variant"], 1);
  const uint64_t bytes_v0 = std::stoull(m["models"][0]["weight_bytes"].get<std::string>());

  // A request in flight when the switch starts still completes: the switch drains first.
  std::thread in_flight_client([&] {
    nlohmann::json body = nlohmann::json::parse(ChatBody());
    body["max_tokens"] = 200;
    auto r = HttpRequestOnce(moed_->port(), "POST", "/v1/chat/completions", body.dump(),
                             {{"Content-Type", "application/json"}});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status, 200) << r->body;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CommandResult phase = Moectl(*dir_, SocketFlag() + " phase 1");
  in_flight_client.join();
  ASSERT_EQ(phase.exit_code, 0) << phase.err;
  EXPECT_THAT(phase.out, HasSubstr("phase variant 0 -> variant 1"));
  CommandResult status = Moectl(*dir_, SocketFlag() + " status --json");
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_EQ(nlohmann::json::parse(status.out)["phase"], "variant 1");
  models = Moectl(*dir_, SocketFlag() + " models --json");
  const uint64_t bytes_v1 =
      std::stoull(nlohmann::json::parse(models.out)["models"][0]["weight_bytes"].get<std::string>());
  EXPECT_GT(bytes_v1, bytes_v0) << "Q8_0 experts are larger than Q4_K ones";
  auto after_switch = chat("demo");
  ASSERT_TRUE(after_switch.ok()) << after_switch.status();
  EXPECT_EQ(after_switch->status, 200) << after_switch->body;

  // An impossible phase is refused by the planner and leaves variant 1 serving.
  CommandResult bad = Moectl(*dir_, SocketFlag() + " phase 7");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("7"));
  EXPECT_EQ(nlohmann::json::parse(Moectl(*dir_, SocketFlag() + " status --json").out)["phase"], "variant 1");

  // Unload: generation and /health answer 503 until a model is loaded again.
  CommandResult unload = Moectl(*dir_, SocketFlag() + " unload");
  ASSERT_EQ(unload.exit_code, 0) << unload.err;
  EXPECT_THAT(unload.out, HasSubstr("unloaded demo"));
  auto unloaded = chat("demo");
  ASSERT_TRUE(unloaded.ok()) << unloaded.status();
  EXPECT_EQ(unloaded->status, 503) << unloaded->body;
  EXPECT_THAT(unloaded->body, HasSubstr("No model is loaded"));
  EXPECT_THAT(Moectl(*dir_, SocketFlag() + " models").out, HasSubstr("no model loaded"));

  // Load another file under another name; a file that does not exist is a clear error.
  CommandResult load = Moectl(*dir_, SocketFlag() + " load " + *dir_ + "/demo.gguf --name demo2");
  ASSERT_EQ(load.exit_code, 0) << load.err;
  EXPECT_THAT(load.out, HasSubstr("demo2"));
  auto loaded = chat("demo2");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->status, 200) << loaded->body;
  CommandResult missing = Moectl(*dir_, SocketFlag() + " load " + *dir_ + "/missing.gguf");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("missing.gguf"));
  auto still = chat("demo2");
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->status, 200) << still->body;

  EXPECT_EQ(moed_->pid(), pid_before);
  auto exit_code = moed_->SignalAndWait(SIGTERM, 60);
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
}

TEST(MoectlTest, NoDaemonIsAClearError) {
  const std::string dir = ::testing::TempDir();
  CommandResult r = Moectl(dir, "--socket /nonexistent/moed/admin.sock status");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot reach moed at unix:/nonexistent/moed/admin.sock"));
  EXPECT_TRUE(r.out.empty());
}

TEST(MoectlTest, BadUsageExitsTwo) {
  const std::string dir = ::testing::TempDir();
  EXPECT_EQ(Moectl(dir, "").exit_code, 2);
  EXPECT_EQ(Moectl(dir, "frobnicate").exit_code, 2);
  EXPECT_EQ(Moectl(dir, "status --bogus").exit_code, 2);
  EXPECT_EQ(Moectl(dir, "--socket a --address b:1 status").exit_code, 2);
  EXPECT_EQ(Moectl(dir, "load").exit_code, 2);
  EXPECT_EQ(Moectl(dir, "phase").exit_code, 2);
  EXPECT_EQ(Moectl(dir, "phase x").exit_code, 2);
  EXPECT_EQ(Moectl(dir, "phase --variant 1 --budget 100").exit_code, 2);
}

}  // namespace
}  // namespace moed::testing

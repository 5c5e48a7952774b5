// The systemd notify protocol, with the test as the service manager: it binds the NOTIFY_SOCKET
// datagram socket, starts the real moed with NOTIFY_SOCKET and WATCHDOG_USEC set, and checks what
// arrives: STATUS= lines, READY=1 only once the workers are loaded and /health answers 200,
// WATCHDOG=1 repeatedly, STOPPING=1 after SIGTERM, exit code 0. Sender pids come from
// SO_PASSCRED, as systemd's NotifyAccess=main checks them.
#include <signal.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "daemon/gateway/testing/http_test_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/deploy/tiny_moed.h"
#include "tests/integration/moed_process.h"

namespace moed::testing {
namespace {

using Clock = std::chrono::steady_clock;

struct Message {
  pid_t pid = 0;                   // the sender, from SCM_CREDENTIALS
  std::vector<std::string> lines;  // "READY=1", "STATUS=...", ...
  Clock::time_point at;
  // For READY=1 only: what the test saw at that moment.
  int health_status = 0;
  std::string log;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The service manager's side: a datagram socket read by a thread until Stop().
class NotifyListener {
 public:
  // `log_path`: moed's log, read when READY=1 arrives to find the port and the workers' lines.
  NotifyListener(const std::string& socket_path, std::string log_path) : log_path_(std::move(log_path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    socket_path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    const int one = 1;
    ok_ = fd_ >= 0 && socket_path.size() < sizeof(addr.sun_path) &&
          ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
          ::setsockopt(fd_, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) == 0;
    if (ok_) thread_ = std::thread([this] { Run(); });
  }
  ~NotifyListener() {
    Stop();
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return ok_; }
  // Reads what is still queued (moed's last datagrams), then stops the thread.
  void Stop() {
    if (!thread_.joinable()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    stop_ = true;
    thread_.join();
  }
  std::vector<Message> Messages() const {
    std::lock_guard<std::mutex> lock(mu_);
    return messages_;
  }
  // Waits until a message with `line` arrived; false after `timeout`.
  bool WaitFor(const std::string& line, std::chrono::seconds timeout) const {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      for (const Message& m : Messages()) {
        for (const std::string& l : m.lines) {
          if (l == line) return true;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

 private:
  void Run() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char buf[4096];
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
      iovec iov{buf, sizeof(buf)};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      const ssize_t n = ::recvmsg(fd_, &msg, MSG_DONTWAIT);
      if (n <= 0) continue;
      Message m;
      m.at = Clock::now();
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
          ucred cred;
          std::memcpy(&cred, CMSG_DATA(c), sizeof(cred));
          m.pid = cred.pid;
        }
      }
      std::istringstream text(std::string(buf, static_cast<size_t>(n)));
      for (std::string line; std::getline(text, line);) {
        if (!line.empty()) m.lines.push_back(line);
      }
      if (std::find(m.lines.begin(), m.lines.end(), "READY=1") != m.lines.end()) ObserveReady(&m);
      std::lock_guard<std::mutex> lock(mu_);
      messages_.push_back(std::move(m));
    }
  }

  // What a client sees the instant READY=1 arrives: the log so far and GET /health.
  void ObserveReady(Message* m) const {
    m->log = ReadFile(log_path_);
    std::smatch port;
    const std::regex listening("gateway listening on [^ ]+:([0-9]+)");
    if (!std::regex_search(m->log, port, listening)) return;
    auto health = gateway::testing::HttpRequestOnce(static_cast<uint16_t>(std::stoi(port[1].str())), "GET",
                                                    "/health", "");
    m->health_status = health.ok() ? health->status : -1;
  }

  std::string log_path_;
  int fd_ = -1;
  bool ok_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Message> messages_;  // guarded by mu_
};

// The messages, one a line, for failure output.
std::string Dump(const std::vector<Message>& messages) {
  std::string out;
  for (const Message& m : messages) {
    out += "  pid " + std::to_string(m.pid) + ":";
    for (const std::string& l : m.lines) out += " " + l;
    out += "\n";
  }
  return out;
}

bool HasLine(const Message& m, std::string_view prefix) {
  for (const std::string& l : m.lines) {
    if (l.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

class DeployNotifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTestDir("notify");
    auto config = PrepareTinyMoed(dir_);
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  std::string dir_;
  std::string config_;
};

TEST_F(DeployNotifyTest, ReadyAfterWorkersWatchdogAndStopping) {
  const std::string log = dir_ + "/moed.log";
  NotifyListener listener(dir_ + "/notify.sock", log);
  ASSERT_TRUE(listener.ok()) << "cannot bind " << dir_ << "/notify.sock";
  // WATCHDOG_USEC=1 s: moed pings every 0.5 s.
  auto moed = MoedProcess::Start(config_, log, {{"NOTIFY_SOCKET", dir_ + "/notify.sock"}, {"WATCHDOG_USEC", "1000000"}});
  ASSERT_TRUE(moed.ok()) << moed.status();
  const pid_t pid = moed->pid();
  ASSERT_TRUE(listener.WaitFor("READY=1", std::chrono::seconds(30))) << moed->Log();
  // A window of 3 s holds about six pings; two is enough to show they repeat.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const auto window_end = Clock::now();
  auto exit_code = moed->SignalAndWait(SIGTERM, 60);
  ASSERT_TRUE(exit_code.ok()) << exit_code.status() << "\n" << moed->Log();
  EXPECT_EQ(*exit_code, 0) << moed->Log();
  listener.Stop();

  // Only moed's own messages count (NotifyAccess=main); its workers inherit NOTIFY_SOCKET.
  std::vector<Message> main;
  for (const Message& m : listener.Messages()) {
    if (m.pid == pid) main.push_back(m);
  }
  int ready_index = -1, stopping_index = -1, status_lines = 0, watchdogs_after_ready = 0;
  for (int i = 0; i < static_cast<int>(main.size()); ++i) {
    const Message& m = main[i];
    if (HasLine(m, "STATUS=")) ++status_lines;
    if (HasLine(m, "READY=1")) {
      EXPECT_EQ(ready_index, -1) << "READY=1 sent twice";
      ready_index = i;
    }
    if (HasLine(m, "STOPPING=1") && stopping_index == -1) stopping_index = i;
    if (HasLine(m, "WATCHDOG=1") && ready_index != -1 && stopping_index == -1 && m.at <= window_end) {
      ++watchdogs_after_ready;
    }
  }
  SCOPED_TRACE("messages from moed:\n" + Dump(main));
  ASSERT_NE(ready_index, -1) << "no READY=1 from moed (pid " << pid << ")";
  const Message& ready = main[ready_index];
  // READY=1 only once the workers are loaded: moed already logged "serving" (written after every
  // stage reported its layers loaded) and a client already gets 200 from /health, which answers
  // 503 until a model is served. (The workers' own log lines are relayed asynchronously, so
  // they are not a reliable witness.)
  EXPECT_EQ(ready.health_status, 200) << ready.log;
  EXPECT_THAT(ready.log, ::testing::HasSubstr("serving 'demo'"));
  EXPECT_TRUE(HasLine(main.front(), "STATUS=")) << "the first message should be a STATUS= line";
  EXPECT_GT(ready_index, 0) << "a STATUS= line (loading) should come before READY=1";
  EXPECT_GE(status_lines, 3) << "loading, serving and draining";
  EXPECT_GE(watchdogs_after_ready, 2);
  ASSERT_NE(stopping_index, -1) << "no STOPPING=1 after SIGTERM";
  EXPECT_GT(stopping_index, ready_index);
  for (size_t i = stopping_index; i < main.size(); ++i) EXPECT_FALSE(HasLine(main[i], "READY=1"));
}

TEST_F(DeployNotifyTest, NoReadyWhenWorkersFailToLoad) {
  // A worker binary that exits at once: start-up fails, so READY=1 must never be sent.
  std::string config = ReadFile(config_);
  config.replace(config.find("workers:\n"), 9, "workers:\n  binary: /bin/false\n");
  std::ofstream(config_) << config;
  const std::string log = dir_ + "/moed.log";
  NotifyListener listener(dir_ + "/notify.sock", log);
  ASSERT_TRUE(listener.ok());
  auto moed = MoedProcess::Start(config_, log, {{"NOTIFY_SOCKET", dir_ + "/notify.sock"}});
  ASSERT_FALSE(moed.ok()) << "moed served with /bin/false as its worker";
  listener.Stop();
  bool failed_status = false;
  for (const Message& m : listener.Messages()) {
    EXPECT_FALSE(HasLine(m, "READY=1"));
    failed_status = failed_status || HasLine(m, "STATUS=failed");
  }
  EXPECT_TRUE(failed_status) << "expected a STATUS=failed: line";
}

}  // namespace
}  // namespace moed::testing

// The step channel's framing between two sockets of one process: messages round-trip in order,
// a closed peer or an interrupt ends a read at once, deadlines hold, malformed frames are refused.
#include "proto/step_channel.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "google/protobuf/wrappers.pb.h"
#include "gtest/gtest.h"

namespace moed::wire {
namespace {

class StepChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/moed-step-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/step.sock";
    auto listener = StepListener::Listen(path_);
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_ = std::move(listener).value();
  }
  void TearDown() override {
    listener_.reset();
    rmdir(dir_.c_str());
  }
  void Pair(std::unique_ptr<StepSocket>* client, std::unique_ptr<StepSocket>* server) {
    auto c = StepSocket::Connect(path_);
    ASSERT_TRUE(c.ok()) << c.status();
    auto s = listener_->Accept();
    ASSERT_TRUE(s.ok()) << s.status();
    *client = std::move(c).value();
    *server = std::move(s).value();
  }

  std::string dir_, path_;
  std::unique_ptr<StepListener> listener_;
};

TEST_F(StepChannelTest, MessagesRoundTripInOrder) {
  std::unique_ptr<StepSocket> client, server;
  Pair(&client, &server);
  for (const std::string& text : std::vector<std::string>{"one", "", std::string(300000, 'x')}) {
    google::protobuf::StringValue out, in;
    out.set_value(text);
    std::thread writer([&] { EXPECT_TRUE(client->Write(out, absl::Seconds(5)).ok()); });
    ASSERT_TRUE(server->Read(&in, absl::Now() + absl::Seconds(5)).ok());
    writer.join();
    EXPECT_EQ(in.value(), text);
  }
}

TEST_F(StepChannelTest, NothingPendingClosedPeerDeadlineInterrupt) {
  EXPECT_EQ(listener_->Accept().status().code(), absl::StatusCode::kUnavailable);
  std::unique_ptr<StepSocket> client, server;
  Pair(&client, &server);
  google::protobuf::StringValue in;
  EXPECT_EQ(server->Read(&in, absl::Now() + absl::Milliseconds(50)).code(),
            absl::StatusCode::kDeadlineExceeded);

  const int interrupt = eventfd(0, EFD_CLOEXEC);
  std::thread later([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    const uint64_t one = 1;
    EXPECT_EQ(write(interrupt, &one, sizeof(one)), 8);
  });
  EXPECT_EQ(server->Read(&in, absl::InfiniteFuture(), interrupt).code(),
            absl::StatusCode::kCancelled);
  later.join();
  close(interrupt);

  client.reset();
  EXPECT_EQ(server->Read(&in, absl::InfiniteFuture()).code(), absl::StatusCode::kUnavailable);
  google::protobuf::StringValue out;
  std::unique_ptr<StepSocket> client2, server2;
  Pair(&client2, &server2);
  server2.reset();
  absl::Status s = absl::OkStatus();
  for (int i = 0; i < 3 && s.ok(); ++i)
    s = client2->Write(out, absl::Seconds(1));  // EPIPE once closed
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
}

TEST_F(StepChannelTest, MalformedFramesAndBadPaths) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path_.c_str());
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  auto server = listener_->Accept();
  ASSERT_TRUE(server.ok());
  const uint32_t bad[4] = {0x12345678, 0, 0, 0};
  ASSERT_EQ(write(fd, bad, sizeof(bad)), static_cast<ssize_t>(sizeof(bad)));
  google::protobuf::StringValue in;
  EXPECT_EQ((*server)->Read(&in, absl::Now() + absl::Seconds(5)).code(),
            absl::StatusCode::kDataLoss);
  close(fd);

  EXPECT_EQ(StepSocket::Connect(std::string(200, 'x')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StepSocket::Connect(dir_ + "/nobody.sock").status().code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace moed::wire

// The Unix socket activation transport between two ends in one process (the protocol does not
// care whether the peer is another process): frames in order, large frames, error frames, a peer
// that dies or stalls (an error, never a hang), malformed input and bad paths.
#include "workers/transport/unix_socket_transport.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moed::transport {
namespace {

using ::testing::HasSubstr;

class TransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/moed-transport-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/act.sock";
    options_.timeout = absl::Seconds(5);
  }
  void TearDown() override {
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }

  // A connected pair: sender (connector) and receiver (acceptor).
  void Connect(std::unique_ptr<UnixSocketTransport>* tx, std::unique_ptr<UnixSocketTransport>* rx) {
    auto listener = UnixSocketListener::Listen(path_, options_);
    ASSERT_TRUE(listener.ok()) << listener.status();
    auto c = UnixSocketTransport::Connect(path_, options_);
    ASSERT_TRUE(c.ok()) << c.status();
    auto a = (*listener)->Accept();
    ASSERT_TRUE(a.ok()) << a.status();
    *tx = std::move(c).value();
    *rx = std::move(a).value();
    listener_ = std::move(listener).value();
  }

  std::string dir_, path_;
  UnixSocketOptions options_;
  std::unique_ptr<UnixSocketListener> listener_;
};

TEST_F(TransportTest, FramesArriveInOrder) {
  std::unique_ptr<UnixSocketTransport> tx, rx;
  Connect(&tx, &rx);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(tx->Send(std::vector<float>(i + 1, static_cast<float>(i))).ok());
  for (int i = 0; i < 5; ++i) {
    auto got = rx->Receive();
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, std::vector<float>(i + 1, static_cast<float>(i)));
  }
}

TEST_F(TransportTest, LargeFrameWhileTheReceiverReads) {
  std::unique_ptr<UnixSocketTransport> tx, rx;
  Connect(&tx, &rx);
  std::vector<float> big(3 << 20);  // 12 MB: far beyond the socket buffer
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i % 1000) * 0.5f;
  std::thread sender([&] { EXPECT_TRUE(tx->Send(big).ok()); });
  auto got = rx->Receive();
  sender.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, big);
}

TEST_F(TransportTest, ErrorFrameCarriesTheStatusAndKeepsFramesInStep) {
  std::unique_ptr<UnixSocketTransport> tx, rx;
  Connect(&tx, &rx);
  ASSERT_TRUE(tx->SendError(absl::ResourceExhaustedError("KV cache full")).ok());
  ASSERT_TRUE(tx->Send({1.0f, 2.0f}).ok());
  auto first = rx->Receive();
  EXPECT_EQ(first.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(first.status().message(), "KV cache full");
  EXPECT_TRUE(IsPeerError(first.status()));
  auto second = rx->Receive();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, (std::vector<float>{1.0f, 2.0f}));
}

TEST_F(TransportTest, EmptyFrame) {
  std::unique_ptr<UnixSocketTransport> tx, rx;
  Connect(&tx, &rx);
  ASSERT_TRUE(tx->Send({}).ok());
  auto got = rx->Receive();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->empty());
}

TEST_F(TransportTest, PeerGoneIsUnavailableNotAHang) {
  std::unique_ptr<UnixSocketTransport> tx, rx;
  Connect(&tx, &rx);
  tx.reset();  // the 5 s timeout is not what ends these calls: Unavailable, not DeadlineExceeded
  absl::Status gone = rx->Receive().status();
  EXPECT_EQ(gone.code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(IsPeerError(gone));

  std::unique_ptr<UnixSocketTransport> tx2, rx2;
  Connect(&tx2, &rx2);
  rx2.reset();
  absl::Status s =
      tx2->Send(std::vector<float>(1 << 20));  // larger than the buffer: must see the close
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
}

TEST_F(TransportTest, StalledPeerTimesOut) {
  options_.timeout = absl::Milliseconds(200);
  std::unique_ptr<UnixSocketTransport> tx, rx;
  Connect(&tx, &rx);
  auto got = rx->Receive();
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(got.status().message(), HasSubstr("previous stage"));
  // A sender whose receiver never reads fills the socket buffer, then times out.
  absl::Status s = tx->Send(std::vector<float>(4 << 20));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
}

TEST_F(TransportTest, InterruptEndsEveryWait) {
  const int interrupt = eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(interrupt, 0);
  options_.timeout = absl::Hours(1);
  options_.interrupt_fd = interrupt;
  std::unique_ptr<UnixSocketTransport> tx, rx;
  Connect(&tx, &rx);
  std::thread later([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const uint64_t one = 1;
    EXPECT_EQ(write(interrupt, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
  });
  EXPECT_EQ(rx->Receive().status().code(),
            absl::StatusCode::kCancelled);  // blocked, then interrupted
  later.join();
  EXPECT_EQ(tx->Send(std::vector<float>(4 << 20)).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(listener_->Accept().status().code(), absl::StatusCode::kCancelled);
  unlink(path_.c_str());
  EXPECT_EQ(UnixSocketTransport::Connect(dir_ + "/nobody.sock", options_).status().code(),
            absl::StatusCode::kCancelled);
  close(interrupt);
}

TEST_F(TransportTest, AcceptAndConnectTimeOut) {
  options_.timeout = absl::Milliseconds(100);
  auto listener = UnixSocketListener::Listen(path_, options_);
  ASSERT_TRUE(listener.ok());
  EXPECT_EQ((*listener)->Accept().status().code(), absl::StatusCode::kDeadlineExceeded);
  listener->reset();
  EXPECT_EQ(access(path_.c_str(), F_OK), -1);  // the listener removed its file
  auto c = UnixSocketTransport::Connect(path_, options_);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(TransportTest, ConnectWaitsForALateListener) {
  std::unique_ptr<UnixSocketListener> listener;
  std::thread late([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    listener = std::move(UnixSocketListener::Listen(path_, options_)).value();
  });
  auto c = UnixSocketTransport::Connect(path_, options_);
  late.join();
  ASSERT_TRUE(c.ok()) << c.status();
  auto a = listener->Accept();
  ASSERT_TRUE(a.ok()) << a.status();
}

TEST_F(TransportTest, MalformedAndOutOfOrderFramesAreDataLoss) {
  auto listener = UnixSocketListener::Listen(path_, options_);
  ASSERT_TRUE(listener.ok());
  // A raw client that writes garbage headers.
  auto raw_frame = [&](uint32_t magic, uint32_t kind, uint64_t seq, uint64_t bytes) {
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path_.c_str());
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    struct {
      uint32_t magic, kind;
      uint64_t seq, bytes;
    } h{magic, kind, seq, bytes};
    EXPECT_EQ(write(fd, &h, sizeof(h)), static_cast<ssize_t>(sizeof(h)));
    auto rx = (*listener)->Accept();
    EXPECT_TRUE(rx.ok());
    absl::Status s = (*rx)->Receive().status();
    close(fd);
    return s;
  };
  EXPECT_EQ(raw_frame(0xdeadbeef, 0, 0, 0).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(raw_frame(0x41454f4d, 7, 0, 0).code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(raw_frame(0x41454f4d, 0, 3, 0).message(), HasSubstr("expected frame 0"));
  EXPECT_EQ(raw_frame(0x41454f4d, 0, 0, uint64_t{1} << 40).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(raw_frame(0x41454f4d, 0, 0, 6).code(),
            absl::StatusCode::kDataLoss);  // not whole floats
}

TEST_F(TransportTest, BadPaths) {
  const std::string long_path(200, 'x');
  EXPECT_EQ(UnixSocketListener::Listen(long_path, options_).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnixSocketTransport::Connect("", options_).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::string file = dir_ + "/plain";
  FILE* f = fopen(file.c_str(), "w");
  fclose(f);
  EXPECT_EQ(UnixSocketListener::Listen(file, options_).status().code(),
            absl::StatusCode::kFailedPrecondition);
  unlink(file.c_str());
}

}  // namespace
}  // namespace moed::transport

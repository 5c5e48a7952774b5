// A GenerationBackend for tests that "generates" chosen tokens: each submitted request gets a
// script (token ids) and a thread of its own kind, like the scheduler's, delivers one token per
// request per round to the sinks, then OnFinish (kStop when the script ends first, kLength at
// max_tokens, kCancelled after Cancel). Tests can hold delivery (to keep many streams open),
// inject Submit errors, and inspect what was submitted and cancelled.
#ifndef MOED_DAEMON_GATEWAY_TESTING_SCRIPTED_BACKEND_H_
#define MOED_DAEMON_GATEWAY_TESTING_SCRIPTED_BACKEND_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "daemon/gateway/generation_backend.h"

namespace moed::gateway::testing {

class ScriptedBackend final : public GenerationBackend {
 public:
  using Script = std::function<std::vector<int32_t>(const daemon::GenerateRequest&)>;

  explicit ScriptedBackend(Script script);
  ~ScriptedBackend() override;

  absl::StatusOr<daemon::RequestId> Submit(daemon::GenerateRequest request,
                                           std::shared_ptr<daemon::RequestSink> sink) override;
  void Cancel(daemon::RequestId id) override;
  bool Draining() const override { return draining_.load(); }

  void set_draining(bool on) { draining_.store(on); }
  // The next Submit calls fail with `status` (ok: succeed again).
  void set_submit_error(absl::Status status);
  // While held, accepted requests wait (no tokens are delivered).
  void Hold(bool on);
  // Blocks until `n` requests are waiting or running, or `timeout` passes; returns the count.
  int WaitForActive(int n, absl::Duration timeout);
  // Blocks until `n` requests were submitted in all, or `timeout` passes.
  bool WaitForSubmitted(int n, absl::Duration timeout);
  // Blocks until request `id` was cancelled, or `timeout` passes.
  bool WaitForCancel(daemon::RequestId id, absl::Duration timeout);

  std::vector<daemon::GenerateRequest> submitted() const;
  // Ids Cancel was called for (once each, also when the request had already finished).
  std::vector<daemon::RequestId> cancelled() const;
  int active() const;

 private:
  struct Running {
    daemon::GenerateRequest request;
    std::shared_ptr<daemon::RequestSink> sink;
    std::vector<int32_t> script;
    size_t next = 0;
    bool cancelled = false;
  };
  void Loop();

  Script script_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<daemon::RequestId, Running> running_;
  std::vector<daemon::GenerateRequest> submitted_;
  std::vector<daemon::RequestId> cancelled_;
  absl::Status submit_error_;
  daemon::RequestId next_id_ = 1;
  bool hold_ = false;
  bool stop_ = false;
  std::atomic<bool> draining_{false};
  std::thread thread_;
};

}  // namespace moed::gateway::testing

#endif  // MOED_DAEMON_GATEWAY_TESTING_SCRIPTED_BACKEND_H_

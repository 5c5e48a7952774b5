// The scripted test backend (see scripted_backend.h).
#include "daemon/gateway/testing/scripted_backend.h"

#include <algorithm>
#include <chrono>
#include <utility>

namespace moed::gateway::testing {
namespace {

// A sink event to deliver outside the lock.
struct Event {
  std::shared_ptr<daemon::RequestSink> sink;
  bool finish = false;
  daemon::SampledToken token;
  daemon::FinishReason reason = daemon::FinishReason::kStop;
  daemon::Usage usage;
};

}  // namespace

ScriptedBackend::ScriptedBackend(Script script)
    : script_(std::move(script)), thread_([this] { Loop(); }) {}

ScriptedBackend::~ScriptedBackend() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

absl::StatusOr<daemon::RequestId> ScriptedBackend::Submit(
    daemon::GenerateRequest request, std::shared_ptr<daemon::RequestSink> sink) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!submit_error_.ok()) return submit_error_;
  if (draining_.load()) return absl::UnavailableError("draining");
  if (request.prompt.empty()) return absl::InvalidArgumentError("empty prompt");
  if (request.max_tokens < 1) return absl::InvalidArgumentError("max_tokens < 1");
  const daemon::RequestId id = next_id_++;
  submitted_.push_back(request);
  Running r;
  r.script = script_(request);
  r.request = std::move(request);
  r.sink = std::move(sink);
  running_.emplace(id, std::move(r));
  cv_.notify_all();
  return id;
}

void ScriptedBackend::Cancel(daemon::RequestId id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (std::find(cancelled_.begin(), cancelled_.end(), id) == cancelled_.end()) {
    cancelled_.push_back(id);
  }
  auto it = running_.find(id);
  if (it != running_.end()) it->second.cancelled = true;
  cv_.notify_all();
}

void ScriptedBackend::set_submit_error(absl::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  submit_error_ = std::move(status);
}

void ScriptedBackend::Hold(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  hold_ = on;
  cv_.notify_all();
}

int ScriptedBackend::WaitForActive(int n, absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
               [&] { return static_cast<int>(running_.size()) >= n; });
  return static_cast<int>(running_.size());
}

bool ScriptedBackend::WaitForSubmitted(int n, absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                      [&] { return static_cast<int>(submitted_.size()) >= n; });
}

bool ScriptedBackend::WaitForCancel(daemon::RequestId id, absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] {
    return std::find(cancelled_.begin(), cancelled_.end(), id) != cancelled_.end();
  });
}

std::vector<daemon::GenerateRequest> ScriptedBackend::submitted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return submitted_;
}

std::vector<daemon::RequestId> ScriptedBackend::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

int ScriptedBackend::active() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(running_.size());
}

void ScriptedBackend::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] {
      if (stop_) return true;
      if (running_.empty()) return false;
      if (!hold_) return true;
      for (const auto& [id, r] : running_) {
        if (r.cancelled) return true;
      }
      return false;
    });
    if (stop_) break;
    // One round: a token for every running request (or its end).
    std::vector<Event> events;
    for (auto it = running_.begin(); it != running_.end();) {
      Running& r = it->second;
      Event e;
      e.sink = r.sink;
      if (r.cancelled || (!hold_ && (r.next >= r.script.size() ||
                                     static_cast<int64_t>(r.next) >= r.request.max_tokens))) {
        e.finish = true;
        e.reason = r.cancelled ? daemon::FinishReason::kCancelled
                   : static_cast<int64_t>(r.next) >= r.request.max_tokens
                       ? daemon::FinishReason::kLength
                       : daemon::FinishReason::kStop;
        e.usage.prompt_tokens = static_cast<int64_t>(r.request.prompt.size());
        e.usage.completion_tokens = static_cast<int64_t>(r.next);
        events.push_back(std::move(e));
        it = running_.erase(it);
        continue;
      }
      if (!hold_) {
        e.token.token = r.script[r.next++];
        e.token.logprob = -0.5f;
        for (int k = 0; k < r.request.top_logprobs; ++k) {
          e.token.top.emplace_back(e.token.token + k, -0.5f - static_cast<float>(k));
        }
        events.push_back(std::move(e));
      }
      ++it;
    }
    lock.unlock();
    for (Event& e : events) {
      if (e.finish) {
        e.sink->OnFinish(e.reason, e.usage);
      } else {
        e.sink->OnToken(e.token);
      }
    }
    events.clear();
    lock.lock();
    cv_.notify_all();
  }
  // Like the scheduler's destructor: whatever is left ends with an error.
  std::vector<std::shared_ptr<daemon::RequestSink>> left;
  for (auto& [id, r] : running_) left.push_back(r.sink);
  running_.clear();
  lock.unlock();
  for (auto& sink : left) sink->OnError(absl::UnavailableError("backend stopped"));
}

}  // namespace moed::gateway::testing

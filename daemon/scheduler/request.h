// What the gateway hands the scheduler (a tokenized generation request) and what it gets back
// (events on a sink). The scheduler knows nothing of HTTP, JSON or text: stop strings, reasoning
// and tool-call parsing happen on the gateway side, which cancels a request when a stop string
// matched.
#ifndef MOED_DAEMON_SCHEDULER_REQUEST_H_
#define MOED_DAEMON_SCHEDULER_REQUEST_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cpu/sampling.h"
#include "daemon/scheduler/step_executor.h"

namespace moed::daemon {

using RequestId = uint64_t;

struct GenerateRequest {
  std::vector<int32_t> prompt;          // non-empty, ids < n_vocab
  cpu::SamplingParams sampling;
  int64_t max_tokens = 256;             // > 0; prompt + max_tokens <= context length
  std::vector<int32_t> stop_tokens;     // end of generation (EOS, end of turn)
  int32_t top_logprobs = 0;             // 0..20
  bool use_prefix_cache = true;
};

enum class FinishReason { kStop, kLength, kCancelled };

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // served from the prefix cache
  int64_t completion_tokens = 0;
};

// Receives a request's events. Called on the scheduler thread: implementations must not block
// (hand off to the connection's own loop). After OnFinish or OnError nothing else is called.
class RequestSink {
 public:
  virtual ~RequestSink() = default;
  virtual void OnToken(const SampledToken& token) = 0;
  virtual void OnFinish(FinishReason reason, const Usage& usage) = 0;
  virtual void OnError(const absl::Status& status) = 0;
};

}  // namespace moed::daemon

#endif  // MOED_DAEMON_SCHEDULER_REQUEST_H_

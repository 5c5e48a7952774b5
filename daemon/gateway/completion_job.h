// One generation request end to end, for chat and completions alike: submits its n choices to
// the backend, turns their token events (posted from the scheduler thread onto the connection's
// executor) into SSE chunks or one response, cancels a choice the moment a stop string matches,
// cancels every choice when the client disconnects, and counts moed_requests_total (token and
// latency metrics are the scheduler's).
#ifndef MOED_DAEMON_GATEWAY_COMPLETION_JOB_H_
#define MOED_DAEMON_GATEWAY_COMPLETION_JOB_H_

#include <memory>
#include <string>
#include <vector>

#include "daemon/gateway/choice_stream.h"
#include "daemon/gateway/http_message.h"
#include "daemon/gateway/openai_format.h"
#include "daemon/gateway/served_model.h"
#include "daemon/scheduler/request.h"

namespace moed::metrics {
class MoedMetrics;
}

namespace moed::gateway {

struct JobSpec {
  std::shared_ptr<const ServedModel> model;
  std::vector<daemon::GenerateRequest> requests;  // one per choice, in choice order
  std::vector<ChoiceStreamOptions> choice_options;  // one per choice
  std::unique_ptr<ResponseFormatter> formatter;
  bool stream = false;
  bool include_usage = false;
  int64_t prompt_tokens = 0;  // billed: each distinct prompt once
  int choices_per_prompt = 1;  // n; cached tokens are taken from each prompt's first choice
  std::string endpoint;        // metrics label
  int queue_full_status = 429;
  int retry_after_seconds = 5;
};

// Runs the job; call on `channel`'s executor (from the handler). The job keeps itself alive
// until every choice has ended.
void StartCompletionJob(JobSpec spec, std::shared_ptr<ResponseChannel> channel,
                        metrics::MoedMetrics* metrics);

}  // namespace moed::gateway

#endif  // MOED_DAEMON_GATEWAY_COMPLETION_JOB_H_

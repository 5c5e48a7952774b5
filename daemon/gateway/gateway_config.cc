// GatewayOptions from the daemon's configuration (see gateway_config.h).
#include "daemon/gateway/gateway_config.h"

#include <algorithm>
#include <cmath>

#include "kernels/base/status_macros.h"

namespace moed::gateway {

absl::StatusOr<GatewayOptions> GatewayOptionsFromConfig(const config::Config& config) {
  GatewayOptions options;
  RETURN_IF_ERROR(ParseListenAddress(config.server.listen, &options.host, &options.port));
  ASSIGN_OR_RETURN(options.api_keys, config::ResolveApiKeys(config.server));
  options.max_request_body = config.server.max_request_body;
  options.max_tokens_limit = config.server.max_tokens_limit;
  options.sse_keepalive = config.server.sse_keepalive;
  options.queue_full_status = config.scheduler.queue_full_status;
  // Retry-After takes whole seconds; round up so that clients never retry early.
  options.retry_after_seconds = static_cast<int>(std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(absl::ToDoubleSeconds(config.scheduler.retry_after)))));
  return options;
}

}  // namespace moed::gateway

// GatewayOptions from the daemon's YAML configuration (configs/config.h); a separate library
// (moed_gateway_config) so that the gateway itself does not depend on the YAML parser.
#ifndef MOED_DAEMON_GATEWAY_GATEWAY_CONFIG_H_
#define MOED_DAEMON_GATEWAY_GATEWAY_CONFIG_H_

#include "absl/status/statusor.h"
#include "configs/config.h"
#include "daemon/gateway/gateway_options.h"

namespace moed::gateway {

// server.* (listen, keys from api_keys and api_key_file, body and max_tokens limits, SSE
// keep-alive) and scheduler.{queue_full_status, retry_after}. Errors: a bad listen address, an
// unreadable key file.
absl::StatusOr<GatewayOptions> GatewayOptionsFromConfig(const config::Config& config);

}  // namespace moed::gateway

#endif  // MOED_DAEMON_GATEWAY_GATEWAY_CONFIG_H_

// Listen-address parsing for the gateway options (see gateway_options.h).
#include "daemon/gateway/gateway_options.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/strings.h"

namespace moed::gateway {

absl::Status ParseListenAddress(std::string_view listen, std::string* host, uint16_t* port) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", Sv(listen), "\": ", Sv(why)));
  };
  std::string_view host_part;
  std::string_view port_part;
  if (!listen.empty() && listen.front() == '[') {
    const size_t close = listen.find(']');
    if (close == std::string_view::npos || close + 1 >= listen.size() || listen[close + 1] != ':') {
      return bad("expected [ipv6]:port");
    }
    host_part = listen.substr(1, close - 1);
    port_part = listen.substr(close + 2);
  } else {
    const size_t colon = listen.rfind(':');
    if (colon == std::string_view::npos) return bad("expected host:port");
    host_part = listen.substr(0, colon);
    port_part = listen.substr(colon + 1);
  }
  uint32_t value = 0;
  if (host_part.empty()) return bad("empty host");
  if (!absl::SimpleAtoi(Sv(port_part), &value) || value > 65535) return bad("bad port");
  *host = std::string(host_part);
  *port = static_cast<uint16_t>(value);
  return absl::OkStatus();
}

}  // namespace moed::gateway

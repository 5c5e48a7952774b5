// The gateway's request routing: authentication (Authorization: Bearer, every endpoint except
// /health), the OpenAI endpoints (/v1/chat/completions, /v1/completions, /v1/models), and
// /health, /metrics, /tokenize, /detokenize (llama-server's shapes). Beast-free: HttpServer
// delivers requests here, tests can call Handle() directly.
//
//   Gateway gateway(options, metrics);
//   gateway.SetModel(model);            // until then generation and /health answer 503
//   HttpServer server(server_options, &gateway);
//   ASSIGN_OR_RETURN(uint16_t port, server.Start());
//   ...                                 // SIGTERM: gateway.SetDraining(true); scheduler.Drain()
#ifndef MOED_DAEMON_GATEWAY_GATEWAY_H_
#define MOED_DAEMON_GATEWAY_GATEWAY_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "daemon/gateway/gateway_options.h"
#include "daemon/gateway/http_message.h"
#include "daemon/gateway/json_input.h"
#include "daemon/gateway/served_model.h"

namespace moed::metrics {
class MoedMetrics;
}

namespace moed::gateway {

class Gateway final : public HttpHandler {
 public:
  // `metrics` may be null (then /metrics answers 404); otherwise it must outlive the gateway.
  Gateway(GatewayOptions options, metrics::MoedMetrics* metrics);

  // The model to serve; null while loading, reloading or unloaded: generation, /v1/models and
  // /health then answer 503 with Retry-After and `why_none` as the message.
  void SetModel(std::shared_ptr<const ServedModel> model, std::string why_none = "Loading model");
  std::shared_ptr<const ServedModel> model() const;
  // Draining: new generation requests and /health get 503 with Retry-After; streams in flight
  // continue. Also in effect while the model's backend reports Draining().
  void SetDraining(bool draining) { draining_.store(draining); }

  void Handle(HttpRequest request, std::shared_ptr<ResponseChannel> channel) override;
  HttpResponse ProtocolError(int status, std::string_view message) override;

  const GatewayOptions& options() const { return options_; }

 private:
  // The route's canonical path (the metrics label) and whether the method fits; "" if unknown.
  bool Authorized(const HttpRequest& request) const;
  bool Draining(const ServedModel* model) const;
  absl::Status NoModel() const;  // Unavailable(why_none_)
  void Reply(ResponseChannel& channel, std::string_view endpoint, HttpResponse response);
  void ReplyError(ResponseChannel& channel, std::string_view endpoint, const absl::Status& status);

  HttpResponse Health();
  HttpResponse Models(std::string_view path);
  absl::StatusOr<HttpResponse> Tokenize(const Json& body);
  absl::StatusOr<HttpResponse> Detokenize(const Json& body);
  // Generation: parse, render, tokenize, then hand over to a CompletionJob (generation_routes.cc).
  absl::Status StartChat(const Json& body, std::shared_ptr<ResponseChannel> channel);
  absl::Status StartCompletion(const Json& body, std::shared_ptr<ResponseChannel> channel);
  absl::StatusOr<std::shared_ptr<const ServedModel>> ModelFor(const std::string& requested) const;

  GatewayOptions options_;
  metrics::MoedMetrics* metrics_;
  mutable std::mutex mu_;
  std::shared_ptr<const ServedModel> model_;
  std::string why_none_ = "Loading model";
  std::atomic<bool> draining_{false};
};

}  // namespace moed::gateway

#endif  // MOED_DAEMON_GATEWAY_GATEWAY_H_

// Routing, authentication and the non-generation endpoints (see gateway.h); the generation
// endpoints are in generation_routes.cc.
#include "daemon/gateway/gateway.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "daemon/gateway/api_error.h"
#include "daemon/metrics/moed_metrics.h"
#include "daemon/text/utf8.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::gateway {
namespace {

// Compares without an early exit, so a key cannot be guessed byte by byte from timing.
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? a[i] : 0;
    const unsigned char y = i < b.size() ? b[i] : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

HttpResponse JsonResponse(const Json& body) {
  HttpResponse response;
  response.body = DumpJson(body);
  return response;
}

struct Route {
  std::string_view path;
  std::string_view method;
  std::string_view endpoint;  // canonical path (metrics label)
};

constexpr Route kRoutes[] = {
    {"/health", "GET", "/health"},
    {"/v1/health", "GET", "/health"},
    {"/metrics", "GET", "/metrics"},
    {"/v1/models", "GET", "/v1/models"},
    {"/models", "GET", "/v1/models"},
    {"/v1/chat/completions", "POST", "/v1/chat/completions"},
    {"/chat/completions", "POST", "/v1/chat/completions"},
    {"/v1/completions", "POST", "/v1/completions"},
    {"/completions", "POST", "/v1/completions"},
    {"/tokenize", "POST", "/tokenize"},
    {"/detokenize", "POST", "/detokenize"},
};

// The route for `path` (or /v1/models/{id}); nullptr if none.
const Route* FindRoute(std::string_view path) {
  for (const Route& route : kRoutes) {
    if (route.path == path) return &route;
  }
  static constexpr Route kModel = {"/v1/models/", "GET", "/v1/models"};
  if (path.size() > kModel.path.size() && path.substr(0, kModel.path.size()) == kModel.path) {
    return &kModel;
  }
  return nullptr;
}

}  // namespace

Gateway::Gateway(GatewayOptions options, metrics::MoedMetrics* metrics)
    : options_(std::move(options)), metrics_(metrics) {}

void Gateway::SetModel(std::shared_ptr<const ServedModel> model, std::string why_none) {
  std::lock_guard<std::mutex> lock(mu_);
  model_ = std::move(model);
  why_none_ = std::move(why_none);
}

absl::Status Gateway::NoModel() const {
  std::lock_guard<std::mutex> lock(mu_);
  return absl::UnavailableError(why_none_);
}

std::shared_ptr<const ServedModel> Gateway::model() const {
  std::lock_guard<std::mutex> lock(mu_);
  return model_;
}

bool Gateway::Draining(const ServedModel* model) const {
  return draining_.load() || (model != nullptr && model->backend->Draining());
}

bool Gateway::Authorized(const HttpRequest& request) const {
  if (options_.api_keys.empty()) return true;
  std::string_view header = request.Header("authorization");
  constexpr std::string_view kBearer = "bearer ";
  if (header.size() <= kBearer.size() ||
      absl::AsciiStrToLower(Sv(header.substr(0, kBearer.size()))) != kBearer) {
    return false;
  }
  std::string_view key = header.substr(kBearer.size());
  while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
  while (!key.empty() && key.back() == ' ') key.remove_suffix(1);
  bool match = false;
  for (const std::string& allowed : options_.api_keys) match |= ConstantTimeEquals(key, allowed);
  return match;
}

void Gateway::Reply(ResponseChannel& channel, std::string_view endpoint, HttpResponse response) {
  if (metrics_ != nullptr) metrics_->Request(endpoint, response.status).Increment();
  channel.Send(std::move(response));
}

void Gateway::ReplyError(ResponseChannel& channel, std::string_view endpoint,
                         const absl::Status& status) {
  Reply(channel, endpoint,
        ErrorResponse(ErrorFromStatus(status, options_.queue_full_status,
                                      options_.retry_after_seconds)));
}

HttpResponse Gateway::ProtocolError(int status, std::string_view message) {
  ApiError error;
  error.http_status = status;
  error.message = std::string(message);
  error.code = status == 413 ? "request_too_large" : "invalid_request";
  if (metrics_ != nullptr) metrics_->Request("other", status).Increment();
  return ErrorResponse(error);
}

void Gateway::Handle(HttpRequest request, std::shared_ptr<ResponseChannel> channel) {
  const Route* route = FindRoute(request.path);
  const std::string_view endpoint = route != nullptr ? route->endpoint : "other";
  if (!(route != nullptr && route->endpoint == "/health") && !Authorized(request)) {
    HttpResponse response = ErrorResponse(ErrorFromStatus(HttpError(
        absl::StatusCode::kUnauthenticated, 401, "authentication_error", "invalid_api_key",
        request.Header("authorization").empty()
            ? "You didn't provide an API key. You need to provide your API key in an "
              "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            : "Incorrect API key provided.")));
    response.headers.emplace_back("WWW-Authenticate", "Bearer");
    Reply(*channel, endpoint, std::move(response));
    return;
  }
  if (route == nullptr) {
    ReplyError(*channel, endpoint,
               HttpError(absl::StatusCode::kNotFound, 404, "invalid_request_error", "",
                         absl::StrCat("Invalid URL (", text::SanitizeUtf8(request.method), " ",
                                      text::SanitizeUtf8(request.path), ")")));
    return;
  }
  if (request.method != route->method) {
    HttpResponse response = ErrorResponse(ErrorFromStatus(HttpError(
        absl::StatusCode::kInvalidArgument, 405, "invalid_request_error", "method_not_allowed",
        absl::StrCat("Method ", text::SanitizeUtf8(request.method), " is not allowed on ",
                     Sv(route->path), "; use ", Sv(route->method), "."))));
    response.headers.emplace_back("Allow", std::string(route->method));
    Reply(*channel, endpoint, std::move(response));
    return;
  }
  if (endpoint == "/health") return Reply(*channel, endpoint, Health());
  if (endpoint == "/v1/models") return Reply(*channel, endpoint, Models(request.path));
  if (endpoint == "/metrics") {
    if (metrics_ == nullptr) {
      return ReplyError(*channel, endpoint,
                        HttpError(absl::StatusCode::kNotFound, 404, "invalid_request_error", "",
                                  "Metrics are disabled on this server."));
    }
    HttpResponse response;
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    response.body = metrics_->Serialize();
    return Reply(*channel, endpoint, std::move(response));
  }

  // POST endpoints: a JSON object body.
  absl::StatusOr<Json> body = ParseJsonObject(request.body, options_.max_json_depth);
  if (!body.ok()) return ReplyError(*channel, endpoint, body.status());
  absl::Status started;
  if (endpoint == "/v1/chat/completions") {
    started = StartChat(*body, channel);
  } else if (endpoint == "/v1/completions") {
    started = StartCompletion(*body, channel);
  } else {
    absl::StatusOr<HttpResponse> response =
        endpoint == "/tokenize" ? Tokenize(*body) : Detokenize(*body);
    if (response.ok()) return Reply(*channel, endpoint, *std::move(response));
    started = response.status();
  }
  // On success the job answers (and counts) later; errors before it started are answered here.
  if (!started.ok()) ReplyError(*channel, endpoint, started);
}

HttpResponse Gateway::Health() {
  std::shared_ptr<const ServedModel> served = model();
  if (served == nullptr) {
    return ErrorResponse(ErrorFromStatus(NoModel(), options_.queue_full_status, options_.retry_after_seconds));
  }
  if (Draining(served.get())) {
    return ErrorResponse(ErrorFromStatus(absl::UnavailableError("Server is draining"),
                                         options_.queue_full_status,
                                         options_.retry_after_seconds));
  }
  return JsonResponse(Json{{"status", "ok"}});
}

HttpResponse Gateway::Models(std::string_view path) {
  std::shared_ptr<const ServedModel> served = model();
  if (served == nullptr) {
    return ErrorResponse(ErrorFromStatus(NoModel(), options_.queue_full_status, options_.retry_after_seconds));
  }
  Json entry;
  entry["id"] = served->id;
  entry["object"] = "model";
  entry["created"] = served->created;
  entry["owned_by"] = "moed";
  entry["meta"] = Json{{"n_ctx", served->context_length},
                       {"n_vocab", served->tokenizer->n_vocab()}};
  constexpr std::string_view kPrefix = "/v1/models/";
  if (path.size() > kPrefix.size() && path.substr(0, kPrefix.size()) == kPrefix) {
    if (path.substr(kPrefix.size()) != served->id) {
      return ErrorResponse(ErrorFromStatus(HttpError(
          absl::StatusCode::kNotFound, 404, "invalid_request_error", "model_not_found",
          absl::StrCat("The model '", text::SanitizeUtf8(path.substr(kPrefix.size())),
                       "' does not exist."))));
    }
    return JsonResponse(entry);
  }
  return JsonResponse(Json{{"object", "list"}, {"data", Json::array({std::move(entry)})}});
}

absl::StatusOr<std::shared_ptr<const ServedModel>> Gateway::ModelFor(
    const std::string& requested) const {
  std::shared_ptr<const ServedModel> served = model();
  if (served == nullptr) return NoModel();
  if (!requested.empty() && requested != served->id) {
    return HttpError(absl::StatusCode::kNotFound, 404, "invalid_request_error", "model_not_found",
                     absl::StrCat("The model '", requested, "' does not exist."));
  }
  return served;
}

absl::StatusOr<HttpResponse> Gateway::Tokenize(const Json& body) {
  ASSIGN_OR_RETURN(std::shared_ptr<const ServedModel> served, ModelFor(""));
  ASSIGN_OR_RETURN(std::optional<std::string> content, OptionalString(body, "content"));
  if (!content) {
    return ParamError("content", "Missing required parameter: 'content'.",
                      "missing_required_parameter");
  }
  ASSIGN_OR_RETURN(std::optional<bool> add_special, OptionalBool(body, "add_special"));
  ASSIGN_OR_RETURN(std::optional<bool> parse_special, OptionalBool(body, "parse_special"));
  ASSIGN_OR_RETURN(std::optional<bool> with_pieces, OptionalBool(body, "with_pieces"));
  text::EncodeOptions options;
  options.add_special = add_special.value_or(false);
  options.parse_special = parse_special.value_or(true);
  absl::StatusOr<std::vector<int32_t>> ids = served->tokenizer->Encode(*content, options);
  if (!ids.ok()) return ParamError("content", StdSv(ids.status().message()), "invalid_value");
  Json tokens = Json::array();
  for (int32_t id : *ids) {
    if (!with_pieces.value_or(false)) {
      tokens.push_back(id);
      continue;
    }
    ASSIGN_OR_RETURN(std::string piece, served->tokenizer->TokenToPiece(id, true));
    Json entry;
    entry["id"] = id;
    // llama-server: the piece as a string when it is valid UTF-8, else its bytes.
    if (text::IsValidUtf8(piece)) {
      entry["piece"] = piece;
    } else {
      entry["piece"] = std::vector<uint8_t>(piece.begin(), piece.end());
    }
    tokens.push_back(std::move(entry));
  }
  return JsonResponse(Json{{"tokens", std::move(tokens)}});
}

absl::StatusOr<HttpResponse> Gateway::Detokenize(const Json& body) {
  ASSIGN_OR_RETURN(std::shared_ptr<const ServedModel> served, ModelFor(""));
  const Json* tokens = Member(body, "tokens");
  if (tokens == nullptr) {
    return ParamError("tokens", "Missing required parameter: 'tokens'.",
                      "missing_required_parameter");
  }
  if (!tokens->is_array()) return TypeError("tokens", "an array", *tokens);
  std::vector<int32_t> ids;
  for (size_t i = 0; i < tokens->size(); ++i) {
    const Json& id = (*tokens)[i];
    const std::string p = absl::StrCat("tokens[", i, "]");
    if (!id.is_number_integer()) return TypeError(p, "an integer", id);
    const int64_t v = id.get<int64_t>();
    if (v < 0 || v >= served->tokenizer->n_vocab()) {
      return ParamError(p, absl::StrCat("Token id ", v, " is outside the vocabulary."),
                        "invalid_value");
    }
    ids.push_back(static_cast<int32_t>(v));
  }
  ASSIGN_OR_RETURN(std::string text, served->tokenizer->Decode(ids, /*special=*/true));
  return JsonResponse(Json{{"content", text::SanitizeUtf8(text)}});
}

}  // namespace moed::gateway

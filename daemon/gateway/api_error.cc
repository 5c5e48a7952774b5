// OpenAI error envelopes from absl::Status (see api_error.h).
#include "daemon/gateway/api_error.h"

#include <optional>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/strings.h"
#include "nlohmann/json.hpp"

namespace moed::gateway {
namespace {

constexpr char kParamUrl[] = "moed.gateway/param";
constexpr char kCodeUrl[] = "moed.gateway/code";
constexpr char kTypeUrl[] = "moed.gateway/type";
constexpr char kHttpStatusUrl[] = "moed.gateway/http_status";

std::optional<std::string> Payload(const absl::Status& status, const char* url) {
  absl::optional<absl::Cord> cord = status.GetPayload(url);
  if (!cord.has_value()) return std::nullopt;
  return std::string(*cord);
}

std::string DefaultType(int http_status) {
  switch (http_status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 429: return "rate_limit_error";
    case 501: return "not_supported_error";
    case 503: return "unavailable_error";
    default: return http_status >= 500 ? "server_error" : "invalid_request_error";
  }
}

}  // namespace

absl::Status ParamError(std::string_view param, std::string_view message, std::string_view code) {
  absl::Status status = absl::InvalidArgumentError(Sv(message));
  status.SetPayload(kParamUrl, absl::Cord(Sv(param)));
  if (!code.empty()) status.SetPayload(kCodeUrl, absl::Cord(Sv(code)));
  return status;
}

absl::Status HttpError(absl::StatusCode code, int http_status, std::string_view type,
                       std::string_view error_code, std::string_view message) {
  absl::Status status(code, Sv(message));
  status.SetPayload(kHttpStatusUrl, absl::Cord(absl::StrCat(http_status)));
  if (!type.empty()) status.SetPayload(kTypeUrl, absl::Cord(Sv(type)));
  if (!error_code.empty()) status.SetPayload(kCodeUrl, absl::Cord(Sv(error_code)));
  return status;
}

ApiError ErrorFromStatus(const absl::Status& status, int queue_full_status,
                         int retry_after_seconds) {
  ApiError error;
  error.message = std::string(status.message());
  if (error.message.empty()) error.message = status.ToString();
  int http = 500;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition: http = 400; break;
    case absl::StatusCode::kNotFound: http = 404; break;
    case absl::StatusCode::kUnauthenticated: http = 401; break;
    case absl::StatusCode::kPermissionDenied: http = 403; break;
    case absl::StatusCode::kResourceExhausted: http = queue_full_status; break;
    case absl::StatusCode::kUnavailable: http = 503; break;
    case absl::StatusCode::kUnimplemented: http = 501; break;
    default: http = 500;
  }
  if (std::optional<std::string> explicit_status = Payload(status, kHttpStatusUrl)) {
    int parsed = 0;
    if (absl::SimpleAtoi(*explicit_status, &parsed) && parsed >= 400 && parsed <= 599) {
      http = parsed;
    }
  }
  error.http_status = http;
  error.type = Payload(status, kTypeUrl).value_or(DefaultType(http));
  error.param = Payload(status, kParamUrl).value_or("");
  error.code = Payload(status, kCodeUrl).value_or("");
  if (error.code.empty() && status.code() == absl::StatusCode::kResourceExhausted) {
    error.code = "queue_full";
  }
  if (http == 429 || http == 503) error.retry_after_seconds = retry_after_seconds;
  return error;
}

std::string ErrorBodyText(const ApiError& error) {
  nlohmann::ordered_json inner;
  inner["message"] = error.message;
  inner["type"] = error.type;
  inner["param"] = error.param.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(error.param);
  inner["code"] = error.code.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(error.code);
  nlohmann::ordered_json body;
  body["error"] = std::move(inner);
  return body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

HttpResponse ErrorResponse(const ApiError& error) {
  HttpResponse response;
  response.status = error.http_status;
  response.body = ErrorBodyText(error);
  if (error.retry_after_seconds > 0) {
    response.headers.emplace_back("Retry-After", absl::StrCat(error.retry_after_seconds));
  }
  return response;
}

}  // namespace moed::gateway

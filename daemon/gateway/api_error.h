// OpenAI's error envelope, {"error":{"message","type","param","code"}}, and the mapping from
// moed's absl::Status errors to it and to an HTTP status. Request-validation code reports a bad
// field with ParamError(), which carries the field name and an OpenAI error code inside the
// Status (as payloads), so that every layer keeps returning plain absl::Status.
#ifndef MOED_DAEMON_GATEWAY_API_ERROR_H_
#define MOED_DAEMON_GATEWAY_API_ERROR_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "daemon/gateway/http_message.h"

namespace moed::gateway {

struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // empty: null
  std::string code;   // empty: null
  int retry_after_seconds = 0;  // > 0: a Retry-After header goes with it
};

// InvalidArgument naming the request field `param` (dotted path, e.g. "messages[1].role"), with
// an optional OpenAI error code ("invalid_type", "context_length_exceeded", ...).
absl::Status ParamError(std::string_view param, std::string_view message,
                        std::string_view code = "");
// A status with an explicit HTTP status and OpenAI type/code (404 model_not_found, ...).
absl::Status HttpError(absl::StatusCode code, int http_status, std::string_view type,
                       std::string_view error_code, std::string_view message);

// The error a status becomes. Without an explicit HTTP status: InvalidArgument/OutOfRange ->
// 400, NotFound -> 404, Unauthenticated -> 401, PermissionDenied -> 403, ResourceExhausted ->
// `queue_full_status` (429 or 503), Unavailable -> 503, Unimplemented -> 501, else 500.
// 429 and 503 carry `retry_after_seconds`.
ApiError ErrorFromStatus(const absl::Status& status, int queue_full_status = 429,
                         int retry_after_seconds = 5);

// {"error":{...}} as compact JSON text.
std::string ErrorBodyText(const ApiError& error);
// The whole HTTP response: status, JSON body, Retry-After when set.
HttpResponse ErrorResponse(const ApiError& error);

}  // namespace moed::gateway

#endif  // MOED_DAEMON_GATEWAY_API_ERROR_H_

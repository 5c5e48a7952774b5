// grpc::Status <-> absl::Status. Codes outside the shared range (a peer from the future) become
// UNKNOWN rather than an out-of-range enum value.
#include "proto/grpc_status.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/base/strings.h"

namespace moed {

absl::Status FromGrpcStatus(const grpc::Status& status, std::string_view context) {
  if (status.ok()) return absl::OkStatus();
  int code = static_cast<int>(status.error_code());
  if (code <= 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    code = static_cast<int>(absl::StatusCode::kUnknown);
  }
  std::string message = status.error_message();
  if (!context.empty()) message = absl::StrCat(Sv(context), ": ", message);
  return absl::Status(static_cast<absl::StatusCode>(code), message);
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  int code = static_cast<int>(status.code());
  if (code <= 0 || code > static_cast<int>(grpc::StatusCode::UNAUTHENTICATED)) {
    code = static_cast<int>(grpc::StatusCode::UNKNOWN);
  }
  return grpc::Status(static_cast<grpc::StatusCode>(code), std::string(status.message()));
}

}  // namespace moed

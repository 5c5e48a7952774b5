// The one bridge between gRPC's error type and moed's: grpc::Status <-> absl::Status. The two
// code enums share their numbering (both follow google.rpc.Code), so a code crosses unchanged.
//
//   RETURN_IF_GRPC_ERROR(stub->Load(&ctx, request, &response));  // in a function returning Status
//   return ToGrpcStatus(core_->Load(...));                        // in a service handler
#ifndef MOED_PROTO_GRPC_STATUS_H_
#define MOED_PROTO_GRPC_STATUS_H_

#include <string_view>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"
#include "kernels/base/status_macros.h"

namespace moed {

// The absl::Status for a gRPC status; `context`, when not empty, prefixes the message
// ("Load on worker 1: ...").
absl::Status FromGrpcStatus(const grpc::Status& status, std::string_view context = {});
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace moed

#define RETURN_IF_GRPC_ERROR(expr) RETURN_IF_ERROR(::moed::FromGrpcStatus(expr))

#endif  // MOED_PROTO_GRPC_STATUS_H_

// RETURN_IF_ERROR / ASSIGN_OR_RETURN: the only error-propagation macros in moed. Every module
// boundary returns absl::Status or absl::StatusOr; these keep call sites to one line.
#ifndef MOED_KERNELS_BASE_STATUS_MACROS_H_
#define MOED_KERNELS_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MOED_CONCAT_INNER_(a, b) a##b
#define MOED_CONCAT_(a, b) MOED_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status moed_status_ = (expr);      \
    if (!moed_status_.ok()) return moed_status_; \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(MOED_CONCAT_(moed_statusor_, __LINE__), lhs, expr)

#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()

#endif  // MOED_KERNELS_BASE_STATUS_MACROS_H_

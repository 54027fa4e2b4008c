// Early-return helpers for absl::Status and absl::StatusOr. Debian's Abseil
// (20220623) ships no status macros, so libdynamo defines its own, prefixed
// to avoid clashing with an embedder's.
#ifndef DYNAMO_CORE_STATUS_MACROS_H_
#define DYNAMO_CORE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define DYNAMO_RETURN_IF_ERROR(expr)                  \
  do {                                                \
    ::absl::Status dynamo_status_ = (expr);           \
    if (!dynamo_status_.ok()) return dynamo_status_;  \
  } while (0)

#define DYNAMO_CONCAT_INNER_(a, b) a##b
#define DYNAMO_CONCAT_(a, b) DYNAMO_CONCAT_INNER_(a, b)

// DYNAMO_ASSIGN_OR_RETURN(auto x, Foo()); or DYNAMO_ASSIGN_OR_RETURN(x, Foo());
#define DYNAMO_ASSIGN_OR_RETURN(lhs, expr) \
  DYNAMO_ASSIGN_OR_RETURN_IMPL_(DYNAMO_CONCAT_(dynamo_statusor_, __LINE__), lhs, expr)
#define DYNAMO_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return std::move(tmp).status();      \
  lhs = std::move(tmp).value()

#endif  // DYNAMO_CORE_STATUS_MACROS_H_

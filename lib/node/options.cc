#include "dynamo/options.h"

#include "absl/strings/str_cat.h"

namespace dynamo {

absl::Status ValidateBucket(const BucketOptions& b, size_t cluster_size) {
  std::string name = "bucket '" + b.name + "'";
  if (b.name.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": name contains a NUL byte"));
  }
  if (b.n == 0 || b.r == 0 || b.w == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": N, R and W must be at least 1 (N=", b.n, " R=", b.r, " W=", b.w, ")"));
  }
  if (b.r > b.n) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": R=", b.r, " exceeds N=", b.n));
  }
  if (b.w > b.n) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": W=", b.w, " exceeds N=", b.n));
  }
  if (b.n > cluster_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": N=", b.n, " exceeds the cluster size of ", cluster_size));
  }
  return absl::OkStatus();
}

}  // namespace dynamo

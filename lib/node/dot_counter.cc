#include "node/dot_counter.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace dynamo::internal {

namespace {
constexpr uint64_t kCounterMax = std::numeric_limits<uint64_t>::max();
}  // namespace

absl::StatusOr<std::unique_ptr<DotCounter>> DotCounter::Start(StorageEngine* storage,
                                                              NodeIdentity identity,
                                                              uint64_t lease_counters) {
  if (lease_counters == 0) {
    return absl::InvalidArgumentError("dot_counter_lease_counters must be at least 1");
  }
  std::unique_ptr<DotCounter> counter(new DotCounter(storage, identity, lease_counters));
  // Lease ahead at start, so the first put does not wait for a durable write.
  if (counter->last_ < kCounterMax) DYNAMO_RETURN_IF_ERROR(counter->RenewLease(counter->last_ + 1));
  return counter;
}

DotCounter::DotCounter(StorageEngine* storage, NodeIdentity identity, uint64_t lease_counters)
    : storage_(storage),
      identity_(identity),
      lease_counters_(lease_counters),
      // Every counter up to the stored lease end may have been minted by an
      // earlier run of this identity.
      last_(identity.counter_lease_end) {}

absl::StatusOr<uint64_t> DotCounter::Candidate(uint64_t key_counter) const {
  if (key_counter > last_ && key_counter - last_ > kCounterJumpMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("the key's clock names counter ", key_counter, " for this node's actor ",
                     identity_.actor, ", more than 2^40 above the highest it minted (", last_,
                     "): a forged or corrupt context or version"));
  }
  uint64_t floor = std::max(last_, key_counter);
  if (floor == kCounterMax) {
    return absl::OutOfRangeError(absl::StrCat("the dot counters of actor ", identity_.actor,
                                              " are used up; restart the node with a wiped "
                                              "identity to draw a new actor"));
  }
  return floor + 1;
}

absl::StatusOr<std::optional<uint64_t>> DotCounter::NextWithinLease(uint64_t key_counter) {
  DYNAMO_ASSIGN_OR_RETURN(uint64_t counter, Candidate(key_counter));
  if (counter > identity_.counter_lease_end) return std::nullopt;
  last_ = counter;
  return counter;
}

absl::Status DotCounter::RenewLeaseFor(uint64_t key_counter) {
  DYNAMO_ASSIGN_OR_RETURN(uint64_t counter, Candidate(key_counter));
  if (counter <= identity_.counter_lease_end) return absl::OkStatus();
  return RenewLease(counter);
}

absl::StatusOr<uint64_t> DotCounter::Next(uint64_t key_counter) {
  DYNAMO_ASSIGN_OR_RETURN(std::optional<uint64_t> counter, NextWithinLease(key_counter));
  if (counter.has_value()) return *counter;
  DYNAMO_RETURN_IF_ERROR(RenewLeaseFor(key_counter));
  DYNAMO_ASSIGN_OR_RETURN(counter, NextWithinLease(key_counter));
  if (!counter.has_value()) return absl::InternalError("a renewed dot counter lease ran out");
  return *counter;
}

absl::Status DotCounter::SetEpoch(uint64_t epoch) {
  identity_.epoch = epoch;
  return storage_->PutIdentity(identity_);
}

absl::Status DotCounter::RenewLease(uint64_t counter) {
  NodeIdentity renewed = identity_;
  renewed.counter_lease_end =
      counter > kCounterMax - (lease_counters_ - 1) ? kCounterMax : counter + (lease_counters_ - 1);
  absl::Status written = storage_->PutIdentity(renewed);
  if (!written.ok()) {
    return absl::Status(written.code(),
                        absl::StrCat("cannot renew the dot counter lease to ",
                                     renewed.counter_lease_end, ": ", written.message()));
  }
  identity_ = renewed;
  return absl::OkStatus();
}

}  // namespace dynamo::internal

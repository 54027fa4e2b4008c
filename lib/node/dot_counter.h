// DotCounter: where a node's new versions get their dot counters (paper
// section 4.4, with the dotted version vectors of include/dynamo/version.h).
// A dot must never be minted twice, for any key: replicas judge an incoming
// version by its dot, so a repeated one is taken as "already seen" (or as
// covered by a later one) and an acknowledged write is silently dropped
// (Riak's kv679). A counter derived only from the key's state repeats as
// soon as that state is gone while the actor lives on: the node handed the
// key off and erased it and then owns it again, or its tombstones were
// reaped while a stale replica still holds them. So counters come from one
// node-wide sequence: each is above both the key's highest counter for the
// actor and every counter the actor minted before.
//
// The sequence survives restarts as a lease in the node's identity record
// (NodeIdentity::counter_lease_end): counters up to the lease end are
// minted without touching storage; past it, a new lease end is written
// durably *before* the first counter beyond the old one is handed out. A
// restarted node resumes above the stored lease end, so a crash skips at
// most the unused rest of a lease and never repeats a counter.
//
// The object also owns the identity record, so that writing a new epoch
// (Node, when it learns it lost its data) cannot overwrite a newer lease.
//
// Thread-safety: used on the owning node's thread only.
#ifndef DYNAMO_NODE_DOT_COUNTER_H_
#define DYNAMO_NODE_DOT_COUNTER_H_

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dynamo/storage_engine.h"

namespace dynamo::internal {

class DotCounter {
 public:
  // A counter more than this far above everything the actor minted cannot
  // be the actor's: the context (or a replica's copy) naming it is forged or
  // corrupt. Refusing it keeps one bad request from using up the 64-bit
  // counter space, which would stop every later put of the node. Honest
  // jumps (an identity record from before leases, a restore from an old
  // backup) are bounded by the writes in between, far below 2^40.
  static constexpr uint64_t kCounterJumpMax = uint64_t{1} << 40;

  // Resumes the counters of `identity` (as stored, or a new identity) and
  // durably writes the identity with a first lease of `lease_counters`
  // counters above its stored lease end. kInvalidArgument if
  // lease_counters is 0; passes on the storage error if the write fails.
  // REQUIRES: storage outlives the counter.
  static absl::StatusOr<std::unique_ptr<DotCounter>> Start(StorageEngine* storage,
                                                           NodeIdentity identity,
                                                           uint64_t lease_counters);

  // The counter of the next dot for a key whose state shows `key_counter`
  // as the highest for this actor (KeyCounterOf in version.h): above it and
  // above every counter minted before. Renews the lease first when the
  // counter would pass it. Errors, with nothing minted: the storage error of
  // a failed lease write; kInvalidArgument if key_counter is more than
  // kCounterJumpMax above the last counter minted; kOutOfRange once the
  // 64-bit counter space is used up.
  absl::StatusOr<uint64_t> Next(uint64_t key_counter);

  // Next without touching storage, for a caller inside a storage callback
  // (the coordinator mints the dot while the engine shows it the key):
  // std::nullopt, with nothing minted, when the counter would pass the
  // lease; then RenewLeaseFor(key_counter) outside the callback and call
  // again. The other errors are Next's.
  absl::StatusOr<std::optional<uint64_t>> NextWithinLease(uint64_t key_counter);
  // Durably moves the lease end so that NextWithinLease(key_counter) mints.
  absl::Status RenewLeaseFor(uint64_t key_counter);

  // Moves the identity to `epoch` and stores it (lease included). The new
  // epoch holds in memory even if the write fails (the error is returned);
  // the next lease renewal stores it.
  absl::Status SetEpoch(uint64_t epoch);

  // The node's identity; its lease end is always the durable one.
  const NodeIdentity& identity() const { return identity_; }
  // The highest counter handed out, or the stored lease end at start.
  uint64_t last() const { return last_; }

 private:
  DotCounter(StorageEngine* storage, NodeIdentity identity, uint64_t lease_counters);
  // Durably moves the lease end so that `counter` and the next
  // lease_counters_ - 1 counters are inside it.
  absl::Status RenewLease(uint64_t counter);
  // The counter Next would mint, after the checks that refuse it.
  absl::StatusOr<uint64_t> Candidate(uint64_t key_counter) const;

  StorageEngine* storage_;
  NodeIdentity identity_;
  uint64_t lease_counters_;
  uint64_t last_;
};

}  // namespace dynamo::internal

#endif  // DYNAMO_NODE_DOT_COUNTER_H_

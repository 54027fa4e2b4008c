// The knobs of a node: buckets with their own (N, R, W) and conflict policy
// (paper section 4.5 and 6: "(3,2,2) for durable user state, (N,1,N) for a
// read-mostly engine, (1,1,1) for a cache"), request deadlines, and a named
// maximum for every queue, batch and count the node keeps.
#ifndef DYNAMO_OPTIONS_H_
#define DYNAMO_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace dynamo {

enum class ConflictPolicy {
  kKeepSiblings,   // return every concurrent version; the application merges
  kLastWriteWins,  // resolve concurrent versions by the coordinator's timestamp
};

struct BucketOptions {
  std::string name = "default";
  size_t n = 3;  // replicas per key
  size_t r = 2;  // replies a get waits for, the coordinator's own included
  size_t w = 2;  // acknowledgements a put waits for, the coordinator's own included
  ConflictPolicy policy = ConflictPolicy::kKeepSiblings;
};

// Checks 1 <= r, w <= n and n <= cluster_size, naming the offending value.
absl::Status ValidateBucket(const BucketOptions& bucket, size_t cluster_size);

class Membership;  // dynamo/membership.h

struct NodeOptions {
  std::vector<BucketOptions> buckets = {BucketOptions()};

  absl::Duration request_timeout = absl::Seconds(1);  // a client request's deadline
  // A replica that has not answered within this is suspected and, for a put
  // still short of W, replaced by the next healthy node (sloppy quorum).
  absl::Duration replica_timeout = absl::Milliseconds(300);

  size_t clock_entries_max = 10;       // paper 4.4: truncate past 10 entries
  // Dot counters come from one node-wide sequence persisted as a lease in
  // the identity record (lib/node/dot_counter.h): one durable write per
  // this many puts; a crash skips at most this many counters.
  uint64_t dot_counter_lease_counters = 10000;
  size_t siblings_warn_count = 25;     // counted in metrics from here
  // Requests a node coordinates whose callers wait, at once; beyond it new
  // ones get kResourceExhausted. Also bounds finished requests still waiting
  // on their last replicas (the oldest are let go early past it).
  size_t requests_in_flight_max = 10000;
  size_t forward_hops_max = 2;  // a forwarded request is never forwarded again past this
  // Nodes past the top N of a preference list tried as stand-ins for
  // unreachable replicas (sloppy quorum).
  size_t fallbacks_max = 8;

  // Hinted handoff (paper 4.6).
  absl::Duration hint_delivery_interval = absl::Milliseconds(500);
  size_t hints_count_max = 100000;
  uint64_t hints_bytes_max = 256ull << 20;
  size_t hint_deliveries_in_flight_max = 64;

  // Failure detection (paper 4.8): probe unreachable peers this often.
  absl::Duration probe_interval = absl::Milliseconds(500);

  // Paper 6.1: the coordinator makes its own copy of every put durable, so
  // with a write-buffering engine one of the N replicas is always on disk.
  // An operator who chose an engine mode without fsync can turn it off.
  bool coordinator_writes_durably = true;
  // Write buffering (paper 6.1): how often buffered engine writes are flushed
  // (StorageEngine::StartFlush).
  absl::Duration storage_flush_interval = absl::Milliseconds(100);

  // Membership and gossip (paper 4.8).
  std::vector<uint64_t> seeds;  // node ids contacted besides random peers
  std::string zone;             // this node's zone, announced when it joins
  // How the transport reaches this node (e.g. "127.0.0.1:7001"), announced in
  // its membership entry so members learn each other's addresses by gossip.
  // Empty in simulation, where ids are addresses.
  std::string address;
  double weight = 1.0;          // this node's capacity relative to others
  absl::Duration gossip_interval = absl::Seconds(1);
  size_t seed_gossip_period_rounds = 3;  // every this many rounds, also gossip with a seed
  double phi_threshold = 8;              // phi-accrual suspicion level (Cassandra's default)
  absl::Duration join_timeout = absl::Seconds(5);
  // Called on the node's thread whenever its membership view changed (after
  // the change is merged, before the node sends anything because of it), so
  // an embedder can keep its transport's address book in step. It must not
  // call back into the node.
  std::function<void(const Membership&)> on_membership_changed;

  // Ownership transfer (paper 4.9): bounded, throttled, resumable batches.
  size_t transfer_batch_entries = 256;
  size_t transfer_batch_bytes = 1 << 20;
  size_t transfers_in_flight_max = 2;
  absl::Duration transfer_timeout = absl::Seconds(2);
  // The throttle: the pause after a full batch (by entries or bytes); a
  // smaller one pauses in proportion, an empty one not at all, so transfers
  // move at most about transfer_batch_bytes per interval and slot, and
  // ranges with little data are not paced by their number.
  absl::Duration transfer_batch_interval = absl::Milliseconds(10);
  size_t transfer_attempts_max = 3;  // timeouts before a source is skipped
  // Sweep handing off and dropping data this node no longer owns.
  absl::Duration cleanup_interval = absl::Seconds(2);
  size_t cleanup_batch_entries = 256;

  // Hinted handoff can be switched off (tests of anti-entropy alone): hints
  // are still stored but never delivered.
  bool hinted_handoff_enabled = true;

  // Anti-entropy with Merkle trees (paper 4.7; lib/node/anti_entropy.h).
  bool anti_entropy_enabled = true;
  absl::Duration anti_entropy_interval = absl::Seconds(10);  // each range exchanged about this often
  size_t anti_entropy_exchanges_in_flight_max = 4;
  absl::Duration anti_entropy_reply_timeout = absl::Seconds(1);
  // One tree per replicated range: 16^2 = 256 leaves, ~2.2 KiB per tree.
  size_t merkle_tree_fanout = 16;
  int merkle_tree_depth = 2;
  size_t merkle_request_nodes_max = 1024;  // hashes asked per message
  size_t merkle_rebuild_batch_keys = 1000;  // keys scanned per rebuild step
  absl::Duration merkle_rebuild_batch_interval = absl::Milliseconds(10);
  size_t anti_entropy_exchange_keys_max = 1000;          // keys per exchange message
  size_t anti_entropy_exchange_bytes_max = 512 << 10;    // approximate bytes per exchange message

  // Tombstone reaping: only once every replica holds the tombstones, and
  // only tombstones older than the grace (a bound on how late a stale copy,
  // e.g. an undelivered hint, may still arrive).
  bool tombstone_reaping_enabled = true;
  absl::Duration tombstone_reap_grace = absl::Hours(1);
  absl::Duration tombstone_sweep_interval = absl::Seconds(10);
  size_t tombstone_sweep_batch_keys = 1000;
  size_t tombstone_reaps_in_flight_max = 64;

  // Admission control of background work (paper 6.5): the budget of
  // background operations per second halves while the p99 of foreground
  // storage reads over the window exceeds the threshold, and grows back by
  // a tenth of the maximum per second once it is below.
  absl::Duration admission_window = absl::Seconds(60);
  absl::Duration admission_read_p99_threshold = absl::Milliseconds(50);
  uint64_t background_ops_per_second_max = 1000;
  uint64_t background_ops_per_second_min = 10;
};

}  // namespace dynamo

#endif  // DYNAMO_OPTIONS_H_

// Counters a node keeps about itself, for operators (INFO, dynamoctl) and for
// researchers measuring a simulated cluster. Plain integers, read on the
// node's thread.
#ifndef DYNAMO_METRICS_H_
#define DYNAMO_METRICS_H_

#include <cstdint>

namespace dynamo {

struct NodeMetrics {
  // Requests this node coordinated or forwarded.
  uint64_t gets_ok = 0, gets_failed = 0;
  uint64_t puts_ok = 0, puts_failed = 0;
  uint64_t requests_forwarded = 0;
  uint64_t requests_rejected_overload = 0;  // requests_in_flight_max reached
  // Finished requests retired before their last replicas answered, because
  // more than requests_in_flight_max were still waiting on replicas.
  uint64_t requests_settled_early = 0;

  // Replica side.
  uint64_t replica_puts = 0, replica_gets = 0;
  // Gets answered "same as yours": the coordinator named exactly the
  // versions this replica holds, so none were sent back.
  uint64_t replica_gets_same_as_known = 0;
  // Successful replica puts and same-as-known gets are answered in
  // ReplicaAcks messages, one per coordinator per turn of the event loop:
  // acks / ack_messages is how many answers shared a message.
  uint64_t replica_acks = 0, replica_ack_messages = 0;
  uint64_t read_repairs_sent = 0;
  uint64_t keys_over_sibling_warning = 0;  // puts that left >= siblings_warn_count siblings
  uint64_t puts_over_sibling_limit = 0;    // rejected: would exceed siblings_max

  // Sloppy quorum and hinted handoff (paper 4.6).
  uint64_t hinted_writes_sent = 0;       // replicas sent to a fallback node
  uint64_t hints_stored = 0;             // hints this node accepted for others
  uint64_t hints_rejected_full = 0;      // refused: hints_count_max / hints_bytes_max
  uint64_t hints_delivered = 0;          // acknowledged by their owner and deleted
  uint64_t hints_held = 0;               // currently stored (refreshed by handoff)

  // Membership, gossip and ownership transfer (paper 4.8, 4.9).
  uint64_t gossip_rounds = 0;
  uint64_t membership_changes = 0;       // merges that changed the view
  uint64_t ring_rebuilds = 0;            // of those, the ones that changed a ring's inputs
  uint64_t transfers_started = 0;
  uint64_t transfers_completed = 0;
  uint64_t transfer_keys_received = 0;
  uint64_t transfer_timeouts = 0;
  uint64_t handoff_keys_sent = 0;        // keys pushed to their new owners
  uint64_t keys_dropped = 0;             // erased after their owners confirmed them
  uint64_t peers_suspected_by_phi = 0;

  uint64_t messages_malformed = 0;       // dropped: failed to decode
  uint64_t storage_errors = 0;

  // Anti-entropy (paper 4.7), tombstone reaping, admission control (6.5).
  uint64_t merkle_trees = 0;                     // trees kept (one per replicated range and N)
  uint64_t merkle_trees_built = 0;               // of which fully built
  uint64_t merkle_key_updates = 0;               // writes folded into a tree (none for N = 1 keys)
  uint64_t anti_entropy_exchanges_started = 0;
  uint64_t anti_entropy_exchanges_completed = 0;
  uint64_t anti_entropy_exchanges_failed = 0;    // peer refused, timed out or ring changed
  uint64_t anti_entropy_rounds = 0;              // Merkle hash requests sent
  uint64_t anti_entropy_bytes_sent = 0;          // encoded bytes of all anti-entropy messages
  uint64_t anti_entropy_keys_sent = 0;
  uint64_t anti_entropy_keys_received = 0;
  uint64_t tombstones_reaped = 0;
  uint64_t tombstone_reaps_blocked = 0;          // a replica silent or not holding them
  uint64_t background_budget = 0;                // admission: operations per second now allowed
  uint64_t background_read_p99_us = 0;           // foreground storage read p99 over the window
  uint64_t background_ops_denied = 0;            // background steps deferred for lack of budget
};

}  // namespace dynamo

#endif  // DYNAMO_METRICS_H_

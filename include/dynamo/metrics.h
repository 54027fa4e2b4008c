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

  // Replica side.
  uint64_t replica_puts = 0, replica_gets = 0;
  uint64_t read_repairs_sent = 0;
  uint64_t keys_over_sibling_warning = 0;  // puts that left >= siblings_warn_count siblings
  uint64_t puts_over_sibling_limit = 0;    // rejected: would exceed siblings_max

  // Sloppy quorum and hinted handoff (paper 4.6).
  uint64_t hinted_writes_sent = 0;       // replicas sent to a fallback node
  uint64_t hints_stored = 0;             // hints this node accepted for others
  uint64_t hints_rejected_full = 0;      // refused: hints_count_max / hints_bytes_max
  uint64_t hints_delivered = 0;          // acknowledged by their owner and deleted
  uint64_t hints_held = 0;               // currently stored (refreshed by handoff)

  uint64_t messages_malformed = 0;       // dropped: failed to decode
  uint64_t storage_errors = 0;
};

}  // namespace dynamo

#endif  // DYNAMO_METRICS_H_

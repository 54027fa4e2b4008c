// The knobs of a node: buckets with their own (N, R, W) and conflict policy
// (paper section 4.5 and 6: "(3,2,2) for durable user state, (N,1,N) for a
// read-mostly engine, (1,1,1) for a cache"), request deadlines, and a named
// maximum for every queue, batch and count the node keeps.
#ifndef DYNAMO_OPTIONS_H_
#define DYNAMO_OPTIONS_H_

#include <cstddef>
#include <cstdint>
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

struct NodeOptions {
  std::vector<BucketOptions> buckets = {BucketOptions()};

  absl::Duration request_timeout = absl::Seconds(1);  // a client request's deadline
  // A replica that has not answered within this is suspected and, for a put
  // still short of W, replaced by the next healthy node (sloppy quorum).
  absl::Duration replica_timeout = absl::Milliseconds(300);

  size_t clock_entries_max = 10;       // paper 4.4: truncate past 10 entries
  size_t siblings_warn_count = 25;     // counted in metrics from here
  size_t requests_in_flight_max = 10000;  // coordinated at once; beyond: kResourceExhausted
  size_t forward_hops_max = 2;
  // Nodes past the top N of a preference list tried as stand-ins for
  // unreachable replicas (sloppy quorum).
  size_t fallbacks_max = 8;         // a forwarded request is never forwarded again past this

  // Hinted handoff (paper 4.6).
  absl::Duration hint_delivery_interval = absl::Milliseconds(500);
  size_t hints_count_max = 100000;
  uint64_t hints_bytes_max = 256ull << 20;
  size_t hint_deliveries_in_flight_max = 64;

  // Failure detection (paper 4.8): probe unreachable peers this often.
  absl::Duration probe_interval = absl::Milliseconds(500);

  // Write buffering (paper 6.1): how often buffered engine writes are flushed.
  absl::Duration storage_flush_interval = absl::Milliseconds(100);
};

}  // namespace dynamo

#endif  // DYNAMO_OPTIONS_H_

// FailureDetector: a node's purely local view of which peers answer (paper
// section 4.8: "a purely local notion of failure detection is entirely
// sufficient"). A peer that misses a reply deadline is marked unreachable,
// so the coordinator routes around it at once (sloppy quorum) instead of
// waiting on it for every request; any message from it marks it reachable
// again, and the node probes unreachable peers periodically. Failure
// detection never removes a node from the ring: that is an explicit command.
#ifndef DYNAMO_FAILURE_DETECTOR_H_
#define DYNAMO_FAILURE_DETECTOR_H_

#include <map>
#include <vector>

#include "absl/time/time.h"
#include "dynamo/types.h"

namespace dynamo {

class FailureDetector {
 public:
  // True unless the peer missed a deadline and has not been heard from since.
  bool IsReachable(NodeId peer) const;

  // Any message from `peer` proves it is up.
  void OnHeard(NodeId peer, absl::Time now);

  // `peer` did not answer in time.
  void OnTimeout(NodeId peer, absl::Time now);

  // Peers currently marked unreachable, in id order.
  std::vector<NodeId> Unreachable() const;

  // When `peer` was last heard from (InfinitePast if never).
  absl::Time LastHeard(NodeId peer) const;

 private:
  struct PeerState {
    bool reachable = true;
    absl::Time last_heard = absl::InfinitePast();
    absl::Time last_timeout = absl::InfinitePast();
  };
  std::map<NodeId, PeerState> peers_;  // ordered: Unreachable() must not depend on hashing
};

}  // namespace dynamo

#endif  // DYNAMO_FAILURE_DETECTOR_H_

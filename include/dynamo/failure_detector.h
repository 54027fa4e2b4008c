// FailureDetector: a node's purely local view of which peers answer (paper
// section 4.8: "a purely local notion of failure detection is entirely
// sufficient"). A peer that misses a reply deadline is marked unreachable,
// so the coordinator routes around it at once (sloppy quorum) instead of
// waiting on it for every request; any message from it marks it reachable
// again, and the node probes unreachable peers periodically. Failure
// detection never removes a node from the ring: that is an explicit command.
//
// Times are on the node's monotonic clock (Runtime::Elapsed()), never its
// wall clock: a wall clock stepped back would make every peer look heard
// from in the future and never suspected, one stepped forward would make
// every peer look silent at once.
#ifndef DYNAMO_FAILURE_DETECTOR_H_
#define DYNAMO_FAILURE_DETECTOR_H_

#include <deque>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "dynamo/types.h"

namespace dynamo {

class FailureDetector {
 public:
  // True unless the peer missed a deadline and has not been heard from since.
  bool IsReachable(NodeId peer) const;

  // Any message from `peer` proves it is up.
  void OnHeard(NodeId peer, absl::Duration now);

  // `peer` did not answer in time.
  void OnTimeout(NodeId peer, absl::Duration now);

  // Peers currently marked unreachable, in id order.
  std::vector<NodeId> Unreachable() const;

  // When `peer` was last heard from (-InfiniteDuration if never).
  absl::Duration LastHeard(NodeId peer) const;

  // The phi-accrual suspicion level (Hayashibara et al.; Cassandra): how
  // unlikely it is, given the intervals at which `peer` was heard so far,
  // that it is still alive after this long a silence, as -log10 of the
  // probability under an exponential model. 0 with fewer than
  // kPhiSamplesMin intervals. The intervals are between arrivals at least
  // kPhiSampleSpacing apart: a message that comes sooner after the last
  // sampled one refreshes LastHeard but is no new sample (a burst of
  // replies is one arrival). The mean interval counts as at least
  // kPhiMeanIntervalMin, so that under heavy traffic a pause of a few
  // milliseconds (a busy machine, an fsync) does not look like death.
  double Phi(NodeId peer, absl::Duration now) const;

  // Marks unreachable every reachable peer whose phi exceeds `threshold`
  // (Cassandra's default is 8). Returns how many were marked.
  size_t SuspectByPhi(absl::Duration now, double threshold);

  static constexpr size_t kPhiSamplesMin = 3;
  static constexpr size_t kPhiWindow = 100;  // intervals remembered per peer
  // With threshold 8, a peer heard from constantly is suspected after about
  // 1.8 s of silence; one heard only by gossip (about every second) after
  // 18 s or more, as before.
  static constexpr absl::Duration kPhiMeanIntervalMin = absl::Milliseconds(100);
  // A tenth of the mean's floor: a peer heard from constantly still has a
  // mean below the floor, so its phi is what it would be with every message
  // a sample, and a busy node does not keep a sample per message (~2% of a
  // replica's CPU in the pipelined TCP benchmark).
  static constexpr absl::Duration kPhiSampleSpacing = absl::Milliseconds(10);

 private:
  struct PeerState {
    bool reachable = true;
    absl::Duration last_heard = -absl::InfiniteDuration();
    absl::Duration last_sampled = -absl::InfiniteDuration();  // the last arrival sampled
    // last_sampled + kPhiSampleSpacing: every message received is compared
    // with it, and Duration arithmetic is a library call, comparison inline.
    absl::Duration next_sample = -absl::InfiniteDuration();
    absl::Duration last_timeout = -absl::InfiniteDuration();
    std::deque<double> intervals_s;  // at most kPhiWindow
    double intervals_sum_s = 0;
  };
  // Hashed: every message a node receives looks its sender up here, and in
  // a cluster of hundreds a tree's lookups missed the cache on every level.
  // Nothing iterates it where order shows (Unreachable() sorts).
  absl::flat_hash_map<NodeId, PeerState> peers_;
};

}  // namespace dynamo

#endif  // DYNAMO_FAILURE_DETECTOR_H_

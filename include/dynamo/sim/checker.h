// Checkers: the invariants a Dynamo cluster promises, checked against a
// recorded History (history.h) and against the replicas' disks of a
// Simulation. Each returns a CheckReport: pass/fail, the violations found
// (bounded, each naming the operations or replicas involved) and counters.
//
//   CheckSetFull       Jepsen's set-full for the kSet workload: every element
//                      whose add was acknowledged is in the final reads
//                      ("lost" otherwise); elements present in the final
//                      reads that no put ever carried are "never written";
//                      "stale" counts acknowledged elements missing from a
//                      successful read that began after the add completed
//                      (allowed: sloppy quorums read stale replicas).
//                      Passes when lost == 0 and never_written == 0.
//   CheckRegister      For the kRegister workload: every acknowledged put
//                      survives in the final reads as a sibling unless the
//                      context of another put whose version exists covers
//                      its dot (it was knowingly overwritten); no final
//                      sibling carries a value no put wrote.
//   CheckReadAntichain Every successful read returns an antichain: no
//                      returned version Descends another.
//   CheckReadLatest    For fault-free runs with R + W > N: a read that
//                      overlaps no put of its key returns the value of the
//                      latest acknowledged put of that key, and no value that
//                      put's context covered.
//   ReplicaMonitor     Samples every node's stored siblings over time:
//                      stored sets are antichains; while a node holds a key
//                      its merged clock for it never goes backwards and a
//                      version never vanishes without a descendant; a
//                      version a node dropped as dominated never comes back
//                      to it; a node drops a whole key only as a handoff
//                      (it owns the key on neither of its rings, and every
//                      owner holds what it dropped). A wiped disk starts a
//                      new history (call OnWipe).
//   CheckConvergence   No hints are left, the membership has settled, and
//                      every owner of every key (its preference list of N on
//                      the current ring) stores the same versions.
//   AwaitConvergence   Runs the simulation without requests until
//                      CheckConvergence passes, within a stated bound.
//
// Thread-safety: none; plain functions over values and the simulation.
#ifndef DYNAMO_SIM_CHECKER_H_
#define DYNAMO_SIM_CHECKER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "dynamo/sim/history.h"
#include "dynamo/sim/simulation.h"

namespace dynamo::sim {

struct CheckReport {
  std::string name;
  bool ok = true;
  // Human-readable violations; at most violations_max are kept, the rest
  // are only counted in violations_total.
  std::vector<std::string> violations;
  size_t violations_total = 0;
  std::map<std::string, uint64_t> counters;  // ordered: printing is stable

  static constexpr size_t violations_max = 20;
  void Fail(std::string violation);
  // "name: OK (a=1 b=2)" or "name: FAILED (...)\n  violation\n  ...".
  std::string ToString() const;
};

// Element lists of the set workload: "a,b,c" <-> {a, b, c}.
std::set<std::string> ParseElements(const std::string& value);
std::string JoinElements(const std::set<std::string>& elements);

CheckReport CheckSetFull(const History& history);
CheckReport CheckRegister(const History& history);
CheckReport CheckReadAntichain(const History& history);
CheckReport CheckReadLatest(const History& history);

// Samples replica state for the causality checks. Keys are the workload's
// keys in `bucket`. Replica sets are the nodes' own views: a node holds a key
// from when it first stores it until it erases it in a handoff, which the
// monitor judges at the instant of the erase (it registers itself as the
// simulation's erase observer, one monitor per simulation).
class ReplicaMonitor {
 public:
  ReplicaMonitor(Simulation* sim, std::string bucket, std::vector<std::string> keys);
  // Pending sampling events become no-ops once the monitor is gone; the
  // erase observer is removed.
  ~ReplicaMonitor();
  ReplicaMonitor(const ReplicaMonitor&) = delete;
  ReplicaMonitor& operator=(const ReplicaMonitor&) = delete;
  // Reads every node's disk for every key (crashed nodes too: their disks
  // persist) and checks the new state against the previous sample.
  void Sample();
  // The node's disk was wiped: its next sample starts a new history.
  void OnWipe(NodeId node);
  // Samples every `interval` of simulated time until Stop().
  void SampleEvery(absl::Duration interval);
  void Stop() { sampling_ = false; }
  const CheckReport& report() const { return report_; }

 private:
  struct ReplicaKey {
    VectorClock clock;
    std::set<std::pair<ActorId, uint64_t>> present;
    std::set<std::pair<ActorId, uint64_t>> dropped;  // dominated and gone
  };
  void Tick(absl::Duration interval);
  // Node `id` is about to erase storage key `skey`: legitimate only as a
  // handoff.
  void OnErase(NodeId id, std::string_view skey, const SiblingSet& stored);

  Simulation* sim_;
  std::string bucket_;
  std::vector<std::string> keys_;
  std::map<std::pair<NodeId, std::string>, ReplicaKey> state_;
  size_t n_ = 1;  // the largest N of the nodes' buckets, as Node::Sweep uses
  std::map<std::string, std::string> key_of_;  // storage key -> key
  std::map<NodeId, absl::Time> wiped_at_;  // the last wipe of each node
  std::map<std::string, std::map<NodeId, absl::Time>> erased_at_;  // key -> node -> last erase
  std::set<std::pair<NodeId, std::string>> erased_since_sample_;
  bool sampling_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  CheckReport report_;
};

// Checks, at this instant, that no node holds hints, that the ring has
// settled (Simulation::SettledRing) and that every key's N owners on that
// ring store identical sibling sets (compared by dot and value). `keys` are
// bucket-relative names.
CheckReport CheckConvergence(Simulation& sim, const std::string& bucket,
                             const std::vector<std::string>& keys, size_t n);

// Runs the simulation, issuing no requests (so no read repair), until
// CheckConvergence passes, checking every `step` of simulated time: hinted
// handoff, ownership transfer and anti-entropy must bring the replicas
// together on their own. Fails if that takes longer than `bound`, naming the
// bound and what still differed. The counter waited_ms is the simulated
// time it ran. Call it once the faults have stopped and the clients are
// idle.
CheckReport AwaitConvergence(Simulation& sim, const std::string& bucket,
                             const std::vector<std::string>& keys, size_t n,
                             absl::Duration bound,
                             absl::Duration step = absl::Milliseconds(100));

// Checks, at this instant, every live node's Merkle trees against its
// storage (Node::VerifyMerkleTrees): a tree that missed a write, or kept
// one storage lost, would make anti-entropy exchange keys forever or miss
// a difference. The counter nodes_checked says how many nodes were live.
CheckReport CheckMerkleTrees(Simulation& sim);

}  // namespace dynamo::sim

#endif  // DYNAMO_SIM_CHECKER_H_

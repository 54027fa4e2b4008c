// Scenario: one complete randomized simulation test, the unit that ctest
// runs for a fixed seed, that sim_soak runs for random seeds, and that the
// Jepsen last-write-wins experiment runs per bucket policy.
//
//   1. build a cluster (Simulation) and a workload (workload.h) of clients;
//   2. run the workload while a FaultSchedule injects faults, swarm style:
//      each seed turns each kind of fault on or off and picks its strength
//      (FaultPlan::Swarm), so different seeds stress different mixes;
//   3. stop the faults: heal the network, restart every crashed node, set
//      the network back to its base options; stop the workload and wait
//      until its clients are idle;
//   4. with no requests running (so no read repair), run until hinted
//      handoff, ownership transfer and anti-entropy have converged the
//      replicas (AwaitConvergence), bounded by convergence_bound;
//   5. read every key once through the cluster and run every checker
//      (checker.h).
//
// What is promised, and therefore checked (docs/design.md "sim-checker"):
//   - with sibling-keeping buckets and W >= 2, at most one node's disk wiped
//     per run (FaultPlan::wipes_max = 1) and any number of crashes with the
//     disk kept, partitions, loss, duplication, reordering, latency spikes,
//     clock skew, and joins, leaves and removals (at least N + 1 members):
//     no acknowledged write is lost (set-full, register);
//   - reads and stored sets are antichains; while a node holds a key its
//     clock for it never goes back and a version it dropped as dominated
//     never returns; a node erases a key only as a handoff;
//   - within convergence_bound of simulated time after the clients went
//     idle, the membership settles, no hints remain and every key's N owners
//     on the settled ring store identical versions;
//   - with no faults and R + W > N, each read that overlaps no put of its key
//     returns exactly the latest acknowledged, not overwritten, values.
//
// Thread-safety: none; a scenario runs on the calling thread.
#ifndef DYNAMO_SIM_SCENARIO_H_
#define DYNAMO_SIM_SCENARIO_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "dynamo/options.h"
#include "dynamo/sim/checker.h"
#include "dynamo/sim/history.h"
#include "dynamo/sim/sim_network.h"
#include "dynamo/sim/simulation.h"
#include "dynamo/sim/workload.h"

namespace dynamo::sim {

// Which faults a run injects and how strongly. Probabilities apply while a
// "network weather" episode is on; the schedule switches episodes on and off.
struct FaultPlan {
  double loss_probability = 0;       // 0: off
  double duplicate_probability = 0;
  double reorder_probability = 0;
  absl::Duration spike_latency_mean = absl::ZeroDuration();  // latency spikes; 0: off
  bool partitions = false;           // symmetric splits into two groups
  bool one_way_partitions = false;   // BlockLink of random directed links
  bool crashes = false;              // crash and restart, disk kept
  size_t wipes_max = 0;              // crashes that wipe the disk (at most this many)
  size_t nodes_down_max = 1;         // crashed at once
  absl::Duration clock_skew_max = absl::ZeroDuration();  // offsets in [-max, max]; 0: off
  // Membership changes under load (paper 4.9): new nodes join through a
  // running member, members leave (handing their data over), and an
  // operator removes members, crashed or running (a crashed one hands its
  // data over when it restarts). Members stay within [members_min,
  // members_max]; at most joins_max nodes are added per run.
  bool membership_changes = false;
  size_t members_min = 4;  // N + 1: every key keeps N replicas with one node down
  size_t members_max = 7;
  size_t joins_max = 3;
  // Mean time between fault events (each event starts or ends one fault).
  absl::Duration event_interval_mean = absl::Milliseconds(300);

  // No faults at all.
  static FaultPlan None() { return FaultPlan(); }
  // Everything on at moderate strength, with one wipe.
  static FaultPlan All();
  // Swarm testing: each fault kind on with probability 1/2, strength drawn
  // at random; at most one wipe. Decided by `seed` alone.
  static FaultPlan Swarm(uint64_t seed);
  bool any() const;
  std::string ToString() const;
};

// Applies a FaultPlan to a running Simulation on virtual time: every
// ~event_interval_mean it starts or ends one fault chosen at random among
// the enabled ones. Crashes with a wiped disk are reported to `on_wipe`.
// A join adds a node (the next id above every existing one) to the
// Simulation and asks a running member to admit it, again every 2 s until it
// is a member (as an operator would after a lost request), also after
// StopAndHeal; leaves and removals go through Node::Leave and Node::Remove.
class FaultSchedule {
 public:
  FaultSchedule(Simulation* sim, FaultPlan plan, uint64_t seed,
                absl::AnyInvocable<void(NodeId)> on_wipe = nullptr);
  ~FaultSchedule();
  FaultSchedule(const FaultSchedule&) = delete;
  FaultSchedule& operator=(const FaultSchedule&) = delete;

  // Begins injecting (schedules the first event).
  void Start();
  // Stops injecting and undoes every fault: heals the network, restores the
  // base network options, restarts crashed nodes (clock skews stay: a
  // skewed clock is not a fault that heals). Returns the first Restart error.
  absl::Status StopAndHeal();

  size_t events() const { return events_; }
  size_t wipes() const { return wipes_; }
  size_t joins() const { return joins_; }
  size_t departures() const { return departures_; }  // leaves and removals
  // One line per event, for a failure report.
  const std::vector<std::string>& log() const { return log_; }

 private:
  void Tick();
  void Event();
  void Note(std::string what);
  void MembershipEvent();
  // Calls Join on `id` through a running member until the node counts
  // itself a member (a join lost to a partition or a crash is retried by
  // the operator, here every second), also after StopAndHeal.
  void JoinUntilMember(NodeId id);
  // Running nodes that count themselves up members, in id order.
  std::vector<NodeId> UpMembers();

  Simulation* sim_;
  FaultPlan plan_;
  std::mt19937_64 rng_;
  absl::AnyInvocable<void(NodeId)> on_wipe_;
  NetworkOptions base_;
  bool running_ = false;
  size_t events_ = 0;
  size_t wipes_ = 0;
  std::vector<NodeId> down_;
  // Nodes this schedule believes are members (started members, joiners,
  // minus those told to leave or removed), in id order: the bound checks
  // use it, since every node's own view lags behind.
  std::vector<NodeId> members_;
  size_t joins_ = 0;
  size_t departures_ = 0;
  std::vector<std::string> log_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

struct ScenarioOptions {
  uint64_t seed = 1;
  size_t nodes = 5;
  BucketOptions bucket;  // (3,2,2), sibling-keeping by default
  WorkloadOptions workload;
  // Faults: FaultPlan::Swarm(seed) when swarm is true, else `faults`.
  bool swarm = true;
  FaultPlan faults;
  absl::Duration warmup = absl::Milliseconds(500);  // clients fetch the ring
  absl::Duration fault_duration = absl::Seconds(8);
  // After the faults stop and the clients are idle, the replicas must
  // converge within this much simulated time with no requests running
  // (AwaitConvergence). Measured over 130 soak seeds with the default
  // NodeOptions: median 1.5 s, p99 11.5 s, max 12.6 s from StopAndHeal
  // (docs/design.md "sim-checker").
  absl::Duration convergence_bound = absl::Seconds(60);
  absl::Duration sample_interval = absl::Milliseconds(50);
  // Also run CheckReadLatest (meaningful only without faults and R+W>N).
  bool check_read_latest = false;
  // Keep the first operations of the history in the result (for reports).
  bool keep_history_dump = true;
};

struct ScenarioResult {
  uint64_t seed = 0;
  bool ok = true;
  std::string setup_error;  // non-empty if the run could not be built or finish
  FaultPlan plan;
  uint64_t trace_digest = 0;
  uint64_t history_digest = 0;
  absl::Duration quiesce_time;  // from StopAndHeal until the replicas converged
  size_t joins = 0;             // nodes added and joined by the fault schedule
  size_t departures = 0;        // members it made leave or removed
  std::vector<CheckReport> reports;
  std::string history_summary;
  std::string history_dump;  // the first operations, if keep_history_dump
  std::vector<std::string> fault_log;

  const CheckReport* Find(const std::string& name) const;
  std::string ToString() const;
};

ScenarioResult RunScenario(const ScenarioOptions& options);

// The scenario sim_soak and the seeded tests run for `seed`: odd seeds the
// set workload, even seeds the register; keys, clients and key law vary with
// the seed; every eighth seed runs without faults and checks read-latest;
// the others get FaultPlan::Swarm(seed). One function, so that a seed found
// by the soak replays identically as a test.
ScenarioOptions SoakOptions(uint64_t seed);

}  // namespace dynamo::sim

#endif  // DYNAMO_SIM_SCENARIO_H_

// Simulation: a whole Dynamo cluster in one thread of one process, for tests
// and for researchers. It builds N Nodes over a SimNetwork (virtual time, a
// seeded fault model) with a MemoryEngine each as their "disk", lets a test
// crash a node and restart it with its disk kept or wiped, attach
// partition-aware clients, and run requests to completion on virtual time.
// Everything is decided by one seed, so a failing run replays exactly.
//
// Node ids are 1..nodes; clients get ids the caller chooses (above the nodes).
//
// Thread-safety: single-threaded, like everything it drives.
#ifndef DYNAMO_SIM_SIMULATION_H_
#define DYNAMO_SIM_SIMULATION_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dynamo/client.h"
#include "dynamo/memory_engine.h"
#include "dynamo/node.h"
#include "dynamo/ring.h"
#include "dynamo/sim/sim_network.h"

namespace dynamo::sim {

struct SimulationOptions {
  uint64_t seed = 1;
  size_t nodes = 5;
  RingOptions ring;
  NodeOptions node;
  NetworkOptions network;
  StorageLimits storage;
  // How long the blocking helpers (Get/Put/Delete below) wait in simulated
  // time for their callback.
  absl::Duration request_wait_max = absl::Seconds(30);
};

class Simulation {
 public:
  // kInvalidArgument for options a Node or Ring rejects.
  static absl::StatusOr<std::unique_ptr<Simulation>> Create(SimulationOptions options);
  ~Simulation();

  SimNetwork& network() { return network_; }
  const SimulationOptions& options() const { return options_; }
  const std::vector<NodeId>& node_ids() const { return node_ids_; }
  const Ring& initial_ring() const { return ring_; }

  // The routing ring (members up or leaving) as the running member with the
  // lowest id sees it, or nullptr if no running node counts itself a member.
  // Unlike initial_ring(), it follows joins, leaves and removals.
  const Ring* CurrentRing();
  // The ring once the cluster has stopped moving: every running node that
  // counts itself a member holds the same membership view, nobody in it is
  // joining or leaving, and no node has an ownership transfer pending.
  // kFailedPrecondition while that is not so (or no member runs), naming
  // the first node or member that keeps it moving.
  absl::StatusOr<Ring> SettledRing();

  // The running node, or nullptr while it is crashed.
  Node* node(NodeId id);
  // The node's disk, which survives a crash unless wiped.
  MemoryEngine& disk(NodeId id);

  // Crash: the node object is destroyed, its timers and in-flight messages
  // are gone. With wipe_disk its MemoryEngine is replaced by an empty one.
  absl::Status Crash(NodeId id, bool wipe_disk);
  // Starts a new node object on the kept (or wiped) disk.
  absl::Status Restart(NodeId id);

  // Starts a new node `id` that is not a member yet (an empty ring and an
  // empty disk); make it one with Node::Join. `options` defaults to the
  // simulation's node options.
  absl::StatusOr<Node*> AddNode(NodeId id, std::optional<NodeOptions> options = std::nullopt);

  // Called whenever a running node erases a key from its disk (Node drops
  // keys it handed to their owners), before the erase, with the versions
  // stored. Checkers use it to judge the erase against the node's view at
  // that instant. Replaces any previous observer; nullptr removes it.
  using EraseObserver =
      absl::AnyInvocable<void(NodeId node, std::string_view key, const SiblingSet& stored)>;
  void SetEraseObserver(EraseObserver observer) { erase_observer_ = std::move(observer); }

  // Adds a partition-aware client with its own network endpoint.
  absl::StatusOr<Client*> AddClient(NodeId id, ClientOptions options);

  // Issue a request through node `via` and run the simulation until it
  // completes (or request_wait_max passes: kDeadlineExceeded).
  absl::StatusOr<GetResult> Get(NodeId via, std::string_view bucket, std::string_view key);
  absl::Status Put(NodeId via, std::string_view bucket, std::string_view key,
                   const Context& context, std::string value);
  absl::Status Delete(NodeId via, std::string_view bucket, std::string_view key,
                      const Context& context);

  void RunFor(absl::Duration d) { network_.RunFor(d); }

 private:
  explicit Simulation(SimulationOptions options);
  absl::Status StartNode(NodeId id);
  template <typename Result, typename Issue>
  Result Await(Issue issue);
  class ObservedDisk;

  SimulationOptions options_;
  SimNetwork network_;
  Ring ring_;
  std::vector<NodeId> node_ids_;
  std::map<NodeId, Runtime*> runtimes_;  // owned by network_
  std::map<NodeId, std::unique_ptr<MemoryEngine>> disks_;
  std::map<NodeId, std::unique_ptr<ObservedDisk>> observed_disks_;  // what nodes write through
  EraseObserver erase_observer_;
  std::map<NodeId, std::unique_ptr<Node>> nodes_;
  std::map<NodeId, std::unique_ptr<Client>> clients_;
  std::map<NodeId, NodeOptions> added_options_;  // nodes added after the start
};

}  // namespace dynamo::sim

#endif  // DYNAMO_SIM_SIMULATION_H_

#include "dynamo/sim/simulation.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace dynamo::sim {

// A node's disk as the node sees it: reports erasures to the observer.
class Simulation::ObservedDisk : public StorageEngineWrapper {
 public:
  ObservedDisk(Simulation* sim, NodeId id, MemoryEngine* disk)
      : StorageEngineWrapper(disk), sim_(sim), id_(id) {}
  // The copy-free reads and merges go straight to the disk: this wrapper
  // changes nothing they see (StorageEngineWrapper's defaults would route
  // them through Get and Put, copying every sibling set).
  absl::Status Visit(std::string_view key,
                     absl::FunctionRef<void(const SiblingSet&)> reader) override {
    return target()->Visit(key, reader);
  }
  absl::Status Update(std::string_view key, const SiblingSet& incoming, const WriteOptions& options,
                      absl::FunctionRef<absl::Status(const SiblingSet&)> prepare,
                      absl::FunctionRef<void(const SiblingSet&)> reader) override {
    return target()->Update(key, incoming, options, prepare, reader);
  }
  absl::Status Erase(std::string_view key) override {
    if (sim_->erase_observer_) {
      absl::StatusOr<SiblingSet> stored = target()->Get(key);
      if (stored.ok() && !stored->empty()) sim_->erase_observer_(id_, key, *stored);
    }
    return target()->Erase(key);
  }

 private:
  Simulation* sim_;
  NodeId id_;
};

absl::StatusOr<std::unique_ptr<Simulation>> Simulation::Create(SimulationOptions options) {
  if (options.nodes == 0) return absl::InvalidArgumentError("a simulation needs nodes");
  std::unique_ptr<Simulation> sim(new Simulation(std::move(options)));
  for (NodeId id = 1; id <= sim->options_.nodes; ++id) {
    RingMember member;
    member.id = id;
    DYNAMO_RETURN_IF_ERROR(sim->ring_.AddNode(member));
    sim->node_ids_.push_back(id);
  }
  // The ring's lookup tables are built here, once, for the replica counts
  // and stand-ins the nodes' coordinators ask for: every node is given a
  // copy, and copies share the tables built before them. Otherwise each of
  // hundreds of nodes builds its own (8000 partitions: 0.7 MB and ~2 ms
  // each).
  std::vector<NodeId> scratch;
  for (const BucketOptions& bucket : sim->options_.node.buckets) {
    sim->ring_.PreferenceList(Token(0), bucket.n, sim->options_.node.fallbacks_max, &scratch);
  }
  for (NodeId id : sim->node_ids_) {
    sim->runtimes_[id] = &sim->network_.AddNode(id);
    sim->disks_[id] = std::make_unique<MemoryEngine>(sim->options_.storage);
  }
  for (NodeId id : sim->node_ids_) DYNAMO_RETURN_IF_ERROR(sim->StartNode(id));
  return sim;
}

Simulation::Simulation(SimulationOptions options)
    : options_(std::move(options)),
      network_(options_.seed, options_.network),
      ring_(options_.ring) {}

Simulation::~Simulation() {
  // Nodes and clients cancel their timers through the network's runtimes,
  // so they go first.
  clients_.clear();
  nodes_.clear();
  observed_disks_.clear();
}

absl::Status Simulation::StartNode(NodeId id) {
  auto added = added_options_.find(id);
  bool is_added = added != added_options_.end();
  observed_disks_[id] = std::make_unique<ObservedDisk>(this, id, disks_.at(id).get());
  DYNAMO_ASSIGN_OR_RETURN(
      std::unique_ptr<Node> node,
      Node::Create(is_added ? added->second : options_.node, runtimes_.at(id),
                   observed_disks_.at(id).get(), is_added ? Ring(options_.ring) : ring_));
  nodes_[id] = std::move(node);
  return absl::OkStatus();
}

Node* Simulation::node(NodeId id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : it->second.get();
}

MemoryEngine& Simulation::disk(NodeId id) { return *disks_.at(id); }

namespace {
// A node that counts itself a member: its own entry is up or leaving.
bool SelfMember(const Node& node) {
  const MemberEntry* mine = node.membership().Find(node.id());
  return mine != nullptr &&
         (mine->status == MemberStatus::kUp || mine->status == MemberStatus::kLeaving);
}
}  // namespace

const Ring* Simulation::CurrentRing() {
  for (const auto& [id, node] : nodes_) {
    if (SelfMember(*node)) return &node->ring();
  }
  return nullptr;
}

absl::StatusOr<Ring> Simulation::SettledRing() {
  const Node* reference = nullptr;
  for (const auto& [id, node] : nodes_) {
    if (!SelfMember(*node)) continue;
    if (node->transfers_pending() > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "node ", id, " has ", node->transfers_pending(), " range transfers pending"));
    }
    if (reference == nullptr) {
      reference = node.get();
      continue;
    }
    const auto& theirs = node->membership().entries();
    const auto& ours = reference->membership().entries();
    if (theirs == ours) continue;
    // The first member the two views hold differently.
    const auto [a, b] = std::mismatch(ours.begin(), ours.end(), theirs.begin(), theirs.end());
    auto describe = [](const auto& it, const auto& end) -> std::string {
      if (it == end) return "nothing more";
      const MemberEntry& e = *it;
      return absl::StrCat("member ", e.id, " ", MemberStatusName(e.status), " at version ",
                          e.version);
    };
    return absl::FailedPreconditionError(
        absl::StrCat("nodes ", reference->id(), " and ", id, " disagree on the membership: node ",
                     reference->id(), " has ", describe(a, ours.end()), ", node ", id, " has ",
                     describe(b, theirs.end())));
  }
  if (reference == nullptr) return absl::FailedPreconditionError("no running node is a member");
  for (NodeId id : reference->membership().Live()) {
    // A running member that has not learned it is one (a wiped joiner
    // before gossip reaches it) is still moving.
    auto it = nodes_.find(id);
    if (it != nodes_.end() && !SelfMember(*it->second)) {
      return absl::FailedPreconditionError(
          absl::StrCat("node ", id, " is a member but does not know it yet"));
    }
  }
  for (const MemberEntry& entry : reference->membership().entries()) {
    if (entry.status == MemberStatus::kJoining || entry.status == MemberStatus::kLeaving) {
      return absl::FailedPreconditionError(
          absl::StrCat("member ", entry.id, " is still ", MemberStatusName(entry.status),
                       nodes_.contains(entry.id) ? "" : " (not running)"));
    }
  }
  return reference->ring();
}

absl::Status Simulation::Crash(NodeId id, bool wipe_disk) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return absl::FailedPreconditionError(absl::StrCat("node ", id, " is not running"));
  nodes_.erase(it);
  network_.Crash(id);
  if (wipe_disk) disks_[id] = std::make_unique<MemoryEngine>(options_.storage);
  return absl::OkStatus();
}

absl::Status Simulation::Restart(NodeId id) {
  if (!disks_.contains(id)) return absl::NotFoundError(absl::StrCat("no node ", id));
  if (nodes_.contains(id)) return absl::FailedPreconditionError(absl::StrCat("node ", id, " is running"));
  network_.Restart(id);
  return StartNode(id);
}

absl::StatusOr<Node*> Simulation::AddNode(NodeId id, std::optional<NodeOptions> options) {
  if (network_.HasNode(id)) return absl::AlreadyExistsError(absl::StrCat("id ", id, " is taken"));
  runtimes_[id] = &network_.AddNode(id);
  disks_[id] = std::make_unique<MemoryEngine>(options_.storage);
  added_options_[id] = options.has_value() ? *std::move(options) : options_.node;
  node_ids_.push_back(id);
  DYNAMO_RETURN_IF_ERROR(StartNode(id));
  return nodes_.at(id).get();
}

absl::StatusOr<Client*> Simulation::AddClient(NodeId id, ClientOptions options) {
  if (network_.HasNode(id)) return absl::AlreadyExistsError(absl::StrCat("id ", id, " is taken"));
  Runtime& runtime = network_.AddNode(id);
  DYNAMO_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Create(std::move(options), &runtime));
  Client* raw = client.get();
  clients_[id] = std::move(client);
  return raw;
}

template <typename Result, typename Issue>
Result Simulation::Await(Issue issue) {
  std::optional<Result> result;
  issue([&result](Result r) { result.emplace(std::move(r)); });
  network_.RunUntil([&result] { return result.has_value(); }, options_.request_wait_max);
  if (!result.has_value()) {
    return absl::DeadlineExceededError("the simulated request never completed");
  }
  return *std::move(result);
}

absl::StatusOr<GetResult> Simulation::Get(NodeId via, std::string_view bucket,
                                          std::string_view key) {
  Node* n = node(via);
  if (n == nullptr) return absl::FailedPreconditionError(absl::StrCat("node ", via, " is down"));
  return Await<absl::StatusOr<GetResult>>(
      [&](auto done) { n->Get(bucket, key, std::move(done)); });
}

absl::Status Simulation::Put(NodeId via, std::string_view bucket, std::string_view key,
                             const Context& context, std::string value) {
  Node* n = node(via);
  if (n == nullptr) return absl::FailedPreconditionError(absl::StrCat("node ", via, " is down"));
  return Await<absl::Status>(
      [&](auto done) { n->Put(bucket, key, context, std::move(value), std::move(done)); });
}

absl::Status Simulation::Delete(NodeId via, std::string_view bucket, std::string_view key,
                                const Context& context) {
  Node* n = node(via);
  if (n == nullptr) return absl::FailedPreconditionError(absl::StrCat("node ", via, " is down"));
  return Await<absl::Status>(
      [&](auto done) { n->Delete(bucket, key, context, std::move(done)); });
}

}  // namespace dynamo::sim

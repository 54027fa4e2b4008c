// Membership, gossip and ownership transfer on a simulated cluster (paper
// 4.8, 4.9).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <random>

#include "dynamo/sim/simulation.h"
#include "node/messages.h"
#include "sim/sim_test_util.h"
#include "xxhash.h"

namespace dynamo::sim {
namespace {

using dynamo::testing::TestSeed;

SimulationOptions Options(uint64_t seed, size_t nodes) {
  SimulationOptions o;
  o.seed = seed;
  o.nodes = nodes;
  o.ring.partitions = 64;
  o.node.seeds = {1};
  return o;
}

bool AllAgree(Simulation& sim, const std::vector<NodeId>& nodes) {
  const Membership& first = sim.node(nodes[0])->membership();
  for (NodeId id : nodes) {
    if (sim.node(id)->membership().entries() != first.entries()) return false;
  }
  return true;
}

// A bare endpoint that speaks the protocol by hand and keeps, decoded,
// what one node sends it.
class HandPeer {
 public:
  HandPeer(Simulation& sim, NodeId self, NodeId listen_to) : runtime_(sim.network().AddNode(self)) {
    runtime_.transport().SetReceiveHandler([this, listen_to](NodeId from, std::string_view bytes) {
      if (from != listen_to) return;
      absl::StatusOr<internal::Message> m = internal::DecodeMessage(bytes);
      REQUIRE(m.ok());
      replies_.push_back(*std::move(m));
    });
  }
  absl::Status Send(NodeId to, std::string bytes) {
    return runtime_.transport().Send(to, std::move(bytes));
  }
  const std::vector<internal::Message>& replies() const { return replies_; }

 private:
  Runtime& runtime_;
  std::vector<internal::Message> replies_;
};

MemberStatus StatusIn(Simulation& sim, NodeId observer, NodeId member) {
  const MemberEntry* e = sim.node(observer)->membership().Find(member);
  return e == nullptr ? MemberStatus::kRemoved : e->status;
}

TEST_CASE("Grow 3 -> 10 under writes, shrink to 4: nothing acknowledged is lost, data sits on its owners") {
  uint64_t seed = TestSeed(61);
  DYNAMO_SEED_INFO(seed);
  auto sim = *Simulation::Create(Options(seed, 3));
  std::mt19937_64 rng(seed);
  std::map<std::string, std::string> acked;  // key -> acknowledged value
  int next_key = 0;
  bool writing = true;
  std::function<void()> writer = [&] {
    if (!writing) return;
    std::vector<NodeId> live;
    for (NodeId id : sim->node(1)->membership().Live()) {
      if (StatusIn(*sim, 1, id) == MemberStatus::kUp) live.push_back(id);
    }
    NodeId via = live[rng() % live.size()];
    std::string key = "key" + std::to_string(next_key++);
    std::string value = "v-" + key;
    sim->node(via)->Put("default", key, {}, value, [&acked, key, value](absl::Status s) {
      if (s.ok()) acked[key] = value;
    });
    sim->network().Schedule(absl::Milliseconds(20), [&] { writer(); });
  };
  writer();

  for (NodeId id = 4; id <= 10; ++id) {
    auto node = sim->AddNode(id);
    REQUIRE(node.ok());
    std::optional<absl::Status> joined;
    (*node)->Join(1 + rng() % 3, [&](absl::Status s) { joined = s; });
    INFO("joining node " << id);
    REQUIRE(sim->network().RunUntil(
        [&] {
          return joined.has_value() && StatusIn(*sim, id, id) == MemberStatus::kUp &&
                 StatusIn(*sim, 1, id) == MemberStatus::kUp;
        },
        absl::Seconds(60)));
    REQUIRE(joined->ok());
  }
  for (NodeId id = 10; id >= 5; --id) {
    INFO("node " << id << " leaving");
    REQUIRE(sim->node(id)->Leave().ok());
    REQUIRE(sim->network().RunUntil(
        [&] { return StatusIn(*sim, 1, id) == MemberStatus::kRemoved; }, absl::Seconds(120)));
  }
  writing = false;
  std::vector<NodeId> all = sim->node_ids();
  REQUIRE(sim->network().RunUntil([&] { return AllAgree(*sim, all); }, absl::Seconds(60)));
  sim->RunFor(absl::Seconds(30));  // transfers, sweeps and handoff settle

  const Ring& ring = sim->node(1)->ring();
  REQUIRE(ring.size() == 4);
  REQUIRE(acked.size() > 100);
  for (const auto& [key, value] : acked) {
    INFO("key " << key);
    auto got = sim->Get(1 + rng() % 4, "default", key);
    REQUIRE(got.ok());
    REQUIRE(std::find(got->values.begin(), got->values.end(), value) != got->values.end());
    std::string skey = Coordinator::StorageKey("default", key);
    std::vector<NodeId> owners = ring.PreferenceList(skey, 3);
    std::sort(owners.begin(), owners.end());
    std::vector<NodeId> holders;
    for (NodeId id : all) {
      if (!sim->disk(id).Get(skey)->empty()) holders.push_back(id);
    }
    CHECK(holders == owners);
  }
}

TEST_CASE("Two nodes joined through different seeds converge to one ring") {
  uint64_t seed = TestSeed(62);
  DYNAMO_SEED_INFO(seed);
  SimulationOptions o = Options(seed, 4);
  o.node.seeds = {1, 3};
  auto sim = *Simulation::Create(o);
  NodeOptions joiner = o.node;
  auto a = sim->AddNode(11, joiner);
  auto b = sim->AddNode(12, joiner);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  int joined = 0;
  (*a)->Join(1, [&](absl::Status s) { joined += s.ok(); });
  (*b)->Join(4, [&](absl::Status s) { joined += s.ok(); });
  std::vector<NodeId> all = sim->node_ids();
  REQUIRE(sim->network().RunUntil(
      [&] {
        return joined == 2 && AllAgree(*sim, all) && StatusIn(*sim, 1, 11) == MemberStatus::kUp &&
               StatusIn(*sim, 1, 12) == MemberStatus::kUp;
      },
      absl::Seconds(60)));
  for (NodeId id : all) CHECK(sim->node(id)->ring().members() == sim->node(1)->ring().members());
  CHECK(sim->node(1)->ring().size() == 6);
}

TEST_CASE("A node restarted with its data wiped rejoins with a new epoch, nothing acknowledged is lost") {
  uint64_t seed = TestSeed(63);
  DYNAMO_SEED_INFO(seed);
  auto sim = *Simulation::Create(Options(seed, 5));
  for (int i = 0; i < 50; ++i) {
    REQUIRE(sim->Put(1 + i % 5, "default", "k" + std::to_string(i), {}, "v" + std::to_string(i)).ok());
  }
  sim->RunFor(absl::Seconds(3));
  uint64_t old_epoch = sim->node(2)->identity().epoch;
  ActorId old_actor = sim->node(2)->identity().actor;
  REQUIRE(sim->Crash(2, /*wipe_disk=*/true).ok());
  REQUIRE(sim->Restart(2).ok());
  REQUIRE(sim->network().RunUntil(
      [&] {
        const MemberEntry* e = sim->node(1)->membership().Find(2);
        return sim->node(2)->identity().epoch > old_epoch && e != nullptr &&
               e->epoch == sim->node(2)->identity().epoch;
      },
      absl::Seconds(30)));
  CHECK(sim->node(2)->identity().actor != old_actor);
  for (int i = 0; i < 50; ++i) {
    auto got = sim->Get(1 + i % 5, "default", "k" + std::to_string(i));
    REQUIRE(got.ok());
    CHECK(got->values == std::vector<std::string>{"v" + std::to_string(i)});
  }
}

TEST_CASE("Gossip spreads a change to 100 nodes in O(log n) rounds") {
  uint64_t seed = TestSeed(64);
  DYNAMO_SEED_INFO(seed);
  SimulationOptions o = Options(seed, 100);
  o.ring.partitions = 1024;
  o.node.seeds = {};  // pure epidemic: seeds would shortcut it
  auto sim = *Simulation::Create(o);
  REQUIRE(sim->node(37)->Remove(100).ok());  // one change, made at node 37
  absl::Time start = sim->network().Now();
  std::vector<NodeId> all = sim->node_ids();
  all.pop_back();
  REQUIRE(sim->network().RunUntil(
      [&] {
        return std::all_of(all.begin(), all.end(), [&](NodeId id) {
          return StatusIn(*sim, id, 100) == MemberStatus::kRemoved;
        });
      },
      absl::Seconds(120)));
  double rounds = absl::ToDoubleSeconds(sim->network().Now() - start) /
                  absl::ToDoubleSeconds(o.node.gossip_interval);
  WARN("gossip reached 99 nodes in " << rounds << " rounds (log2(100) = 6.6)");
  CHECK(rounds <= 3 * std::log2(100.0));
}

TEST_CASE("A stalled transfer resumes from its cursor and the join completes") {
  uint64_t seed = TestSeed(66);
  DYNAMO_SEED_INFO(seed);
  SimulationOptions o = Options(seed, 4);
  o.node.transfer_batch_entries = 8;  // many small batches
  auto sim = *Simulation::Create(o);
  for (int i = 0; i < 300; ++i) {
    REQUIRE(sim->Put(1 + i % 4, "default", "k" + std::to_string(i), {}, "v").ok());
  }
  auto joiner = sim->AddNode(9);
  REQUIRE(joiner.ok());
  std::optional<absl::Status> joined;
  (*joiner)->Join(1, [&](absl::Status s) { joined = s; });
  // Let the transfer start, then cut every source off for a while.
  REQUIRE(sim->network().RunUntil(
      [&] { return (*joiner)->metrics().transfer_keys_received > 0; }, absl::Seconds(10)));
  for (NodeId id = 1; id <= 4; ++id) sim->network().BlockLink(id, 9);
  sim->RunFor(absl::Seconds(8));
  CHECK((*joiner)->metrics().transfer_timeouts > 0);
  CHECK(StatusIn(*sim, 9, 9) == MemberStatus::kJoining);
  sim->network().HealAll();
  REQUIRE(sim->network().RunUntil([&] { return StatusIn(*sim, 1, 9) == MemberStatus::kUp; },
                                  absl::Seconds(120)));
  // Everything the joiner now replicates, it holds.
  size_t n = 3;
  for (int i = 0; i < 300; ++i) {
    std::string skey = Coordinator::StorageKey("default", "k" + std::to_string(i));
    std::vector<NodeId> owners = sim->node(1)->ring().PreferenceList(skey, n);
    if (std::find(owners.begin(), owners.end(), 9) == owners.end()) continue;
    INFO("key " << skey);
    CHECK_FALSE(sim->disk(9).Get(skey)->empty());
  }
}

// Simulated time from Join to the joiner being up everywhere, on a 3-node
// cluster holding `keys` keys.
absl::Duration JoinTime(uint64_t seed, int keys, absl::Duration batch_interval) {
  SimulationOptions o = Options(seed, 3);
  o.ring.partitions = 256;
  o.node.transfer_batch_entries = 4;  // a few keys fill a batch
  o.node.transfer_batch_interval = batch_interval;
  auto sim = *Simulation::Create(o);
  for (int i = 0; i < keys; ++i) {
    REQUIRE(sim->Put(1 + i % 3, "default", "k" + std::to_string(i), {}, "v").ok());
  }
  auto joiner = sim->AddNode(4);
  REQUIRE(joiner.ok());
  const absl::Time start = sim->network().Now();
  (*joiner)->Join(1, [](absl::Status) {});
  REQUIRE(sim->network().RunUntil(
      [&] {
        for (NodeId id = 1; id <= 4; ++id) {
          if (StatusIn(*sim, id, 4) != MemberStatus::kUp) return false;
        }
        return true;
      },
      absl::Seconds(300)));
  return sim->network().Now() - start;
}

TEST_CASE("Transfers are throttled by the data they move, not by the ranges") {
  uint64_t seed = TestSeed(67);
  DYNAMO_SEED_INFO(seed);
  // Into an empty cluster the joiner still asks every old owner of ~190
  // ranges; empty answers wait for nothing, so the throttle costs (almost)
  // nothing. (When every batch waited the whole interval, this join took
  // 18 s of simulated time instead of 3.)
  const absl::Duration empty_throttled = JoinTime(seed, 0, absl::Milliseconds(50));
  const absl::Duration empty_unthrottled = JoinTime(seed, 0, absl::ZeroDuration());
  INFO("empty: " << empty_throttled << " throttled, " << empty_unthrottled << " not");
  CHECK(empty_throttled < empty_unthrottled * 1.2 + absl::Milliseconds(500));
  // With data, full batches wait the interval: ~3 x 300 / 4 batches of
  // pulled copies, two in flight, is seconds of pauses at 50 ms.
  const absl::Duration full_throttled = JoinTime(seed, 300, absl::Milliseconds(50));
  const absl::Duration full_unthrottled = JoinTime(seed, 300, absl::ZeroDuration());
  INFO("300 keys: " << full_throttled << " throttled, " << full_unthrottled << " not");
  CHECK(full_throttled > full_unthrottled + absl::Seconds(2));
}

TEST_CASE("Failure detection never removes a node, explicit removal does") {
  uint64_t seed = TestSeed(65);
  DYNAMO_SEED_INFO(seed);
  auto sim = *Simulation::Create(Options(seed, 5));
  sim->RunFor(absl::Seconds(10));  // phi learns the gossip intervals
  REQUIRE(sim->Crash(5, false).ok());
  sim->RunFor(absl::Seconds(60));
  CHECK_FALSE(sim->node(1)->failure_detector().IsReachable(5));
  CHECK(StatusIn(*sim, 1, 5) == MemberStatus::kUp);
  CHECK(sim->node(1)->ring().Contains(5));
  REQUIRE(sim->node(1)->Remove(5).ok());
  REQUIRE(sim->network().RunUntil([&] { return !sim->node(3)->ring().Contains(5); },
                                  absl::Seconds(30)));
  CHECK(sim->node(1)->Remove(5).code() == absl::StatusCode::kNotFound);
}

TEST_CASE("A node rebuilds its rings only when the view changes what they are built from") {
  uint64_t seed = TestSeed(67);
  DYNAMO_SEED_INFO(seed);
  auto sim = *Simulation::Create(Options(seed, 5));
  const RingOptions& ring_options = sim->node(1)->ring().options();
  // Each node's rings are what its view builds now, whatever was skipped.
  auto rings_follow_views = [&](const std::vector<NodeId>& nodes) {
    for (NodeId id : nodes) {
      const Node& node = *sim->node(id);
      INFO("node " << id);
      CHECK(node.ring().members() ==
            node.membership().BuildRing(ring_options, /*pending=*/false)->members());
      CHECK(node.pending_ring().members() ==
            node.membership().BuildRing(ring_options, /*pending=*/true)->members());
    }
  };
  sim->RunFor(absl::Seconds(5));
  // Every node announced its actor, a change of every view that moves no
  // partition. The ring each node was created with is the one its view
  // builds (its history is the view's joins): no node built a ring at all.
  for (NodeId id : sim->node_ids()) {
    INFO("node " << id);
    CHECK(sim->node(id)->metrics().membership_changes >= 5);
    CHECK(sim->node(id)->metrics().ring_rebuilds == 0);
  }
  rings_follow_views(sim->node_ids());
  REQUIRE(sim->node(1)->Remove(5).ok());
  const std::vector<NodeId> rest = {1, 2, 3, 4};
  REQUIRE(sim->network().RunUntil(
      [&] {
        return std::none_of(rest.begin(), rest.end(),
                            [&](NodeId id) { return sim->node(id)->ring().Contains(5); });
      },
      absl::Seconds(30)));
  sim->RunFor(absl::Seconds(5));
  for (NodeId id : rest) {
    INFO("node " << id);
    CHECK(sim->node(id)->metrics().ring_rebuilds >= 1);
  }
  rings_follow_views(rest);
  // A join: the rings grow from the ones before; checked while it moves
  // data (the pending ring holds the joiner) and once it is up everywhere.
  auto joiner = sim->AddNode(6);
  REQUIRE(joiner.ok());
  std::optional<absl::Status> joined;
  (*joiner)->Join(2, [&](absl::Status s) { joined = s; });
  const std::vector<NodeId> after_join = {1, 2, 3, 4, 6};
  REQUIRE(sim->network().RunUntil(
      [&] { return sim->node(1)->pending_ring().Contains(6); }, absl::Seconds(30)));
  rings_follow_views(after_join);
  REQUIRE(sim->network().RunUntil(
      [&] {
        return joined.has_value() &&
               std::all_of(after_join.begin(), after_join.end(), [&](NodeId id) {
                 return StatusIn(*sim, id, 6) == MemberStatus::kUp;
               });
      },
      absl::Seconds(60)));
  REQUIRE(joined->ok());
  rings_follow_views(after_join);
}

TEST_CASE("A gossip digest in any order, with an id listed twice, gets the entries that differ") {
  uint64_t seed = TestSeed(68);
  DYNAMO_SEED_INFO(seed);
  auto sim = *Simulation::Create(Options(seed, 3));
  sim->RunFor(absl::Seconds(3));  // actors announced: every entry has changed
  HandPeer peer(*sim, 99, 1);
  const std::vector<internal::Message>& replies = peer.replies();
  const Membership& view = sim->node(1)->membership();
  REQUIRE(view.digest().size() == 3);
  for (const auto& [member, hash] : view.digest()) {
    INFO("member " << member);
    const MemberEntry& e = *view.Find(member);
    CHECK(hash == XXH3_64bits(EncodeMemberEntries({e}).data(), EncodeMemberEntries({e}).size()));
  }
  const uint64_t hash_of_2 = view.digest()[1].second;
  // Out of order; member 2 twice (the first, right, counts); member 1 seen
  // differently; member 3 missing; member 42 unknown to node 1.
  internal::GossipDigest digest;
  digest.entry_hashes = {{42, 5}, {2, hash_of_2}, {1, view.digest()[0].second ^ 1}, {2, 0}};
  REQUIRE(peer.Send(1, internal::EncodeMessage(digest)).ok());
  REQUIRE(sim->network().RunUntil([&] { return !replies.empty(); }, absl::Seconds(1)));
  REQUIRE(replies.size() == 1);
  const auto* reply = std::get_if<internal::GossipEntries>(&replies[0]);
  REQUIRE(reply != nullptr);
  CHECK(reply->wanted == std::vector<NodeId>{1, 42});
  absl::StatusOr<std::vector<MemberEntry>> sent = DecodeMemberEntries(reply->entries);
  REQUIRE(sent.ok());
  REQUIRE(sent->size() == 2);
  CHECK((*sent)[0] == *view.Find(1));
  CHECK((*sent)[1] == *view.Find(3));
}

TEST_CASE("A gossip summary that agrees gets no answer and one that differs gets the digest") {
  uint64_t seed = TestSeed(69);
  DYNAMO_SEED_INFO(seed);
  auto sim = *Simulation::Create(Options(seed, 3));
  sim->RunFor(absl::Seconds(3));
  HandPeer peer(*sim, 99, 1);
  const std::vector<internal::Message>& replies = peer.replies();
  const Membership& view = sim->node(1)->membership();
  REQUIRE(peer.Send(1, internal::EncodeMessage(internal::GossipSummary{view.ViewDigest()})).ok());
  sim->RunFor(absl::Milliseconds(500));
  CHECK(replies.empty());
  REQUIRE(
      peer.Send(1, internal::EncodeMessage(internal::GossipSummary{view.ViewDigest() ^ 1})).ok());
  REQUIRE(sim->network().RunUntil([&] { return !replies.empty(); }, absl::Seconds(1)));
  REQUIRE(replies.size() == 1);
  const auto* reply = std::get_if<internal::GossipDigest>(&replies[0]);
  REQUIRE(reply != nullptr);
  CHECK(reply->entry_hashes == view.digest());
}

TEST_CASE("A wall clock stepped either way neither suspects every peer nor hides a crash") {
  uint64_t seed = TestSeed(66);
  DYNAMO_SEED_INFO(seed);
  auto sim = *Simulation::Create(Options(seed, 5));
  sim->RunFor(absl::Seconds(10));  // phi learns the gossip intervals
  const uint64_t suspected_before = sim->node(1)->metrics().peers_suspected_by_phi;
  // Forward an hour: no peer went silent for an hour.
  sim->network().SetClockSkew(1, absl::Hours(1), 0);
  sim->RunFor(absl::Seconds(2));
  CHECK(sim->node(1)->failure_detector().Unreachable().empty());
  CHECK(sim->node(1)->metrics().peers_suspected_by_phi == suspected_before);
  // Back two hours (an hour behind true time): a peer that then crashes is
  // still suspected by phi, not heard from "in the future" for an hour.
  sim->network().SetClockSkew(1, absl::Hours(-1), 0);
  REQUIRE(sim->Crash(5, false).ok());
  sim->RunFor(absl::Seconds(60));
  CHECK(sim->node(1)->failure_detector().Unreachable() == std::vector<NodeId>{5});
}

}  // namespace
}  // namespace dynamo::sim

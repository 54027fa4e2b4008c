// Anti-entropy (paper 4.7) and tombstone reaping on simulated clusters.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "dynamo/sim/checker.h"
#include "dynamo/sim/simulation.h"
#include "node/messages.h"
#include "sim/sim_test_util.h"

namespace dynamo::sim {
namespace {

using dynamo::testing::TestSeed;

std::string Skey(std::string_view key) { return Coordinator::StorageKey("default", key); }

Version MakeVersion(ActorId actor, uint64_t counter, std::string value, bool tombstone = false) {
  Version v;
  v.dot = Dot{actor, counter, int64_t{1'000'000} * static_cast<int64_t>(counter)};
  v.value = std::move(value);
  v.tombstone = tombstone;
  return v;
}

// Every replica (first n of the preference list) of every key holds the same
// sibling set.
bool ReplicasAgree(Simulation& sim, const std::vector<std::string>& keys, size_t n = 3) {
  for (const std::string& key : keys) {
    std::vector<NodeId> owners = sim.initial_ring().PreferenceList(Skey(key), n);
    SiblingSet first = sim.disk(owners[0]).Get(Skey(key)).value();
    for (size_t i = 1; i < owners.size(); ++i) {
      if (sim.disk(owners[i]).Get(Skey(key)).value() != first) return false;
    }
  }
  return true;
}

uint64_t Sum(Simulation& sim, uint64_t NodeMetrics::*field) {
  uint64_t total = 0;
  for (NodeId id : sim.node_ids()) {
    if (sim.node(id) != nullptr) total += sim.node(id)->metrics().*field;
  }
  return total;
}

void RequireTreesMatchStorage(Simulation& sim) {
  const CheckReport report = CheckMerkleTrees(sim);
  INFO(report.ToString());
  REQUIRE(report.ok);
}

TEST_CASE("Without hinted handoff, anti-entropy alone makes diverged replicas identical within "
          "20 s of simulated time") {
  uint64_t seed = TestSeed(7001);
  DYNAMO_SEED_INFO(seed);
  SimulationOptions o;
  o.seed = seed;
  o.nodes = 5;
  o.ring.partitions = 32;
  o.node.hinted_handoff_enabled = false;
  o.node.anti_entropy_interval = absl::Seconds(2);
  o.network.latency_distribution = LatencyDistribution::kExponential;
  auto created = Simulation::Create(o);
  REQUIRE(created.ok());
  Simulation& sim = **created;

  std::vector<std::string> keys;
  for (int i = 0; i < 120; ++i) keys.push_back("k" + std::to_string(i));
  for (int i = 0; i < 60; ++i) (void)sim.Put(1 + i % 5, "default", keys[i], {}, "v1");
  // Node 3 misses the second half and the overwrites (its hints are never
  // delivered); 10% of messages are lost meanwhile.
  REQUIRE(sim.Crash(3, false).ok());
  NetworkOptions lossy = o.network;
  lossy.loss_probability = 0.1;
  sim.network().SetOptions(lossy);
  for (int i = 0; i < 120; ++i) {
    NodeId via = 1 + i % 5;
    if (via == 3) via = 4;
    (void)sim.Put(via, "default", keys[i], {}, "v2");
  }
  sim.network().SetOptions(o.network);
  // And while it is down, its disk gets versions nobody else has, some
  // concurrent with what the others hold.
  for (int i = 0; i < 10; ++i) {
    REQUIRE(sim.disk(3).Put(Skey(keys[i * 7]), {MakeVersion(0xABC, 1 + i, "only-on-3")},
                            WriteOptions()).ok());
    REQUIRE(sim.disk(3).Put(Skey("lone" + std::to_string(i)), {MakeVersion(0xABC, 50 + i, "x")},
                            WriteOptions()).ok());
    keys.push_back("lone" + std::to_string(i));
  }
  REQUIRE(sim.Restart(3).ok());
  REQUIRE_FALSE(ReplicasAgree(sim, keys));
  const absl::Time start = sim.network().Now();
  bool agreed = sim.network().RunUntil([&] { return ReplicasAgree(sim, keys); },
                                       absl::Seconds(20));
  INFO("converged after " << absl::FormatDuration(sim.network().Now() - start));
  REQUIRE(agreed);
  CHECK(Sum(sim, &NodeMetrics::hints_delivered) == 0);
  CHECK(Sum(sim, &NodeMetrics::anti_entropy_exchanges_completed) > 0);
  // Concurrent versions were kept, not overwritten: "v1" and "v2" (written
  // without a context, so concurrent) and the version only node 3 had.
  auto got = sim.Get(1, "default", keys[0]);
  REQUIRE(got.ok());
  CHECK(got->values.size() == 3);
  RequireTreesMatchStorage(sim);
}

// Writes reach a tree in batches (AntiEntropy::OnKeyChanged); whatever reads
// a tree must see every write storage has. Checked in the middle of bursts
// of puts and deletes from every node (changes still waiting), after a
// crash and restart, a partition, and a join that moves ranges.
TEST_CASE("Each node's Merkle trees match its storage between writes, through faults and a join") {
  uint64_t seed = TestSeed(7031);
  DYNAMO_SEED_INFO(seed);
  SimulationOptions o;
  o.seed = seed;
  o.nodes = 5;
  o.ring.partitions = 64;
  o.node.anti_entropy_interval = absl::Seconds(1);
  o.node.merkle_rebuild_batch_keys = 2;
  o.network.latency_distribution = LatencyDistribution::kExponential;
  auto created = Simulation::Create(o);
  REQUIRE(created.ok());
  Simulation& sim = **created;
  sim.RunFor(absl::Seconds(3));  // trees built
  std::mt19937_64 rng(seed);
  int in_flight = 0;
  // A burst of `count` puts and deletes through random live nodes, checked
  // halfway through, before every request has finished.
  auto burst = [&](int count) {
    for (int i = 0; i < count; ++i) {
      std::vector<NodeId> live;
      for (NodeId id : sim.node_ids()) {
        if (sim.node(id) != nullptr) live.push_back(id);
      }
      Node* via = sim.node(live[rng() % live.size()]);
      const std::string key = "k" + std::to_string(rng() % 400);
      ++in_flight;
      if (rng() % 4 == 0) {
        via->Get("default", key, [&, via, key](absl::StatusOr<GetResult> got) {
          if (got.ok() && !got->values.empty()) {
            via->Delete("default", key, got->context, [&](absl::Status) { --in_flight; });
          } else {
            --in_flight;
          }
        });
      } else {
        via->Put("default", key, Context(), "v" + std::to_string(i), [&](absl::Status) {
          --in_flight;
        });
      }
    }
    REQUIRE(sim.network().RunUntil([&] { return in_flight <= count / 2; }, absl::Seconds(30)));
    RequireTreesMatchStorage(sim);
    REQUIRE(sim.network().RunUntil([&] { return in_flight == 0; }, absl::Seconds(30)));
    RequireTreesMatchStorage(sim);
  };
  burst(300);
  REQUIRE(sim.Crash(2, false).ok());
  burst(200);
  REQUIRE(sim.Restart(2).ok());
  burst(200);  // while node 2 rebuilds its trees, a few keys at a time
  sim.RunFor(absl::Seconds(5));
  RequireTreesMatchStorage(sim);
  sim.network().Partition({{1, 2}, {3, 4, 5}});
  burst(200);
  sim.network().HealAll();
  sim.RunFor(absl::Seconds(5));  // hints delivered, exchanges run
  RequireTreesMatchStorage(sim);
  auto joiner = sim.AddNode(6);
  REQUIRE(joiner.ok());
  std::optional<absl::Status> joined;
  (*joiner)->Join(1, [&](absl::Status s) { joined = s; });
  burst(200);
  REQUIRE(sim.network().RunUntil([&] { return joined.has_value(); }, absl::Seconds(60)));
  REQUIRE(joined->ok());
  sim.RunFor(absl::Seconds(10));  // ranges moved, the joiner's trees built
  burst(200);
  CHECK(Sum(sim, &NodeMetrics::merkle_key_updates) > 0);
}

TEST_CASE("Repairing 10 of 100k keys between two replicas moves under 1% of a full exchange") {
  uint64_t seed = TestSeed(7002);
  DYNAMO_SEED_INFO(seed);
  SimulationOptions o;
  o.seed = seed;
  o.nodes = 2;
  o.ring.partitions = 16;
  o.node.buckets[0].n = 2;
  o.node.buckets[0].r = 1;
  o.node.buckets[0].w = 1;
  o.node.anti_entropy_interval = absl::Seconds(5);
  o.node.merkle_rebuild_batch_keys = 5000;
  o.node.tombstone_reaping_enabled = false;
  auto created = Simulation::Create(o);
  REQUIRE(created.ok());
  Simulation& sim = **created;
  REQUIRE(sim.Crash(1, false).ok());
  REQUIRE(sim.Crash(2, false).ok());
  constexpr int kKeys = 100'000;
  internal::KeyExchange full;  // what sending every key would cost
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = Skey("key" + std::to_string(i));
    const SiblingSet set = {MakeVersion(0x1111, 1 + i % 1000, "value-" + std::to_string(i))};
    REQUIRE(sim.disk(1).Put(key, set, WriteOptions()).ok());
    if (i % 10'000 != 5) {
      REQUIRE(sim.disk(2).Put(key, set, WriteOptions()).ok());
    } else {  // 10 keys differ: missing on node 2 (5) or a concurrent version (5)
      if (i % 20'000 == 5) {
        REQUIRE(sim.disk(2).Put(key, {MakeVersion(0x2222, 1, "other")}, WriteOptions()).ok());
      }
    }
    full.entries.emplace_back(key, set);
  }
  const uint64_t full_bytes = internal::EncodeMessage(full).size();
  REQUIRE(sim.Restart(1).ok());
  REQUIRE(sim.Restart(2).ok());
  // Rebuild (2 batches of 5000 keys per range), then exchanges: every range
  // is compared within one anti_entropy_interval.
  auto differing_agree = [&] {
    for (int i = 5; i < kKeys; i += 10'000) {
      const std::string key = Skey("key" + std::to_string(i));
      if (sim.disk(1).Get(key).value() != sim.disk(2).Get(key).value()) return false;
    }
    return true;
  };
  REQUIRE(sim.network().RunUntil(differing_agree, absl::Seconds(8)));
  std::ostringstream stats;
  for (NodeId id : {1, 2}) {
    const NodeMetrics& m = sim.node(id)->metrics();
    stats << "node " << id << ": exchanges " << m.anti_entropy_exchanges_completed << ", rounds "
          << m.anti_entropy_rounds << ", keys sent " << m.anti_entropy_keys_sent << ", bytes "
          << m.anti_entropy_bytes_sent << "; ";
  }
  INFO(stats.str());
  REQUIRE(sim.node(1)->metrics().merkle_trees_built == 16);
  REQUIRE(sim.node(2)->metrics().merkle_trees_built == 16);
  for (int i = 5; i < kKeys; i += 10'000) {
    const std::string key = Skey("key" + std::to_string(i));
    INFO(key);
    const SiblingSet a = sim.disk(1).Get(key).value(), b = sim.disk(2).Get(key).value();
    CHECK(a == b);
  }
  CHECK(sim.disk(2).Get(Skey("key5")).value().size() == 2);  // the concurrent one stayed
  const uint64_t sent = Sum(sim, &NodeMetrics::anti_entropy_bytes_sent);
  INFO("anti-entropy bytes " << sent << ", full exchange " << full_bytes);
  CHECK(sent * 100 <= full_bytes);
  if (std::getenv("DYNAMO_AE_VERBOSE") != nullptr) WARN(stats.str() << " full " << full_bytes);
  CHECK(Sum(sim, &NodeMetrics::anti_entropy_keys_received) < 600);
}

TEST_CASE("Trees of ranges that hold no key are built at once and the others by scanning") {
  uint64_t seed = TestSeed(7005);
  DYNAMO_SEED_INFO(seed);
  SimulationOptions o;
  o.seed = seed;
  o.nodes = 3;
  o.ring.partitions = 16;
  auto created = Simulation::Create(o);
  REQUIRE(created.ok());
  Simulation& sim = **created;
  // Empty nodes: every tree is built before anything runs.
  for (NodeId id : sim.node_ids()) {
    INFO("node " << id);
    const NodeMetrics& m = sim.node(id)->metrics();
    CHECK(m.merkle_trees == 16);
    CHECK(m.merkle_trees_built == 16);
  }
  // Three keys, so some ranges hold keys and most do not.
  for (const char* key : {"a", "b", "c"}) REQUIRE(sim.Put(1, "default", key, {}, "v").ok());
  sim.RunFor(absl::Seconds(1));
  std::set<Token> holding;
  for (const char* key : {"a", "b", "c"}) {
    holding.insert(Ring::PartitionEnd(16, Ring::PartitionOf(16, KeyToken(Skey(key)))));
  }
  REQUIRE(sim.Crash(1, /*wipe_disk=*/false).ok());
  REQUIRE(sim.Restart(1).ok());
  // Every range of node 1 holds a replica of each key (3 nodes, N = 3).
  CHECK(sim.node(1)->metrics().merkle_trees_built == 16 - holding.size());
  sim.RunFor(absl::Seconds(1));
  CHECK(sim.node(1)->metrics().merkle_trees_built == 16);
  RequireTreesMatchStorage(sim);
}

TEST_CASE("A deleted key stays deleted across a crash, restart and anti-entropy, its tombstone "
          "is reaped only once every replica holds it") {
  uint64_t seed = TestSeed(7003);
  DYNAMO_SEED_INFO(seed);
  SimulationOptions o;
  o.seed = seed;
  o.nodes = 3;
  o.ring.partitions = 16;
  o.node.hinted_handoff_enabled = false;
  o.node.anti_entropy_interval = absl::Seconds(1);
  o.node.tombstone_sweep_interval = absl::Seconds(1);
  o.node.tombstone_reap_grace = absl::Seconds(2);
  auto created = Simulation::Create(o);
  REQUIRE(created.ok());
  Simulation& sim = **created;
  const std::vector<NodeId> owners = sim.initial_ring().PreferenceList(Skey("gone"), 3);
  REQUIRE(sim.Put(owners[0], "default", "gone", {}, "v1").ok());
  sim.RunFor(absl::Seconds(1));
  auto before = sim.Get(owners[0], "default", "gone");
  REQUIRE(before.ok());
  REQUIRE(sim.Crash(owners[2], false).ok());  // keeps "v1" on its disk
  REQUIRE(sim.Delete(owners[0], "default", "gone", before->context).ok());
  sim.RunFor(absl::Seconds(10));
  // The third replica is down: nobody reaps.
  CHECK(Sum(sim, &NodeMetrics::tombstones_reaped) == 0);
  CHECK(Sum(sim, &NodeMetrics::tombstone_reaps_blocked) > 0);
  for (NodeId id : {owners[0], owners[1]}) {
    SiblingSet s = sim.disk(id).Get(Skey("gone")).value();
    REQUIRE(s.size() == 1);
    CHECK(s[0].tombstone);
  }
  CHECK(sim.disk(owners[2]).Get(Skey("gone")).value().at(0).value == "v1");

  REQUIRE(sim.Restart(owners[2]).ok());
  // Anti-entropy brings the tombstone; then all three reap it.
  bool reaped = sim.network().RunUntil(
      [&] {
        for (NodeId id : owners) {
          if (!sim.disk(id).Get(Skey("gone")).value().empty()) return false;
        }
        return true;
      },
      absl::Seconds(30));
  REQUIRE(reaped);
  CHECK(Sum(sim, &NodeMetrics::tombstones_reaped) == 3);
  auto after = sim.Get(owners[1], "default", "gone");
  REQUIRE(after.ok());
  CHECK_FALSE(after->found());

  // Crash and restart a replica (disk kept): trees are rebuilt, exchanges
  // run, and the key stays deleted.
  REQUIRE(sim.Crash(owners[1], false).ok());
  sim.RunFor(absl::Seconds(2));
  REQUIRE(sim.Restart(owners[1]).ok());
  sim.RunFor(absl::Seconds(10));
  for (NodeId id : owners) CHECK(sim.disk(id).Get(Skey("gone")).value().empty());
  auto later = sim.Get(owners[2], "default", "gone");
  REQUIRE(later.ok());
  CHECK_FALSE(later->found());
}

TEST_CASE("Keys of an N=1 bucket keep no Merkle hashes, and their tombstones are still reaped") {
  uint64_t seed = TestSeed(7005);
  DYNAMO_SEED_INFO(seed);
  SimulationOptions o;
  o.seed = seed;
  o.nodes = 3;
  o.ring.partitions = 16;
  o.node.tombstone_sweep_interval = absl::Seconds(1);
  o.node.tombstone_reap_grace = absl::Seconds(2);
  BucketOptions one;
  one.name = "one";
  one.n = one.r = one.w = 1;
  o.node.buckets = {BucketOptions(), one};
  auto created = Simulation::Create(o);
  REQUIRE(created.ok());
  Simulation& sim = **created;
  sim.RunFor(absl::Seconds(2));  // trees built
  const NodeId owner =
      sim.initial_ring().PreferenceList(Coordinator::StorageKey("one", "solo"), 1).front();
  auto updates = [&] { return sim.node(owner)->metrics().merkle_key_updates; };
  const uint64_t before = updates();
  for (int i = 0; i < 20; ++i) {
    REQUIRE(sim.Put(owner, "one", "solo", {}, "v" + std::to_string(i)).ok());
  }
  // Changes reach the trees (and the counter) in batches, at the latest on
  // the next anti-entropy tick (anti_entropy_interval / 10).
  sim.RunFor(absl::Seconds(1));
  CHECK(updates() == before);  // no one to compare them with
  // A key of the N=3 bucket the node replicates is tracked.
  std::string shared;
  for (int i = 0; shared.empty(); ++i) {
    std::vector<NodeId> owners =
        sim.initial_ring().PreferenceList(Skey("k" + std::to_string(i)), 3);
    if (std::find(owners.begin(), owners.end(), owner) != owners.end())
      shared = "k" + std::to_string(i);
  }
  REQUIRE(sim.Put(owner, "default", shared, {}, "v").ok());
  sim.RunFor(absl::Seconds(1));
  CHECK(updates() > before);

  auto last = sim.Get(owner, "one", "solo");
  REQUIRE(last.ok());
  REQUIRE(sim.Delete(owner, "one", "solo", last->context).ok());
  const std::string key = Coordinator::StorageKey("one", "solo");
  REQUIRE(sim.disk(owner).Get(key).value().at(0).tombstone);
  REQUIRE(sim.network().RunUntil([&] { return sim.disk(owner).Get(key).value().empty(); },
                                 absl::Seconds(30)));
  CHECK(sim.node(owner)->metrics().tombstones_reaped >= 1);
}

TEST_CASE("Anti-entropy runs are deterministic for a seed") {
  auto run = [](uint64_t seed) {
    SimulationOptions o;
    o.seed = seed;
    o.nodes = 4;
    o.ring.partitions = 16;
    o.node.hinted_handoff_enabled = false;
    o.node.anti_entropy_interval = absl::Seconds(1);
    auto sim = Simulation::Create(o).value();
    REQUIRE(sim->Crash(2, false).ok());
    for (int i = 0; i < 30; ++i) (void)sim->Put(1, "default", "d" + std::to_string(i), {}, "v");
    REQUIRE(sim->Restart(2).ok());
    sim->RunFor(absl::Seconds(5));
    return sim->network().TraceDigest();
  };
  uint64_t seed = TestSeed(7004);
  DYNAMO_SEED_INFO(seed);
  CHECK(run(seed) == run(seed));
}

}  // namespace
}  // namespace dynamo::sim

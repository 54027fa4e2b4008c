// The partition-aware client (paper 6.4) and the node's robustness on a
// simulated cluster.
#include <algorithm>
#include <catch2/catch.hpp>
#include <optional>
#include <random>

#include "dynamo/sim/simulation.h"
#include "sim/sim_test_util.h"

namespace dynamo::sim {
namespace {

using dynamo::testing::TestSeed;

std::unique_ptr<Simulation> MakeSim(uint64_t seed, StorageLimits limits = StorageLimits()) {
  SimulationOptions o;
  o.seed = seed;
  o.nodes = 5;
  o.ring.partitions = 64;
  o.storage = limits;
  auto sim = Simulation::Create(o);
  REQUIRE(sim.ok());
  return *std::move(sim);
}

template <typename T>
std::optional<T> RunUntilDone(Simulation& sim, std::optional<T>& slot) {
  sim.network().RunUntil([&] { return slot.has_value(); }, absl::Seconds(10));
  return slot;
}

TEST_CASE("Partition-aware client reads and writes without a forwarding hop") {
  uint64_t seed = TestSeed(1001);
  DYNAMO_SEED_INFO(seed);
  auto sim = MakeSim(seed);
  ClientOptions co;
  co.seeds = {1, 2};
  auto client = sim->AddClient(100, co);
  REQUIRE(client.ok());
  sim->RunFor(absl::Milliseconds(500));
  REQUIRE((*client)->has_ring());
  CHECK((*client)->ring().size() == 5);

  std::optional<absl::Status> put;
  (*client)->Put("default", "k", {}, "v1", [&](absl::Status s) { put = s; });
  REQUIRE(RunUntilDone(*sim, put).has_value());
  REQUIRE(put->ok());

  std::optional<absl::StatusOr<GetResult>> got;
  (*client)->Get("default", "k", [&](absl::StatusOr<GetResult> r) { got = std::move(r); });
  REQUIRE(RunUntilDone(*sim, got).has_value());
  REQUIRE(got->ok());
  CHECK((*got)->values == std::vector<std::string>{"v1"});
  // The replica that answered fastest is named in the context and is one of
  // the key's replicas; the next write goes to it.
  NodeId fastest = (*got)->context.coordinator;
  std::vector<NodeId> owners =
      sim->initial_ring().PreferenceList(Coordinator::StorageKey("default", "k"), 3);
  REQUIRE(std::find(owners.begin(), owners.end(), fastest) != owners.end());
  uint64_t before = sim->node(fastest)->metrics().puts_ok;
  put.reset();
  (*client)->Put("default", "k", (*got)->context, "v2", [&](absl::Status s) { put = s; });
  REQUIRE(RunUntilDone(*sim, put).has_value());
  REQUIRE(put->ok());
  CHECK(sim->node(fastest)->metrics().puts_ok == before + 1);
  // No node forwarded anything: the client went straight to replicas.
  for (NodeId id : sim->node_ids()) CHECK(sim->node(id)->metrics().requests_forwarded == 0);
  auto check = sim->Get(1, "default", "k");
  REQUIRE(check.ok());
  CHECK(check->values == std::vector<std::string>{"v2"});
}

TEST_CASE("Garbage messages are counted and dropped, the node keeps serving") {
  uint64_t seed = TestSeed(1002);
  DYNAMO_SEED_INFO(seed);
  auto sim = MakeSim(seed);
  Runtime& attacker = sim->network().AddNode(200);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 200; ++i) {
    std::string junk(rng() % 100, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    REQUIRE(attacker.transport().Send(1 + rng() % 5, junk).ok());
  }
  sim->RunFor(absl::Seconds(1));
  uint64_t malformed = 0;
  for (NodeId id : sim->node_ids()) malformed += sim->node(id)->metrics().messages_malformed;
  CHECK(malformed == 200);
  REQUIRE(sim->Put(1, "default", "k", {}, "still here").ok());
  auto got = sim->Get(3, "default", "k");
  REQUIRE(got.ok());
  CHECK(got->values == std::vector<std::string>{"still here"});
}

TEST_CASE("Going past the sibling limit is a clear error, never silent loss") {
  uint64_t seed = TestSeed(1003);
  DYNAMO_SEED_INFO(seed);
  StorageLimits limits;
  limits.siblings_max = 4;
  auto sim = MakeSim(seed, limits);
  for (int i = 0; i < 4; ++i) {
    REQUIRE(sim->Put(1 + i % 5, "default", "hot", {}, "w" + std::to_string(i)).ok());
  }
  auto got = sim->Get(1, "default", "hot");
  REQUIRE(got.ok());
  REQUIRE(got->values.size() == 4);
  // A fifth concurrent write would need a fifth sibling.
  absl::Status over = sim->Put(1, "default", "hot", {}, "w4");
  CHECK(over.code() == absl::StatusCode::kFailedPrecondition);
  uint64_t rejected = 0;
  for (NodeId id : sim->node_ids()) rejected += sim->node(id)->metrics().puts_over_sibling_limit;
  CHECK(rejected >= 1);
  // The acknowledged four are all still there, and merging them works.
  got = sim->Get(2, "default", "hot");
  REQUIRE(got.ok());
  CHECK(got->values.size() == 4);
  REQUIRE(sim->Put(2, "default", "hot", got->context, "merged").ok());
  got = sim->Get(3, "default", "hot");
  REQUIRE(got.ok());
  CHECK(got->values == std::vector<std::string>{"merged"});
}

TEST_CASE("A node restarted with a wiped disk draws a new actor and loses nothing acknowledged") {
  uint64_t seed = TestSeed(1004);
  DYNAMO_SEED_INFO(seed);
  auto sim = MakeSim(seed);
  ActorId old_actor = sim->node(1)->identity().actor;
  REQUIRE(sim->Put(1, "default", "k", {}, "before").ok());
  sim->RunFor(absl::Seconds(1));
  REQUIRE(sim->Crash(1, /*wipe_disk=*/true).ok());
  REQUIRE(sim->Restart(1).ok());
  CHECK(sim->node(1)->identity().actor != old_actor);
  auto got = sim->Get(2, "default", "k");
  REQUIRE(got.ok());
  REQUIRE(got->values == std::vector<std::string>{"before"});
  // A write through the reborn node with the context supersedes the old
  // version instead of colliding with its dot.
  REQUIRE(sim->Put(1, "default", "k", got->context, "after").ok());
  got = sim->Get(3, "default", "k");
  REQUIRE(got.ok());
  CHECK(got->values == std::vector<std::string>{"after"});
}

}  // namespace
}  // namespace dynamo::sim

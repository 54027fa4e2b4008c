// The request path of paper sections 4.5 and 4.6 on a simulated cluster.
#include <algorithm>
#include <catch2/catch.hpp>
#include <set>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "dynamo/sim/simulation.h"
#include "sim/sim_test_util.h"

namespace dynamo::sim {
namespace {

using dynamo::testing::TestSeed;

std::unique_ptr<Simulation> MakeSim(uint64_t seed, size_t nodes = 5,
                                    std::vector<BucketOptions> buckets = {BucketOptions()}) {
  SimulationOptions o;
  o.seed = seed;
  o.nodes = nodes;
  o.ring.partitions = 64;
  o.node.buckets = std::move(buckets);
  o.network.latency_distribution = LatencyDistribution::kExponential;
  auto sim = Simulation::Create(o);
  REQUIRE(sim.ok());
  return *std::move(sim);
}

std::vector<NodeId> Owners(Simulation& sim, std::string_view key, size_t n = 3) {
  return sim.initial_ring().PreferenceList(Coordinator::StorageKey("default", key), n);
}

uint64_t TotalHints(Simulation& sim) {
  uint64_t total = 0;
  for (NodeId id : sim.node_ids()) total += sim.disk(id).GetHintUsage().value().count;
  return total;
}

TEST_CASE("(3,2,2) on 5 nodes with one node down: hints stored, delivered, removed") {
  uint64_t seed = TestSeed(101);
  DYNAMO_SEED_INFO(seed);
  auto sim = MakeSim(seed);
  std::vector<NodeId> owners = Owners(*sim, "k");
  NodeId down = owners[2], via = owners[0];
  REQUIRE(sim->Crash(down, false).ok());

  REQUIRE(sim->Put(via, "default", "k", {}, "v1").ok());
  auto got = sim->Get(via, "default", "k");
  REQUIRE(got.ok());
  REQUIRE(got->values == std::vector<std::string>{"v1"});
  sim->RunFor(absl::Seconds(1));
  CHECK(TotalHints(*sim) == 1);  // the fallback holds the down owner's copy
  CHECK(sim->disk(down).Get(Coordinator::StorageKey("default", "k"))->empty());

  REQUIRE(sim->Restart(down).ok());
  sim->RunFor(absl::Seconds(5));
  CHECK(TotalHints(*sim) == 0);
  auto stored = sim->disk(down).Get(Coordinator::StorageKey("default", "k"));
  REQUIRE(stored.ok());
  REQUIRE(stored->size() == 1);
  CHECK(stored->at(0).value == "v1");
  uint64_t delivered = 0;
  for (NodeId id : sim->node_ids()) delivered += sim->node(id)->metrics().hints_delivered;
  CHECK(delivered == 1);
}

TEST_CASE("Concurrent writes produce siblings, the merged context collapses them") {
  uint64_t seed = TestSeed(202);
  DYNAMO_SEED_INFO(seed);
  auto sim = MakeSim(seed);
  std::vector<NodeId> owners = Owners(*sim, "cart");
  REQUIRE(sim->Put(owners[0], "default", "cart", {}, "a").ok());
  REQUIRE(sim->Put(owners[1], "default", "cart", {}, "b").ok());
  auto got = sim->Get(owners[2], "default", "cart");
  REQUIRE(got.ok());
  std::vector<std::string> values = got->values;
  std::sort(values.begin(), values.end());
  REQUIRE(values == std::vector<std::string>{"a", "b"});
  REQUIRE(sim->Put(owners[2], "default", "cart", got->context, "ab").ok());
  sim->RunFor(absl::Seconds(1));
  for (NodeId via : owners) {
    auto after = sim->Get(via, "default", "cart");
    REQUIRE(after.ok());
    CHECK(after->values == std::vector<std::string>{"ab"});
  }
}

TEST_CASE("A last-write-wins bucket resolves to one value") {
  uint64_t seed = TestSeed(303);
  DYNAMO_SEED_INFO(seed);
  BucketOptions lww;
  lww.name = "lww";
  lww.policy = ConflictPolicy::kLastWriteWins;
  auto sim = MakeSim(seed, 5, {BucketOptions(), lww});
  std::vector<NodeId> owners =
      sim->initial_ring().PreferenceList(Coordinator::StorageKey("lww", "x"), 3);
  REQUIRE(sim->Put(owners[0], "lww", "x", {}, "first").ok());
  sim->RunFor(absl::Milliseconds(10));
  REQUIRE(sim->Put(owners[1], "lww", "x", {}, "second").ok());
  auto got = sim->Get(owners[2], "lww", "x");
  REQUIRE(got.ok());
  CHECK(got->values == std::vector<std::string>{"second"});
}

TEST_CASE("An N=1 bucket: a get on the owner is answered from its own copy at once") {
  uint64_t seed = TestSeed(307);
  DYNAMO_SEED_INFO(seed);
  BucketOptions one;
  one.name = "one";
  one.n = one.r = one.w = 1;
  auto sim = MakeSim(seed, 3, {BucketOptions(), one});
  const NodeId owner =
      sim->initial_ring().PreferenceList(Coordinator::StorageKey("one", "x"), 1).front();
  auto missing = sim->Get(owner, "one", "x");
  REQUIRE(missing.ok());
  CHECK_FALSE(missing->found());
  REQUIRE(sim->Put(owner, "one", "x", {}, "first").ok());
  auto first = sim->Get(owner, "one", "x");
  REQUIRE(first.ok());
  REQUIRE(sim->Put(owner, "one", "x", first->context, "second").ok());
  const uint64_t sent = sim->network().node_stats(owner).messages_sent;
  const absl::Time before = sim->network().Now();
  auto got = sim->Get(owner, "one", "x");
  REQUIRE(got.ok());
  CHECK(got->values == std::vector<std::string>{"second"});
  CHECK(got->versions.size() == 1);
  CHECK(got->replicas_answered == 1);
  CHECK(got->context.coordinator == owner);
  // Nothing to ask or repair: no message, no simulated time.
  CHECK(sim->network().node_stats(owner).messages_sent == sent);
  CHECK(sim->network().Now() == before);
  // A node that does not hold the key still forwards to the one that does.
  const NodeId other = owner == 1 ? 2 : 1;
  auto forwarded = sim->Get(other, "one", "x");
  REQUIRE(forwarded.ok());
  CHECK(forwarded->values == std::vector<std::string>{"second"});
}

TEST_CASE("A blind write supersedes what its coordinator holds, and only that") {
  uint64_t seed = TestSeed(304);
  DYNAMO_SEED_INFO(seed);
  auto sim = MakeSim(seed, 5);
  std::vector<NodeId> owners =
      sim->initial_ring().PreferenceList(Coordinator::StorageKey("default", "x"), 3);
  Context blind;
  blind.supersede_coordinator_copy = true;
  // Two writes without a context make siblings; a blind write through a
  // replica that holds both replaces them.
  REQUIRE(sim->Put(owners[0], "default", "x", {}, "first").ok());
  REQUIRE(sim->Put(owners[1], "default", "x", {}, "second").ok());
  sim->RunFor(absl::Milliseconds(50));
  auto got = sim->Get(owners[2], "default", "x");
  REQUIRE(got.ok());
  CHECK(got->values.size() == 2);
  REQUIRE(sim->Put(owners[0], "default", "x", blind, "third").ok());
  sim->RunFor(absl::Milliseconds(50));
  got = sim->Get(owners[2], "default", "x");
  REQUIRE(got.ok());
  CHECK(got->values == std::vector<std::string>{"third"});

  // A version the coordinator has not received stays a sibling: with the
  // other owners cut off from owners[0], a write there does not reach it.
  std::vector<NodeId> others;
  for (NodeId id = 1; id <= 5; ++id) {
    if (std::find(owners.begin(), owners.end(), id) == owners.end()) others.push_back(id);
  }
  sim->network().Partition({{owners[0], others[0], others[1]}, {owners[1], owners[2]}});
  REQUIRE(sim->Put(owners[1], "default", "x", blind, "fourth").ok());
  REQUIRE(sim->Put(owners[0], "default", "x", blind, "fifth").ok());  // sloppy quorum
  sim->network().HealAll();
  sim->RunFor(absl::Seconds(30));
  got = sim->Get(owners[2], "default", "x");
  REQUIRE(got.ok());
  std::vector<std::string> values = got->values;
  std::sort(values.begin(), values.end());
  CHECK(values == std::vector<std::string>{"fifth", "fourth"});

  // Sent through a node off the preference list, the flag travels with the
  // forwarded put.
  REQUIRE(sim->Put(others[0], "default", "x", blind, "sixth").ok());
  sim->RunFor(absl::Seconds(1));
  got = sim->Get(owners[2], "default", "x");
  REQUIRE(got.ok());
  CHECK(got->values == std::vector<std::string>{"sixth"});
}

TEST_CASE("With no faults and R+W>N a read sees the latest acknowledged write") {
  uint64_t seed = TestSeed(404);
  DYNAMO_SEED_INFO(seed);
  auto sim = MakeSim(seed);
  std::mt19937_64 rng(seed);
  Context context;
  for (int i = 0; i < 50; ++i) {
    NodeId writer = 1 + rng() % 5, reader = 1 + rng() % 5;
    std::string value = "v" + std::to_string(i);
    REQUIRE(sim->Put(writer, "default", "reg", context, value).ok());
    auto got = sim->Get(reader, "default", "reg");
    REQUIRE(got.ok());
    INFO("write " << i << " via " << writer << ", read via " << reader);
    REQUIRE(got->values == std::vector<std::string>{value});
    context = got->context;
  }
}

TEST_CASE("Too few live replicas: kUnavailable with the count") {
  uint64_t seed = TestSeed(505);
  DYNAMO_SEED_INFO(seed);
  auto sim = MakeSim(seed, 3);
  REQUIRE(sim->Crash(2, false).ok());
  REQUIRE(sim->Crash(3, false).ok());
  // The first request finds out the hard way (replica timeout, deadline)...
  absl::Status first = sim->Put(1, "default", "k", {}, "v");
  CHECK(first.code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(std::string(first.message()).find("1 of W=2") != std::string::npos);
  // ...after which the failure detector knows, and requests fail at once.
  absl::Status second = sim->Put(1, "default", "k", {}, "v");
  CHECK(second.code() == absl::StatusCode::kUnavailable);
  CHECK(std::string(second.message()).find("W=2 replicas but only 1") != std::string::npos);
  auto read = sim->Get(1, "default", "k");
  REQUIRE_FALSE(read.ok());
  CHECK(read.status().code() == absl::StatusCode::kUnavailable);
  CHECK(std::string(read.status().message()).find("R=2 replicas but only 1") != std::string::npos);
}

TEST_CASE("Finished requests awaiting a silent replica do not count against the limit") {
  uint64_t seed = TestSeed(512);
  DYNAMO_SEED_INFO(seed);
  SimulationOptions o;
  o.seed = seed;
  o.nodes = 3;
  o.ring.partitions = 64;
  o.node.requests_in_flight_max = 4;
  auto created = Simulation::Create(o);
  REQUIRE(created.ok());
  auto sim = *std::move(created);
  // Node 3 hears everything but its answers to node 1 are lost: each request
  // node 1 coordinates finishes with R=2 / W=2 (itself and node 2) and then
  // waits a replica timeout for node 3. Far more than 4 finish within one.
  sim->network().BlockLink(3, 1);
  const absl::Time start = sim->network().Now();
  for (int i = 0; i < 40; ++i) {
    const std::string key = "k" + std::to_string(i);
    REQUIRE(sim->Put(1, "default", key, {}, "v").ok());
    auto got = sim->Get(1, "default", key);
    REQUIRE(got.ok());
    CHECK(got->values == std::vector<std::string>{"v"});
  }
  CHECK(sim->network().Now() - start < o.node.replica_timeout);
  const NodeMetrics& m = sim->node(1)->metrics();
  CHECK(m.requests_rejected_overload == 0);
  CHECK(m.requests_settled_early >= 70);  // all but the last 4 of 80
}

TEST_CASE(
    "Request timers fire at their own deadlines without a runtime timer each, whatever the wall "
    "clock does") {
  uint64_t seed = TestSeed(513);
  DYNAMO_SEED_INFO(seed);
  auto sim = MakeSim(seed, 3);
  // Node 1's replicas hear its writes but their acknowledgements are lost:
  // every put it coordinates waits a replica timeout, finds no stand-in, and
  // fails at its deadline.
  sim->network().BlockLink(2, 1);
  sim->network().BlockLink(3, 1);
  sim->RunFor(absl::Milliseconds(10));
  const size_t pending_before = sim->network().pending_events();
  constexpr int kPuts = 100;
  std::vector<absl::Time> started(kPuts);
  std::vector<absl::Time> ended(kPuts);
  std::vector<absl::Status> results(kPuts);
  for (int i = 0; i < kPuts; ++i) {
    started[i] = sim->network().Now();
    sim->node(1)->Put("default", "k" + std::to_string(i), {}, "v", [&, i](absl::Status status) {
      ended[i] = sim->network().Now();
      results[i] = std::move(status);
    });
    sim->RunFor(absl::Milliseconds(1));  // staggered: the deadlines differ
    // Halfway, node 1's wall clock is stepped back an hour: deadlines are
    // kept on the clock timers run on, which a step does not move.
    if (i == kPuts / 2) sim->network().SetClockSkew(1, absl::Hours(-1), 0);
  }
  // All sent and delivered, none answered: what is queued is the nodes'
  // periodic work, not a timer per request.
  sim->RunFor(absl::Milliseconds(50));
  CHECK(sim->network().pending_events() < pending_before + 10);
  sim->RunFor(sim->options().node.request_timeout);
  for (int i = 0; i < kPuts; ++i) {
    INFO("put " << i);
    CHECK(results[i].code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(ended[i] - started[i] == sim->options().node.request_timeout);
  }
}

std::string MergeCarts(const std::vector<std::string>& carts) {
  std::set<std::string> items;
  for (const std::string& cart : carts) {
    for (absl::string_view item : absl::StrSplit(cart, ',', absl::SkipEmpty())) {
      items.insert(std::string(item));
    }
  }
  return absl::StrJoin(items, ",");
}

TEST_CASE("Shopping cart: both sides of a partition update it, the application merges") {
  uint64_t seed = TestSeed(606);
  DYNAMO_SEED_INFO(seed);
  auto sim = MakeSim(seed);
  REQUIRE(sim->Put(1, "default", "cart", {}, "book").ok());
  auto before = sim->Get(1, "default", "cart");
  REQUIRE(before.ok());
  sim->network().Partition({{1, 2, 3}, {4, 5}});
  REQUIRE(sim->Put(1, "default", "cart", before->context, "book,pen").ok());
  REQUIRE(sim->Put(4, "default", "cart", before->context, "book,cup").ok());
  sim->network().HealAll();
  sim->RunFor(absl::Seconds(5));  // failure detectors recover, hints flow home
  auto after = sim->Get(2, "default", "cart");
  REQUIRE(after.ok());
  std::vector<std::string> values = after->values;
  std::sort(values.begin(), values.end());
  REQUIRE(values == std::vector<std::string>{"book,cup", "book,pen"});
  std::string merged = MergeCarts(values);
  CHECK(merged == "book,cup,pen");
  REQUIRE(sim->Put(2, "default", "cart", after->context, merged).ok());
  auto final_read = sim->Get(5, "default", "cart");
  REQUIRE(final_read.ok());
  CHECK(final_read->values == std::vector<std::string>{"book,cup,pen"});
}

TEST_CASE("A node outside the preference list forwards to a replica") {
  uint64_t seed = TestSeed(707);
  DYNAMO_SEED_INFO(seed);
  auto sim = MakeSim(seed);
  std::vector<NodeId> owners = Owners(*sim, "fwd");
  NodeId outsider = 0;
  for (NodeId id : sim->node_ids()) {
    if (std::find(owners.begin(), owners.end(), id) == owners.end()) outsider = id;
  }
  REQUIRE(outsider != 0);
  REQUIRE(sim->Put(outsider, "default", "fwd", {}, "x").ok());
  auto got = sim->Get(outsider, "default", "fwd");
  REQUIRE(got.ok());
  CHECK(got->values == std::vector<std::string>{"x"});
  CHECK(sim->node(outsider)->metrics().requests_forwarded == 2);
  CHECK(sim->disk(outsider).Get(Coordinator::StorageKey("default", "fwd"))->empty());
}

TEST_CASE("Read repair brings a stale replica up to date") {
  uint64_t seed = TestSeed(808);
  DYNAMO_SEED_INFO(seed);
  auto sim = MakeSim(seed);
  std::vector<NodeId> owners = Owners(*sim, "rr");
  std::string skey = Coordinator::StorageKey("default", "rr");
  // Owner 3 misses the write: the link from the coordinator to it is cut.
  sim->network().BlockLink(owners[0], owners[2]);
  REQUIRE(sim->Put(owners[0], "default", "rr", {}, "fresh").ok());
  sim->network().HealAll();
  sim->RunFor(absl::Seconds(3));
  // The hinted copy may have reached it already; wipe it to be sure the
  // read repair is what fixes it.
  REQUIRE(sim->disk(owners[2]).Erase(skey).ok());
  auto got = sim->Get(owners[2], "default", "rr");
  REQUIRE(got.ok());
  sim->RunFor(absl::Seconds(1));
  auto stored = sim->disk(owners[2]).Get(skey);
  REQUIRE(stored.ok());
  REQUIRE(stored->size() == 1);
  CHECK(stored->at(0).value == "fresh");
}

TEST_CASE("Read repair reaches replicas that answer after the get returned") {
  // A get returns after R replies; the coordinator's own copy is usually
  // among them and current, and the result then takes the reconciled set
  // (no copy). Replies after that are still compared and repaired, from
  // what the coordinator holds: a stale one (its copy wiped) and one holding
  // a concurrent version the others lack, which every replica then gets.
  // Twelve keys, so that the stale replica answers both before and after
  // the get returned.
  uint64_t seed = TestSeed(810);
  DYNAMO_SEED_INFO(seed);
  auto sim = MakeSim(seed);
  for (int i = 0; i < 12; ++i) {
    const std::string key = absl::StrCat("late", i);
    const std::string skey = Coordinator::StorageKey("default", key);
    std::vector<NodeId> owners = Owners(*sim, key);
    auto held = [&](NodeId id) {
      absl::StatusOr<SiblingSet> stored = sim->disk(id).Get(skey);
      REQUIRE(stored.ok());
      return *std::move(stored);
    };
    REQUIRE(sim->Put(owners[0], "default", key, {}, "fresh").ok());
    sim->RunFor(absl::Seconds(1));
    REQUIRE(sim->disk(owners[2]).Erase(skey).ok());
    const uint64_t repairs = sim->node(owners[0])->metrics().read_repairs_sent;
    auto got = sim->Get(owners[0], "default", key);
    REQUIRE(got.ok());
    CHECK(got->values == std::vector<std::string>{"fresh"});
    REQUIRE(got->versions.size() == 1);
    CHECK(got->versions[0].value == "fresh");
    sim->RunFor(absl::Seconds(1));
    CHECK(sim->node(owners[0])->metrics().read_repairs_sent == repairs + 1);
    for (NodeId id : owners) {
      const SiblingSet stored = held(id);
      REQUIRE(stored.size() == 1);
      CHECK(stored[0].value == "fresh");
    }

    // A version written on owners[1] alone, concurrent with "fresh".
    Version other = NewVersion(Dot{999, 1, 1}, VectorClock(), "other", false, 10);
    REQUIRE(sim->disk(owners[1]).Put(skey, SiblingSet{other}, WriteOptions()).ok());
    auto both = sim->Get(owners[0], "default", key);
    REQUIRE(both.ok());
    CHECK(std::find(both->values.begin(), both->values.end(), "fresh") != both->values.end());
    sim->RunFor(absl::Seconds(1));
    // Its own copy and owners[2]'s.
    CHECK(sim->node(owners[0])->metrics().read_repairs_sent == repairs + 3);
    for (NodeId id : owners) CHECK(held(id).size() == 2);
  }
}

TEST_CASE("Replicas holding what the coordinator read say so instead of sending it") {
  uint64_t seed = TestSeed(809);
  DYNAMO_SEED_INFO(seed);
  auto sim = MakeSim(seed);
  std::vector<NodeId> owners = Owners(*sim, "same");
  std::string skey = Coordinator::StorageKey("default", "same");
  REQUIRE(sim->Put(owners[0], "default", "same", {}, "v1").ok());
  sim->RunFor(absl::Seconds(1));
  auto same_answers = [&] {
    uint64_t total = 0;
    for (NodeId id : sim->node_ids()) total += sim->node(id)->metrics().replica_gets_same_as_known;
    return total;
  };
  REQUIRE(same_answers() == 0);
  auto got = sim->Get(owners[0], "default", "same");
  REQUIRE(got.ok());
  CHECK(got->values == std::vector<std::string>{"v1"});
  CHECK(got->replicas_answered >= 2);
  sim->RunFor(absl::Seconds(1));
  CHECK(same_answers() == 2);  // both other owners
  CHECK(sim->node(owners[0])->metrics().read_repairs_sent == 0);
  // A coordinator that lost its copy names no dots the others hold: they
  // send the versions, and read repair restores its copy.
  REQUIRE(sim->disk(owners[0]).Erase(skey).ok());
  auto again = sim->Get(owners[0], "default", "same");
  REQUIRE(again.ok());
  CHECK(again->values == std::vector<std::string>{"v1"});
  sim->RunFor(absl::Seconds(1));
  CHECK(same_answers() == 2);
  auto restored = sim->disk(owners[0]).Get(skey);
  REQUIRE(restored.ok());
  REQUIRE(restored->size() == 1);
  CHECK(restored->at(0).value == "v1");
}

TEST_CASE("Bad options give clear errors") {
  SimulationOptions o;
  o.nodes = 3;
  o.node.buckets = {BucketOptions{"b", 3, 4, 2}};
  auto sim = Simulation::Create(o);
  REQUIRE_FALSE(sim.ok());
  CHECK(std::string(sim.status().message()).find("R=4 exceeds N=3") != std::string::npos);
  o.node.buckets = {BucketOptions{"b", 5, 1, 1}};
  sim = Simulation::Create(o);
  REQUIRE_FALSE(sim.ok());
  CHECK(std::string(sim.status().message()).find("exceeds the cluster size of 3") != std::string::npos);
  o.node.buckets = {BucketOptions{"b", 3, 0, 1}};
  CHECK(Simulation::Create(o).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("Oversize values and unknown buckets are rejected") {
  auto sim = MakeSim(909);
  absl::Status big = sim->Put(1, "default", "k", {}, std::string((1 << 20) + 1, 'x'));
  CHECK(big.code() == absl::StatusCode::kInvalidArgument);
  CHECK(sim->Put(1, "nope", "k", {}, "v").code() == absl::StatusCode::kNotFound);
}

TEST_CASE("Same seed, same trace digest, another seed, another digest") {
  auto run = [](uint64_t seed) {
    auto sim = MakeSim(seed);
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 30; ++i) {
      std::string key = "k" + std::to_string(rng() % 7);
      (void)sim->Put(1 + rng() % 5, "default", key, {}, "v" + std::to_string(i));
      (void)sim->Get(1 + rng() % 5, "default", key);
    }
    sim->RunFor(absl::Seconds(2));
    return sim->network().TraceDigest();
  };
  CHECK(run(11) == run(11));
  CHECK(run(11) != run(12));
}

}  // namespace
}  // namespace dynamo::sim

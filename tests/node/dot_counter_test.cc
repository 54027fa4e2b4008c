// DotCounter: node-wide dot counters with a durable lease (issue #5, Riak's
// kv679), and the node-level guarantees built on it.
#include "node/dot_counter.h"

#include <catch2/catch.hpp>
#include <limits>
#include <memory>
#include <vector>

#include "dynamo/memory_engine.h"
#include "dynamo/node.h"
#include "dynamo/sim/sim_network.h"

namespace dynamo::internal {
namespace {

NodeIdentity Identity(uint64_t lease_end) {
  NodeIdentity id;
  id.node = 3;
  id.epoch = 2;
  id.actor = 0xabcdef;
  id.counter_lease_end = lease_end;
  return id;
}

// Counts identity writes and fails them on demand.
class IdentityFaults : public StorageEngineWrapper {
 public:
  using StorageEngineWrapper::StorageEngineWrapper;
  absl::Status PutIdentity(const NodeIdentity& identity) override {
    ++writes;
    if (fail) return absl::UnavailableError("disk unplugged");
    return StorageEngineWrapper::PutIdentity(identity);
  }
  int writes = 0;
  bool fail = false;
};

uint64_t StoredLeaseEnd(MemoryEngine& disk) {
  absl::StatusOr<std::optional<NodeIdentity>> stored = disk.GetIdentity();
  REQUIRE(stored.ok());
  REQUIRE(stored->has_value());
  return (*stored)->counter_lease_end;
}

TEST_CASE("DotCounter leases ahead at start and renews only when a lease runs out") {
  MemoryEngine disk;
  IdentityFaults storage(&disk);
  auto counter = DotCounter::Start(&storage, Identity(0), 4);
  REQUIRE(counter.ok());
  CHECK(storage.writes == 1);
  CHECK(StoredLeaseEnd(disk) == 4);
  std::vector<uint64_t> minted;
  for (int i = 0; i < 9; ++i) {
    absl::StatusOr<uint64_t> next = (*counter)->Next(0);
    REQUIRE(next.ok());
    minted.push_back(*next);
  }
  CHECK(minted == std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9});
  // Leases [1,4], [5,8], [9,12]: one write each, each before its first counter.
  CHECK(storage.writes == 3);
  CHECK(StoredLeaseEnd(disk) == 12);
  CHECK((*counter)->identity().counter_lease_end == 12);
  CHECK((*counter)->identity().actor == 0xabcdef);
  CHECK((*counter)->identity().epoch == 2);
}

TEST_CASE("DotCounter counts above the key's own counter, and a jump leases past it") {
  MemoryEngine disk;
  IdentityFaults storage(&disk);
  auto counter = DotCounter::Start(&storage, Identity(0), 10);
  REQUIRE(counter.ok());
  CHECK(*(*counter)->Next(0) == 1);
  CHECK(*(*counter)->Next(5) == 6);  // the key saw (actor, 5): above it
  CHECK(*(*counter)->Next(2) == 7);  // below what was minted: the sequence wins
  CHECK(storage.writes == 1);
  CHECK(*(*counter)->Next(500) == 501);  // past the lease: renewed first
  CHECK(storage.writes == 2);
  CHECK(StoredLeaseEnd(disk) == 510);
}

TEST_CASE("DotCounter mints without storage only inside the lease") {
  MemoryEngine disk;
  IdentityFaults storage(&disk);
  auto counter = DotCounter::Start(&storage, Identity(0), 10);  // lease [1,10]
  REQUIRE(counter.ok());
  CHECK(storage.writes == 1);
  auto next = (*counter)->NextWithinLease(8);
  REQUIRE(next.ok());
  CHECK(*next == std::optional<uint64_t>(9));
  next = (*counter)->NextWithinLease(9);
  REQUIRE(next.ok());
  CHECK(*next == std::optional<uint64_t>(10));
  // 11 is past the lease: nothing minted, nothing written.
  next = (*counter)->NextWithinLease(0);
  REQUIRE(next.ok());
  CHECK(!next->has_value());
  CHECK((*counter)->last() == 10);
  CHECK(storage.writes == 1);
  REQUIRE((*counter)->RenewLeaseFor(0).ok());
  CHECK(storage.writes == 2);
  CHECK(StoredLeaseEnd(disk) == 20);
  REQUIRE((*counter)->RenewLeaseFor(0).ok());  // already leased: no write
  CHECK(storage.writes == 2);
  next = (*counter)->NextWithinLease(0);
  REQUIRE(next.ok());
  CHECK(*next == std::optional<uint64_t>(11));
  // The refusals of Next hold here too.
  CHECK((*counter)->NextWithinLease(uint64_t{1} << 50).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK((*counter)->RenewLeaseFor(uint64_t{1} << 50).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("DotCounter resumes above the stored lease end after a restart") {
  MemoryEngine disk;
  uint64_t before_crash = 0;
  {
    auto counter = DotCounter::Start(&disk, Identity(0), 100);
    REQUIRE(counter.ok());
    for (int i = 0; i < 42; ++i) before_crash = *(*counter)->Next(0);
  }  // crash: the rest of the lease is never used
  REQUIRE(before_crash == 42);
  absl::StatusOr<std::optional<NodeIdentity>> stored = disk.GetIdentity();
  REQUIRE(stored.ok());
  REQUIRE(stored->has_value());
  auto restarted = DotCounter::Start(&disk, **stored, 100);
  REQUIRE(restarted.ok());
  CHECK((*restarted)->last() == 100);
  CHECK(*(*restarted)->Next(0) == 101);
  CHECK(StoredLeaseEnd(disk) == 200);
}

TEST_CASE("DotCounter mints nothing when the lease cannot be written") {
  MemoryEngine disk;
  IdentityFaults storage(&disk);
  storage.fail = true;
  auto refused = DotCounter::Start(&storage, Identity(0), 2);
  CHECK(refused.status().code() == absl::StatusCode::kUnavailable);

  storage.fail = false;
  auto counter = DotCounter::Start(&storage, Identity(0), 2);
  REQUIRE(counter.ok());
  CHECK(*(*counter)->Next(0) == 1);
  CHECK(*(*counter)->Next(0) == 2);
  storage.fail = true;
  absl::StatusOr<uint64_t> next = (*counter)->Next(0);
  REQUIRE_FALSE(next.ok());
  CHECK(next.status().code() == absl::StatusCode::kUnavailable);
  CHECK(next.status().message().find("lease") != absl::string_view::npos);
  CHECK((*counter)->last() == 2);
  CHECK(StoredLeaseEnd(disk) == 2);
  // Once the disk is back the sequence goes on where it stopped.
  storage.fail = false;
  CHECK(*(*counter)->Next(0) == 3);
  CHECK(StoredLeaseEnd(disk) == 4);
}

TEST_CASE("DotCounter refuses a forged counter and the end of the counter space") {
  MemoryEngine disk;
  auto counter = DotCounter::Start(&disk, Identity(0), 10);
  REQUIRE(counter.ok());
  absl::StatusOr<uint64_t> forged = (*counter)->Next(DotCounter::kCounterJumpMax + 1);
  CHECK(forged.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK((*counter)->last() == 0);
  CHECK(*(*counter)->Next(DotCounter::kCounterJumpMax) == DotCounter::kCounterJumpMax + 1);

  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  auto near_end = DotCounter::Start(&disk, Identity(kMax - 2), 10);
  REQUIRE(near_end.ok());
  CHECK(StoredLeaseEnd(disk) == kMax);  // the lease saturates
  CHECK(*(*near_end)->Next(0) == kMax - 1);
  CHECK(*(*near_end)->Next(0) == kMax);
  CHECK((*near_end)->Next(0).status().code() == absl::StatusCode::kOutOfRange);
}

TEST_CASE("DotCounter rejects an empty lease and keeps the lease when the epoch changes") {
  MemoryEngine disk;
  CHECK(DotCounter::Start(&disk, Identity(0), 0).status().code() ==
        absl::StatusCode::kInvalidArgument);
  auto counter = DotCounter::Start(&disk, Identity(0), 10);
  REQUIRE(counter.ok());
  REQUIRE((*counter)->SetEpoch(5).ok());
  absl::StatusOr<std::optional<NodeIdentity>> stored = disk.GetIdentity();
  REQUIRE(stored.ok());
  REQUIRE(stored->has_value());
  CHECK((*stored)->epoch == 5);
  CHECK((*stored)->counter_lease_end == 10);
}

// The node end to end: dots of different keys never share a counter, a
// restart resumes above the lease, and a put whose lease write fails is
// refused with the storage error instead of minting an unleased counter.
TEST_CASE("A node's dots are unique across keys and restarts, a failed lease write fails the put") {
  sim::SimNetwork net(7);
  Runtime& runtime = net.AddNode(1);
  MemoryEngine disk;
  IdentityFaults storage(&disk);
  NodeOptions options;
  options.buckets[0].n = options.buckets[0].r = options.buckets[0].w = 1;
  options.dot_counter_lease_counters = 3;
  RingOptions ring_options;
  ring_options.partitions = 8;
  Ring ring(ring_options);
  REQUIRE(ring.AddNode(RingMember{1, "", 1.0, {}}).ok());

  auto put = [&](Node& node, const std::string& key) {
    std::optional<absl::Status> done;
    node.Put("default", key, {}, "v", [&](absl::Status s) { done = s; });
    net.RunUntil([&] { return done.has_value(); }, absl::Seconds(5));
    REQUIRE(done.has_value());
    return *done;
  };
  auto dot_of = [&](const std::string& key) {
    absl::StatusOr<SiblingSet> stored = disk.Get(Coordinator::StorageKey("default", key));
    REQUIRE(stored.ok());
    REQUIRE(stored->size() == 1);
    return stored->front().dot.counter;
  };

  std::vector<uint64_t> counters;
  {
    auto node = Node::Create(options, &runtime, &storage, ring);
    REQUIRE(node.ok());
    for (int i = 0; i < 4; ++i) {
      std::string key = "key" + std::to_string(i);
      REQUIRE(put(**node, key).ok());
      counters.push_back(dot_of(key));
    }
    net.Crash(1);
  }
  CHECK(counters == std::vector<uint64_t>{1, 2, 3, 4});
  net.Restart(1);
  auto node = Node::Create(options, &runtime, &storage, ring);
  REQUIRE(node.ok());
  REQUIRE(put(**node, "after restart").ok());
  CHECK(dot_of("after restart") == 7);  // the lease [4,6] may have been used

  storage.fail = true;
  int writes_before = storage.writes;
  REQUIRE(put(**node, "a").ok());  // 8: still inside the lease written at start [7,9]
  REQUIRE(put(**node, "b").ok());  // 9
  absl::Status refused = put(**node, "c");
  CHECK(storage.writes == writes_before + 1);  // the one lease renewal tried
  CHECK(refused.code() == absl::StatusCode::kUnavailable);
  CHECK(refused.message().find("lease") != absl::string_view::npos);
  CHECK(disk.Get(Coordinator::StorageKey("default", "c"))->empty());
  CHECK((*node)->metrics().puts_failed == 1);
}

}  // namespace
}  // namespace dynamo::internal

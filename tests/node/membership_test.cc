#include "dynamo/membership.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <functional>
#include <random>

#include "dynamo/failure_detector.h"
#include "xxhash.h"

namespace dynamo {
namespace {

MemberEntry Entry(NodeId id, uint64_t version, MemberStatus status, uint64_t join_seq,
                  uint64_t remove_seq = 0) {
  MemberEntry e;
  e.id = id;
  e.version = version;
  e.status = status;
  e.join_seq = join_seq;
  e.remove_seq = remove_seq;
  return e;
}

TEST_CASE("Membership merge is commutative, associative and idempotent (seed 5)") {
  std::mt19937_64 rng(5);
  std::vector<MemberEntry> pool;
  for (NodeId id = 1; id <= 6; ++id) {
    for (uint64_t v = 1; v <= 3; ++v) {
      pool.push_back(Entry(id, v, static_cast<MemberStatus>(1 + rng() % 4), rng() % 10));
      pool.push_back(Entry(id, v, MemberStatus::kUp, rng() % 10));  // same version, other content
    }
  }
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<MemberEntry> a = pool;
    std::shuffle(a.begin(), a.end(), rng);
    a.resize(rng() % a.size());
    std::vector<MemberEntry> b = a;
    std::shuffle(b.begin(), b.end(), rng);
    Membership x, y;
    x.MergeAll(a);
    y.MergeAll(b);
    REQUIRE(x.entries() == y.entries());  // any order, same view
    CHECK_FALSE(x.MergeAll(a));           // idempotent
    // What the view keeps per entry as it changes (its encoding and digest)
    // is what encoding the entries afresh gives.
    CHECK(EncodeMemberEntries(x) == EncodeMemberEntries(x.entries()));
    CHECK(EncodeMemberEntries(x) == EncodeMemberEntries(y));
    REQUIRE(x.digest().size() == x.entries().size());
    for (const auto& [id, hash] : x.digest()) {
      const std::string one = EncodeMemberEntries({*x.Find(id)});
      CHECK(hash == XXH3_64bits(one.data(), one.size()));
    }
    // Gossip's one-hash summary agrees for equal views and follows a change
    // (the cached hash is dropped).
    const uint64_t summary = x.ViewDigest();
    CHECK(y.ViewDigest() == summary);
    if (!a.empty()) {
      MemberEntry newer = *y.Find(a.front().id);
      newer.version += 10;
      REQUIRE(y.Merge(newer));
      CHECK(y.ViewDigest() != summary);
      CHECK(x.ViewDigest() == summary);
    }
  }
}

TEST_CASE("Membership entries encode, and malformed bytes are rejected") {
  std::vector<MemberEntry> entries = {Entry(1, 2, MemberStatus::kUp, 1),
                                      Entry(9, 5, MemberStatus::kRemoved, 2, 7)};
  entries[0].zone = "eu-1";
  entries[0].weight = 2.5;
  auto decoded = DecodeMemberEntries(EncodeMemberEntries(entries));
  REQUIRE(decoded.ok());
  CHECK(*decoded == entries);
  Membership view;
  view.MergeAll(entries);
  CHECK(EncodeMemberEntries(view) == EncodeMemberEntries(entries));
  std::string bad = EncodeMemberEntries(entries);
  bad[0] = 7;
  CHECK_FALSE(DecodeMemberEntries(bad).ok());
  CHECK_FALSE(DecodeMemberEntries(EncodeMemberEntries(entries).substr(0, 10)).ok());
}

TEST_CASE("The ring is a function of the view, with minimal movement per change") {
  RingOptions options;
  options.partitions = 256;
  Membership m;
  for (NodeId id = 1; id <= 5; ++id) m.Merge(Entry(id, 1, MemberStatus::kUp, id));
  Ring five = *m.BuildRing(options, false);
  CHECK(five.size() == 5);
  m.Merge(Entry(6, 1, MemberStatus::kJoining, m.NextSeq()));
  Ring routing = *m.BuildRing(options, false);
  Ring pending = *m.BuildRing(options, true);
  CHECK(routing.members() == five.members());  // joiners do not serve yet
  CHECK(pending.size() == 6);
  // Every range that moves, moves to the joiner.
  for (const Ring::RangeMove& move : Ring::Diff(routing, pending, 3)) {
    CHECK(std::find(move.to.begin(), move.to.end(), 6) != move.to.end());
  }
  // The same view merged in another order builds the same ring.
  Membership other;
  for (const MemberEntry& e : m.entries()) other.Merge(e);
  CHECK(other.BuildRing(options, true)->members() == pending.members());
  // Leaving: still serving, gone from the pending ring.
  MemberEntry leaving = *m.Find(2);
  leaving.status = MemberStatus::kLeaving;
  leaving.remove_seq = m.NextSeq();
  leaving.version++;
  m.Merge(leaving);
  CHECK(m.BuildRing(options, false)->Contains(2));
  CHECK_FALSE(m.BuildRing(options, true)->Contains(2));
}

TEST_CASE("A view's ring changes and live members follow every change of what they come from") {
  Membership m;
  for (NodeId id = 1; id <= 4; ++id) m.Merge(Entry(id, 1, MemberStatus::kUp, id));
  // Each step changes one field of one entry (a higher version wins).
  const std::vector<std::function<void(MemberEntry&)>> steps = {
      [](MemberEntry& e) { e.actor = 77; },  // not a ring input
      [](MemberEntry& e) { e.status = MemberStatus::kLeaving; },
      [](MemberEntry& e) { e.remove_seq = 9; },
      [](MemberEntry& e) { e.zone = "eu-2"; },
      [](MemberEntry& e) { e.weight = 3.0; },
      [](MemberEntry& e) { e.join_seq = 12; },
      [](MemberEntry& e) { e.status = MemberStatus::kRemoved; },
  };
  for (size_t i = 0; i < steps.size(); ++i) {
    INFO("step " << i);
    // Asked for before the change, so a stale answer would be at hand.
    (void)m.RingChanges(false);
    (void)m.RingChanges(true);
    (void)m.Live();
    MemberEntry e = *m.Find(2);
    e.version++;
    steps[i](e);
    REQUIRE(m.Merge(e));
    Membership fresh;
    fresh.MergeAll(m.entries());
    CHECK(m.RingChanges(false) == fresh.RingChanges(false));
    CHECK(m.RingChanges(true) == fresh.RingChanges(true));
    CHECK(m.Live() == fresh.Live());
  }
  CHECK(m.Live() == std::vector<NodeId>{1, 3, 4});  // 2 was removed
  // A new member.
  (void)m.RingChanges(false);
  REQUIRE(m.Merge(Entry(5, 1, MemberStatus::kJoining, 20)));
  CHECK(m.RingChanges(true).back() == RingChange{false, 5, "", 1.0});
  CHECK(m.Live() == std::vector<NodeId>{1, 3, 4, 5});
}

TEST_CASE("A ring grown from a base is the ring its changes replay to, whatever the base") {
  RingOptions options;
  options.strategy = PartitionStrategy::kRandomTokens;  // tokens follow the seed
  options.tokens_per_node = 16;
  Membership m;
  for (NodeId id = 1; id <= 4; ++id) m.Merge(Entry(id, 1, MemberStatus::kUp, id));
  const std::vector<RingChange> four = m.RingChanges(false);
  REQUIRE(four.size() == 4);
  Ring base = *Membership::BuildRing(options, four);
  CHECK(base.history() == four);
  m.Merge(Entry(5, 1, MemberStatus::kUp, m.NextSeq()));
  MemberEntry removed = *m.Find(2);
  removed.status = MemberStatus::kRemoved;
  removed.remove_seq = m.NextSeq();
  removed.version++;
  m.Merge(removed);
  const std::vector<RingChange> changes = m.RingChanges(false);
  REQUIRE(changes.size() == 6);
  CHECK(std::equal(four.begin(), four.end(), changes.begin()));
  const Ring replayed = *Membership::BuildRing(options, changes);
  CHECK(replayed.history() == changes);
  // Grown from a base whose history is a prefix; the same ring as the base
  // when there is nothing to add.
  Ring grown = *Membership::BuildRing(options, changes, base);
  CHECK(grown.members() == replayed.members());
  CHECK(grown.history() == changes);
  CHECK(Membership::BuildRing(options, changes, replayed)->members() == replayed.members());
  // Bases it must not grow from: other options, a history that is not a
  // prefix, no history (restored from members). Each result is the replay.
  RingOptions other_seed = options;
  other_seed.seed = 7;
  const Ring wrong_seed = *Membership::BuildRing(other_seed, four);
  REQUIRE(wrong_seed.members() != base.members());
  const Ring diverged = *Membership::BuildRing(options, {changes[0], changes[2]});
  const Ring restored = *Ring::FromMembers(options, base.members());
  REQUIRE_FALSE(restored.history().has_value());
  for (const Ring* other : {&wrong_seed, &diverged, &restored}) {
    Ring built = *Membership::BuildRing(options, changes, *other);
    CHECK(built.options() == options);
    CHECK(built.members() == replayed.members());
    CHECK(built.history() == changes);
  }
}

TEST_CASE("The failure detector lists unreachable peers in id order, whatever the order of events") {
  // Its peers are hashed; what it reports must not depend on the hashing.
  FailureDetector fd;
  std::vector<NodeId> peers;
  for (NodeId id = 1; id <= 300; ++id) peers.push_back(id * 7919 % 1000 + 1);
  std::mt19937_64 rng(3);
  std::shuffle(peers.begin(), peers.end(), rng);
  std::vector<NodeId> expected;
  for (size_t i = 0; i < peers.size(); ++i) {
    fd.OnHeard(peers[i], absl::Seconds(1));
    if (i % 3 == 0) {
      fd.OnTimeout(peers[i], absl::Seconds(2));
      expected.push_back(peers[i]);
    }
  }
  std::sort(expected.begin(), expected.end());
  CHECK(fd.Unreachable() == expected);
  for (NodeId id : expected) CHECK_FALSE(fd.IsReachable(id));
  CHECK(fd.IsReachable(peers[1]));
  CHECK(fd.IsReachable(100000));  // never heard of: reachable until it misses a deadline
}

TEST_CASE("Phi accrual rises with silence relative to the usual interval") {
  FailureDetector fd;
  absl::Duration t = absl::ZeroDuration();
  for (int i = 0; i < 20; ++i) {
    fd.OnHeard(7, t);
    t += absl::Seconds(1);
  }
  absl::Duration last = t - absl::Seconds(1);
  CHECK(fd.Phi(7, last) == Approx(0));
  CHECK(fd.Phi(7, last + absl::Seconds(1)) == Approx(0.434).epsilon(0.01));
  CHECK(fd.Phi(7, last + absl::Seconds(10)) == Approx(4.34).epsilon(0.01));
  CHECK(fd.SuspectByPhi(last + absl::Seconds(10), 8) == 0);
  CHECK(fd.IsReachable(7));
  CHECK(fd.SuspectByPhi(last + absl::Seconds(20), 8) == 1);
  CHECK_FALSE(fd.IsReachable(7));
  fd.OnHeard(7, last + absl::Seconds(21));
  CHECK(fd.IsReachable(7));
  CHECK(fd.Phi(99, last) == 0);  // never heard: no opinion
}

TEST_CASE("Phi accrual: a peer heard every 100 us is not suspected after a 50 ms pause") {
  // Regression: under redis-benchmark -P 16 the mean interval between
  // messages fell to microseconds, and a few milliseconds of scheduling or
  // fsync delay suspected every peer, so puts failed with kUnavailable.
  FailureDetector fd;
  absl::Duration t = absl::ZeroDuration();
  for (int i = 0; i < 10000; ++i) {  // one second of traffic
    fd.OnHeard(7, t);
    t += absl::Microseconds(100);
  }
  absl::Duration last = t - absl::Microseconds(100);
  CHECK(fd.LastHeard(7) == last);
  CHECK(fd.Phi(7, last + absl::Milliseconds(50)) < 1);
  CHECK(fd.SuspectByPhi(last + absl::Milliseconds(50), 8) == 0);
  // A peer that really went silent is still suspected within seconds.
  CHECK(fd.SuspectByPhi(last + absl::Seconds(2), 8) == 1);
  CHECK_FALSE(fd.IsReachable(7));
}

TEST_CASE("Phi accrual: a burst of messages is one arrival") {
  // Replies come in bursts (a pipeline's worth at once). Arrivals closer
  // than kPhiSampleSpacing to the last sampled one are not samples: the
  // mean interval is the time between bursts, and a node does not keep a
  // sample per message.
  FailureDetector fd;
  absl::Duration t = absl::ZeroDuration();
  for (int burst = 0; burst < 20; ++burst) {
    for (int i = 0; i < 50; ++i) fd.OnHeard(7, t + i * absl::Microseconds(20));
    t += absl::Milliseconds(500);
  }
  const absl::Duration last = t - absl::Milliseconds(500) + 49 * absl::Microseconds(20);
  CHECK(fd.LastHeard(7) == last);
  // Silence is counted from the burst's last message; the mean is ~500 ms
  // (with every message a sample it would be the 100 ms floor, and phi 5x).
  CHECK(fd.Phi(7, last + absl::Seconds(5)) == Approx(5.0 / 0.5 * 0.4343).epsilon(0.01));
  CHECK(fd.SuspectByPhi(last + absl::Seconds(5), 8) == 0);
  CHECK(fd.SuspectByPhi(last + absl::Seconds(10), 8) == 1);
}

}  // namespace
}  // namespace dynamo

#include "dynamo/vector_clock.h"

#include <catch2/catch.hpp>

#include "dynamo/version.h"

namespace dynamo {
namespace {

constexpr ActorId kSx = 1, kSy = 2, kSz = 3;
using Order = VectorClock::Order;

VectorClock Clock(std::initializer_list<std::pair<ActorId, uint64_t>> entries) {
  VectorClock c;
  for (auto [actor, counter] : entries) c.Observe(actor, counter, 0);
  return c;
}

TEST_CASE("VectorClock compare covers all four orders") {
  VectorClock a = Clock({{kSx, 1}});
  VectorClock b = Clock({{kSx, 2}});
  VectorClock c = Clock({{kSx, 1}, {kSy, 1}});
  CHECK(a.Compare(a) == Order::kEqual);
  CHECK(a.Compare(b) == Order::kBefore);
  CHECK(b.Compare(a) == Order::kAfter);
  CHECK(b.Compare(c) == Order::kConcurrent);
  CHECK(c.Compare(b) == Order::kConcurrent);
  CHECK(VectorClock().Compare(a) == Order::kBefore);
  CHECK(b.Descends(a));
  CHECK_FALSE(a.Descends(b));
  CHECK(a.Descends(a));
}

TEST_CASE("VectorClock increment, observe and merge") {
  VectorClock c;
  CHECK(c.Increment(kSy, 10) == 1);
  CHECK(c.Increment(kSx, 11) == 1);
  CHECK(c.Increment(kSy, 12) == 2);
  CHECK(c.CounterOf(kSy) == 2);
  CHECK(c.CounterOf(kSz) == 0);
  REQUIRE(c.size() == 2);
  CHECK(c.entries()[0].actor == kSx);  // kept sorted by actor
  c.Observe(kSy, 1, 0);                // lower counter: no change
  CHECK(c.CounterOf(kSy) == 2);
  VectorClock d = Clock({{kSy, 1}, {kSz, 4}});
  c.Merge(d);
  CHECK(c == Clock({{kSx, 1}, {kSy, 2}, {kSz, 4}}));
  CHECK(c.Descends(d));
}

TEST_CASE("VectorClock truncation drops the oldest entries") {
  VectorClock c;
  for (ActorId actor = 1; actor <= 12; ++actor) c.Increment(actor, 1000 + actor * 10);
  c.Truncate(10);
  REQUIRE(c.size() == 10);
  CHECK(c.CounterOf(1) == 0);
  CHECK(c.CounterOf(2) == 0);
  CHECK(c.CounterOf(3) == 1);
  CHECK(c.CounterOf(12) == 1);
}

// The example of paper section 4.4, figure 3.
TEST_CASE("Paper example D1..D5 reconciles as in figure 3") {
  SiblingSet none;
  Version d1 = NewVersion(none, VectorClock(), kSx, 1, "D1", false, 10);
  CHECK(d1.Clock() == Clock({{kSx, 1}}));
  Version d2 = NewVersion({d1}, d1.Clock(), kSx, 2, "D2", false, 10);
  CHECK(d2.Clock() == Clock({{kSx, 2}}));
  CHECK(d2.Descends(d1));
  // D2 is read, then updated through Sy and through Sz independently.
  Version d3 = NewVersion({d2}, d2.Clock(), kSy, 3, "D3", false, 10);
  Version d4 = NewVersion({d2}, d2.Clock(), kSz, 4, "D4", false, 10);
  CHECK(d3.Clock() == Clock({{kSx, 2}, {kSy, 1}}));
  CHECK(d4.Clock() == Clock({{kSx, 2}, {kSz, 1}}));
  CHECK(d3.Clock().Compare(d4.Clock()) == Order::kConcurrent);
  CHECK_FALSE(d3.Descends(d4));
  CHECK_FALSE(d4.Descends(d3));

  SiblingSet at_sx = {d2};
  CHECK(MergeVersion(at_sx, d3));
  CHECK(MergeVersion(at_sx, d4));
  REQUIRE(at_sx.size() == 2);  // D2 is obsolete, D3 and D4 are siblings
  VectorClock context = MergedClock(at_sx);
  CHECK(context == Clock({{kSx, 2}, {kSy, 1}, {kSz, 1}}));

  Version d5 = NewVersion(at_sx, context, kSx, 5, "D5", false, 10);
  CHECK(d5.Clock() == Clock({{kSx, 3}, {kSy, 1}, {kSz, 1}}));
  for (const Version& old : {d1, d2, d3, d4}) CHECK(d5.Descends(old));
  CHECK(MergeVersion(at_sx, d5));
  REQUIRE(at_sx.size() == 1);
  CHECK(at_sx[0].value == "D5");
  // Old versions arriving late are dropped.
  CHECK_FALSE(MergeVersion(at_sx, d3));
  CHECK(at_sx.size() == 1);
}

// With plain vector clocks the second write would get [(Sx,2)] and dominate
// the first, losing it. With dots both stay.
TEST_CASE("Two writes through one coordinator with the same stale context stay siblings") {
  Version base = NewVersion({}, VectorClock(), kSx, 1, "base", false, 10);
  SiblingSet stored = {base};
  VectorClock stale = base.Clock();
  Version w1 = NewVersion(stored, stale, kSx, 2, "w1", false, 10);
  CHECK(MergeVersion(stored, w1));
  Version w2 = NewVersion(stored, stale, kSx, 3, "w2", false, 10);
  CHECK(MergeVersion(stored, w2));
  REQUIRE(stored.size() == 2);
  CHECK(stored[0].value == "w1");
  CHECK(stored[1].value == "w2");
  // A third write with the same stale context adds one sibling, and a write
  // with the merged context collapses them all: no explosion.
  Version w3 = NewVersion(stored, stale, kSx, 4, "w3", false, 10);
  MergeVersion(stored, w3);
  CHECK(stored.size() == 3);
  Version merged = NewVersion(stored, MergedClock(stored), kSx, 5, "all", false, 10);
  MergeVersion(stored, merged);
  REQUIRE(stored.size() == 1);
  CHECK(stored[0].value == "all");
}

TEST_CASE("Reconcile keeps the maximal antichain and drops duplicates") {
  Version a = NewVersion({}, VectorClock(), kSx, 1, "a", false, 10);
  Version b = NewVersion({a}, a.Clock(), kSy, 2, "b", false, 10);
  Version c = NewVersion({}, VectorClock(), kSz, 3, "c", false, 10);
  SiblingSet r = Reconcile({a, c, b, c, a, b});
  REQUIRE(r.size() == 2);
  CHECK(r[0].value == "b");  // sorted by dot actor
  CHECK(r[1].value == "c");
  // Order of arrival does not matter.
  CHECK(Reconcile({b, a, c}) == r);
  CHECK(Reconcile({c, b, a}) == r);
}

TEST_CASE("Last-write-wins picks the newest timestamp") {
  Version a = NewVersion({}, VectorClock(), kSx, 100, "old", false, 10);
  Version b = NewVersion({}, VectorClock(), kSy, 200, "new", false, 10);
  SiblingSet s = Reconcile({a, b});
  CHECK(LastWriteWins(s).value == "new");
}

TEST_CASE("New version's counter never reuses a dot known to the context") {
  // The coordinator lost its copy (e.g. a reaped tombstone) but the client's
  // context still names (Sx,5): the next dot must be (Sx,6).
  VectorClock context = Clock({{kSx, 5}});
  Version v = NewVersion({}, context, kSx, 1, "v", false, 10);
  CHECK(v.dot.counter == 6);
}

TEST_CASE("Tombstones carry no value") {
  Version t = NewVersion({}, VectorClock(), kSx, 1, "ignored", true, 10);
  CHECK(t.tombstone);
  CHECK(t.value.empty());
}

}  // namespace
}  // namespace dynamo

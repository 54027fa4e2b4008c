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

// A put through `actor` as a coordinator that counts per key only: the dot
// is one above what the key's state shows (nodes take it from a DotCounter,
// which may jump higher; see the "counters that jump" test below).
Version Write(const SiblingSet& local, const VectorClock& context, ActorId actor,
              int64_t timestamp_us, std::string value, bool tombstone = false) {
  Dot dot{actor, KeyCounterOf(local, context, actor) + 1, timestamp_us};
  return NewVersion(dot, context, std::move(value), tombstone, 10);
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
  Version d1 = Write(none, VectorClock(), kSx, 1, "D1");
  CHECK(d1.Clock() == Clock({{kSx, 1}}));
  Version d2 = Write({d1}, d1.Clock(), kSx, 2, "D2");
  CHECK(d2.Clock() == Clock({{kSx, 2}}));
  CHECK(d2.Descends(d1));
  // D2 is read, then updated through Sy and through Sz independently.
  Version d3 = Write({d2}, d2.Clock(), kSy, 3, "D3");
  Version d4 = Write({d2}, d2.Clock(), kSz, 4, "D4");
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

  Version d5 = Write(at_sx, context, kSx, 5, "D5");
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
  Version base = Write({}, VectorClock(), kSx, 1, "base");
  SiblingSet stored = {base};
  VectorClock stale = base.Clock();
  Version w1 = Write(stored, stale, kSx, 2, "w1");
  CHECK(MergeVersion(stored, w1));
  Version w2 = Write(stored, stale, kSx, 3, "w2");
  CHECK(MergeVersion(stored, w2));
  REQUIRE(stored.size() == 2);
  CHECK(stored[0].value == "w1");
  CHECK(stored[1].value == "w2");
  // A third write with the same stale context adds one sibling, and a write
  // with the merged context collapses them all: no explosion.
  Version w3 = Write(stored, stale, kSx, 4, "w3");
  MergeVersion(stored, w3);
  CHECK(stored.size() == 3);
  Version merged = Write(stored, MergedClock(stored), kSx, 5, "all");
  MergeVersion(stored, merged);
  REQUIRE(stored.size() == 1);
  CHECK(stored[0].value == "all");
}

TEST_CASE("Reconcile keeps the maximal antichain and drops duplicates") {
  Version a = Write({}, VectorClock(), kSx, 1, "a");
  Version b = Write({a}, a.Clock(), kSy, 2, "b");
  Version c = Write({}, VectorClock(), kSz, 3, "c");
  SiblingSet r = Reconcile({a, c, b, c, a, b});
  REQUIRE(r.size() == 2);
  CHECK(r[0].value == "b");  // sorted by dot actor
  CHECK(r[1].value == "c");
  // Order of arrival does not matter.
  CHECK(Reconcile({b, a, c}) == r);
  CHECK(Reconcile({c, b, a}) == r);
}

TEST_CASE("A superseding write keeps no value buffer much larger than its value") {
  Version big = Write({}, VectorClock(), kSx, 1, std::string(1 << 20, 'b'));
  SiblingSet stored = {big};
  // A small value over the large one: the stored set holds it in a buffer
  // of about its size, not the megabyte before (engines count value sizes).
  Version small = Write(stored, big.Clock(), kSx, 2, "small");
  REQUIRE(MergeSiblings(stored, {small}));
  REQUIRE(stored.size() == 1);
  CHECK(stored[0].value == "small");
  CHECK(stored[0].value.capacity() < 1024);
  // One of a similar size is copied into the buffer it replaces.
  Version medium = Write(stored, small.Clock(), kSx, 3, std::string(100, 'm'));
  REQUIRE(MergeSiblings(stored, {medium}));
  const char* buffer = stored[0].value.data();
  Version next = Write(stored, medium.Clock(), kSx, 4, std::string(90, 'n'));
  REQUIRE(MergeSiblings(stored, {next}));
  CHECK(stored[0].value == std::string(90, 'n'));
  CHECK(stored[0].value.data() == buffer);
  CHECK(stored[0].dot == next.dot);
}

TEST_CASE("Last-write-wins picks the newest timestamp") {
  Version a = Write({}, VectorClock(), kSx, 100, "old");
  Version b = Write({}, VectorClock(), kSy, 200, "new");
  SiblingSet s = Reconcile({a, b});
  CHECK(LastWriteWins(s).value == "new");
}

TEST_CASE("KeyCounterOf sees the context and the stored dots and contexts") {
  // The coordinator lost its copy (e.g. a reaped tombstone) but the client's
  // context still names (Sx,5).
  CHECK(KeyCounterOf({}, Clock({{kSx, 5}}), kSx) == 5);
  CHECK(KeyCounterOf({}, Clock({{kSx, 5}}), kSy) == 0);
  Version stored = Write({}, Clock({{kSx, 7}}), kSy, 1, "v");  // (Sy,1) having seen (Sx,7)
  CHECK(KeyCounterOf({stored}, VectorClock(), kSx) == 7);
  CHECK(KeyCounterOf({stored}, Clock({{kSy, 3}}), kSy) == 3);
  CHECK(KeyCounterOf({stored}, VectorClock(), kSy) == 1);
}

// A node mints counters from one node-wide sequence, so one key sees its
// coordinator's counters jump (the ones in between went to other keys). An
// entry (Sx,n) of a context then stands for the key's dots of Sx up to n;
// the dots in between were never this key's, so nothing is covered wrongly.
TEST_CASE("Dots with counters that jump reconcile like consecutive ones") {
  auto at = [](ActorId actor, uint64_t counter, const VectorClock& context, std::string value) {
    return NewVersion(Dot{actor, counter, static_cast<int64_t>(counter)}, context,
                      std::move(value), false, 10);
  };
  Version first = at(kSx, 3, VectorClock(), "first");
  // A write with an empty context after the key's state at Sx was erased:
  // its dot jumps far past (Sx,3) and neither covers the other.
  Version fresh = at(kSx, 10'004, VectorClock(), "fresh");
  CHECK_FALSE(fresh.Descends(first));
  CHECK_FALSE(first.Descends(fresh));
  SiblingSet stored = {first};
  CHECK(MergeVersion(stored, fresh));
  REQUIRE(stored.size() == 2);
  // The context of a get over both covers both; a write with it replaces
  // both, whichever actor coordinates it.
  VectorClock read = MergedClock(stored);
  CHECK(read == Clock({{kSx, 10'004}}));
  CHECK(read.Compare(first.Clock()) == Order::kAfter);
  CHECK(read.Compare(fresh.Clock()) == Order::kEqual);
  Version next = at(kSy, 1, read, "next");
  CHECK(next.Descends(first));
  CHECK(next.Descends(fresh));
  CHECK(MergeVersion(stored, next));
  REQUIRE(stored.size() == 1);
  CHECK(stored[0].value == "next");
  // Late copies of the replaced versions stay dropped.
  CHECK_FALSE(MergeVersion(stored, first));
  CHECK_FALSE(MergeVersion(stored, fresh));
  // A context that saw only the first write leaves the fresh one standing.
  SiblingSet again = {first, fresh};
  CHECK(MergeVersion(again, at(kSz, 1, first.Clock(), "after first")));
  REQUIRE(again.size() == 2);
  CHECK(again[0].value == "fresh");  // sorted by the dot's actor
  CHECK(again[1].value == "after first");
}

TEST_CASE("Tombstones carry no value") {
  Version t = Write({}, VectorClock(), kSx, 1, "ignored", true);
  CHECK(t.tombstone);
  CHECK(t.value.empty());
}

}  // namespace
}  // namespace dynamo

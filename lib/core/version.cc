#include "dynamo/version.h"

#include <algorithm>
#include <tuple>

namespace dynamo {

namespace {
bool DotLess(const Version& a, const Version& b) {
  return std::tie(a.dot.actor, a.dot.counter) < std::tie(b.dot.actor, b.dot.counter);
}
}  // namespace

VectorClock Version::Clock() const {
  VectorClock clock = context;
  clock.Observe(dot.actor, dot.counter, dot.timestamp_us);
  return clock;
}

bool Version::Descends(const Version& other) const {
  if (dot == other.dot) return true;
  return context.CounterOf(other.dot.actor) >= other.dot.counter;
}

SiblingSet Reconcile(std::vector<Version> versions) {
  SiblingSet out;
  for (Version& v : versions) MergeVersion(out, std::move(v));
  return out;
}

bool MergeVersion(SiblingSet& siblings, Version incoming) {
  for (const Version& s : siblings) {
    if (s.Descends(incoming)) return false;
  }
  std::erase_if(siblings, [&](const Version& s) { return incoming.Descends(s); });
  auto pos = std::lower_bound(siblings.begin(), siblings.end(), incoming, DotLess);
  siblings.insert(pos, std::move(incoming));
  return true;
}

bool MergeSiblings(SiblingSet& siblings, const SiblingSet& incoming) {
  bool changed = false;
  for (const Version& v : incoming) changed |= MergeVersion(siblings, v);
  return changed;
}

VectorClock MergedClock(const SiblingSet& siblings) {
  VectorClock clock;
  for (const Version& s : siblings) {
    clock.Merge(s.context);
    clock.Observe(s.dot.actor, s.dot.counter, s.dot.timestamp_us);
  }
  return clock;
}

Version NewVersion(const SiblingSet& local, const VectorClock& context, ActorId actor,
                   int64_t timestamp_us, std::string value, bool tombstone,
                   size_t clock_entries_max) {
  uint64_t counter = context.CounterOf(actor);
  for (const Version& s : local) {
    counter = std::max(counter, s.context.CounterOf(actor));
    if (s.dot.actor == actor) counter = std::max(counter, s.dot.counter);
  }
  Version v;
  v.dot = Dot{actor, counter + 1, timestamp_us};
  v.context = context;
  // The context holds one entry fewer than the limit so that Clock(), which
  // adds the dot, stays within it.
  v.context.Truncate(clock_entries_max > 0 ? clock_entries_max - 1 : 0);
  v.tombstone = tombstone;
  if (!tombstone) v.value = std::move(value);
  return v;
}

const Version& LastWriteWins(const SiblingSet& siblings) {
  return *std::max_element(siblings.begin(), siblings.end(),
                           [](const Version& a, const Version& b) {
                             return std::tie(a.dot.timestamp_us, a.dot.actor, a.dot.counter) <
                                    std::tie(b.dot.timestamp_us, b.dot.actor, b.dot.counter);
                           });
}

}  // namespace dynamo

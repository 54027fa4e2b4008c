#include "dynamo/version.h"

#include <algorithm>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

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

namespace {

// True if a stored version descends from `incoming`, so merging it changes
// nothing.
bool Obsolete(const SiblingSet& siblings, const Version& incoming) {
  for (const Version& s : siblings) {
    if (s.Descends(incoming)) return true;
  }
  return false;
}

// What a reused value buffer may hold beyond twice its new value.
constexpr size_t kValueSlackBytes = 64;

// Adds a version that is not obsolete, dropping those it descends from.
// `incoming` is a Version (moved in) or a const Version& (copied).
template <typename V>
void InsertMaximal(SiblingSet& siblings, V&& incoming) {
  // The common write: the new version supersedes the key's only one. It is
  // assigned over it, reusing the clock's storage (read just now, to
  // compare) and the value's buffer, which the engines' Prefetch brings in
  // for writing. (A fresh buffer for the value, tried instead, came from
  // the allocator as the old value another key had freed: as cold, and
  // never prefetched.) Only a buffer that fits is reused: one kept from a
  // much larger old value would hold memory that the engines' byte counts
  // (their bounds) do not see.
  if (siblings.size() == 1 && incoming.Descends(siblings.front())) {
    Version& only = siblings.front();
    if constexpr (!std::is_rvalue_reference_v<V&&>) {
      if (only.value.capacity() > 2 * incoming.value.size() + kValueSlackBytes) {
        std::string().swap(only.value);
      }
    }
    only = std::forward<V>(incoming);
    return;
  }
  std::erase_if(siblings, [&](const Version& s) { return incoming.Descends(s); });
  auto pos = std::lower_bound(siblings.begin(), siblings.end(), incoming, DotLess);
  siblings.insert(pos, std::forward<V>(incoming));
}

}  // namespace

bool MergeVersion(SiblingSet& siblings, Version incoming) {
  if (Obsolete(siblings, incoming)) return false;
  InsertMaximal(siblings, std::move(incoming));
  return true;
}

bool MergeSiblings(SiblingSet& siblings, const SiblingSet& incoming) {
  bool changed = false;
  for (const Version& v : incoming) {
    // Checked before copying: most merges bring versions already held.
    if (Obsolete(siblings, v)) continue;
    InsertMaximal(siblings, v);
    changed = true;
  }
  return changed;
}

VectorClock MergedClock(const SiblingSet& siblings) {
  if (siblings.size() == 1) return siblings.front().Clock();
  VectorClock clock;
  for (const Version& s : siblings) {
    clock.Merge(s.context);
    clock.Observe(s.dot.actor, s.dot.counter, s.dot.timestamp_us);
  }
  return clock;
}

uint64_t KeyCounterOf(const SiblingSet& local, const VectorClock& context, ActorId actor) {
  uint64_t counter = context.CounterOf(actor);
  for (const Version& s : local) {
    counter = std::max(counter, s.context.CounterOf(actor));
    if (s.dot.actor == actor) counter = std::max(counter, s.dot.counter);
  }
  return counter;
}

Version NewVersion(const Dot& dot, VectorClock context, std::string value, bool tombstone,
                   size_t clock_entries_max) {
  Version v;
  v.dot = dot;
  v.context = std::move(context);
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

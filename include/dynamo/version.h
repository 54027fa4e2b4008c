// Versions and sibling sets: what a replica stores for one key, and the
// syntactic reconciliation rules of paper section 4.4.
//
// libdynamo uses dotted version vectors (Preguiça et al.; Riak 2.0) rather
// than plain per-version vector clocks. Each version carries
//   - a *dot*: the single (actor, counter) event that wrote it, and
//   - a *context*: the clock of everything its writer had seen.
// A version is obsolete exactly when another version's context (or dot)
// covers its dot. With plain clocks, two writes through the same coordinator
// with the same stale context would get clocks where the second dominates the
// first and one acknowledged write would vanish; with dots they stay siblings.
// And because a new write removes only the siblings its context covers,
// siblings do not pile up from repeated writes with a stale context (Riak's
// "sibling explosion"). docs/design.md has the longer argument.
//
// The clock that the paper attaches to a version is Clock() = context + dot;
// what a client receives from a get is the merge of its siblings' clocks.
#ifndef DYNAMO_VERSION_H_
#define DYNAMO_VERSION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "dynamo/types.h"
#include "dynamo/vector_clock.h"

namespace dynamo {

// The event that wrote a version.
struct Dot {
  ActorId actor = 0;
  uint64_t counter = 0;
  int64_t timestamp_us = 0;  // coordinator's wall time; orders last-write-wins
  friend bool operator==(const Dot& a, const Dot& b) {
    return a.actor == b.actor && a.counter == b.counter;
  }
};

struct Version {
  Dot dot;
  VectorClock context;    // causal past of the write, not including `dot`
  bool tombstone = false;  // a delete is a put of a tombstone
  std::string value;       // empty for a tombstone

  // The paper's per-version vector clock: context with the dot added.
  VectorClock Clock() const;

  // True when this version's history includes the write of `other` (or it is
  // the same write). Such an `other` is obsolete next to this one.
  bool Descends(const Version& other) const;

  friend bool operator==(const Version&, const Version&) = default;
};

// A key's versions that no other stored version descends from: an antichain,
// ordered by (actor, counter) of the dot so that equal sets compare equal.
using SiblingSet = std::vector<Version>;

// Keeps exactly the maximal versions of `versions` and drops duplicates (the
// same dot seen twice). The result is sorted like a SiblingSet.
SiblingSet Reconcile(std::vector<Version> versions);

// Merges `incoming` into `siblings` in place: it is dropped if a stored
// version descends from it, and it replaces every stored version it descends
// from. Returns true if `siblings` changed. REQUIRES: siblings is an antichain.
bool MergeVersion(SiblingSet& siblings, Version incoming);

// Merges every version of `incoming` (see MergeVersion). Returns true if
// `siblings` changed.
bool MergeSiblings(SiblingSet& siblings, const SiblingSet& incoming);

// The context a get returns: the merge of every sibling's Clock().
VectorClock MergedClock(const SiblingSet& siblings);

// The highest counter of `actor` that one key's state shows: in `context`
// and in the stored siblings `local` (their dots and contexts).
uint64_t KeyCounterOf(const SiblingSet& local, const VectorClock& context, ActorId actor);

// Builds the version a coordinator writes as event `dot` for a put with the
// client's `context` (truncated to `clock_entries_max` entries).
// REQUIRES: dot.counter > KeyCounterOf(coordinator's stored siblings,
// context, dot.actor), so that the dot is new for the key. A node takes
// counters from its node-wide DotCounter (lib/node/dot_counter.h), which
// also never repeats one across keys whose stored state was erased.
Version NewVersion(const Dot& dot, VectorClock context, std::string value, bool tombstone,
                   size_t clock_entries_max);

// Last-write-wins resolution: the sibling with the largest (timestamp, actor,
// counter) of its dot. REQUIRES: !siblings.empty().
const Version& LastWriteWins(const SiblingSet& siblings);

}  // namespace dynamo

#endif  // DYNAMO_VERSION_H_

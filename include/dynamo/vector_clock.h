// VectorClock: the causality tracker of paper section 4.4. A clock is a list
// of (actor, counter, timestamp) entries; comparing two clocks tells whether
// one version descends from the other or whether they are concurrent and must
// both be kept as siblings. The timestamp is the wall time of the entry's
// last update and exists only to truncate a clock that grew too long (the
// paper drops the oldest entry once there are more than 10).
//
// Thread-safety: a plain value type; distinct objects may be used from
// different threads, one object needs external synchronization.
#ifndef DYNAMO_VECTOR_CLOCK_H_
#define DYNAMO_VECTOR_CLOCK_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/container/inlined_vector.h"
#include "dynamo/types.h"

namespace dynamo {

struct ClockEntry {
  ActorId actor = 0;
  uint64_t counter = 0;
  int64_t timestamp_us = 0;  // wall time of the last update, for truncation only
  friend bool operator==(const ClockEntry&, const ClockEntry&) = default;
};

class VectorClock {
 public:
  enum class Order { kEqual, kBefore, kAfter, kConcurrent };

  VectorClock() = default;

  // 0 when the actor has no entry.
  uint64_t CounterOf(ActorId actor) const;

  // Advances `actor`'s counter by one and stamps the entry; returns the new
  // counter.
  uint64_t Increment(ActorId actor, int64_t timestamp_us);

  // Raises `actor`'s counter to at least `counter` (no-op if already higher).
  void Observe(ActorId actor, uint64_t counter, int64_t timestamp_us);

  // Pointwise maximum: afterwards this clock descends from both inputs.
  void Merge(const VectorClock& other);

  // kBefore: this happened before `other` (other descends from this).
  Order Compare(const VectorClock& other) const;

  // True when every entry of `other` is <= the same entry here (this clock
  // has seen everything `other` has). Equal clocks descend from each other.
  bool Descends(const VectorClock& other) const;

  // Drops entries with the oldest timestamps (ties: smallest actor id) until
  // at most `max_entries` remain. Dropping history can only make versions
  // look concurrent, never make one silently dominate another.
  void Truncate(size_t max_entries);

  const absl::InlinedVector<ClockEntry, 4>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

  // "[(actor,counter),...]" for logs and tests.
  std::string DebugString() const;

  // Equal histories: the same (actor, counter) pairs. Timestamps are
  // truncation metadata and do not take part.
  friend bool operator==(const VectorClock& a, const VectorClock& b) {
    return a.Compare(b) == Order::kEqual;
  }

 private:
  // Sorted by actor id, counters > 0; sorted order makes Compare and Merge a
  // single linear walk.
  absl::InlinedVector<ClockEntry, 4> entries_;
};

}  // namespace dynamo

#endif  // DYNAMO_VECTOR_CLOCK_H_

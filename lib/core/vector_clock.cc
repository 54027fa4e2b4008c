#include "dynamo/vector_clock.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace dynamo {

namespace {
template <typename Entries>
auto LowerBound(Entries& entries, ActorId actor) {
  return std::lower_bound(entries.begin(), entries.end(), actor,
                          [](const ClockEntry& e, ActorId a) { return e.actor < a; });
}
}  // namespace

uint64_t VectorClock::CounterOf(ActorId actor) const {
  auto it = LowerBound(entries_, actor);
  return (it != entries_.end() && it->actor == actor) ? it->counter : 0;
}

uint64_t VectorClock::Increment(ActorId actor, int64_t timestamp_us) {
  auto it = LowerBound(entries_, actor);
  if (it != entries_.end() && it->actor == actor) {
    ++it->counter;
    it->timestamp_us = std::max(it->timestamp_us, timestamp_us);
    return it->counter;
  }
  entries_.insert(it, ClockEntry{actor, 1, timestamp_us});
  return 1;
}

void VectorClock::Observe(ActorId actor, uint64_t counter, int64_t timestamp_us) {
  if (counter == 0) return;
  // Decoding a clock observes its entries in actor order: append.
  if (entries_.empty() || actor > entries_.back().actor) {
    entries_.push_back(ClockEntry{actor, counter, timestamp_us});
    return;
  }
  auto it = LowerBound(entries_, actor);
  if (it != entries_.end() && it->actor == actor) {
    if (counter > it->counter) it->counter = counter;
    it->timestamp_us = std::max(it->timestamp_us, timestamp_us);
    return;
  }
  entries_.insert(it, ClockEntry{actor, counter, timestamp_us});
}

void VectorClock::Merge(const VectorClock& other) {
  // A blind write merges its empty context with the stored clocks, and a
  // set's merged clock starts empty: no merge to build for either.
  if (other.entries_.empty()) return;
  if (entries_.empty()) {
    entries_ = other.entries_;
    return;
  }
  absl::InlinedVector<ClockEntry, 4> merged;
  merged.reserve(entries_.size() + other.entries_.size());
  auto a = entries_.begin(), ae = entries_.end();
  auto b = other.entries_.begin(), be = other.entries_.end();
  while (a != ae || b != be) {
    if (b == be || (a != ae && a->actor < b->actor)) {
      merged.push_back(*a++);
    } else if (a == ae || b->actor < a->actor) {
      merged.push_back(*b++);
    } else {
      merged.push_back(ClockEntry{a->actor, std::max(a->counter, b->counter),
                                  std::max(a->timestamp_us, b->timestamp_us)});
      ++a;
      ++b;
    }
  }
  entries_ = std::move(merged);
}

VectorClock::Order VectorClock::Compare(const VectorClock& other) const {
  bool this_bigger = false, other_bigger = false;
  auto a = entries_.begin(), ae = entries_.end();
  auto b = other.entries_.begin(), be = other.entries_.end();
  while (a != ae || b != be) {
    if (b == be || (a != ae && a->actor < b->actor)) {
      this_bigger = true;
      ++a;
    } else if (a == ae || b->actor < a->actor) {
      other_bigger = true;
      ++b;
    } else {
      if (a->counter > b->counter) this_bigger = true;
      if (b->counter > a->counter) other_bigger = true;
      ++a;
      ++b;
    }
    if (this_bigger && other_bigger) return Order::kConcurrent;
  }
  if (this_bigger) return Order::kAfter;
  if (other_bigger) return Order::kBefore;
  return Order::kEqual;
}

bool VectorClock::Descends(const VectorClock& other) const {
  Order order = Compare(other);
  return order == Order::kAfter || order == Order::kEqual;
}

void VectorClock::Truncate(size_t max_entries) {
  while (entries_.size() > max_entries) {
    auto oldest = std::min_element(entries_.begin(), entries_.end(),
                                   [](const ClockEntry& x, const ClockEntry& y) {
                                     if (x.timestamp_us != y.timestamp_us)
                                       return x.timestamp_us < y.timestamp_us;
                                     return x.actor < y.actor;
                                   });
    entries_.erase(oldest);
  }
}

std::string VectorClock::DebugString() const {
  std::string out = "[";
  for (size_t i = 0; i < entries_.size(); ++i) {
    absl::StrAppend(&out, i ? "," : "", "(", entries_[i].actor, ",", entries_[i].counter, ")");
  }
  out += "]";
  return out;
}

}  // namespace dynamo

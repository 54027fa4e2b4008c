#include "storage/write_buffer.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace dynamo::internal {

namespace {

// The first 8 bytes of `key` as a big-endian number, zero-padded: comparing
// these, then the whole keys on a tie, is the keys' byte order.
uint64_t PrefixOf(std::string_view key) {
  uint64_t value = 0;
  std::memcpy(&value, key.data(), std::min(key.size(), sizeof(value)));
  if constexpr (std::endian::native == std::endian::little) value = __builtin_bswap64(value);
  return value;
}

bool Less(const WriteBuffer::Ordered& a, const WriteBuffer::Ordered& b) {
  if (a.prefix != b.prefix) return a.prefix < b.prefix;
  return a.entry->first.view() < b.entry->first.view();
}

}  // namespace

void WriteBuffer::Prefetch(std::span<const std::string_view> data_keys) {
  for (std::string_view key : data_keys) entries_.prefetch(key);
  for (std::string_view key : data_keys) entries_.find(PrefetchProbe{key});
  absl::InlinedVector<const SiblingSet*, 32> sets;
  for (std::string_view key : data_keys) {
    auto found = entries_.find(key);
    if (found == entries_.end()) continue;
    PrefetchFirstVersion(found->second.siblings);
    sets.push_back(&found->second.siblings);
  }
  for (const SiblingSet* siblings : sets) PrefetchFirstValue(*siblings);
}

WriteBuffer::Entry& WriteBuffer::Insert(std::string_view data_key, SiblingSet siblings) {
  auto [it, inserted] =
      entries_.emplace(std::piecewise_construct, std::forward_as_tuple(data_key),
                       std::forward_as_tuple(Slot{std::move(siblings), /*dirty=*/true, ++stamps_}));
  (void)inserted;  // the caller looked the key up first
  order_.push_back(Ordered{PrefixOf(it->first), &*it});
  return *it;
}

void WriteBuffer::MarkDirty(Entry& entry) {
  entry.second.stamp = ++stamps_;
  if (entry.second.dirty) return;
  entry.second.dirty = true;
  order_.push_back(Ordered{PrefixOf(entry.first), &entry});
}

void WriteBuffer::Restore(Entry& entry, Slot slot) {
  if (entry.second.dirty && !slot.dirty) Unorder(entry);
  if (!entry.second.dirty && slot.dirty) order_.push_back(Ordered{PrefixOf(entry.first), &entry});
  entry.second = std::move(slot);
  entry.second.stamp = ++stamps_;
}

void WriteBuffer::Erase(std::string_view data_key) {
  auto it = entries_.find(data_key);
  if (it == entries_.end()) return;
  if (it->second.dirty) Unorder(*it);
  entries_.erase(it);
}

void WriteBuffer::Unorder(const Entry& entry) {
  auto at = std::find_if(order_.begin(), order_.end(),
                         [&](const Ordered& o) { return o.entry == &entry; });
  if (at - order_.begin() < static_cast<ptrdiff_t>(sorted_)) --sorted_;
  order_.erase(at);  // keeps both the sorted prefix and the rest in order
}

void WriteBuffer::DropClean() {
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.dirty) {
      ++it;
    } else {
      entries_.erase(it++);  // other iterators stay valid
    }
  }
}

const std::vector<WriteBuffer::Ordered>& WriteBuffer::InOrder() {
  if (sorted_ < order_.size()) {
    const auto middle = order_.begin() + static_cast<ptrdiff_t>(sorted_);
    std::sort(middle, order_.end(), Less);
    std::inplace_merge(order_.begin(), middle, order_.end(), Less);
    sorted_ = order_.size();
  }
  return order_;
}

size_t WriteBuffer::LowerBound(std::string_view data_key, bool exclusive) const {
  const uint64_t prefix = PrefixOf(data_key);
  auto before = [&](const Ordered& o) {
    if (o.prefix != prefix) return o.prefix < prefix;
    return exclusive ? o.entry->first.view() <= data_key : o.entry->first.view() < data_key;
  };
  return static_cast<size_t>(std::partition_point(order_.begin(), order_.end(), before) -
                             order_.begin());
}

void WriteBuffer::MarkWrittenFirstInOrder(size_t n) {
  for (size_t i = 0; i < n; ++i) {
    Entry& entry = *order_[i].entry;
    if (entry.second.siblings.empty()) {
      entries_.erase(entry.first.view());
    } else {
      entry.second.dirty = false;
    }
  }
  order_.erase(order_.begin(), order_.begin() + static_cast<ptrdiff_t>(n));
  sorted_ -= n;
}

void WriteBuffer::MarkWrittenUpTo(uint64_t stamp_max, std::optional<std::string_view> through_key,
                                  absl::FunctionRef<void(const Entry&)> on_written) {
  size_t kept = 0, kept_sorted = 0;
  for (size_t i = 0; i < order_.size(); ++i) {
    Entry& entry = *order_[i].entry;
    const bool written =
        entry.second.stamp <= stamp_max &&
        (!through_key.has_value() || entry.first.view() <= *through_key);
    if (!written) {
      if (i < sorted_) ++kept_sorted;
      order_[kept++] = order_[i];
      continue;
    }
    on_written(entry);
    if (entry.second.siblings.empty()) {
      entries_.erase(entry.first.view());
    } else {
      entry.second.dirty = false;
    }
  }
  // What was kept is in the same relative order: the sorted prefix stays
  // sorted.
  order_.resize(kept);
  sorted_ = kept_sorted;
}

}  // namespace dynamo::internal

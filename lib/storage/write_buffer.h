// LmdbEngine's write buffer (paper section 6.1): data keys with the whole
// sibling set each should be stored with, written out by a flush, and after
// it the sets just written, kept as a copy of the disk for reads. Internal.
//
// Point reads and writes hash: every put, get and read-modify-write of the
// request path looks a key up, and the ordered map this replaced spent most
// of that time comparing keys (~12-15% of a pipelined 1-node server's CPU).
// Only Scan and Flush need the unwritten keys in order, and they are rare
// next to point lookups (a flush every 100 ms in dynamo-server), so the
// order is a vector sorted on demand.
//
// The owner (LmdbEngine) keeps the byte accounting and the bounds, since it
// changes sets in place through the entries Find returns.
#ifndef DYNAMO_STORAGE_WRITE_BUFFER_H_
#define DYNAMO_STORAGE_WRITE_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/container/node_hash_map.h"
#include "absl/functional/function_ref.h"
#include "dynamo/version.h"
#include "storage/storage_util.h"

namespace dynamo::internal {

// A data key held inside its entry when short, as nearly all are (the
// 16-byte token, the bucket and the user key): a lookup is a cache miss on
// the entry, and a std::string key (15 bytes inline) cost a second miss on
// its separate allocation before the compare (~5-10% of a replica's CPU in
// the 3-node pipelined benchmark, docs/status.md).
class BufferKey {
 public:
  explicit BufferKey(std::string_view key) : bytes_(key.begin(), key.end()) {}
  std::string_view view() const { return std::string_view(bytes_.data(), bytes_.size()); }
  operator std::string_view() const { return view(); }  // NOLINT: a key is read as bytes
  size_t size() const { return bytes_.size(); }

 private:
  absl::InlinedVector<char, 48> bytes_;
};

class WriteBuffer {
 public:
  struct Slot {
    // Empty in a dirty slot: delete the key. A clean slot is never empty.
    SiblingSet siblings;
    // Not yet written; otherwise the same as the disk.
    bool dirty = true;
    // Set from a counter on every change (Insert, MarkDirty, Restore): a
    // set dirty with a stamp no later than last_stamp() at some moment has
    // not changed since.
    uint64_t stamp = 0;
  };
  // A data key (internal::DataKey) and its slot.
  using Entry = std::pair<const BufferKey, Slot>;

  // A dirty entry with the first 8 bytes of its key as a big-endian number,
  // so that sorting and searching compare integers and reach the entry only
  // on a tie (keys start with a uniform hash token, so ties are rare).
  struct Ordered {
    uint64_t prefix;
    Entry* entry;
  };

  size_t size() const { return entries_.size(); }
  size_t dirty_count() const { return order_.size(); }
  size_t clean_count() const { return entries_.size() - order_.size(); }

  // The entry of `data_key`, or nullptr. Valid until that key is erased or
  // dropped: entries are nodes, which other keys coming and going do not
  // move.
  Entry* Find(std::string_view data_key) {
    auto it = entries_.find(data_key);
    return it == entries_.end() ? nullptr : &*it;
  }

  // Starts loading what finding each of `data_keys` and merging into its
  // set will read, one link of the chain per pass over the batch so that
  // the misses overlap instead of following one another: the keys' probe
  // lines; the entries the probes compare with; each found set's first
  // version; the start of its value. Changes nothing.
  void Prefetch(std::span<const std::string_view> data_keys);

  // Adds a dirty entry. REQUIRES: `data_key` is not buffered.
  Entry& Insert(std::string_view data_key, SiblingSet siblings);

  // Records that the entry's set was just changed: stamps it and, if it was
  // clean, marks it dirty.
  void MarkDirty(Entry& entry);

  // The stamp of the latest change.
  uint64_t last_stamp() const { return stamps_; }

  // Sets the entry back to `slot` (a failed durable write's undo). Linear
  // in the number of dirty entries when a dirty entry turns clean.
  void Restore(Entry& entry, Slot slot);

  // Removes one key (no-op if absent). Linear in the number of dirty
  // entries: only a failed durable write undoing its insert uses it.
  void Erase(std::string_view data_key);

  // Drops every clean entry (to make room: they are on disk).
  void DropClean();

  // The dirty entries in data-key order; the keys that became dirty since
  // the last call are sorted and merged in. Valid until the next call that
  // adds, removes or marks an entry.
  const std::vector<Ordered>& InOrder();

  // Position in InOrder() of the first key >= `data_key` (> it when
  // `exclusive`). REQUIRES: InOrder() is current.
  size_t LowerBound(std::string_view data_key, bool exclusive) const;

  // The first `n` entries of InOrder() were written (a flushed batch): those
  // deleting their key are removed, the others kept clean.
  // REQUIRES: InOrder() is current.
  void MarkWrittenFirstInOrder(size_t n);

  // A background flush wrote the sets that were dirty when last_stamp() was
  // `stamp_max`, those with data keys up to `through_key` (all of them when
  // nullopt). The entries still dirty with a stamp <= stamp_max and a key in
  // that range have not changed since: `on_written` sees each, then those
  // deleting their key are removed and the others kept clean. Linear in the
  // number of dirty entries; InOrder() need not be current.
  void MarkWrittenUpTo(uint64_t stamp_max, std::optional<std::string_view> through_key,
                       absl::FunctionRef<void(const Entry&)> on_written);

 private:
  // Removes a dirty entry from order_.
  void Unorder(const Entry& entry);

  // A lookup that finds nothing: it starts loading each entry its probe
  // would compare with the key, without waiting for any (Prefetch).
  struct PrefetchProbe {
    std::string_view key;
  };
  // Looked up by string_view: no key is built to find one.
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view key) const { return HashKey(key); }
    size_t operator()(const PrefetchProbe& probe) const { return HashKey(probe.key); }
  };
  struct KeyEq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const { return a == b; }
    // An entry's key is held in its node, at its start.
    bool operator()(const BufferKey& key, const PrefetchProbe&) const {
      __builtin_prefetch(&key);
      return false;
    }
    bool operator()(const PrefetchProbe& probe, const BufferKey& key) const {
      return (*this)(key, probe);
    }
  };
  absl::node_hash_map<BufferKey, Slot, KeyHash, KeyEq> entries_;
  // Every dirty entry; [0, sorted_) in key order, the rest as they came.
  std::vector<Ordered> order_;
  size_t sorted_ = 0;
  uint64_t stamps_ = 0;
};

}  // namespace dynamo::internal

#endif  // DYNAMO_STORAGE_WRITE_BUFFER_H_

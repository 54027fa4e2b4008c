// The index of LmdbEngine's write buffer (paper section 6.1): buffered data
// keys and the whole sibling set each should be stored with. Internal.
//
// Point reads and writes hash: every put, get and read-modify-write of the
// request path looks a key up, and the ordered map this replaced spent most
// of that time comparing keys (~12-15% of a pipelined 1-node server's CPU).
// Only Scan and Flush need the keys in order, and they are rare next to
// point lookups (a flush every 100 ms in dynamo-server), so the order is a
// vector sorted on demand and kept until a key is added or removed.
//
// The owner (LmdbEngine) keeps the byte accounting, since it mutates sets in
// place through the pointers Find returns.
#ifndef DYNAMO_STORAGE_WRITE_BUFFER_H_
#define DYNAMO_STORAGE_WRITE_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/node_hash_map.h"
#include "dynamo/version.h"

namespace dynamo::internal {

class WriteBuffer {
 public:
  // A data key (internal::DataKey) and its set; an empty set deletes the key
  // when flushed.
  using Entry = std::pair<const std::string, SiblingSet>;

  // An entry with the first 8 bytes of its key as a big-endian number, so
  // that sorting and searching compare integers and reach the entry only on
  // a tie (keys start with a uniform hash token, so ties are rare).
  struct Ordered {
    uint64_t prefix;
    const Entry* entry;
  };

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

  // The buffered set of `data_key`, or nullptr. Valid until that key is
  // erased: entries are nodes, which inserting other keys does not move.
  SiblingSet* Find(std::string_view data_key) {
    auto it = entries_.find(absl::string_view(data_key.data(), data_key.size()));
    return it == entries_.end() ? nullptr : &it->second;
  }

  // REQUIRES: `data_key` is not buffered.
  SiblingSet& Insert(std::string_view data_key, SiblingSet siblings);

  // Removes one key (no-op if absent). Linear in the buffer's size: only a
  // failed durable write undoing its insert uses it.
  void Erase(std::string_view data_key);

  // Every entry in data-key order; the keys added since the last call are
  // sorted and merged in. Valid until the next Insert or Erase.
  const std::vector<Ordered>& InOrder();

  // Position in InOrder() of the first key >= `data_key` (> it when
  // `exclusive`). REQUIRES: InOrder() is current.
  size_t LowerBound(std::string_view data_key, bool exclusive) const;

  // Removes the first `n` entries of InOrder() (a flushed batch).
  // REQUIRES: InOrder() is current.
  void EraseFirstInOrder(size_t n);

 private:
  absl::node_hash_map<std::string, SiblingSet> entries_;
  // Every entry; [0, sorted_) in key order, the rest as inserted.
  std::vector<Ordered> order_;
  size_t sorted_ = 0;
};

}  // namespace dynamo::internal

#endif  // DYNAMO_STORAGE_WRITE_BUFFER_H_

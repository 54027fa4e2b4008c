// Pieces shared by the storage engines (paper section 5), so that
// MemoryEngine and LmdbEngine agree exactly on key layout, limits, merge
// rules, scan ranges and the byte accounting that scan limits and hint usage
// use. Internal: not part of the public API.
#ifndef DYNAMO_STORAGE_STORAGE_UTIL_H_
#define DYNAMO_STORAGE_STORAGE_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/codec.h"
#include "dynamo/storage_engine.h"

namespace dynamo::internal {

inline constexpr size_t kTokenBytes = 16;
inline constexpr size_t kOwnerBytes = 8;

// TokenToBytes(KeyToken(key)) + key: byte order is ring order, ties by key.
std::string DataKey(std::string_view key);
// Appends DataKey(key) to `out` (a batch of keys in one reused buffer).
void AppendDataKey(std::string_view key, std::string* out);

// DataKey(key) built without allocating for keys of up to kInlineKeyBytes
// (every key LMDB accepts), for the per-request paths. Not copyable: view()
// may point into the object itself.
class DataKeyBuffer {
 public:
  static constexpr size_t kInlineKeyBytes = 496;  // LMDB's 511-byte key limit, less the token
  explicit DataKeyBuffer(std::string_view key);
  DataKeyBuffer(const DataKeyBuffer&) = delete;
  DataKeyBuffer& operator=(const DataKeyBuffer&) = delete;
  std::string_view view() const { return view_; }

 private:
  char inline_[kTokenBytes + kInlineKeyBytes];
  std::string heap_;  // longer keys
  std::string_view view_;
};
// 8-byte big-endian owner + DataKey(key): hints ordered by (owner, token, key).
std::string HintKey(NodeId owner, std::string_view key);
// The user key inside a DataKey / HintKey. REQUIRES: well-formed input.
inline std::string_view UserKeyOfDataKey(std::string_view data_key) {
  return data_key.substr(kTokenBytes);
}
NodeId OwnerOfHintKey(std::string_view hint_key);
inline std::string_view UserKeyOfHintKey(std::string_view hint_key) {
  return hint_key.substr(kOwnerBytes + kTokenBytes);
}

// `key` capped and escaped for error messages (keys are arbitrary bytes).
std::string PrintableKey(std::string_view key);

// The hash of a key in the engines' hash tables. Through absl::string_view:
// Debian's Abseil hashes a std::string_view with std::hash (murmur, ~3x the
// instructions of its own hash).
inline size_t HashKey(std::string_view key) {
  return absl::Hash<absl::string_view>()(absl::string_view(key.data(), key.size()));
}

// The decoder limits matching what a put with `limits` may have stored.
CodecLimits CodecLimitsFor(const StorageLimits& limits);

// The last two links of an engine's batched Prefetch, each a pass over the
// batch (the second reads the pointer the first brings in): all of a
// stored set's first version (the key's hash reads its dot at the start and
// its tombstone flag at offset 128, a merge its clock between), then the
// start of that version's value, which a write superseding it copies its
// value over (the rest of a long value streams in behind). For writing:
// the merge changes both in place.
inline void PrefetchFirstVersion(const SiblingSet& siblings) {
  if (siblings.empty()) return;
  const char* first = reinterpret_cast<const char*>(siblings.data());
  for (size_t offset = 0; offset < sizeof(Version); offset += 64) {
    __builtin_prefetch(first + offset, /*rw=*/1);
  }
}
inline void PrefetchFirstValue(const SiblingSet& siblings) {
  constexpr size_t kValuePrefetchBytes = 256;
  if (siblings.empty()) return;
  const std::string& value = siblings.front().value;
  const size_t bytes = value.size() < kValuePrefetchBytes ? value.size() : kValuePrefetchBytes;
  for (size_t offset = 0; offset < bytes; offset += 64) {
    __builtin_prefetch(value.data() + offset, /*rw=*/1);
  }
}

absl::Status ValidateKey(std::string_view key, const StorageLimits& limits);
// Every value within value_bytes_max and every context small enough to
// decode again; kInvalidArgument otherwise.
absl::Status ValidateSiblings(std::string_view key, const SiblingSet& siblings,
                              const StorageLimits& limits);

// How many siblings a merge may leave: siblings_max, or for replicated
// versions replicated_siblings_max (never less than siblings_max).
size_t SiblingsMaxFor(const StorageLimits& limits, bool replicated);

// Merges `incoming` into `stored` (MergeSiblings). kFailedPrecondition, with
// `stored` unchanged, if the result would exceed SiblingsMaxFor(limits,
// replicated). Returns whether `stored` changed.
absl::StatusOr<bool> MergeWithinLimit(std::string_view key, SiblingSet& stored,
                                      const SiblingSet& incoming, const StorageLimits& limits,
                                      bool replicated);

// Drops stored tombstones whose dot matches a tombstone in `tombstones`.
bool RemoveReapedTombstones(SiblingSet& stored, const SiblingSet& tombstones);
// Drops stored versions that some delivered version descends from (the owner
// has them, or something newer); versions merged in since delivery stay.
bool RemoveDelivered(SiblingSet& stored, const SiblingSet& delivered);

// Approximate stored size of one entry, identical for every engine so that
// scan byte limits and hint usage do not depend on the engine.
uint64_t ApproxEntryBytes(std::string_view key, const SiblingSet& siblings);

// A token range as at most two contiguous segments of the data-key space,
// each [start, last token], already advanced past a resume cursor.
struct ScanSegment {
  std::string start;          // first data key to consider
  bool start_exclusive = false;  // skip a key equal to `start` (the cursor)
  std::string last_token;     // 16 bytes; keys whose token prefix is greater end the segment
  bool InSegment(std::string_view data_key) const {
    return data_key.substr(0, kTokenBytes) <= last_token;
  }
};
// kInvalidArgument if `cursor` is not a data key inside `range`.
absl::StatusOr<std::vector<ScanSegment>> PlanScan(const TokenRange& range,
                                                  std::string_view cursor);

// Gathers scan results up to ScanLimits; at least one entry is always taken
// so a scan makes progress even past bytes_max.
template <typename Entry>
class ScanCollector {
 public:
  explicit ScanCollector(const ScanLimits& limits) : limits_(limits) {}
  // False (and the cursor set to the last taken key) when `bytes` more would
  // pass a limit; the caller stops scanning.
  bool HasRoom(uint64_t bytes) {
    if (entries_.size() >= limits_.entries_max ||
        (!entries_.empty() && bytes_ + bytes > limits_.bytes_max)) {
      full_ = true;
      return false;
    }
    return true;
  }
  void Add(std::string_view stored_key, uint64_t bytes, Entry entry) {
    bytes_ += bytes;
    last_key_.assign(stored_key.data(), stored_key.size());
    entries_.push_back(std::move(entry));
  }
  bool full() const { return full_; }
  std::vector<Entry> TakeEntries() { return std::move(entries_); }
  std::string ResumeCursor() const { return full_ ? last_key_ : std::string(); }

 private:
  ScanLimits limits_;
  std::vector<Entry> entries_;
  uint64_t bytes_ = 0;
  std::string last_key_;
  bool full_ = false;
};

// Stored identity record.
std::string EncodeIdentity(const NodeIdentity& identity);
absl::StatusOr<NodeIdentity> DecodeIdentity(std::string_view bytes);

}  // namespace dynamo::internal

#endif  // DYNAMO_STORAGE_STORAGE_UTIL_H_

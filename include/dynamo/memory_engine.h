// MemoryEngine: a StorageEngine (paper section 5: pluggable storage engines)
// that keeps everything in ordered in-memory containers. It is the engine of
// unit tests and the "disk" of a simulated node: the simulation keeps the
// object across a simulated crash (the disk survived) or destroys it (the
// disk was wiped), so it is cheap to construct and small when empty (a few
// hundred bytes), and it has no background work of any kind.
//
// Behaviour is the StorageEngine contract exactly as LmdbEngine implements
// it: the same limits, the same merge rules, the same token order for scans
// (by token, ties by key bytes: the order of LmdbEngine's token-prefixed
// keys), the same approximate byte accounting for scan limits and hint
// usage. Writes are durable as soon as they return (there is no buffer), so
// Flush() is a no-op and WriteOptions::durable changes nothing.
//
// A server can run on it too (dynamo-server --storage memory, like Riak's
// memory backend): nothing survives the process, and a restarted node
// starts as one whose disk was wiped (a new actor; hinted handoff, read
// repair and anti-entropy bring its replicas back). `bytes_max` bounds
// what it holds then, data and hints together, by the same approximate
// entry size scans use: a write that would go past it fails with
// kResourceExhausted and changes nothing.
//
// Thread-safety: none; one node uses an engine from its one thread.
#ifndef DYNAMO_MEMORY_ENGINE_H_
#define DYNAMO_MEMORY_ENGINE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dynamo/storage_engine.h"

namespace dynamo {

class MemoryEngine final : public StorageEngine {
 public:
  // Never fails today; a factory for symmetry with LmdbEngine::Open, and so
  // that validating `limits` later does not change callers.
  // `bytes_max` 0: unbounded (tests and the simulator).
  static absl::StatusOr<std::unique_ptr<MemoryEngine>> Create(
      const StorageLimits& limits = StorageLimits(), uint64_t bytes_max = 0);

  // Constructing directly is fine too (the simulator embeds engines by value).
  explicit MemoryEngine(const StorageLimits& limits = StorageLimits(), uint64_t bytes_max = 0)
      : limits_(limits), bytes_max_(bytes_max) {}

  MemoryEngine(const MemoryEngine&) = delete;
  MemoryEngine& operator=(const MemoryEngine&) = delete;

  absl::StatusOr<SiblingSet> Get(std::string_view key) override;
  absl::Status Visit(std::string_view key,
                     absl::FunctionRef<void(const SiblingSet&)> reader) override;
  void Prefetch(std::span<const std::string_view> keys) override;
  absl::StatusOr<SiblingSet> Put(std::string_view key, const SiblingSet& incoming,
                                 const WriteOptions& options) override;
  absl::Status Update(std::string_view key, const SiblingSet& incoming, const WriteOptions& options,
                      absl::FunctionRef<absl::Status(const SiblingSet&)> prepare,
                      absl::FunctionRef<void(const SiblingSet&)> reader) override;
  absl::Status ReapTombstones(std::string_view key, const SiblingSet& tombstones) override;
  absl::Status Erase(std::string_view key) override;
  absl::StatusOr<ScanResult> Scan(const TokenRange& range, std::string_view cursor,
                                  const ScanLimits& limits) override;
  absl::Status PutHint(NodeId owner, std::string_view key, const SiblingSet& siblings) override;
  absl::StatusOr<HintScanResult> ScanHints(std::string_view cursor,
                                           const ScanLimits& limits) override;
  absl::Status DeleteHint(NodeId owner, std::string_view key,
                          const SiblingSet& delivered) override;
  absl::StatusOr<HintUsage> GetHintUsage() override;
  absl::Status PutMetadata(std::string_view name, std::string_view value) override;
  absl::StatusOr<std::optional<std::string>> GetMetadata(std::string_view name) override;
  absl::StatusOr<std::optional<NodeIdentity>> GetIdentity() override;
  absl::Status PutIdentity(const NodeIdentity& identity) override;
  absl::Status Flush() override { return absl::OkStatus(); }
  const StorageLimits& limits() const override { return limits_; }

  // Number of keys with at least one stored version (tests, simulation stats).
  size_t key_count() const { return data_.size(); }
  // Approximate bytes held, data and hints (internal::ApproxEntryBytes).
  // Data is counted only under a bound: unbounded engines (the simulator's
  // disks) skip the accounting, ~0.6% of a simulated operation.
  uint64_t bytes() const { return data_bytes_ + hint_usage_.bytes; }
  uint64_t bytes_max() const { return bytes_max_; }

 private:
  // A stored key: its sibling set, then the key's bytes in the same
  // allocation, so that a lookup compares the key within the cache line it
  // loads for the set anyway. Apart (a std::string in a map node) the key
  // is one more cache miss per write in a busy node, keys being longer
  // than a string's inline capacity once the bucket prefixes them.
  struct Entry {
    SiblingSet siblings;
    uint32_t key_size = 0;  // the bytes follow the object
    std::string_view key() const {
      return {reinterpret_cast<const char*>(this + 1), key_size};
    }
  };
  struct EntryDeleter {
    void operator()(Entry* entry) const;
  };
  using EntryPtr = std::unique_ptr<Entry, EntryDeleter>;
  static EntryPtr MakeEntry(std::string_view key, SiblingSet siblings);
  // A lookup that finds nothing: it starts loading each entry its probe
  // would compare with the key, without waiting for any (Prefetch).
  struct PrefetchProbe {
    std::string_view key;
  };
  // Entries hash and compare by key, and are found by a string_view.
  struct EntryHash {
    using is_transparent = void;
    size_t operator()(std::string_view key) const;  // internal::HashKey
    size_t operator()(const EntryPtr& entry) const { return (*this)(entry->key()); }
    size_t operator()(const PrefetchProbe& probe) const { return (*this)(probe.key); }
  };
  struct EntryEq {
    using is_transparent = void;
    static std::string_view KeyOf(std::string_view key) { return key; }
    static std::string_view KeyOf(const EntryPtr& entry) { return entry->key(); }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return KeyOf(a) == KeyOf(b);
    }
    bool operator()(const EntryPtr& entry, const PrefetchProbe&) const {
      __builtin_prefetch(entry.get());
      return false;
    }
    bool operator()(const PrefetchProbe& probe, const EntryPtr& entry) const {
      return (*this)(entry, probe);
    }
  };
  using EntrySet = absl::flat_hash_set<EntryPtr, EntryHash, EntryEq>;

  // A stored key in ring order: by token, ties by key bytes, the order of
  // LmdbEngine's TokenToBytes(token) + key. `key` views `entry`'s bytes
  // (kept here so that comparisons read no entry); `entry` is null in a
  // lookup's bound.
  struct OrderedKey {
    Token token;
    std::string_view key;
    const Entry* entry = nullptr;
    friend bool operator<(const OrderedKey& a, const OrderedKey& b) {
      return a.token != b.token ? a.token < b.token : a.key < b.key;
    }
  };

  // Erases a key found in data_ from both containers (its bytes are the
  // caller's to take off: the set may have changed before).
  void EraseFound(EntrySet::iterator found);
  // kResourceExhausted if an entry going from `old_bytes` to `new_bytes`
  // would take the engine past bytes_max_.
  absl::Status CheckRoom(std::string_view key, uint64_t old_bytes, uint64_t new_bytes) const;
  // ApproxEntryBytes of the set when bytes_max_ is set, else 0.
  uint64_t CountedBytes(std::string_view key, const SiblingSet& siblings) const;
  // Merges `incoming` into `stored` within the sibling limit (for
  // `replicated` versions or not) and bytes_max_, leaving it untouched on
  // failure; true if it changed.
  absl::StatusOr<bool> MergeWithinBounds(std::string_view key, SiblingSet& stored,
                                         const SiblingSet& incoming, bool replicated) const;

  StorageLimits limits_;
  uint64_t bytes_max_ = 0;
  uint64_t data_bytes_ = 0;  // CountedBytes summed over data_
  // Each key's sibling set. Point lookups (the simulator's hot path) hash;
  // entries stay in place, so order_ can point at them. Only looked up,
  // never iterated, so its per-process hash seed decides nothing.
  EntrySet data_;
  // Every key of data_ in ring order, for scans.
  absl::btree_set<OrderedKey> order_;
  // Keyed by 8-byte big-endian owner + token bytes + key.
  std::map<std::string, SiblingSet, std::less<>> hints_;
  std::map<std::string, std::string, std::less<>> metadata_;
  std::optional<NodeIdentity> identity_;
  HintUsage hint_usage_;
};

}  // namespace dynamo

#endif  // DYNAMO_MEMORY_ENGINE_H_

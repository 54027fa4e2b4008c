// StorageEngine: a node's local persistence (paper section 5: Dynamo's
// storage engines are pluggable). An engine keeps, per key, the sibling set
// of section 4.4 and applies the syntactic reconciliation rules itself, so a
// put is one atomic merge: an incoming version that a stored one descends
// from is dropped, stored versions it descends from are replaced, concurrent
// ones are kept side by side.
//
// Besides the key-value data an engine holds three separate namespaces:
//   - hinted replicas (section 4.6), keyed by the node they are meant for;
//   - membership metadata (section 4.8), small named blobs;
//   - the node's identity: its vector-clock actor id and epoch, which is lost
//     together with the data, so a node whose disk was wiped draws a new
//     actor and never reuses the counters of its earlier life; and the end
//     of the actor's counter lease, so a restarted node never reuses a
//     counter either (lib/node/dot_counter.h).
// Data is ordered by the keys' ring tokens so that ownership transfer and
// anti-entropy can scan a token range with a bounded batch and a cursor.
//
// Implementations: MemoryEngine (memory_engine.h; also the "disk" of a
// simulated node) and LmdbEngine (lmdb_engine.h).
//
// Errors: kInvalidArgument for a key or value over the limits, kDataLoss for
// corrupt stored bytes, kUnavailable / kInternal for I/O failures. A failed
// call changes nothing.
//
// Thread-safety: an engine is used by one node on its one thread; engines
// need not be thread-safe.
#ifndef DYNAMO_STORAGE_ENGINE_H_
#define DYNAMO_STORAGE_ENGINE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dynamo/types.h"
#include "dynamo/version.h"

namespace dynamo {

// Sizes every engine enforces, so that behaviour does not depend on the engine.
struct StorageLimits {
  size_t key_bytes_max = 480;        // LMDB keys are at most 511 bytes with the token prefix
  size_t value_bytes_max = 1 << 20;  // objects are "usually under 1 MB" (paper 2.1)
  size_t siblings_max = 100;         // a put that would keep more fails (Riak's hard limit)
  // The limit for versions another replica accepted already
  // (WriteOptions::replicated: handoff, hint delivery, read repair,
  // anti-entropy). Replicas that each stayed within siblings_max can
  // together hold more; refusing their union at siblings_max would keep
  // them apart forever (a leaving node could never hand its keys over).
  // Values below siblings_max count as siblings_max.
  size_t replicated_siblings_max = 400;
};

struct WriteOptions {
  // For engines that buffer writes (LmdbEngine's write buffering, paper 6.1):
  // make this write durable before returning. The coordinator asks one of
  // the N replicas for it so an acknowledged write survives a crash.
  bool durable = false;
  // The versions were accepted by another replica already, not written by
  // a client just now: merged up to StorageLimits::replicated_siblings_max
  // rather than siblings_max.
  bool replicated = false;
};

struct ScanLimits {
  size_t entries_max = 1000;
  size_t bytes_max = 1 << 20;  // approximate encoded size of the returned entries
};

struct KeyEntry {
  std::string key;
  SiblingSet siblings;
};

struct ScanResult {
  std::vector<KeyEntry> entries;  // in token order (ties: key bytes)
  // Pass to the next Scan() to continue; empty when the range is exhausted.
  std::string resume_cursor;
};

struct HintEntry {
  NodeId owner = kNoNode;  // the node the replica was meant for
  std::string key;
  SiblingSet siblings;
};

struct HintScanResult {
  std::vector<HintEntry> entries;  // ordered by (owner, token, key)
  std::string resume_cursor;       // empty when there are no more hints
};

struct HintUsage {
  uint64_t count = 0;  // (owner, key) pairs held
  uint64_t bytes = 0;  // approximate stored bytes
};

// Who this node is as a writer of vector-clock entries.
struct NodeIdentity {
  NodeId node = kNoNode;
  uint64_t epoch = 0;  // incremented each time the node starts without its data
  ActorId actor = 0;   // drawn at random for each epoch
  // The actor may have minted every dot counter up to this one and none
  // above it (a lease renewed durably before it runs out). 0 in a record
  // written before leases existed.
  uint64_t counter_lease_end = 0;
  friend bool operator==(const NodeIdentity&, const NodeIdentity&) = default;
};

class StorageEngine {
 public:
  virtual ~StorageEngine() = default;

  // The key's sibling set; empty if the key has no versions.
  virtual absl::StatusOr<SiblingSet> Get(std::string_view key) = 0;

  // Calls `reader` with the key's sibling set (empty if none), without
  // copying it where the engine can: the request path reads a key only to
  // look at it (the counter of a new version, the hash of what a write
  // replaces). The set is valid during the call only, and `reader` must not
  // call back into the engine. The default reads through Get, so a wrapper
  // that overrides Get to inject a fault is seen by Visit as well.
  virtual absl::Status Visit(std::string_view key,
                             absl::FunctionRef<void(const SiblingSet&)> reader) {
    absl::StatusOr<SiblingSet> siblings = Get(key);
    if (!siblings.ok()) return siblings.status();
    reader(*siblings);
    return absl::OkStatus();
  }

  // A hint that these keys will be read or written soon, in this order: an
  // engine may start loading what finding them takes, so that the cache
  // misses of the batch's lookups overlap instead of following one another
  // (MemoryEngine follows each key's chain one level per pass over the
  // batch: its hash table's lines, then the entry, then the versions). It
  // changes and reports nothing, and may ignore keys that could not be
  // stored; the default does nothing. Callers holding a batch of requests
  // (a pipelined RESP batch, the replica writes of one network read) name
  // its keys before serving the first.
  virtual void Prefetch(std::span<const std::string_view> keys) { (void)keys; }

  // Atomically merges `incoming` into the key's sibling set and returns the
  // set as stored afterwards. kFailedPrecondition (nothing written) if the
  // result would hold more than siblings_max versions.
  virtual absl::StatusOr<SiblingSet> Put(std::string_view key, const SiblingSet& incoming,
                                         const WriteOptions& options) = 0;

  // Read-modify-write of one key, with one lookup where the engine can:
  // `prepare` is shown the key's stored set first and may fill `incoming`
  // (which the caller owns; the engine reads it only after `prepare`
  // returns), then `incoming` is merged as by Put and `reader` is shown the
  // set as stored afterwards, under the same rules as Visit. The request
  // path builds a new version from what the coordinator stores (its dot
  // counter, paper 4.4) and anti-entropy hashes the set before and after
  // (4.7), so a put reaches the key once. If `prepare` fails, nothing is
  // written and its status is returned; `reader` is not called if the put
  // fails. The default goes through Visit and Put, so a wrapper that
  // overrides Get or Put to inject a fault is seen here as well.
  virtual absl::Status Update(std::string_view key, const SiblingSet& incoming,
                              const WriteOptions& options,
                              absl::FunctionRef<absl::Status(const SiblingSet&)> prepare,
                              absl::FunctionRef<void(const SiblingSet&)> reader) {
    absl::Status prepared = absl::OkStatus();
    absl::Status read = Visit(key, [&](const SiblingSet& stored) { prepared = prepare(stored); });
    if (!read.ok()) return read;
    if (!prepared.ok()) return prepared;
    absl::StatusOr<SiblingSet> stored = Put(key, incoming, options);
    if (!stored.ok()) return stored.status();
    reader(*stored);
    return absl::OkStatus();
  }

  // Put that shows the stored set to `reader` instead of copying it out (the
  // request path looks only at its size, or hashes it): Update with nothing
  // to prepare.
  absl::Status PutAndVisit(std::string_view key, const SiblingSet& incoming,
                           const WriteOptions& options,
                           absl::FunctionRef<void(const SiblingSet&)> reader) {
    return Update(
        key, incoming, options, [](const SiblingSet&) { return absl::OkStatus(); }, reader);
  }

  // Removes the listed tombstones from the key's sibling set, if they are
  // still stored (matched by dot); the key disappears when nothing is left.
  // Non-tombstones in `tombstones` are ignored.
  virtual absl::Status ReapTombstones(std::string_view key, const SiblingSet& tombstones) = 0;

  // Removes the key and all its versions (a node dropping a range it no
  // longer owns, after the new owner confirmed it).
  virtual absl::Status Erase(std::string_view key) = 0;

  // Keys whose tokens lie in `range`, starting after `cursor` (empty: from
  // the start of the range), at most `limits` worth.
  virtual absl::StatusOr<ScanResult> Scan(const TokenRange& range, std::string_view cursor,
                                          const ScanLimits& limits) = 0;

  // Merges `siblings` into the hint held for (owner, key).
  virtual absl::Status PutHint(NodeId owner, std::string_view key, const SiblingSet& siblings) = 0;

  // Hints in (owner, token, key) order, starting after `cursor`.
  virtual absl::StatusOr<HintScanResult> ScanHints(std::string_view cursor,
                                                   const ScanLimits& limits) = 0;

  // Removes from the hint for (owner, key) the versions the owner
  // acknowledged; versions merged in since are kept.
  virtual absl::Status DeleteHint(NodeId owner, std::string_view key,
                                  const SiblingSet& delivered) = 0;

  virtual absl::StatusOr<HintUsage> GetHintUsage() = 0;

  // Named metadata blobs (membership state and the like). GetMetadata
  // returns std::nullopt for a name never written.
  virtual absl::Status PutMetadata(std::string_view name, std::string_view value) = 0;
  virtual absl::StatusOr<std::optional<std::string>> GetMetadata(std::string_view name) = 0;

  // The stored identity, or std::nullopt on a fresh (or wiped) engine.
  virtual absl::StatusOr<std::optional<NodeIdentity>> GetIdentity() = 0;
  virtual absl::Status PutIdentity(const NodeIdentity& identity) = 0;

  // Makes buffered writes durable. Engines without a buffer return OK.
  virtual absl::Status Flush() = 0;

  // Starts making buffered writes durable and returns without waiting where
  // the engine can (LmdbEngine with a flush writer); otherwise Flush().
  // Reports the failure of an earlier background flush, whose writes stay
  // buffered for the next one. Node calls it every storage_flush_interval.
  virtual absl::Status StartFlush() { return Flush(); }

  virtual const StorageLimits& limits() const = 0;

 protected:
  // Put for an engine whose merge lives in PutAndVisit: the stored set,
  // copied out.
  absl::StatusOr<SiblingSet> PutThroughVisit(std::string_view key, const SiblingSet& incoming,
                                             const WriteOptions& options) {
    SiblingSet copy;
    absl::Status status =
        PutAndVisit(key, incoming, options, [&](const SiblingSet& stored) { copy = stored; });
    if (!status.ok()) return status;
    return copy;
  }
};

// Forwards every call to another engine. A test derives from it and
// overrides one method to inject a fault (fail a write, corrupt a read).
// Does not own the target.
class StorageEngineWrapper : public StorageEngine {
 public:
  explicit StorageEngineWrapper(StorageEngine* target) : target_(target) {}
  StorageEngine* target() const { return target_; }

  absl::StatusOr<SiblingSet> Get(std::string_view key) override { return target_->Get(key); }
  void Prefetch(std::span<const std::string_view> keys) override { target_->Prefetch(keys); }
  absl::StatusOr<SiblingSet> Put(std::string_view key, const SiblingSet& incoming,
                                 const WriteOptions& options) override {
    return target_->Put(key, incoming, options);
  }
  absl::Status ReapTombstones(std::string_view key, const SiblingSet& tombstones) override {
    return target_->ReapTombstones(key, tombstones);
  }
  absl::Status Erase(std::string_view key) override { return target_->Erase(key); }
  absl::StatusOr<ScanResult> Scan(const TokenRange& range, std::string_view cursor,
                                  const ScanLimits& limits) override {
    return target_->Scan(range, cursor, limits);
  }
  absl::Status PutHint(NodeId owner, std::string_view key, const SiblingSet& siblings) override {
    return target_->PutHint(owner, key, siblings);
  }
  absl::StatusOr<HintScanResult> ScanHints(std::string_view cursor,
                                           const ScanLimits& limits) override {
    return target_->ScanHints(cursor, limits);
  }
  absl::Status DeleteHint(NodeId owner, std::string_view key,
                          const SiblingSet& delivered) override {
    return target_->DeleteHint(owner, key, delivered);
  }
  absl::StatusOr<HintUsage> GetHintUsage() override { return target_->GetHintUsage(); }
  absl::Status PutMetadata(std::string_view name, std::string_view value) override {
    return target_->PutMetadata(name, value);
  }
  absl::StatusOr<std::optional<std::string>> GetMetadata(std::string_view name) override {
    return target_->GetMetadata(name);
  }
  absl::StatusOr<std::optional<NodeIdentity>> GetIdentity() override {
    return target_->GetIdentity();
  }
  absl::Status PutIdentity(const NodeIdentity& identity) override {
    return target_->PutIdentity(identity);
  }
  absl::Status Flush() override { return target_->Flush(); }
  absl::Status StartFlush() override { return target_->StartFlush(); }
  const StorageLimits& limits() const override { return target_->limits(); }

 private:
  StorageEngine* target_;
};

}  // namespace dynamo

#endif  // DYNAMO_STORAGE_ENGINE_H_

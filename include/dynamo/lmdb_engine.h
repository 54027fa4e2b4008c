// LmdbEngine: the durable StorageEngine (paper section 5: Dynamo's storage
// engines are pluggable; Amazon used Berkeley DB and MySQL, libdynamo uses
// LMDB), with the optional in-memory write buffer of paper section 6.1.
//
// Layout: one LMDB environment (a directory holding data.mdb and lock.mdb)
// with four named databases:
//   data      16-byte big-endian token of the key + key bytes -> sibling set
//             (EncodeSiblingSet), so a token-range scan is a cursor range
//             scan in ring order;
//   hints     8-byte big-endian owner id + token + key -> sibling set;
//   meta      a format record identifying the file as libdynamo's, and the
//             named metadata blobs;
//   identity  the node's one NodeIdentity record.
// The memory map starts at map_bytes_initial and doubles whenever a write
// finds it full (the transaction is aborted and retried), up to
// map_bytes_max: a write never fails merely because the map was small.
//
// Durability (LmdbOptions::durability):
//   kSync      every committed write is fsynced before the call returns;
//   kNoSync    commits are not fsynced (MDB_NOSYNC): a machine crash may lose
//              recent writes, a process crash does not; Flush() and durable
//              writes force an fsync;
//   kBuffered  the paper's write buffering: puts, tombstone reaping and
//              erases of data keys land in an in-memory buffer of up to
//              write_buffer_objects_max keys and write_buffer_bytes_max
//              bytes, visible to Get and Scan at once, and reach disk in
//              synced transactions on Flush(), when the buffer is full, on a
//              WriteOptions::durable write, or when the engine is destroyed.
//              A flush is split into transactions of about
//              flush_transaction_bytes_max; a key leaves the buffer only when
//              its transaction has committed, so a failed flush leaves every
//              key readable and the unwritten ones buffered (a durable write
//              whose own key did not commit is undone and fails; one whose
//              key committed succeeds). A process crash loses what was
//              buffered; the
//              coordinator asks one of the N replicas for a durable write so
//              that an acknowledged put survives (paper 6.1). Hints, metadata
//              and identity are always written through. The sets a flush
//              wrote stay in memory as clean copies that reads and puts use
//              without decoding the disk's, within the same two bounds:
//              they are dropped, unwritten, when room is needed.
//              With a flush_writer, StartFlush() hands the buffer's dirty
//              sets, encoded, to the writer thread and returns: the node's
//              thread goes on serving while LMDB writes and fsyncs (paper
//              6.1's writer thread). The sets stay dirty in the buffer, and
//              so visible to reads and scans, until their transaction has
//              committed and a later call on the node's thread sees it; one
//              changed meanwhile stays dirty for the next flush. At most one
//              such flush is in flight, and Flush(), map growth and the
//              destructor wait for it. Its encoded copy is held beside the
//              buffer until then (at most about write_buffer_bytes_max
//              more). A write transaction of the node's thread (hints,
//              metadata, identity) waits for LMDB's writer lock meanwhile.
// The identity record is always fsynced, whatever the mode: losing it while
// keeping the data would make the node reuse vector-clock counters.
//
// Errors: kInvalidArgument for keys or values over the limits; kDataLoss
// when the directory holds a corrupt or foreign file (on Open) or a stored
// record does not decode (naming the key); kResourceExhausted when the map
// would have to grow past map_bytes_max, and, before anything is buffered or
// written, for a key whose sibling set alone could never fit in
// map_bytes_max or in one LMDB record (4 GiB); kUnavailable / kInternal for
// I/O errors. A failed call changes nothing.
//
// Thread-safety: none; one node uses an engine from its one thread (the
// flush writer's tasks touch only what they were given and LMDB). Do not
// fork() while an engine is open and use it in the child.
#ifndef DYNAMO_LMDB_ENGINE_H_
#define DYNAMO_LMDB_ENGINE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dynamo/storage_engine.h"

// LMDB's types, declared so that this header does not include lmdb.h.
struct MDB_env;
struct MDB_txn;

namespace dynamo {
namespace internal {
class WriteBuffer;  // lib/storage/write_buffer.h
}  // namespace internal

// Runs tasks off the node's thread: the writer thread of paper section 6.1,
// which writes the buffer out while the node serves. libdynamo starts no
// thread of its own; the embedder passes one in (FlushWriterThread, or its
// own executor). Run is called from an engine's thread; the task must run
// exactly once, on a thread other than the caller's, and soon: the engine
// waits for it before it flushes again synchronously or closes.
class FlushWriter {
 public:
  virtual ~FlushWriter() = default;
  virtual void Run(absl::AnyInvocable<void() &&> task) = 0;
};

// A FlushWriter with one thread of its own, started by the constructor and
// joined by the destructor after the tasks already handed to it. Each engine
// has at most one task in it at a time, so the queue holds at most one task
// per engine sharing the thread. Destroy it after the engines that use it.
class FlushWriterThread final : public FlushWriter {
 public:
  FlushWriterThread();
  ~FlushWriterThread() override;
  FlushWriterThread(const FlushWriterThread&) = delete;
  FlushWriterThread& operator=(const FlushWriterThread&) = delete;

  void Run(absl::AnyInvocable<void() &&> task) override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

struct LmdbOptions {
  enum class Durability { kSync, kNoSync, kBuffered };

  // Directory of the environment; created (one level) if missing.
  std::string path;
  Durability durability = Durability::kSync;
  // kBuffered only: distinct keys held in memory before a put flushes them
  // (the paper's buffer held 1,000 objects).
  size_t write_buffer_objects_max = 1000;
  // kBuffered only: approximate bytes (ApproxEntryBytes) held in the buffer
  // before a put flushes it, so that large values do not pile up in memory.
  // A single entry larger than this is still buffered, alone.
  size_t write_buffer_bytes_max = size_t{64} << 20;
  // Approximate bytes written per LMDB transaction by Flush(); larger
  // flushes are split (LMDB holds a transaction's dirty pages in memory up
  // to 128k pages, then spills them). Positive.
  size_t flush_transaction_bytes_max = size_t{64} << 20;
  // kBuffered only: where StartFlush() writes the buffer out, so the
  // caller's thread does not wait for LMDB and the fsync. Not owned; must
  // outlive the engine. nullptr: StartFlush() is Flush(), on the caller's
  // thread.
  FlushWriter* flush_writer = nullptr;
  // Initial size of the memory map; it grows by doubling as needed. The file
  // on disk grows only with the data, not with the map.
  size_t map_bytes_initial = size_t{64} << 20;
  size_t map_bytes_max = size_t{1} << 40;
  StorageLimits limits;
};

class LmdbEngine final : public StorageEngine {
 public:
  // Opens (creating if needed) the environment at options.path. kDataLoss if
  // the directory holds a corrupt LMDB file or one not written by libdynamo;
  // kInvalidArgument for unusable options (empty path, keys that could not
  // fit LMDB's key size limit); kUnavailable if the directory or file cannot
  // be created or opened.
  static absl::StatusOr<std::unique_ptr<LmdbEngine>> Open(const LmdbOptions& options);

  // Flushes the write buffer (kBuffered) on a best-effort basis, then closes
  // the environment. Call Flush() first to learn whether that succeeded.
  ~LmdbEngine() override;

  LmdbEngine(const LmdbEngine&) = delete;
  LmdbEngine& operator=(const LmdbEngine&) = delete;

  // kBuffered: starts loading the buffered entries of `keys` (see
  // StorageEngine::Prefetch); the other modes read from disk and do nothing.
  void Prefetch(std::span<const std::string_view> keys) override;
  absl::StatusOr<SiblingSet> Get(std::string_view key) override;
  // Shows a buffered set in place, or the set decoded from disk.
  absl::Status Visit(std::string_view key,
                     absl::FunctionRef<void(const SiblingSet&)> reader) override;
  absl::StatusOr<SiblingSet> Put(std::string_view key, const SiblingSet& incoming,
                                 const WriteOptions& options) override;
  // kBuffered merges into the buffered set in place; the other modes read,
  // merge and store in one write transaction and show the merged set.
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
  absl::Status DeleteHint(NodeId owner, std::string_view key, const SiblingSet& delivered) override;
  absl::StatusOr<HintUsage> GetHintUsage() override;
  absl::Status PutMetadata(std::string_view name, std::string_view value) override;
  absl::StatusOr<std::optional<std::string>> GetMetadata(std::string_view name) override;
  absl::StatusOr<std::optional<NodeIdentity>> GetIdentity() override;
  absl::Status PutIdentity(const NodeIdentity& identity) override;
  // Writes the buffer out (in several transactions if it is large) and
  // fsyncs (all modes), after waiting for a background flush in flight. On
  // failure, what was not written stays buffered.
  absl::Status Flush() override;
  // With a flush_writer (kBuffered): collects a finished background flush,
  // then hands the dirty sets to the writer unless one is still in flight
  // (that one's successor starts on a later call). Returns a collected
  // flush's failure. Otherwise Flush().
  absl::Status StartFlush() override;
  const StorageLimits& limits() const override { return options_.limits; }

  const LmdbOptions& options() const { return options_; }
  // Keys waiting in the write buffer (always 0 unless kBuffered).
  size_t buffered_objects() const;
  // Their approximate size (with the clean copies', counted against
  // write_buffer_bytes_max).
  uint64_t buffered_bytes() const { return buffer_bytes_; }
  // Keys held as clean copies of what a flush wrote (always 0 unless
  // kBuffered).
  size_t cached_objects() const;
  // The current size of the memory map.
  size_t map_bytes() const { return map_bytes_; }

 private:
  class Impl;
  explicit LmdbEngine(const LmdbOptions& options);

  LmdbOptions options_;
  MDB_env* env_ = nullptr;
  // A read-only transaction kept reset between calls and renewed for each
  // read, which saves allocating one per Get.
  MDB_txn* read_txn_ = nullptr;
  unsigned int data_dbi_ = 0, hints_dbi_ = 0, meta_dbi_ = 0, identity_dbi_ = 0;
  size_t map_bytes_ = 0;
  bool map_full_ = false;  // set when the last LMDB call failed with MDB_MAP_FULL
  HintUsage hint_usage_;
  // kBuffered: data key -> the key's whole sibling set as it should be
  // stored (empty: the key is to be deleted), or as a flush wrote it.
  std::unique_ptr<internal::WriteBuffer> buffer_;
  uint64_t buffer_bytes_ = 0;  // sum of the dirty entries' ApproxEntryBytes
  uint64_t clean_bytes_ = 0;   // and of the clean ones'
  // Every record is encoded here before LMDB copies it into its page, so
  // encoding allocates only when a set is larger than any before.
  std::string encode_scratch_;
  // Prefetch's data keys, built in buffers reused from one batch to the next.
  std::string prefetch_key_bytes_;
  std::vector<std::string_view> prefetch_keys_;
  // The background flush in flight (nullptr: none), shared with the
  // writer's task.
  struct BackgroundFlush;
  std::shared_ptr<BackgroundFlush> background_flush_;
  // The last collected flush, whose buffers (as large as the write buffer's
  // dirty sets) the next flush clears and reuses: a flush every 100 ms would
  // otherwise map megabytes of fresh pages, which the kernel zeroes, each
  // time.
  std::shared_ptr<BackgroundFlush> spare_flush_;
};

}  // namespace dynamo

#endif  // DYNAMO_LMDB_ENGINE_H_

#include "dynamo/lmdb_engine.h"

#include <errno.h>
#include <lmdb.h>
#include <sys/stat.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "storage/storage_util.h"
#include "storage/write_buffer.h"

namespace dynamo {

using internal::DataKeyBuffer;
using internal::HintKey;
using internal::PrintableKey;

namespace {

// The meta database's format record: written when the environment is
// created, checked on every open, so a foreign LMDB file is refused instead
// of being misread. User metadata names are prefixed so they never collide.
constexpr std::string_view kFormatKey("\0format", 7);
constexpr std::string_view kFormatValue = "libdynamo-lmdb-v1";
constexpr char kMetadataPrefix = 'u';
constexpr std::string_view kIdentityKey = "identity";
// Map growth doubles, so this bounds retries of one write far above need.
constexpr int kMapGrowthAttemptsMax = 64;

MDB_val Val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
std::string_view View(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

absl::Status MdbStatus(int rc, std::string_view what) {
  std::string message = absl::StrCat("lmdb ", std::string(what), ": ", mdb_strerror(rc));
  switch (rc) {
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INCOMPATIBLE:
      return absl::DataLossError(message);
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:  // defensive: LMDB spills dirty pages, see CheckStorable
      return absl::ResourceExhaustedError(message);
    case MDB_BAD_VALSIZE:  // a record over LMDB's 4 GiB limit
      return absl::InvalidArgumentError(message);
    case MDB_READERS_FULL:
    case ENOSPC:
    case EIO:
    case EACCES:
    case EROFS:
    case ENOENT:
    case EAGAIN:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

// Asks for every cache line of a record found by a point read before the
// decoder touches it. mdb_get only locates the record; a large one sits on
// its own overflow pages, far from the B-tree pages just searched, so its
// first byte is a cache (often TLB) miss, and each decoding step waits on
// the one before, so without this the lines after the first are requested
// only once the decoder reaches the value copy. A reader that just copies
// the bytes (memcpy) gets that overlap from the hardware; this gives it to
// the decoder. Measured in bench/storage_benchmark.cc (paired/get): the
// engine/raw p50 ratio went from 1.17-1.18x to 1.08-1.11x at 4 KiB and from
// 1.15-1.21x to 1.10-1.12x at 100 B. Past the first few KiB the copy is a
// plain stream the hardware prefetcher follows, and requesting more than the
// L1 cache holds would only evict lines before they are used.
void PrefetchRecord(std::string_view record) {
  constexpr size_t kCacheLineBytes = 64;
  constexpr size_t kPrefetchBytesMax = 16 * 1024;
  const size_t end = std::min(record.size(), kPrefetchBytesMax);
  for (size_t offset = 0; offset < end; offset += kCacheLineBytes) {
    __builtin_prefetch(record.data() + offset);
    // GCC 12 deletes an inlined loop of nothing but prefetches (it counts
    // them as free of side effects under -ffinite-loops); this empty volatile
    // statement keeps the loop.
    asm volatile("");
  }
}

// Closes a cursor on every path out of a scan.
class CursorCloser {
 public:
  explicit CursorCloser(MDB_cursor* cursor) : cursor_(cursor) {}
  ~CursorCloser() { mdb_cursor_close(cursor_); }
  CursorCloser(const CursorCloser&) = delete;
  CursorCloser& operator=(const CursorCloser&) = delete;

 private:
  MDB_cursor* cursor_;
};

}  // namespace

// A flush handed to the flush writer: the dirty sets, encoded on the node's
// thread, in data-key order. The writer's task reads them and reports back
// through `mu`; the node's thread collects the result (Impl::Collect).
struct LmdbEngine::BackgroundFlush {
  struct Record {
    size_t key_offset, key_size;
    size_t value_offset, value_size;  // value_size 0: delete the key
    uint64_t buffered_bytes;          // BufferedBytes of the entry, for batching
  };
  // Written before the task starts, read-only afterwards.
  std::string bytes;  // keys and encoded sets back to back
  std::vector<Record> records;
  uint64_t stamp_max = 0;  // WriteBuffer::last_stamp() when encoded

  std::mutex mu;
  std::condition_variable finished;
  bool done = false;
  size_t committed = 0;  // records [0, committed) are on disk
  int rc = 0;            // the LMDB error that stopped the task
  const char* failed_at = "";

  std::string_view Key(const Record& r) const { return {bytes.data() + r.key_offset, r.key_size}; }
  std::string_view Value(const Record& r) const {
    return {bytes.data() + r.value_offset, r.value_size};
  }
};

// Private helpers; a nested class so they reach the engine's members without
// putting LMDB types in the public header.
class LmdbEngine::Impl {
 public:
  static absl::Status Check(LmdbEngine& e, int rc, std::string_view what) {
    if (rc == 0) return absl::OkStatus();
    if (rc == MDB_MAP_FULL) e.map_full_ = true;
    return MdbStatus(rc, what);
  }

  // mdb_env_set_mapsize (0: adopt the size another process set). Legal only
  // while no transaction of this process is open: the node's thread opens
  // none across calls (its read transaction is reset between them), and a
  // background flush is waited for.
  static int SetMapSize(LmdbEngine& e, size_t bytes) {
    WaitForBackgroundFlush(e);
    return mdb_env_set_mapsize(e.env_, bytes);
  }

  static absl::Status Grow(LmdbEngine& e) {
    if (e.map_bytes_ >= e.options_.map_bytes_max) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "lmdb map at ", e.map_bytes_, " bytes is full and may not grow past map_bytes_max ",
          e.options_.map_bytes_max, " (", e.options_.path, ")"));
    }
    size_t next = std::min(e.map_bytes_ * 2, e.options_.map_bytes_max);
    DYNAMO_RETURN_IF_ERROR(Check(e, SetMapSize(e, next), "grow map"));
    e.map_bytes_ = next;
    return absl::OkStatus();
  }

  // Runs `fn(txn)` in a write transaction and commits it. When LMDB reports
  // the map full (during fn or at commit) the transaction is aborted, the
  // map doubled, and fn run again from scratch, so fn must not have side
  // effects outside the transaction.
  template <typename Fn>
  static absl::Status WriteTxn(LmdbEngine& e, Fn&& fn) {
    for (int attempt = 0; attempt < kMapGrowthAttemptsMax; ++attempt) {
      e.map_full_ = false;
      MDB_txn* txn = nullptr;
      int rc = mdb_txn_begin(e.env_, nullptr, 0, &txn);
      if (rc == MDB_MAP_RESIZED) {
        // Another process grew the map; adopt its size and try again.
        DYNAMO_RETURN_IF_ERROR(AdoptMapSize(e));
        continue;
      }
      DYNAMO_RETURN_IF_ERROR(Check(e, rc, "begin write transaction"));
      absl::Status status = fn(txn);
      if (status.ok()) {
        status = Check(e, mdb_txn_commit(txn), "commit");  // frees txn either way
        if (status.ok()) return status;
      } else {
        mdb_txn_abort(txn);
      }
      if (!e.map_full_) return status;
      DYNAMO_RETURN_IF_ERROR(Grow(e));
    }
    return absl::ResourceExhaustedError("lmdb map kept filling up while growing");
  }

  // Runs `fn(txn)` on a read snapshot, reusing the engine's reset read
  // transaction.
  template <typename Fn>
  static absl::Status ReadTxn(LmdbEngine& e, Fn&& fn) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      int rc = e.read_txn_ != nullptr ? mdb_txn_renew(e.read_txn_)
                                      : mdb_txn_begin(e.env_, nullptr, MDB_RDONLY, &e.read_txn_);
      if (rc != 0) {
        if (e.read_txn_ != nullptr) mdb_txn_abort(e.read_txn_);
        e.read_txn_ = nullptr;
        if (rc == MDB_MAP_RESIZED && attempt == 0) {
          DYNAMO_RETURN_IF_ERROR(AdoptMapSize(e));
          continue;
        }
        return Check(e, rc, "begin read transaction");
      }
      absl::Status status = fn(e.read_txn_);
      mdb_txn_reset(e.read_txn_);
      return status;
    }
    return absl::InternalError("lmdb read transaction could not start");
  }

  // Takes the map size another process gave the environment (it grew the
  // map, so a transaction here reported MDB_MAP_RESIZED).
  static absl::Status AdoptMapSize(LmdbEngine& e) {
    DYNAMO_RETURN_IF_ERROR(Check(e, SetMapSize(e, 0), "adopt map size"));
    RefreshMapSize(e);
    return absl::OkStatus();
  }

  static void RefreshMapSize(LmdbEngine& e) {
    MDB_envinfo info;
    if (mdb_env_info(e.env_, &info) == 0) e.map_bytes_ = info.me_mapsize;
  }

  // The sibling set stored under `stored_key`, empty if there is none.
  static absl::StatusOr<SiblingSet> GetStored(LmdbEngine& e, MDB_txn* txn, MDB_dbi dbi,
                                              std::string_view stored_key,
                                              std::string_view user_key, const char* what) {
    MDB_val k = Val(stored_key), v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == MDB_NOTFOUND) return SiblingSet();
    // The message is built only on failure: this is the hot read path.
    if (rc != 0) return Check(e, rc, absl::StrCat("get ", what));
    PrefetchRecord(View(v));
    return Decode(e, View(v), user_key, what);
  }

  static absl::StatusOr<SiblingSet> Decode(LmdbEngine& e, std::string_view bytes,
                                           std::string_view user_key, const char* what) {
    absl::StatusOr<SiblingSet> decoded =
        internal::DecodeSiblingSet(bytes, internal::CodecLimitsFor(e.options_.limits));
    if (!decoded.ok()) {
      return absl::DataLossError(absl::StrCat(
          "stored ", what, " for key ", PrintableKey(user_key), " in ", e.options_.path,
          " does not decode: ", std::string(decoded.status().message())));
    }
    return decoded;
  }

  // Writes `siblings` under `stored_key`, or deletes the key when the set is
  // empty. With a `cursor` (a flush writing keys in order) LMDB starts its
  // search from the cursor's page, which usually already holds the key.
  static absl::Status StoreOrDelete(LmdbEngine& e, MDB_txn* txn, MDB_dbi dbi,
                                    std::string_view stored_key, const SiblingSet& siblings,
                                    const char* what, MDB_cursor* cursor = nullptr) {
    MDB_val k = Val(stored_key);
    if (siblings.empty()) {
      int rc;
      if (cursor == nullptr) {
        rc = mdb_del(txn, dbi, &k, nullptr);
      } else {
        MDB_val found;
        rc = mdb_cursor_get(cursor, &k, &found, MDB_SET);
        if (rc == 0) rc = mdb_cursor_del(cursor, 0);
      }
      if (rc == MDB_NOTFOUND || rc == 0) return absl::OkStatus();
      return Check(e, rc, absl::StrCat("delete ", what));
    }
    internal::EncodeSiblingSetInto(siblings, &e.encode_scratch_);
    MDB_val v = Val(e.encode_scratch_);
    int rc = cursor == nullptr ? mdb_put(txn, dbi, &k, &v, 0) : mdb_cursor_put(cursor, &k, &v, 0);
    if (rc == 0) return absl::OkStatus();
    return Check(e, rc, absl::StrCat("put ", what));
  }

  // Whether a key and sibling set of ApproxEntryBytes `bytes` could ever be
  // stored: no larger than a map grown to map_bytes_max, nor than one LMDB
  // record (MDB_BAD_VALSIZE). ApproxEntryBytes never exceeds what the key and
  // its record take, so nothing storable is refused (a set within a few
  // bytes per clock entry of the record limit can still reach LMDB and fail
  // there with kInvalidArgument). This is the one way a single key outgrows
  // what a transaction can hold: LMDB spills dirty pages to the file rather
  // than fail with MDB_TXN_FULL (400k records of 1.5 KB, 1.6 GB, commit in
  // one transaction), and a value takes one dirty-list entry however large.
  static constexpr uint64_t kLmdbRecordBytesMax = 0xffffffff;
  static bool Storable(const LmdbEngine& e, std::string_view key, uint64_t bytes) {
    return bytes - internal::kTokenBytes - key.size() <= kLmdbRecordBytesMax &&
           bytes <= e.options_.map_bytes_max;
  }

  // Refuses a sibling set that could never be stored (Storable), before
  // anything changes: a buffered put of one would otherwise be accepted and
  // then fail every flush.
  static absl::Status CheckStorable(LmdbEngine& e, std::string_view key,
                                    const SiblingSet& siblings) {
    const uint64_t bytes = internal::ApproxEntryBytes(key, siblings);
    if (Storable(e, key, bytes)) return absl::OkStatus();
    const uint64_t record_bytes = bytes - internal::kTokenBytes - key.size();
    if (record_bytes > kLmdbRecordBytesMax) {
      return absl::ResourceExhaustedError(
          absl::StrCat("sibling set of key ", PrintableKey(key), " takes at least ", record_bytes,
                       " bytes, over LMDB's record limit of ", kLmdbRecordBytesMax, " bytes"));
    }
    return absl::ResourceExhaustedError(
        absl::StrCat("sibling set of key ", PrintableKey(key), " takes at least ", bytes,
                     " bytes and can never fit in map_bytes_max ", e.options_.map_bytes_max, " (",
                     e.options_.path, ")"));
  }

  // Forces committed writes to disk (kNoSync; harmless otherwise).
  static absl::Status Sync(LmdbEngine& e) { return Check(e, mdb_env_sync(e.env_, 1), "sync"); }

  // One read-modify-write of a data key: a put, tombstone reaping or erase.
  struct Mutation {
    // Shown the stored set first, once; if it fails nothing changes and its
    // status is returned.
    absl::FunctionRef<absl::Status(const SiblingSet&)> prepare;
    // Changes the set in place and returns whether it did (an empty set
    // deletes the key); leaves the set untouched when it fails.
    absl::FunctionRef<absl::StatusOr<bool>(SiblingSet&)> apply;
    // At most how much apply can add to the set's ApproxEntryBytes (asked
    // after prepare, which may fill what apply merges).
    absl::FunctionRef<uint64_t()> growth_bytes;
  };

  static absl::Status NothingToPrepare(const SiblingSet&) { return absl::OkStatus(); }
  static uint64_t NoGrowth() { return 0; }
  static void NoReader(const SiblingSet&) {}

  // Runs `m` on `key` and, if it succeeds, shows the set as stored to
  // `reader`. Unbuffered engines do it in one write transaction; kBuffered
  // reads through the buffer and writes into it, and a durable write then
  // flushes the buffer.
  static absl::Status Mutate(LmdbEngine& e, std::string_view key, bool durable, const Mutation& m,
                             absl::FunctionRef<void(const SiblingSet&)> reader) {
    const DataKeyBuffer data_key(key);
    if (e.options_.durability != LmdbOptions::Durability::kBuffered) {
      SiblingSet result;
      bool prepared = false;
      DYNAMO_RETURN_IF_ERROR(WriteTxn(e, [&](MDB_txn* txn) -> absl::Status {
        DYNAMO_ASSIGN_OR_RETURN(result,
                                GetStored(e, txn, e.data_dbi_, data_key.view(), key, "value"));
        // A retry after the map grew reads the same set again (nothing was
        // written); prepare has seen it.
        if (!prepared) {
          DYNAMO_RETURN_IF_ERROR(m.prepare(result));
          prepared = true;
        }
        DYNAMO_ASSIGN_OR_RETURN(bool changed, m.apply(result));
        if (!changed) return absl::OkStatus();
        DYNAMO_RETURN_IF_ERROR(CheckStorable(e, key, result));
        return StoreOrDelete(e, txn, e.data_dbi_, data_key.view(), result, "value");
      }));
      if (durable && e.options_.durability == LmdbOptions::Durability::kNoSync) {
        DYNAMO_RETURN_IF_ERROR(Sync(e));
      }
      reader(result);
      return absl::OkStatus();
    }

    using internal::WriteBuffer;
    WriteBuffer::Entry* entry = e.buffer_->Find(data_key.view());
    SiblingSet stored;
    if (entry != nullptr) {
      WriteBuffer::Slot& slot = entry->second;
      DYNAMO_RETURN_IF_ERROR(m.prepare(slot.siblings));
      // In place when nothing can need undoing: the result is storable and
      // stays within the buffer's bytes whatever apply does, and no durable
      // flush can fail after it. A merge adds at most its incoming versions.
      const uint64_t old_bytes = internal::ApproxEntryBytes(key, slot.siblings);
      const uint64_t bytes_bound = old_bytes + m.growth_bytes();
      if (!durable && Storable(e, key, bytes_bound) &&
          HeldBytes(e) - old_bytes + bytes_bound <= e.options_.write_buffer_bytes_max) {
        DYNAMO_ASSIGN_OR_RETURN(bool changed, m.apply(slot.siblings));
        if (changed) {
          (slot.dirty ? e.buffer_bytes_ : e.clean_bytes_) -= old_bytes;
          e.buffer_bytes_ += internal::ApproxEntryBytes(key, slot.siblings);
          e.buffer_->MarkDirty(*entry);
        }
        reader(slot.siblings);
        return absl::OkStatus();
      }
      stored = slot.siblings;  // the entry is kept to restore on failure
    } else {
      DYNAMO_RETURN_IF_ERROR(ReadTxn(e, [&](MDB_txn* txn) -> absl::Status {
        DYNAMO_ASSIGN_OR_RETURN(stored,
                                GetStored(e, txn, e.data_dbi_, data_key.view(), key, "value"));
        return absl::OkStatus();
      }));
      DYNAMO_RETURN_IF_ERROR(m.prepare(stored));
    }
    DYNAMO_ASSIGN_OR_RETURN(bool changed, m.apply(stored));
    // The key's entry just before it was overwritten (nullopt: none), to
    // undo a durable write whose flush failed.
    std::optional<WriteBuffer::Slot> previous;
    if (changed) {
      DYNAMO_RETURN_IF_ERROR(CheckStorable(e, key, stored));
      const uint64_t new_bytes = internal::ApproxEntryBytes(key, stored);
      auto full = [&] {
        entry = e.buffer_->Find(data_key.view());
        const uint64_t old_bytes =
            entry != nullptr ? internal::ApproxEntryBytes(key, entry->second.siblings) : 0;
        return (entry == nullptr && e.buffer_->size() >= e.options_.write_buffer_objects_max) ||
               HeldBytes(e) - old_bytes + new_bytes > e.options_.write_buffer_bytes_max;
      };
      // Room is made by dropping the clean copies first (they are on disk),
      // then by writing the buffer out; on a failed flush this write is
      // refused and the buffer keeps what did not reach disk.
      if (full() && e.buffer_->clean_count() > 0) DropClean(e);
      if (full() && e.buffer_->dirty_count() > 0) {
        DYNAMO_RETURN_IF_ERROR(e.Flush());
        DropClean(e);
      }
      entry = e.buffer_->Find(data_key.view());
      // A durable write keeps its own copy to show the reader.
      if (entry != nullptr) {
        WriteBuffer::Slot& slot = entry->second;
        (slot.dirty ? e.buffer_bytes_ : e.clean_bytes_) -=
            internal::ApproxEntryBytes(key, slot.siblings);
        if (durable) previous = WriteBuffer::Slot{std::move(slot.siblings), slot.dirty};
        slot.siblings = durable ? stored : std::move(stored);
        e.buffer_->MarkDirty(*entry);
      } else {
        entry = &e.buffer_->Insert(data_key.view(), durable ? stored : std::move(stored));
      }
      e.buffer_bytes_ += new_bytes;
      if (!durable) {
        reader(entry->second.siblings);
        return absl::OkStatus();
      }
    }
    if (durable) {
      absl::Status flushed = e.Flush();
      // A key stays dirty until its batch commits: one no longer dirty is
      // durable even though a later batch failed.
      entry = flushed.ok() ? nullptr : e.buffer_->Find(data_key.view());
      if (entry != nullptr && entry->second.dirty) {
        if (changed) {
          e.buffer_bytes_ -= internal::ApproxEntryBytes(key, entry->second.siblings);
          if (previous.has_value()) {
            (previous->dirty ? e.buffer_bytes_ : e.clean_bytes_) +=
                internal::ApproxEntryBytes(key, previous->siblings);
            e.buffer_->Restore(*entry, std::move(*previous));
          } else {
            e.buffer_->Erase(data_key.view());
          }
        }
        return flushed;
      }
    }
    reader(stored);
    return absl::OkStatus();
  }

  // The bytes counted against write_buffer_bytes_max: dirty and clean.
  static uint64_t HeldBytes(const LmdbEngine& e) { return e.buffer_bytes_ + e.clean_bytes_; }

  static void DropClean(LmdbEngine& e) {
    e.buffer_->DropClean();
    e.clean_bytes_ = 0;
  }

  // A buffered entry's share of write_buffer_bytes_max (a pending delete
  // counts its key).
  static uint64_t BufferedBytes(const internal::WriteBuffer::Entry& entry) {
    return internal::ApproxEntryBytes(internal::UserKeyOfDataKey(entry.first),
                                      entry.second.siblings);
  }

  // Encodes the dirty sets and hands them to the flush writer. REQUIRES: no
  // background flush in flight, some set dirty.
  static void StartBackgroundFlush(LmdbEngine& e) {
    auto flush = std::make_shared<BackgroundFlush>();
    if (e.spare_flush_ != nullptr) {
      flush->bytes = std::move(e.spare_flush_->bytes);
      flush->records = std::move(e.spare_flush_->records);
      flush->bytes.clear();
      flush->records.clear();
      e.spare_flush_ = nullptr;
    }
    flush->stamp_max = e.buffer_->last_stamp();
    const std::vector<internal::WriteBuffer::Ordered>& order = e.buffer_->InOrder();
    // Half again when short: a buffer reused from flush to flush settles at
    // what the workload needs rather than being replaced (its pages faulted
    // in anew) whenever a flush is a little larger than the last.
    auto reserve = [](auto& buffer, size_t size) {
      if (buffer.capacity() < size) buffer.reserve(size + size / 2);
    };
    reserve(flush->records, order.size());
    reserve(flush->bytes, e.buffer_bytes_);
    for (const internal::WriteBuffer::Ordered& o : order) {
      const internal::WriteBuffer::Entry& entry = *o.entry;
      BackgroundFlush::Record r{};
      r.key_offset = flush->bytes.size();
      r.key_size = entry.first.size();
      flush->bytes.append(entry.first);
      r.value_offset = flush->bytes.size();
      if (!entry.second.siblings.empty()) {
        internal::AppendSiblingSet(entry.second.siblings, &flush->bytes);
        r.value_size = flush->bytes.size() - r.value_offset;  // never 0: a format byte first
      }
      r.buffered_bytes = BufferedBytes(entry);
      flush->records.push_back(r);
    }
    e.background_flush_ = flush;
    e.options_.flush_writer->Run(
        [flush = std::move(flush), env = e.env_, dbi = MDB_dbi{e.data_dbi_},
         txn_bytes_max = e.options_.flush_transaction_bytes_max]() mutable {
          WriteInBackground(env, dbi, txn_bytes_max, *flush);
        });
  }

  // The writer's task: the records in transactions of about txn_bytes_max
  // each, as Flush() does, stopping at the first failure. Touches only
  // `flush` and LMDB, never the engine, which the node's thread is using.
  static void WriteInBackground(MDB_env* env, MDB_dbi dbi, size_t txn_bytes_max,
                                BackgroundFlush& flush) {
    const std::vector<BackgroundFlush::Record>& records = flush.records;
    size_t begin = 0;
    int rc = 0;
    const char* failed_at = "";
    while (begin < records.size() && rc == 0) {
      size_t end = begin;
      uint64_t txn_bytes = 0;
      do {
        txn_bytes += records[end].buffered_bytes;
        ++end;
      } while (end < records.size() && txn_bytes + records[end].buffered_bytes <= txn_bytes_max);
      MDB_txn* txn = nullptr;
      rc = mdb_txn_begin(env, nullptr, 0, &txn);
      if (rc != 0) {
        failed_at = "begin write transaction";
        break;
      }
      MDB_cursor* cursor = nullptr;
      rc = mdb_cursor_open(txn, dbi, &cursor);
      failed_at = "open cursor";
      for (size_t i = begin; i < end && rc == 0; ++i) {
        MDB_val k = Val(flush.Key(records[i]));
        if (records[i].value_size == 0) {
          MDB_val found;
          rc = mdb_cursor_get(cursor, &k, &found, MDB_SET);
          if (rc == 0) rc = mdb_cursor_del(cursor, 0);
          if (rc == MDB_NOTFOUND) rc = 0;
          failed_at = "delete value";
        } else {
          MDB_val v = Val(flush.Value(records[i]));
          rc = mdb_cursor_put(cursor, &k, &v, 0);
          failed_at = "put value";
        }
      }
      if (cursor != nullptr) mdb_cursor_close(cursor);
      if (rc != 0) {
        mdb_txn_abort(txn);
        break;
      }
      rc = mdb_txn_commit(txn);  // synced: the environment is not MDB_NOSYNC
      failed_at = "commit";
      if (rc == 0) begin = end;
    }
    std::lock_guard<std::mutex> lock(flush.mu);
    flush.committed = begin;
    flush.rc = rc;
    flush.failed_at = rc == 0 ? "" : failed_at;
    flush.done = true;
    flush.finished.notify_all();
  }

  static bool BackgroundFlushDone(LmdbEngine& e) {
    std::lock_guard<std::mutex> lock(e.background_flush_->mu);
    return e.background_flush_->done;
  }

  static void WaitForBackgroundFlush(LmdbEngine& e) {
    if (e.background_flush_ == nullptr) return;
    BackgroundFlush& flush = *e.background_flush_;
    std::unique_lock<std::mutex> lock(flush.mu);
    flush.finished.wait(lock, [&] { return flush.done; });
  }

  // Waits for the background flush in flight, if any, and takes in its
  // result: the sets it wrote that have not changed since turn clean. A
  // failure leaves the rest dirty for the next flush; a full map is grown
  // here (OK if it could be), on the node's thread, where no transaction is
  // open.
  static absl::Status Collect(LmdbEngine& e) {
    if (e.background_flush_ == nullptr) return absl::OkStatus();
    WaitForBackgroundFlush(e);
    std::shared_ptr<BackgroundFlush> flush = std::move(e.background_flush_);  // leaves it null
    if (flush->committed > 0) {
      std::optional<std::string_view> through;
      if (flush->committed < flush->records.size()) {
        through = flush->Key(flush->records[flush->committed - 1]);
      }
      e.buffer_->MarkWrittenUpTo(flush->stamp_max, through,
                                 [&](const internal::WriteBuffer::Entry& entry) {
                                   const uint64_t bytes = BufferedBytes(entry);
                                   e.buffer_bytes_ -= bytes;
                                   if (!entry.second.siblings.empty()) e.clean_bytes_ += bytes;
                                 });
    }
    // The writer is done with the buffers (it read them before `done`); the
    // next flush reuses them.
    e.spare_flush_ = flush;
    if (flush->rc == 0) return absl::OkStatus();
    if (flush->rc == MDB_MAP_RESIZED) {
      // Another process grew the map; adopt its size, as WriteTxn does, and
      // let the next flush write what this one did not.
      return AdoptMapSize(e);
    }
    e.map_full_ = false;
    absl::Status failed = Check(e, flush->rc, absl::StrCat("background flush: ", flush->failed_at));
    if (!e.map_full_) return failed;
    return Grow(e);
  }

  static absl::StatusOr<HintUsage> ComputeHintUsage(LmdbEngine& e) {
    HintUsage usage;
    DYNAMO_RETURN_IF_ERROR(ReadTxn(e, [&](MDB_txn* txn) -> absl::Status {
      MDB_cursor* cursor = nullptr;
      DYNAMO_RETURN_IF_ERROR(Check(e, mdb_cursor_open(txn, e.hints_dbi_, &cursor), "open cursor"));
      CursorCloser closer(cursor);
      MDB_val k, v;
      int rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
      for (; rc == 0; rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        if (k.mv_size < internal::kOwnerBytes + internal::kTokenBytes) {
          return absl::DataLossError(absl::StrCat("malformed hint key in ", e.options_.path));
        }
        std::string_view key = internal::UserKeyOfHintKey(View(k));
        DYNAMO_ASSIGN_OR_RETURN(SiblingSet siblings, Decode(e, View(v), key, "hint"));
        usage.count += 1;
        usage.bytes += internal::ApproxEntryBytes(key, siblings);
      }
      if (rc != MDB_NOTFOUND) return Check(e, rc, "scan hints");
      return absl::OkStatus();
    }));
    return usage;
  }

  // Opens the named databases; creates them and the format record in a
  // fresh environment, and refuses an environment libdynamo did not write.
  static absl::Status OpenDatabases(LmdbEngine& e) {
    return WriteTxn(e, [&](MDB_txn* txn) -> absl::Status {
      MDB_dbi main_dbi;
      DYNAMO_RETURN_IF_ERROR(Check(e, mdb_dbi_open(txn, nullptr, 0, &main_dbi), "open main db"));
      MDB_stat stat;
      DYNAMO_RETURN_IF_ERROR(Check(e, mdb_stat(txn, main_dbi, &stat), "stat main db"));
      const bool fresh = stat.ms_entries == 0;
      const std::pair<const char*, MDB_dbi*> dbs[] = {{"data", &e.data_dbi_},
                                                      {"hints", &e.hints_dbi_},
                                                      {"meta", &e.meta_dbi_},
                                                      {"identity", &e.identity_dbi_}};
      for (const auto& [name, dbi] : dbs) {
        int rc = mdb_dbi_open(txn, name, fresh ? MDB_CREATE : 0, dbi);
        if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE) {
          return absl::DataLossError(absl::StrCat("lmdb environment at ", e.options_.path,
                                                  " was not written by libdynamo (no '", name,
                                                  "' database); refusing to use it"));
        }
        DYNAMO_RETURN_IF_ERROR(Check(e, rc, absl::StrCat("open database ", name)));
      }
      MDB_val k = Val(kFormatKey), v;
      if (fresh) {
        v = Val(kFormatValue);
        return Check(e, mdb_put(txn, e.meta_dbi_, &k, &v, 0), "write format record");
      }
      int rc = mdb_get(txn, e.meta_dbi_, &k, &v);
      if (rc == MDB_NOTFOUND) {
        return absl::DataLossError(absl::StrCat("lmdb environment at ", e.options_.path,
                                                " has no libdynamo format record"));
      }
      DYNAMO_RETURN_IF_ERROR(Check(e, rc, "read format record"));
      if (View(v) != kFormatValue) {
        return absl::DataLossError(absl::StrCat("lmdb environment at ", e.options_.path,
                                                " has format record '", PrintableKey(View(v)),
                                                "', expected '", std::string(kFormatValue), "'"));
      }
      return absl::OkStatus();
    });
  }
};

LmdbEngine::LmdbEngine(const LmdbOptions& options)
    : options_(options), buffer_(std::make_unique<internal::WriteBuffer>()) {}

LmdbEngine::~LmdbEngine() {
  if (env_ != nullptr && (buffer_->dirty_count() > 0 || background_flush_ != nullptr)) {
    // Best effort: a caller that must know calls Flush() first.
    absl::Status ignored = Flush();
    (void)ignored;
  }
  if (read_txn_ != nullptr) mdb_txn_abort(read_txn_);
  if (env_ != nullptr) mdb_env_close(env_);
}

absl::StatusOr<std::unique_ptr<LmdbEngine>> LmdbEngine::Open(const LmdbOptions& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("LmdbOptions.path is empty");
  if (options.map_bytes_initial == 0 || options.map_bytes_initial > options.map_bytes_max) {
    return absl::InvalidArgumentError(
        absl::StrCat("LmdbOptions.map_bytes_initial ", options.map_bytes_initial,
                     " must be positive and at most map_bytes_max ", options.map_bytes_max));
  }
  if (options.flush_transaction_bytes_max == 0) {
    return absl::InvalidArgumentError("LmdbOptions.flush_transaction_bytes_max must be positive");
  }
  if (mkdir(options.path.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::UnavailableError(
        absl::StrCat("cannot create lmdb directory ", options.path, ": ", strerror(errno)));
  }
  std::unique_ptr<LmdbEngine> e(new LmdbEngine(options));
  int rc = mdb_env_create(&e->env_);
  if (rc != 0) {
    e->env_ = nullptr;
    return MdbStatus(rc, "create environment");
  }
  DYNAMO_RETURN_IF_ERROR(Impl::Check(*e, mdb_env_set_maxdbs(e->env_, 4), "set max dbs"));
  DYNAMO_RETURN_IF_ERROR(
      Impl::Check(*e, mdb_env_set_mapsize(e->env_, options.map_bytes_initial), "set map size"));
  // MDB_NOTLS: the engine keeps a reset read transaction while it writes,
  // which LMDB allows only when readers are not bound to threads.
  unsigned int flags = MDB_NOTLS;
  if (options.durability == LmdbOptions::Durability::kNoSync) flags |= MDB_NOSYNC;
  rc = mdb_env_open(e->env_, options.path.c_str(), flags, 0644);
  if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH || rc == MDB_CORRUPTED) {
    return absl::DataLossError(absl::StrCat(
        "lmdb file in ", options.path,
        " is corrupt or not an LMDB environment of a compatible version: ", mdb_strerror(rc)));
  }
  DYNAMO_RETURN_IF_ERROR(Impl::Check(*e, rc, absl::StrCat("open environment ", options.path)));
  int stale_readers = 0;  // slots left by crashed processes
  mdb_reader_check(e->env_, &stale_readers);
  Impl::RefreshMapSize(*e);

  const size_t key_overhead = internal::kOwnerBytes + internal::kTokenBytes;
  const size_t lmdb_key_max = static_cast<size_t>(mdb_env_get_maxkeysize(e->env_));
  if (options.limits.key_bytes_max + key_overhead > lmdb_key_max) {
    return absl::InvalidArgumentError(
        absl::StrCat("key_bytes_max ", options.limits.key_bytes_max, " plus ", key_overhead,
                     " bytes of prefix exceeds LMDB's key limit of ", lmdb_key_max, " bytes"));
  }
  DYNAMO_RETURN_IF_ERROR(Impl::OpenDatabases(*e));
  DYNAMO_ASSIGN_OR_RETURN(e->hint_usage_, Impl::ComputeHintUsage(*e));
  return e;
}

size_t LmdbEngine::buffered_objects() const { return buffer_->dirty_count(); }

size_t LmdbEngine::cached_objects() const { return buffer_->clean_count(); }

void LmdbEngine::Prefetch(std::span<const std::string_view> keys) {
  if (options_.durability != LmdbOptions::Durability::kBuffered) return;
  // A key the engine refuses is in no buffer.
  auto storable = [this](std::string_view key) {
    return key.size() <= options_.limits.key_bytes_max;
  };
  // The keys' bytes first, their views after: appending may move the bytes.
  prefetch_key_bytes_.clear();
  for (std::string_view key : keys) {
    if (storable(key)) internal::AppendDataKey(key, &prefetch_key_bytes_);
  }
  prefetch_keys_.clear();
  size_t at = 0;
  for (std::string_view key : keys) {
    if (!storable(key)) continue;
    const size_t size = internal::kTokenBytes + key.size();
    prefetch_keys_.push_back(std::string_view(prefetch_key_bytes_).substr(at, size));
    at += size;
  }
  buffer_->Prefetch(prefetch_keys_);
}

absl::StatusOr<SiblingSet> LmdbEngine::Get(std::string_view key) {
  DYNAMO_RETURN_IF_ERROR(internal::ValidateKey(key, options_.limits));
  // The hot read path: the data key is built on the stack and the reset read
  // transaction renewed, so a get allocates only the returned set.
  const DataKeyBuffer data_key(key);
  if (buffer_->size() > 0) {
    if (const auto* held = buffer_->Find(data_key.view())) return held->second.siblings;
  }
  SiblingSet result;
  DYNAMO_RETURN_IF_ERROR(Impl::ReadTxn(*this, [&](MDB_txn* txn) -> absl::Status {
    DYNAMO_ASSIGN_OR_RETURN(result,
                            Impl::GetStored(*this, txn, data_dbi_, data_key.view(), key, "value"));
    return absl::OkStatus();
  }));
  return result;
}

absl::Status LmdbEngine::Visit(std::string_view key,
                               absl::FunctionRef<void(const SiblingSet&)> reader) {
  DYNAMO_RETURN_IF_ERROR(internal::ValidateKey(key, options_.limits));
  const DataKeyBuffer data_key(key);
  if (buffer_->size() > 0) {
    if (const auto* held = buffer_->Find(data_key.view())) {
      reader(held->second.siblings);
      return absl::OkStatus();
    }
  }
  SiblingSet stored;
  DYNAMO_RETURN_IF_ERROR(Impl::ReadTxn(*this, [&](MDB_txn* txn) -> absl::Status {
    DYNAMO_ASSIGN_OR_RETURN(stored,
                            Impl::GetStored(*this, txn, data_dbi_, data_key.view(), key, "value"));
    return absl::OkStatus();
  }));
  reader(stored);
  return absl::OkStatus();
}

absl::StatusOr<SiblingSet> LmdbEngine::Put(std::string_view key, const SiblingSet& incoming,
                                           const WriteOptions& options) {
  return PutThroughVisit(key, incoming, options);
}

absl::Status LmdbEngine::Update(std::string_view key, const SiblingSet& incoming,
                                const WriteOptions& options,
                                absl::FunctionRef<absl::Status(const SiblingSet&)> prepare,
                                absl::FunctionRef<void(const SiblingSet&)> reader) {
  DYNAMO_RETURN_IF_ERROR(internal::ValidateKey(key, options_.limits));
  return Impl::Mutate(
      *this, key, options.durable,
      Impl::Mutation{[&](const SiblingSet& stored) -> absl::Status {
                       DYNAMO_RETURN_IF_ERROR(prepare(stored));
                       // `incoming` is complete only now.
                       return internal::ValidateSiblings(key, incoming, options_.limits);
                     },
                     [&](SiblingSet& stored) {
                       return internal::MergeWithinLimit(key, stored, incoming, options_.limits,
                                                         options.replicated);
                     },
                     [&] { return internal::ApproxEntryBytes(key, incoming); }},
      reader);
}

absl::Status LmdbEngine::ReapTombstones(std::string_view key, const SiblingSet& tombstones) {
  DYNAMO_RETURN_IF_ERROR(internal::ValidateKey(key, options_.limits));
  return Impl::Mutate(*this, key, /*durable=*/false,
                      Impl::Mutation{Impl::NothingToPrepare,
                                     [&](SiblingSet& stored) -> absl::StatusOr<bool> {
                                       return internal::RemoveReapedTombstones(stored, tombstones);
                                     },
                                     Impl::NoGrowth},
                      Impl::NoReader);
}

absl::Status LmdbEngine::Erase(std::string_view key) {
  DYNAMO_RETURN_IF_ERROR(internal::ValidateKey(key, options_.limits));
  return Impl::Mutate(*this, key, /*durable=*/false,
                      Impl::Mutation{Impl::NothingToPrepare,
                                     [&](SiblingSet& stored) -> absl::StatusOr<bool> {
                                       bool changed = !stored.empty();
                                       stored.clear();
                                       return changed;
                                     },
                                     Impl::NoGrowth},
                      Impl::NoReader);
}

absl::StatusOr<ScanResult> LmdbEngine::Scan(const TokenRange& range, std::string_view cursor,
                                            const ScanLimits& limits) {
  DYNAMO_ASSIGN_OR_RETURN(std::vector<internal::ScanSegment> segments,
                          internal::PlanScan(range, cursor));
  internal::ScanCollector<KeyEntry> collector(limits);
  const std::vector<internal::WriteBuffer::Ordered>& buffered = buffer_->InOrder();
  DYNAMO_RETURN_IF_ERROR(Impl::ReadTxn(*this, [&](MDB_txn* txn) -> absl::Status {
    MDB_cursor* mdb_cursor = nullptr;
    DYNAMO_RETURN_IF_ERROR(
        Impl::Check(*this, mdb_cursor_open(txn, data_dbi_, &mdb_cursor), "open cursor"));
    CursorCloser closer(mdb_cursor);
    for (const internal::ScanSegment& segment : segments) {
      // Two ordered streams, disk and the write buffer, merged by key; for
      // a key in both, the buffer holds the newer whole set and wins.
      MDB_val k = Val(segment.start), v;
      int rc = mdb_cursor_get(mdb_cursor, &k, &v, MDB_SET_RANGE);
      if (rc == 0 && segment.start_exclusive && View(k) == segment.start) {
        rc = mdb_cursor_get(mdb_cursor, &k, &v, MDB_NEXT);
      }
      if (rc != 0 && rc != MDB_NOTFOUND) return Impl::Check(*this, rc, "scan");
      bool disk_valid = rc == 0 && segment.InSegment(View(k));
      size_t next = buffer_->LowerBound(segment.start, segment.start_exclusive);
      while (true) {
        const internal::WriteBuffer::Entry* entry =
            next < buffered.size() ? buffered[next].entry : nullptr;
        bool buffer_valid = entry != nullptr && segment.InSegment(entry->first);
        if (!disk_valid && !buffer_valid) break;
        std::string_view disk_key = disk_valid ? View(k) : std::string_view();
        bool use_buffer = buffer_valid && (!disk_valid || entry->first.view() <= disk_key);
        bool advance_disk = disk_valid && (!use_buffer || entry->first.view() == disk_key);
        if (use_buffer) {
          const SiblingSet& siblings = entry->second.siblings;
          if (!siblings.empty()) {  // else a pending delete
            std::string_view key = internal::UserKeyOfDataKey(entry->first);
            uint64_t bytes = internal::ApproxEntryBytes(key, siblings);
            if (!collector.HasRoom(bytes)) return absl::OkStatus();
            collector.Add(entry->first, bytes, KeyEntry{std::string(key), siblings});
          }
          ++next;
        } else {
          if (disk_key.size() < internal::kTokenBytes) {
            return absl::DataLossError(absl::StrCat("malformed data key in ", options_.path));
          }
          std::string_view key = internal::UserKeyOfDataKey(disk_key);
          DYNAMO_ASSIGN_OR_RETURN(SiblingSet siblings, Impl::Decode(*this, View(v), key, "value"));
          uint64_t bytes = internal::ApproxEntryBytes(key, siblings);
          if (!collector.HasRoom(bytes)) return absl::OkStatus();
          collector.Add(disk_key, bytes, KeyEntry{std::string(key), std::move(siblings)});
        }
        if (advance_disk) {
          rc = mdb_cursor_get(mdb_cursor, &k, &v, MDB_NEXT);
          if (rc != 0 && rc != MDB_NOTFOUND) return Impl::Check(*this, rc, "scan");
          disk_valid = rc == 0 && segment.InSegment(View(k));
        }
      }
    }
    return absl::OkStatus();
  }));
  ScanResult result;
  result.resume_cursor = collector.ResumeCursor();
  result.entries = collector.TakeEntries();
  return result;
}

absl::Status LmdbEngine::PutHint(NodeId owner, std::string_view key, const SiblingSet& siblings) {
  DYNAMO_RETURN_IF_ERROR(internal::ValidateSiblings(key, siblings, options_.limits));
  std::string hint_key = HintKey(owner, key);
  int64_t count_delta = 0, bytes_delta = 0;
  DYNAMO_RETURN_IF_ERROR(Impl::WriteTxn(*this, [&](MDB_txn* txn) -> absl::Status {
    DYNAMO_ASSIGN_OR_RETURN(SiblingSet stored,
                            Impl::GetStored(*this, txn, hints_dbi_, hint_key, key, "hint"));
    const bool existed = !stored.empty();
    const uint64_t old_bytes = existed ? internal::ApproxEntryBytes(key, stored) : 0;
    DYNAMO_ASSIGN_OR_RETURN(bool changed,
                            internal::MergeWithinLimit(key, stored, siblings, options_.limits,
                                                       /*replicated=*/false));
    count_delta = bytes_delta = 0;
    if (!changed || stored.empty()) return absl::OkStatus();
    count_delta = existed ? 0 : 1;
    bytes_delta = static_cast<int64_t>(internal::ApproxEntryBytes(key, stored)) -
                  static_cast<int64_t>(old_bytes);
    return Impl::StoreOrDelete(*this, txn, hints_dbi_, hint_key, stored, "hint");
  }));
  hint_usage_.count += count_delta;
  hint_usage_.bytes += bytes_delta;
  return absl::OkStatus();
}

absl::StatusOr<HintScanResult> LmdbEngine::ScanHints(std::string_view cursor,
                                                     const ScanLimits& limits) {
  internal::ScanCollector<HintEntry> collector(limits);
  DYNAMO_RETURN_IF_ERROR(Impl::ReadTxn(*this, [&](MDB_txn* txn) -> absl::Status {
    MDB_cursor* mdb_cursor = nullptr;
    DYNAMO_RETURN_IF_ERROR(
        Impl::Check(*this, mdb_cursor_open(txn, hints_dbi_, &mdb_cursor), "open cursor"));
    CursorCloser closer(mdb_cursor);
    MDB_val k = Val(cursor), v;
    int rc = cursor.empty() ? mdb_cursor_get(mdb_cursor, &k, &v, MDB_FIRST)
                            : mdb_cursor_get(mdb_cursor, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && !cursor.empty() && View(k) == cursor) {
      rc = mdb_cursor_get(mdb_cursor, &k, &v, MDB_NEXT);
    }
    for (; rc == 0; rc = mdb_cursor_get(mdb_cursor, &k, &v, MDB_NEXT)) {
      if (k.mv_size < internal::kOwnerBytes + internal::kTokenBytes) {
        return absl::DataLossError(absl::StrCat("malformed hint key in ", options_.path));
      }
      std::string_view key = internal::UserKeyOfHintKey(View(k));
      DYNAMO_ASSIGN_OR_RETURN(SiblingSet siblings, Impl::Decode(*this, View(v), key, "hint"));
      uint64_t bytes = internal::ApproxEntryBytes(key, siblings);
      if (!collector.HasRoom(bytes)) return absl::OkStatus();
      collector.Add(
          View(k), bytes,
          HintEntry{internal::OwnerOfHintKey(View(k)), std::string(key), std::move(siblings)});
    }
    if (rc != MDB_NOTFOUND) return Impl::Check(*this, rc, "scan hints");
    return absl::OkStatus();
  }));
  HintScanResult result;
  result.resume_cursor = collector.ResumeCursor();
  result.entries = collector.TakeEntries();
  return result;
}

absl::Status LmdbEngine::DeleteHint(NodeId owner, std::string_view key,
                                    const SiblingSet& delivered) {
  DYNAMO_RETURN_IF_ERROR(internal::ValidateKey(key, options_.limits));
  std::string hint_key = HintKey(owner, key);
  int64_t count_delta = 0, bytes_delta = 0;
  DYNAMO_RETURN_IF_ERROR(Impl::WriteTxn(*this, [&](MDB_txn* txn) -> absl::Status {
    DYNAMO_ASSIGN_OR_RETURN(SiblingSet stored,
                            Impl::GetStored(*this, txn, hints_dbi_, hint_key, key, "hint"));
    count_delta = bytes_delta = 0;
    if (stored.empty()) return absl::OkStatus();
    const uint64_t old_bytes = internal::ApproxEntryBytes(key, stored);
    if (!internal::RemoveDelivered(stored, delivered)) return absl::OkStatus();
    count_delta = stored.empty() ? -1 : 0;
    bytes_delta =
        (stored.empty() ? 0 : static_cast<int64_t>(internal::ApproxEntryBytes(key, stored))) -
        static_cast<int64_t>(old_bytes);
    return Impl::StoreOrDelete(*this, txn, hints_dbi_, hint_key, stored, "hint");
  }));
  hint_usage_.count += count_delta;
  hint_usage_.bytes += bytes_delta;
  return absl::OkStatus();
}

absl::StatusOr<HintUsage> LmdbEngine::GetHintUsage() { return hint_usage_; }

absl::Status LmdbEngine::PutMetadata(std::string_view name, std::string_view value) {
  DYNAMO_RETURN_IF_ERROR(internal::ValidateKey(name, options_.limits));
  if (value.size() > options_.limits.value_bytes_max) {
    return absl::InvalidArgumentError(absl::StrCat("metadata value of ", value.size(),
                                                   " bytes exceeds value_bytes_max for ",
                                                   PrintableKey(name)));
  }
  std::string stored_name = std::string(1, kMetadataPrefix) + std::string(name);
  return Impl::WriteTxn(*this, [&](MDB_txn* txn) -> absl::Status {
    MDB_val k = Val(stored_name), v = Val(value);
    return Impl::Check(*this, mdb_put(txn, meta_dbi_, &k, &v, 0), "put metadata");
  });
}

absl::StatusOr<std::optional<std::string>> LmdbEngine::GetMetadata(std::string_view name) {
  DYNAMO_RETURN_IF_ERROR(internal::ValidateKey(name, options_.limits));
  std::string stored_name = std::string(1, kMetadataPrefix) + std::string(name);
  std::optional<std::string> result;
  DYNAMO_RETURN_IF_ERROR(Impl::ReadTxn(*this, [&](MDB_txn* txn) -> absl::Status {
    MDB_val k = Val(stored_name), v;
    int rc = mdb_get(txn, meta_dbi_, &k, &v);
    if (rc == MDB_NOTFOUND) return absl::OkStatus();
    DYNAMO_RETURN_IF_ERROR(Impl::Check(*this, rc, "get metadata"));
    result = std::string(View(v));
    return absl::OkStatus();
  }));
  return result;
}

absl::StatusOr<std::optional<NodeIdentity>> LmdbEngine::GetIdentity() {
  std::optional<NodeIdentity> result;
  DYNAMO_RETURN_IF_ERROR(Impl::ReadTxn(*this, [&](MDB_txn* txn) -> absl::Status {
    MDB_val k = Val(kIdentityKey), v;
    int rc = mdb_get(txn, identity_dbi_, &k, &v);
    if (rc == MDB_NOTFOUND) return absl::OkStatus();
    DYNAMO_RETURN_IF_ERROR(Impl::Check(*this, rc, "get identity"));
    absl::StatusOr<NodeIdentity> id = internal::DecodeIdentity(View(v));
    if (!id.ok()) {
      return absl::DataLossError(
          absl::StrCat("stored identity in ", options_.path,
                       " does not decode: ", std::string(id.status().message())));
    }
    result = *id;
    return absl::OkStatus();
  }));
  return result;
}

absl::Status LmdbEngine::PutIdentity(const NodeIdentity& identity) {
  std::string bytes = internal::EncodeIdentity(identity);
  DYNAMO_RETURN_IF_ERROR(Impl::WriteTxn(*this, [&](MDB_txn* txn) -> absl::Status {
    MDB_val k = Val(kIdentityKey), v = Val(bytes);
    return Impl::Check(*this, mdb_put(txn, identity_dbi_, &k, &v, 0), "put identity");
  }));
  // Always durable: see the header.
  if (options_.durability == LmdbOptions::Durability::kNoSync) return Impl::Sync(*this);
  return absl::OkStatus();
}

absl::Status LmdbEngine::StartFlush() {
  if (options_.flush_writer == nullptr ||
      options_.durability != LmdbOptions::Durability::kBuffered) {
    return Flush();
  }
  if (background_flush_ != nullptr) {
    if (!Impl::BackgroundFlushDone(*this)) return absl::OkStatus();  // its successor comes later
    DYNAMO_RETURN_IF_ERROR(Impl::Collect(*this));
  }
  if (buffer_->dirty_count() > 0) Impl::StartBackgroundFlush(*this);
  return absl::OkStatus();
}

absl::Status LmdbEngine::Flush() {
  // A background flush's failure is not reported: what it did not write is
  // still dirty, and goes out below or fails again.
  absl::Status collected = Impl::Collect(*this);
  (void)collected;
  // The buffer goes out in key order, in transactions of about
  // flush_transaction_bytes_max each (at least one key): LMDB keeps at most
  // 128k dirty pages of a transaction in memory and spills the rest to the
  // file, and a smaller transaction redoes less work when the map must grow
  // mid-flush. Keys leave the buffer
  // only once their transaction has committed (synced, in kBuffered), so on
  // a failure reads still see every key and the rest stays buffered; Flush
  // reports success only when everything is on disk.
  while (buffer_->dirty_count() > 0) {
    const std::vector<internal::WriteBuffer::Ordered>& order = buffer_->InOrder();
    size_t batch_size = 0;
    uint64_t batch_bytes = 0;
    do {
      batch_bytes += Impl::BufferedBytes(*order[batch_size].entry);
      ++batch_size;
    } while (batch_size < order.size() &&
             batch_bytes + Impl::BufferedBytes(*order[batch_size].entry) <=
                 options_.flush_transaction_bytes_max);
    DYNAMO_RETURN_IF_ERROR(Impl::WriteTxn(*this, [&](MDB_txn* txn) -> absl::Status {
      MDB_cursor* cursor = nullptr;
      DYNAMO_RETURN_IF_ERROR(
          Impl::Check(*this, mdb_cursor_open(txn, data_dbi_, &cursor), "open cursor"));
      CursorCloser closer(cursor);
      for (size_t i = 0; i < batch_size; ++i) {
        const internal::WriteBuffer::Entry& entry = *order[i].entry;
        DYNAMO_RETURN_IF_ERROR(Impl::StoreOrDelete(*this, txn, data_dbi_, entry.first,
                                                   entry.second.siblings, "value", cursor));
      }
      return absl::OkStatus();
    }));
    // The sets just written stay as clean copies for reads.
    for (size_t i = 0; i < batch_size; ++i) {
      if (!order[i].entry->second.siblings.empty())
        clean_bytes_ += Impl::BufferedBytes(*order[i].entry);
    }
    buffer_->MarkWrittenFirstInOrder(batch_size);
    buffer_bytes_ -= batch_bytes;
  }
  if (options_.durability == LmdbOptions::Durability::kNoSync) return Impl::Sync(*this);
  return absl::OkStatus();
}

}  // namespace dynamo

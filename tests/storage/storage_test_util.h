// Helpers shared by the storage tests: temp directories, version builders and
// engine factories, one per engine configuration, that the conformance suite
// takes as template parameters.
#ifndef DYNAMO_TESTS_STORAGE_STORAGE_TEST_UTIL_H_
#define DYNAMO_TESTS_STORAGE_STORAGE_TEST_UTIL_H_

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>

#include "dynamo/lmdb_engine.h"
#include "dynamo/memory_engine.h"
#include "dynamo/storage_engine.h"

namespace dynamo::testing {

// A directory under /tmp made with mkdtemp, removed with its contents.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/dynamo_storage_test_XXXXXX";
    const char* made = mkdtemp(pattern);
    path_ = made != nullptr ? made : "";
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A version written by `actor` as its `counter`-th event, having seen
// `context`.
inline Version MakeVersion(ActorId actor, uint64_t counter, VectorClock context = {},
                           std::string value = "", bool tombstone = false) {
  Version v;
  v.dot = Dot{actor, counter, static_cast<int64_t>(counter) * 1000};
  v.context = std::move(context);
  v.tombstone = tombstone;
  if (!tombstone) v.value = value.empty() ? "v" + std::to_string(actor) + "." + std::to_string(counter) : std::move(value);
  return v;
}

inline VectorClock Clock(std::initializer_list<std::pair<ActorId, uint64_t>> entries) {
  VectorClock c;
  for (const auto& [actor, counter] : entries) c.Observe(actor, counter, 1);
  return c;
}

struct MemoryFactory {
  static constexpr const char* kName = "memory";
  static constexpr bool kLmdb = false;
  StorageLimits limits;
  std::unique_ptr<MemoryEngine> kept;  // the "disk" survives a reopen
  std::unique_ptr<StorageEngine> Open() {
    if (kept == nullptr) kept = std::make_unique<MemoryEngine>(limits);
    return std::make_unique<StorageEngineWrapper>(kept.get());
  }
};

template <LmdbOptions::Durability kDurability, size_t kBufferObjects = 1000>
struct LmdbFactory {
  static constexpr bool kLmdb = true;
  StorageLimits limits;
  TempDir dir;
  LmdbOptions Options() const {
    LmdbOptions options;
    options.path = dir.path() + "/db";
    options.durability = kDurability;
    options.write_buffer_objects_max = kBufferObjects;
    options.map_bytes_initial = size_t{4} << 20;
    options.limits = limits;
    return options;
  }
  std::unique_ptr<StorageEngine> Open() {
    auto engine = LmdbEngine::Open(Options());
    if (!engine.ok()) return nullptr;
    return std::move(engine).value();
  }
};

// kBuffered with a flush writer thread, starting a background flush after
// every write: the suite's reads, scans, reopens and failures all meet
// flushes in flight. A background flush's failure is reported again by the
// Flush() that follows, so the wrapper drops StartFlush()'s status.
class BackgroundFlushingEngine final : public StorageEngineWrapper {
 public:
  BackgroundFlushingEngine(std::unique_ptr<FlushWriterThread> writer,
                           std::unique_ptr<LmdbEngine> engine)
      : StorageEngineWrapper(engine.get()),
        writer_(std::move(writer)),
        engine_(std::move(engine)) {}

  absl::StatusOr<SiblingSet> Put(std::string_view key, const SiblingSet& incoming,
                                 const WriteOptions& options) override {
    return Started(engine_->Put(key, incoming, options));
  }
  absl::Status Update(std::string_view key, const SiblingSet& incoming, const WriteOptions& options,
                      absl::FunctionRef<absl::Status(const SiblingSet&)> prepare,
                      absl::FunctionRef<void(const SiblingSet&)> reader) override {
    return Started(engine_->Update(key, incoming, options, prepare, reader));
  }
  absl::Status ReapTombstones(std::string_view key, const SiblingSet& tombstones) override {
    return Started(engine_->ReapTombstones(key, tombstones));
  }
  absl::Status Erase(std::string_view key) override { return Started(engine_->Erase(key)); }

 private:
  template <typename Result>
  Result Started(Result result) {
    absl::Status ignored = engine_->StartFlush();
    (void)ignored;
    return result;
  }

  // Declared first: destroyed after the engine, which waits for its flush.
  std::unique_ptr<FlushWriterThread> writer_;
  std::unique_ptr<LmdbEngine> engine_;
};

template <size_t kBufferObjects>
struct LmdbBackgroundFlushFactory
    : LmdbFactory<LmdbOptions::Durability::kBuffered, kBufferObjects> {
  std::unique_ptr<StorageEngine> Open() {
    auto writer = std::make_unique<FlushWriterThread>();
    LmdbOptions options = this->Options();
    options.flush_writer = writer.get();
    auto engine = LmdbEngine::Open(options);
    if (!engine.ok()) return nullptr;
    return std::make_unique<BackgroundFlushingEngine>(std::move(writer), std::move(engine).value());
  }
};

using LmdbSyncFactory = LmdbFactory<LmdbOptions::Durability::kSync>;
using LmdbNoSyncFactory = LmdbFactory<LmdbOptions::Durability::kNoSync>;
// A small buffer so that tests cross the "buffer full, flush first" path.
using LmdbBufferedFactory = LmdbFactory<LmdbOptions::Durability::kBuffered, 7>;
using LmdbBackgroundFlushFactory7 = LmdbBackgroundFlushFactory<7>;

}  // namespace dynamo::testing

#endif  // DYNAMO_TESTS_STORAGE_STORAGE_TEST_UTIL_H_

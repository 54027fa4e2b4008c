// LmdbEngine behaviour beyond the shared contract: refusing corrupt and
// foreign files, reporting undecodable records, growing the map, and the
// write buffer of paper section 6.1 (what is and is not on disk after a
// process dies).
#include <fcntl.h>
#include <lmdb.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "storage/storage_test_util.h"
#include "storage/storage_util.h"

namespace dynamo::testing {
namespace {

LmdbOptions OptionsAt(const TempDir& dir, LmdbOptions::Durability durability) {
  LmdbOptions options;
  options.path = dir.path() + "/db";
  options.durability = durability;
  options.map_bytes_initial = size_t{1} << 20;
  return options;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  close(fd);
}

// Puts one raw record into a named database of a closed environment.
void RawPut(const std::string& path, const char* db, const std::string& key,
            const std::string& value) {
  MDB_env* env = nullptr;
  REQUIRE(mdb_env_create(&env) == 0);
  mdb_env_set_maxdbs(env, 8);
  REQUIRE(mdb_env_open(env, path.c_str(), 0, 0644) == 0);
  MDB_txn* txn = nullptr;
  REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
  MDB_dbi dbi;
  REQUIRE(mdb_dbi_open(txn, db, MDB_CREATE, &dbi) == 0);
  MDB_val k{key.size(), const_cast<char*>(key.data())};
  MDB_val v{value.size(), const_cast<char*>(value.data())};
  REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == 0);
  REQUIRE(mdb_txn_commit(txn) == 0);
  mdb_env_close(env);
}

TEST_CASE("LmdbEngine refuses a garbage data.mdb with kDataLoss", "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kSync);
  REQUIRE(mkdir(options.path.c_str(), 0755) == 0);
  std::mt19937_64 rng(11);
  std::string garbage(64 * 1024, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  WriteFile(options.path + "/data.mdb", garbage);
  auto engine = LmdbEngine::Open(options);
  REQUIRE(!engine.ok());
  CHECK(engine.status().code() == absl::StatusCode::kDataLoss);
  CHECK(std::string(engine.status().message()).find(options.path) != std::string::npos);
}

TEST_CASE("LmdbEngine refuses a valid LMDB file it did not write", "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kSync);
  REQUIRE(mkdir(options.path.c_str(), 0755) == 0);
  SECTION("records in the main database") { RawPut(options.path, nullptr, "foo", "bar"); }
  SECTION("our database names but no format record") {
    for (const char* db : {"data", "hints", "meta", "identity"}) RawPut(options.path, db, "x", "y");
  }
  auto engine = LmdbEngine::Open(options);
  REQUIRE(!engine.ok());
  CHECK(engine.status().code() == absl::StatusCode::kDataLoss);
}

TEST_CASE("LmdbEngine reports an undecodable record as kDataLoss naming the key",
          "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kSync);
  {
    auto engine = LmdbEngine::Open(options);
    REQUIRE(engine.ok());
    REQUIRE((*engine)->Put("good", {MakeVersion(1, 1)}, WriteOptions()).ok());
  }
  RawPut(options.path, "data", internal::DataKey("broken-key"), "\x01\x05garbage");
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  auto got = (*engine)->Get("broken-key");
  REQUIRE(!got.ok());
  CHECK(got.status().code() == absl::StatusCode::kDataLoss);
  CHECK(std::string(got.status().message()).find("broken-key") != std::string::npos);
  auto put = (*engine)->Put("broken-key", {MakeVersion(1, 1)}, WriteOptions());
  CHECK(put.status().code() == absl::StatusCode::kDataLoss);
  auto scan = (*engine)->Scan(TokenRange{}, "", ScanLimits());
  CHECK(scan.status().code() == absl::StatusCode::kDataLoss);
  // Other keys stay readable.
  auto good = (*engine)->Get("good");
  REQUIRE(good.ok());
  CHECK(good->size() == 1);
}

TEST_CASE("LmdbEngine grows its map instead of failing writes", "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kNoSync);
  options.map_bytes_initial = size_t{256} << 10;
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  const size_t initial = (*engine)->map_bytes();
  const std::string value(16 * 1024, 'v');
  for (int i = 0; i < 400; ++i) {  // about 6.4 MiB
    auto put = (*engine)->Put("big" + std::to_string(i), {MakeVersion(1, 1 + i, {}, value)},
                              WriteOptions());
    REQUIRE(put.ok());
  }
  CHECK((*engine)->map_bytes() > initial);
  auto scan = (*engine)->Scan(TokenRange{}, "", ScanLimits{1000, size_t{64} << 20});
  REQUIRE(scan.ok());
  CHECK(scan->entries.size() == 400);
}

TEST_CASE("LmdbEngine map growth stops at map_bytes_max", "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kNoSync);
  options.map_bytes_initial = size_t{256} << 10;
  options.map_bytes_max = size_t{512} << 10;
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  absl::Status last;
  for (int i = 0; i < 100 && last.ok(); ++i) {
    last = (*engine)
               ->Put("big" + std::to_string(i),
                     {MakeVersion(1, 1 + i, {}, std::string(16 * 1024, 'v'))}, WriteOptions())
               .status();
  }
  CHECK(last.code() == absl::StatusCode::kResourceExhausted);
}

// Values of value_bytes_max (1 MiB), distinct per key.
std::string LargeValue(int i) {
  return std::string(size_t{1} << 20, static_cast<char>('a' + i % 26));
}

// Puts "large0".."large<count-1>" (1 MiB each, version (1, 1 + i)) without
// asking for durability, so a buffered engine keeps them in its buffer.
void PutLargeValues(LmdbEngine& e, int count) {
  for (int i = 0; i < count; ++i) {
    REQUIRE(e.Put("large" + std::to_string(i), {MakeVersion(1, 1 + i, {}, LargeValue(i))},
                  WriteOptions())
                .ok());
  }
}

// A buffered engine whose flush of PutLargeValues(e, kFlushFailsKeys) fails
// part-way: a 1 MiB map that may grow to 8 MiB, room for about 7 of the 16
// values, written two values per transaction.
constexpr int kFlushFailsKeys = 16;
LmdbOptions FlushFailsOptions(const TempDir& dir) {
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kBuffered);
  options.map_bytes_max = size_t{8} << 20;
  options.write_buffer_bytes_max = size_t{1} << 30;
  options.flush_transaction_bytes_max = size_t{3} << 20;
  return options;
}

// Reopens the environment of `options` (with room to spare and no flush
// writer) and counts the PutLargeValues keys on disk, each with its value.
size_t LargeValuesOnDisk(LmdbOptions options) {
  options.flush_writer = nullptr;
  options.map_bytes_max = size_t{1} << 30;
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  size_t present = 0;
  for (int i = 0; i < kFlushFailsKeys; ++i) {
    auto got = (*engine)->Get("large" + std::to_string(i));
    REQUIRE(got.ok());
    if (got->empty()) continue;
    ++present;
    REQUIRE(got->size() == 1);
    CHECK((*got)[0].value == LargeValue(i));
  }
  return present;
}

// A small key that such a flush writes before every large value (in its
// first batch, which fits) or, with `first` false, after all of them (once
// the map is full).
std::string SmallKeyFlushed(bool first) {
  std::vector<std::string> large;
  for (int i = 0; i < kFlushFailsKeys; ++i)
    large.push_back(internal::DataKey("large" + std::to_string(i)));
  const std::string bound = first ? *std::min_element(large.begin(), large.end())
                                  : *std::max_element(large.begin(), large.end());
  for (int n = 0;; ++n) {
    std::string small = "small" + std::to_string(n);
    const std::string data_key = internal::DataKey(small);
    if (first ? data_key < bound : data_key > bound) return small;
  }
}

constexpr LmdbOptions::Durability kAllDurabilities[] = {LmdbOptions::Durability::kSync,
                                                        LmdbOptions::Durability::kNoSync,
                                                        LmdbOptions::Durability::kBuffered};

// Expects `key` to hold exactly one version, with `value`.
void CheckHolds(LmdbEngine& e, const std::string& key, const std::string& value) {
  auto got = e.Get(key);
  REQUIRE(got.ok());
  REQUIRE(got->size() == 1);
  CHECK((*got)[0].value == value);
}

// A key larger than the engine can ever hold: LMDB would take it in one
// transaction (it spills dirty pages rather than fail with MDB_TXN_FULL), so
// the bound is the map. A buffered put must be refused up front too, or it
// would be acknowledged and then fail every later flush.
TEST_CASE("LmdbEngine refuses a key that can never fit in map_bytes_max and keeps working",
          "[storage][lmdb]") {
  for (LmdbOptions::Durability durability : kAllDurabilities) {
    CAPTURE(static_cast<int>(durability));
    TempDir dir;
    LmdbOptions options = OptionsAt(dir, durability);
    options.map_bytes_max = size_t{4} << 20;
    options.limits.value_bytes_max = size_t{8} << 20;
    WriteOptions durable;
    durable.durable = true;
    {
      auto engine = LmdbEngine::Open(options);
      REQUIRE(engine.ok());
      LmdbEngine& e = **engine;
      for (int i = 0; i < 8; ++i) {
        REQUIRE(e.Put("kept" + std::to_string(i), {MakeVersion(1, 1 + i)}, durable).ok());
      }
      const std::string huge(size_t{5} << 20, 'h');
      auto put = e.Put("huge", {MakeVersion(2, 1, {}, huge)}, WriteOptions());
      CHECK(put.status().code() == absl::StatusCode::kResourceExhausted);
      CHECK_THAT(std::string(put.status().message()),
                 Catch::Contains("key huge") && Catch::Contains("map_bytes_max 4194304"));
      CHECK(e.Get("huge")->empty());
      CHECK(e.buffered_objects() == 0);
      // A concurrent sibling that would make an existing key too large is
      // refused the same way; the key keeps its version.
      put = e.Put("kept0", {MakeVersion(2, 2, {}, huge)}, WriteOptions());
      CHECK(put.status().code() == absl::StatusCode::kResourceExhausted);
      CheckHolds(e, "kept0", "v1.1");
      for (int i = 0; i < 8; ++i)
        CheckHolds(e, "kept" + std::to_string(i), "v1." + std::to_string(1 + i));
      REQUIRE(e.Put("after", {MakeVersion(3, 1)}, durable).ok());
      REQUIRE(e.Flush().ok());
    }
    auto engine = LmdbEngine::Open(options);
    REQUIRE(engine.ok());
    for (int i = 0; i < 8; ++i) {
      CheckHolds(**engine, "kept" + std::to_string(i), "v1." + std::to_string(1 + i));
    }
    CheckHolds(**engine, "after", "v3.1");
    CHECK((*engine)->Get("huge")->empty());
  }
}

// A single value that fits map_bytes_max but not the room left in it reaches
// LMDB, which reports MDB_MAP_FULL until the map cannot grow further.
TEST_CASE("LmdbEngine fails a value larger than the room left in the map without losing data",
          "[storage][lmdb]") {
  for (LmdbOptions::Durability durability : kAllDurabilities) {
    CAPTURE(static_cast<int>(durability));
    TempDir dir;
    LmdbOptions options = OptionsAt(dir, durability);  // 1 MiB initial map
    options.map_bytes_max = size_t{4} << 20;
    options.limits.value_bytes_max = size_t{8} << 20;
    WriteOptions durable;  // kBuffered: written through, so the failure is this put's
    durable.durable = true;
    const std::string big(size_t{2} << 20, 'b');
    {
      auto engine = LmdbEngine::Open(options);
      REQUIRE(engine.ok());
      LmdbEngine& e = **engine;
      for (int i = 0; i < 3; ++i) {
        REQUIRE(
            e.Put("filler" + std::to_string(i), {MakeVersion(1, 1 + i, {}, LargeValue(i))}, durable)
                .ok());
      }
      auto put = e.Put("big", {MakeVersion(2, 1, {}, big)}, durable);
      CHECK(put.status().code() == absl::StatusCode::kResourceExhausted);
      CHECK_THAT(std::string(put.status().message()),
                 Catch::Contains("may not grow past map_bytes_max 4194304"));
      CHECK(e.map_bytes() == options.map_bytes_max);
      CHECK(e.Get("big")->empty());
      CHECK(e.buffered_objects() == 0);  // the failed durable put was undone
      for (int i = 0; i < 3; ++i) CheckHolds(e, "filler" + std::to_string(i), LargeValue(i));
      REQUIRE(e.Put("small", {MakeVersion(3, 1)}, durable).ok());
    }
    // Nothing acknowledged was lost, and with a larger map the value goes in.
    options.map_bytes_max = size_t{16} << 20;
    auto engine = LmdbEngine::Open(options);
    REQUIRE(engine.ok());
    for (int i = 0; i < 3; ++i) CheckHolds(**engine, "filler" + std::to_string(i), LargeValue(i));
    CheckHolds(**engine, "small", "v3.1");
    CHECK((*engine)->Get("big")->empty());
    REQUIRE((*engine)->Put("big", {MakeVersion(2, 1, {}, big)}, durable).ok());
    CheckHolds(**engine, "big", big);
  }
}

TEST_CASE("LmdbEngine write buffer: visible at once, flushed when full or asked",
          "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kBuffered);
  options.write_buffer_objects_max = 3;
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  LmdbEngine& e = **engine;
  REQUIRE(e.Put("a", {MakeVersion(1, 1)}, WriteOptions()).ok());
  REQUIRE(e.Put("a", {MakeVersion(2, 1)}, WriteOptions()).ok());  // same key: one object
  REQUIRE(e.Put("b", {MakeVersion(1, 2)}, WriteOptions()).ok());
  CHECK(e.buffered_objects() == 2);
  CHECK(e.Get("a")->size() == 2);
  REQUIRE(e.Put("c", {MakeVersion(1, 3)}, WriteOptions()).ok());
  CHECK(e.buffered_objects() == 3);
  REQUIRE(e.Put("d", {MakeVersion(1, 4)}, WriteOptions()).ok());  // full: flushes a, b, c
  CHECK(e.buffered_objects() == 1);
  auto scan = e.Scan(TokenRange{}, "", ScanLimits());
  REQUIRE(scan.ok());
  CHECK(scan->entries.size() == 4);
  REQUIRE(e.Flush().ok());
  CHECK(e.buffered_objects() == 0);
  WriteOptions durable;
  durable.durable = true;
  REQUIRE(e.Put("e", {MakeVersion(1, 5)}, WriteOptions()).ok());
  REQUIRE(e.Put("f", {MakeVersion(1, 6)}, durable).ok());
  CHECK(e.buffered_objects() == 0);
}

TEST_CASE("LmdbEngine write buffer: a flush of large values grows the map as it goes",
          "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kBuffered);  // 1 MiB map
  options.write_buffer_bytes_max = size_t{1} << 30;
  options.flush_transaction_bytes_max = size_t{4} << 20;
  constexpr int kKeys = 24;
  {
    auto engine = LmdbEngine::Open(options);
    REQUIRE(engine.ok());
    LmdbEngine& e = **engine;
    PutLargeValues(e, kKeys);
    CHECK(e.buffered_objects() == kKeys);
    CHECK(e.buffered_bytes() > uint64_t{kKeys} << 20);
    for (int i = 0; i < kKeys; ++i) CheckHolds(e, "large" + std::to_string(i), LargeValue(i));
    const size_t map_before = e.map_bytes();
    REQUIRE(e.Flush().ok());
    CHECK(e.buffered_objects() == 0);
    CHECK(e.buffered_bytes() == 0);
    CHECK(e.map_bytes() > map_before);
    CHECK(e.map_bytes() >= size_t{kKeys} << 20);
  }
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  for (int i = 0; i < kKeys; ++i) {
    auto got = (*engine)->Get("large" + std::to_string(i));
    REQUIRE(got.ok());
    REQUIRE(got->size() == 1);
    CHECK((*got)[0].dot == Dot{1, static_cast<uint64_t>(1 + i), 0});
    CHECK((*got)[0].value == LargeValue(i));
  }
}

TEST_CASE("LmdbEngine write buffer: a failed flush keeps unwritten keys buffered and readable",
          "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = FlushFailsOptions(dir);
  constexpr int kKeys = kFlushFailsKeys;
  size_t left_buffered = 0;
  {
    auto engine = LmdbEngine::Open(options);
    REQUIRE(engine.ok());
    LmdbEngine& e = **engine;
    PutLargeValues(e, kKeys);
    absl::Status flushed = e.Flush();
    CHECK(flushed.code() == absl::StatusCode::kResourceExhausted);
    left_buffered = e.buffered_objects();
    // Some transactions committed before the map could not grow further.
    CHECK(left_buffered > 0);
    CHECK(left_buffered < kKeys);
    for (int i = 0; i < kKeys; ++i) CheckHolds(e, "large" + std::to_string(i), LargeValue(i));
    auto scan = e.Scan(TokenRange{}, "", ScanLimits{1000, size_t{1} << 30});
    REQUIRE(scan.ok());
    CHECK(scan->entries.size() == kKeys);
    // A durable write needs the buffer on disk first: it fails and changes
    // nothing.
    WriteOptions durable;
    durable.durable = true;
    auto put = e.Put("durable", {MakeVersion(2, 1)}, durable);
    CHECK(put.status().code() == absl::StatusCode::kResourceExhausted);
    CHECK(e.Get("durable")->empty());
    CHECK(e.buffered_objects() == left_buffered);
  }
  // The committed transactions are on disk; what stayed buffered was never
  // reported durable and is gone with the process.
  CHECK(LargeValuesOnDisk(options) == kKeys - left_buffered);
}

TEST_CASE("LmdbEngine write buffer: a durable write whose batch committed succeeds",
          "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = FlushFailsOptions(dir);
  constexpr int kKeys = kFlushFailsKeys;
  const std::string small = SmallKeyFlushed(/*first=*/true);
  {
    auto engine = LmdbEngine::Open(options);
    REQUIRE(engine.ok());
    LmdbEngine& e = **engine;
    PutLargeValues(e, kKeys);
    WriteOptions durable;
    durable.durable = true;
    auto put = e.Put(small, {MakeVersion(2, 1)}, durable);
    REQUIRE(put.ok());  // later batches hit map_bytes_max; this key's did not
    CHECK(e.buffered_objects() > 0);
    CHECK(e.buffered_objects() < kKeys);
    CHECK(e.Get(small)->size() == 1);
    CHECK(e.Flush().code() == absl::StatusCode::kResourceExhausted);
  }
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  auto got = (*engine)->Get(small);
  REQUIRE(got.ok());
  REQUIRE(got->size() == 1);
  CHECK((*got)[0].dot == Dot{2, 1, 0});
}

TEST_CASE("LmdbEngine write buffer: write_buffer_bytes_max flushes before it is passed",
          "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kBuffered);
  options.write_buffer_bytes_max = size_t{3} << 20;
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  LmdbEngine& e = **engine;
  PutLargeValues(e, 2);
  CHECK(e.buffered_objects() == 2);
  // Replacing a buffered entry counts only the difference: no flush.
  REQUIRE(
      e.Put("large0", {MakeVersion(1, 10, Clock({{1, 1}}), LargeValue(5))}, WriteOptions()).ok());
  CHECK(e.buffered_objects() == 2);
  CHECK(e.buffered_bytes() <= options.write_buffer_bytes_max);
  REQUIRE(e.Put("large2", {MakeVersion(1, 3, {}, LargeValue(2))}, WriteOptions()).ok());
  CHECK(e.buffered_objects() == 1);  // the first two went to disk first
  CHECK(e.buffered_bytes() <= options.write_buffer_bytes_max);
  auto got = e.Get("large0");
  REQUIRE(got.ok());
  REQUIRE(got->size() == 1);
  CHECK((*got)[0].value == LargeValue(5));
}

TEST_CASE("LmdbEngine write buffer: Visit and PutAndVisit work on the buffered set in place",
          "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kBuffered);
  options.limits.siblings_max = 2;
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  LmdbEngine& e = **engine;
  // Flushed first: the put below turns the clean copy dirty.
  const Version v1 = MakeVersion(1, 1);
  REQUIRE(e.Put("k", {v1}, WriteOptions()).ok());
  REQUIRE(e.Flush().ok());
  SiblingSet seen;
  auto show = [&](const SiblingSet& s) { seen = s; };
  CHECK(e.cached_objects() == 1);
  const Version w1 = MakeVersion(2, 1);
  REQUIRE(e.PutAndVisit("k", {w1}, WriteOptions(), show).ok());
  CHECK(seen == SiblingSet{v1, w1});
  CHECK(e.buffered_objects() == 1);
  CHECK(e.cached_objects() == 0);
  CHECK(e.buffered_bytes() == internal::ApproxEntryBytes("k", seen));
  // Merged into the buffered set: a version superseding v1.
  const Version v2 = MakeVersion(1, 2, Clock({{1, 1}}), "a longer value than before");
  REQUIRE(e.PutAndVisit("k", {v2}, WriteOptions(), show).ok());
  CHECK(seen == SiblingSet{v2, w1});
  CHECK(e.buffered_bytes() == internal::ApproxEntryBytes("k", seen));
  REQUIRE(e.Visit("k", show).ok());
  CHECK(seen == SiblingSet{v2, w1});
  // Over siblings_max: refused, the buffered set and its bytes unchanged.
  const uint64_t bytes_before = e.buffered_bytes();
  int calls = 0;
  CHECK(e.PutAndVisit("k", {MakeVersion(3, 1)}, WriteOptions(), [&](const SiblingSet&) {
           ++calls;
         }).code() == absl::StatusCode::kFailedPrecondition);
  CHECK(calls == 0);
  CHECK(e.buffered_bytes() == bytes_before);
  REQUIRE(e.Visit("k", show).ok());
  CHECK(seen == SiblingSet{v2, w1});
  // A tombstone reaped and a key erased in the buffer: the erased key reads
  // as empty and stays buffered as a pending delete.
  const Version t = MakeVersion(2, 2, Clock({{2, 1}}), "", /*tombstone=*/true);
  REQUIRE(e.PutAndVisit("k", {t}, WriteOptions(), show).ok());
  CHECK(seen == SiblingSet{v2, t});
  REQUIRE(e.ReapTombstones("k", {t}).ok());
  REQUIRE(e.Visit("k", show).ok());
  CHECK(seen == SiblingSet{v2});
  CHECK(e.buffered_bytes() == internal::ApproxEntryBytes("k", seen));
  REQUIRE(e.Put("gone", {MakeVersion(1, 9)}, WriteOptions()).ok());
  REQUIRE(e.Erase("gone").ok());
  CHECK(e.buffered_objects() == 2);
  CHECK(e.buffered_bytes() ==
        internal::ApproxEntryBytes("k", {v2}) + internal::ApproxEntryBytes("gone", {}));
  REQUIRE(e.Visit("gone", show).ok());
  CHECK(seen.empty());
  REQUIRE(e.Flush().ok());
  CHECK(e.buffered_bytes() == 0);
  REQUIRE(e.Visit("k", show).ok());
  CHECK(seen == SiblingSet{v2});
  CHECK(e.Get("gone")->empty());
}

TEST_CASE("LmdbEngine write buffer: flushed sets stay as clean copies within the bounds",
          "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kBuffered);
  options.write_buffer_objects_max = 3;
  const Version a2 = MakeVersion(1, 5, Clock({{1, 1}}));
  {
    auto engine = LmdbEngine::Open(options);
    REQUIRE(engine.ok());
    LmdbEngine& e = **engine;
    REQUIRE(e.Put("a", {MakeVersion(1, 1)}, WriteOptions()).ok());
    REQUIRE(e.Put("b", {MakeVersion(1, 2)}, WriteOptions()).ok());
    REQUIRE(e.Put("c", {MakeVersion(1, 3)}, WriteOptions()).ok());
    REQUIRE(e.Flush().ok());
    CHECK(e.buffered_objects() == 0);
    CHECK(e.buffered_bytes() == 0);
    CHECK(e.cached_objects() == 3);
    CheckHolds(e, "a", "v1.1");
    // A put that changes nothing leaves the copy clean; one that does makes
    // it dirty again.
    REQUIRE(e.Put("a", {MakeVersion(1, 1)}, WriteOptions()).ok());
    CHECK(e.buffered_objects() == 0);
    REQUIRE(e.Put("a", {a2}, WriteOptions()).ok());
    CHECK(e.buffered_objects() == 1);
    CHECK(e.cached_objects() == 2);
    // A new key finds the buffer full: the clean copies make room, nothing
    // is written (a stays dirty).
    REQUIRE(e.Put("d", {MakeVersion(1, 4)}, WriteOptions()).ok());
    CHECK(e.buffered_objects() == 2);
    CHECK(e.cached_objects() == 0);
    CheckHolds(e, "b", "v1.2");
    // An erase of a key read back from disk; once flushed, it is not kept.
    REQUIRE(e.Erase("b").ok());
    CHECK(e.buffered_objects() == 3);
    REQUIRE(e.Flush().ok());
    CHECK(e.buffered_objects() == 0);
    CHECK(e.cached_objects() == 2);  // a and d
    CHECK(e.Get("b")->empty());
    CheckHolds(e, "a", a2.value);
    auto scan = e.Scan(TokenRange{}, "", ScanLimits());
    REQUIRE(scan.ok());
    std::set<std::string> keys;
    for (const KeyEntry& entry : scan->entries) keys.insert(entry.key);
    CHECK(keys == std::set<std::string>{"a", "c", "d"});
  }
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  CheckHolds(**engine, "a", a2.value);
  CHECK((*engine)->Get("b")->empty());
  CheckHolds(**engine, "c", "v1.3");
  CheckHolds(**engine, "d", "v1.4");
}

TEST_CASE("LmdbEngine write buffer: a durable put on a buffered key whose flush fails is undone",
          "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = FlushFailsOptions(dir);
  constexpr int kKeys = kFlushFailsKeys;
  const std::string small = SmallKeyFlushed(/*first=*/false);
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  LmdbEngine& e = **engine;
  const Version v1 = MakeVersion(1, 1);
  REQUIRE(e.Put(small, {v1}, WriteOptions()).ok());
  bool small_dirty = true;
  SECTION("the key was dirty") {}
  SECTION("the key was a clean copy") {
    REQUIRE(e.Flush().ok());
    small_dirty = false;
  }
  PutLargeValues(e, kKeys);
  const uint64_t bytes_before = e.buffered_bytes();
  WriteOptions durable;
  durable.durable = true;
  int calls = 0;
  absl::Status put = e.PutAndVisit(small, {MakeVersion(1, 2, Clock({{1, 1}}))}, durable,
                                   [&](const SiblingSet&) { ++calls; });
  CHECK(put.code() == absl::StatusCode::kResourceExhausted);
  CHECK(calls == 0);
  // The buffered set is the one before the durable put, dirty or clean as
  // it was, and the bytes count exactly what is still dirty: the flush
  // committed the first keys in key order, and `small` comes last.
  auto got = e.Get(small);
  REQUIRE(got.ok());
  CHECK(*got == SiblingSet{v1});
  REQUIRE(e.buffered_objects() > 1);
  REQUIRE(e.buffered_objects() <= kKeys);
  const size_t large_dirty = e.buffered_objects() - (small_dirty ? 1 : 0);
  std::vector<std::pair<std::string, int>> large;  // (data key, i)
  for (int i = 0; i < kKeys; ++i)
    large.emplace_back(internal::DataKey("large" + std::to_string(i)), i);
  std::sort(large.begin(), large.end());
  const size_t committed = kKeys - large_dirty;
  CHECK(e.cached_objects() == committed + (small_dirty ? 0 : 1));
  uint64_t expected_bytes = small_dirty ? internal::ApproxEntryBytes(small, {v1}) : 0;
  uint64_t committed_bytes = 0;
  for (size_t j = 0; j < large.size(); ++j) {
    const std::string key = "large" + std::to_string(large[j].second);
    const uint64_t bytes =
        internal::ApproxEntryBytes(key, {MakeVersion(1, 1 + large[j].second, {}, LargeValue(0))});
    (j < committed ? committed_bytes : expected_bytes) += bytes;
    CheckHolds(e, key, LargeValue(large[j].second));
  }
  CHECK(e.buffered_bytes() == expected_bytes);
  CHECK(bytes_before == expected_bytes + committed_bytes);
  // The failed put never reaches the disk: after a reopen (the closing
  // flush fails at the same batch) a clean copy's set is there, a dirty
  // one was lost with the buffer, as a crash would lose it.
  engine->reset();
  options.map_bytes_max = size_t{1} << 30;
  engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  got = (*engine)->Get(small);
  REQUIRE(got.ok());
  CHECK(*got == (small_dirty ? SiblingSet{} : SiblingSet{v1}));
}

// Runs `body` in a child process that then dies without any cleanup (as on
// SIGKILL: no destructors, no buffer flush), and waits for it.
template <typename Body>
void RunAndDie(Body body) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    _exit(body() ? 0 : 1);
  }
  int wstatus = 0;
  REQUIRE(waitpid(pid, &wstatus, 0) == pid);
  REQUIRE(WIFEXITED(wstatus));
  REQUIRE(WEXITSTATUS(wstatus) == 0);
}

TEST_CASE("LmdbEngine write buffer: a crash loses only unflushed, non-durable writes",
          "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kBuffered);
  RunAndDie([&] {
    auto engine = LmdbEngine::Open(options);
    if (!engine.ok()) return false;
    WriteOptions durable;
    durable.durable = true;
    bool ok = (*engine)->Put("buffered-then-flushed", {MakeVersion(1, 1)}, WriteOptions()).ok() &&
              (*engine)->Put("durable", {MakeVersion(1, 2)}, durable).ok() &&
              (*engine)->Put("only-buffered", {MakeVersion(1, 3)}, WriteOptions()).ok() &&
              (*engine)->Get("only-buffered")->size() == 1;
    // Leak the engine: the process dies as if killed, buffer unflushed.
    (void)engine->release();
    return ok;
  });
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  CHECK((*engine)->Get("buffered-then-flushed")->size() == 1);
  CHECK((*engine)->Get("durable")->size() == 1);
  CHECK((*engine)->Get("only-buffered")->empty());
}

// Holds a background flush's task until the test releases it, so that the
// test decides what happens while the flush is in flight. Release runs it on
// a thread of its own, as a real writer would, and waits for it.
class HeldFlushWriter final : public FlushWriter {
 public:
  void Run(absl::AnyInvocable<void() &&> task) override {
    REQUIRE(task_ == nullptr);  // the engine never has two in flight
    task_ = std::move(task);
  }
  bool holding() const { return task_ != nullptr; }
  void Release() {
    REQUIRE(holding());
    std::thread writer(std::move(task_));
    writer.join();
    task_ = nullptr;
  }

 private:
  absl::AnyInvocable<void() &&> task_;
};

TEST_CASE("LmdbEngine background flush: the buffer serves while it is in flight",
          "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kBuffered);
  HeldFlushWriter writer;
  options.flush_writer = &writer;
  {
    auto engine = LmdbEngine::Open(options);
    REQUIRE(engine.ok());
    LmdbEngine& e = **engine;
    for (const char* key : {"a", "b", "c"}) {
      REQUIRE(e.Put(key, {MakeVersion(1, 1, {}, std::string(key) + "1")}, WriteOptions()).ok());
    }
    REQUIRE(e.StartFlush().ok());
    REQUIRE(writer.holding());
    // In flight: b changes, c goes, d arrives; reads and scans see it all.
    REQUIRE(e.Put("b", {MakeVersion(1, 2, Clock({{1, 1}}), "b2")}, WriteOptions()).ok());
    REQUIRE(e.Erase("c").ok());
    REQUIRE(e.Put("d", {MakeVersion(1, 3, {}, "d1")}, WriteOptions()).ok());
    REQUIRE(e.StartFlush().ok());  // one in flight: no second task
    CheckHolds(e, "a", "a1");
    CheckHolds(e, "b", "b2");
    CHECK(e.Get("c")->empty());
    auto scan = e.Scan(TokenRange{}, "", ScanLimits());
    REQUIRE(scan.ok());
    CHECK(scan->entries.size() == 3);
    CHECK(e.buffered_objects() == 4);
    writer.Release();
    // Collected: a went out unchanged and stays as a clean copy; b, c and d
    // changed after the flush took them and go in the next one.
    REQUIRE(e.StartFlush().ok());
    CHECK(e.buffered_objects() == 3);
    CHECK(e.cached_objects() == 1);
    REQUIRE(writer.holding());
    CheckHolds(e, "b", "b2");
    writer.Release();
    REQUIRE(e.Flush().ok());
    CHECK(e.buffered_objects() == 0);
    CHECK(!writer.holding());
  }
  options.flush_writer = nullptr;
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  CheckHolds(**engine, "a", "a1");
  CheckHolds(**engine, "b", "b2");
  CHECK((*engine)->Get("c")->empty());
  CheckHolds(**engine, "d", "d1");
}

TEST_CASE(
    "LmdbEngine background flush: a flush reusing the last one's buffers writes only its own sets",
    "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kBuffered);
  HeldFlushWriter writer;
  options.flush_writer = &writer;
  {
    auto engine = LmdbEngine::Open(options);
    REQUIRE(engine.ok());
    LmdbEngine& e = **engine;
    REQUIRE(e.Put("a", {MakeVersion(1, 1, {}, "a1")}, WriteOptions()).ok());
    REQUIRE(e.StartFlush().ok());
    writer.Release();
    // a changes and goes out in a synchronous flush, which collects the
    // first background flush (its buffers are kept for the next).
    REQUIRE(e.Put("a", {MakeVersion(1, 2, Clock({{1, 1}}), "a2")}, WriteOptions()).ok());
    REQUIRE(e.Flush().ok());
    // The next background flush carries only bb, laid out unlike a: no
    // record of the first flush may be written again, neither over a2 nor
    // as some key of its own.
    REQUIRE(e.Put("bb", {MakeVersion(1, 3, {}, "bb1")}, WriteOptions()).ok());
    REQUIRE(e.StartFlush().ok());
    writer.Release();
    REQUIRE(e.Flush().ok());
    CHECK(e.buffered_objects() == 0);
  }
  options.flush_writer = nullptr;
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  CheckHolds(**engine, "a", "a2");
  CheckHolds(**engine, "bb", "bb1");
  auto scan = (*engine)->Scan(TokenRange{}, "", ScanLimits());
  REQUIRE(scan.ok());
  CHECK(scan->entries.size() == 2);
}

TEST_CASE("LmdbEngine background flush: a full map is grown on the node's thread and retried",
          "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kBuffered);  // 1 MiB map
  options.write_buffer_bytes_max = size_t{1} << 30;
  options.flush_transaction_bytes_max = size_t{4} << 20;
  HeldFlushWriter writer;
  options.flush_writer = &writer;
  constexpr int kKeys = 12;
  {
    auto engine = LmdbEngine::Open(options);
    REQUIRE(engine.ok());
    LmdbEngine& e = **engine;
    PutLargeValues(e, kKeys);
    const size_t map_before = e.map_bytes();
    REQUIRE(e.StartFlush().ok());
    int flushes = 0;
    while (writer.holding()) {
      REQUIRE(++flushes < 64);
      writer.Release();
      REQUIRE(e.StartFlush().ok());  // a full map grew; the rest goes out next
      for (int i = 0; i < kKeys; ++i) CheckHolds(e, "large" + std::to_string(i), LargeValue(i));
    }
    CHECK(flushes > 1);  // at least one attempt found the map full
    CHECK(e.buffered_objects() == 0);
    CHECK(e.map_bytes() > map_before);
  }
  options.flush_writer = nullptr;
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  for (int i = 0; i < kKeys; ++i) CheckHolds(**engine, "large" + std::to_string(i), LargeValue(i));
}

TEST_CASE("LmdbEngine background flush: a failure is reported and nothing unwritten is lost",
          "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = FlushFailsOptions(dir);
  HeldFlushWriter writer;
  options.flush_writer = &writer;
  constexpr int kKeys = kFlushFailsKeys;
  size_t left_buffered = 0;
  {
    auto engine = LmdbEngine::Open(options);
    REQUIRE(engine.ok());
    LmdbEngine& e = **engine;
    PutLargeValues(e, kKeys);
    absl::Status started = e.StartFlush();
    int flushes = 0;
    while (started.ok() && writer.holding()) {
      REQUIRE(++flushes < 64);
      writer.Release();
      started = e.StartFlush();
    }
    CHECK(started.code() == absl::StatusCode::kResourceExhausted);
    left_buffered = e.buffered_objects();
    CHECK(left_buffered > 0);
    CHECK(left_buffered < kKeys);
    for (int i = 0; i < kKeys; ++i) CheckHolds(e, "large" + std::to_string(i), LargeValue(i));
    CHECK(e.Flush().code() == absl::StatusCode::kResourceExhausted);
    CHECK(e.buffered_objects() == left_buffered);
  }
  CHECK(LargeValuesOnDisk(options) == kKeys - left_buffered);
}

TEST_CASE("LmdbEngine background flush: a map another process grew is adopted", "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kBuffered);  // 1 MiB map
  HeldFlushWriter writer;
  options.flush_writer = &writer;
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  LmdbEngine& e = **engine;
  REQUIRE(e.Put("a", {MakeVersion(1, 1)}, WriteOptions()).ok());
  REQUIRE(e.StartFlush().ok());
  // Another process grows the map and fills it past this process's map
  // while a flush is in flight: the writer's next transaction finds the map
  // resized (LMDB reports it once the data outgrows the caller's map).
  constexpr size_t kGrownBytes = size_t{8} << 20;
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    MDB_env* env = nullptr;
    MDB_txn* txn = nullptr;
    MDB_dbi dbi;
    bool ok = mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 8) == 0 &&
              mdb_env_set_mapsize(env, kGrownBytes) == 0 &&
              mdb_env_open(env, options.path.c_str(), 0, 0644) == 0 &&
              mdb_txn_begin(env, nullptr, 0, &txn) == 0 &&
              mdb_dbi_open(txn, "other", MDB_CREATE, &dbi) == 0;
    std::string value(64 * 1024, 'z');
    for (int i = 0; ok && i < 32; ++i) {  // 2 MiB: past the 1 MiB map
      std::string key = "z" + std::to_string(i);
      MDB_val k{key.size(), key.data()}, v{value.size(), value.data()};
      ok = mdb_put(txn, dbi, &k, &v, 0) == 0;
    }
    ok = ok && mdb_txn_commit(txn) == 0;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  writer.Release();  // runs into MDB_MAP_RESIZED
  REQUIRE(e.StartFlush().ok());
  CHECK(e.map_bytes() == kGrownBytes);
  CHECK(e.buffered_objects() == 1);  // not written yet: the next flush does
  REQUIRE(writer.holding());
  writer.Release();
  REQUIRE(e.Flush().ok());
  CHECK(e.buffered_objects() == 0);
  CHECK(e.Get("a")->size() == 1);
}

TEST_CASE("LmdbEngine background flush: closing waits for the flush in flight", "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kBuffered);
  constexpr int kKeys = 2000;
  {
    FlushWriterThread writer;
    options.flush_writer = &writer;
    auto engine = LmdbEngine::Open(options);
    REQUIRE(engine.ok());
    LmdbEngine& e = **engine;
    for (int i = 0; i < kKeys; ++i) {  // some puts find the buffer full and flush

      REQUIRE(e.Put("k" + std::to_string(i), {MakeVersion(1, 1 + i)}, WriteOptions()).ok());
      if (i % 500 == 0) REQUIRE(e.StartFlush().ok());
    }
    REQUIRE(e.StartFlush().ok());
    // Destroyed here, the engine before its writer: it waits for the flush
    // in flight and writes out the rest.
  }
  options.flush_writer = nullptr;
  auto engine = LmdbEngine::Open(options);
  REQUIRE(engine.ok());
  for (int i = 0; i < kKeys; ++i) {
    auto got = (*engine)->Get("k" + std::to_string(i));
    REQUIRE(got.ok());
    REQUIRE(got->size() == 1);
    CHECK((*got)[0].dot ==
          Dot{1, static_cast<uint64_t>(1 + i), static_cast<int64_t>(1 + i) * 1000});
  }
}

TEST_CASE("LmdbEngine rejects unusable options", "[storage][lmdb]") {
  TempDir dir;
  LmdbOptions options = OptionsAt(dir, LmdbOptions::Durability::kSync);
  options.path = "";
  CHECK(LmdbEngine::Open(options).status().code() == absl::StatusCode::kInvalidArgument);
  options = OptionsAt(dir, LmdbOptions::Durability::kSync);
  options.limits.key_bytes_max = 1000;
  CHECK(LmdbEngine::Open(options).status().code() == absl::StatusCode::kInvalidArgument);
  options = OptionsAt(dir, LmdbOptions::Durability::kSync);
  options.path = dir.path() + "/missing-parent/db";
  CHECK(LmdbEngine::Open(options).status().code() == absl::StatusCode::kUnavailable);
  options = OptionsAt(dir, LmdbOptions::Durability::kBuffered);
  options.flush_transaction_bytes_max = 0;
  CHECK(LmdbEngine::Open(options).status().code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dynamo::testing

// Conformance suite of the StorageEngine contract (storage_engine.h), run
// against MemoryEngine and LmdbEngine in each durability mode, so both
// engines behave identically wherever the contract speaks.
#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "storage/storage_test_util.h"

namespace dynamo::testing {
namespace {

#define ENGINE_TYPES                                                      \
  MemoryFactory, LmdbSyncFactory, LmdbNoSyncFactory, LmdbBufferedFactory, \
      LmdbBackgroundFlushFactory7

const WriteOptions kWrite;

TEMPLATE_TEST_CASE("Put applies the reconciliation rules", "[storage]", ENGINE_TYPES) {
  TestType factory;
  auto engine = factory.Open();
  REQUIRE(engine != nullptr);

  auto got = engine->Get("k");
  REQUIRE(got.ok());
  CHECK(got->empty());

  Version v1 = MakeVersion(1, 1);
  auto put = engine->Put("k", {v1}, kWrite);
  REQUIRE(put.ok());
  CHECK(*put == SiblingSet{v1});

  // A version descending from v1 replaces it.
  Version v2 = MakeVersion(1, 2, Clock({{1, 1}}));
  put = engine->Put("k", {v2}, kWrite);
  REQUIRE(put.ok());
  CHECK(*put == SiblingSet{v2});

  // A dominated version is dropped.
  put = engine->Put("k", {v1}, kWrite);
  REQUIRE(put.ok());
  CHECK(*put == SiblingSet{v2});

  // A concurrent version is kept beside it.
  Version w1 = MakeVersion(2, 1);
  put = engine->Put("k", {w1}, kWrite);
  REQUIRE(put.ok());
  CHECK(put->size() == 2);
  got = engine->Get("k");
  REQUIRE(got.ok());
  CHECK(*got == SiblingSet{v2, w1});

  // A write that saw both replaces both.
  Version v3 = MakeVersion(1, 3, Clock({{1, 2}, {2, 1}}));
  put = engine->Put("k", {v3}, kWrite);
  REQUIRE(put.ok());
  CHECK(*put == SiblingSet{v3});
  got = engine->Get("k");
  REQUIRE(got.ok());
  CHECK(*got == SiblingSet{v3});
  CHECK(got->front().value == v3.value);
  CHECK(got->front().dot.timestamp_us == v3.dot.timestamp_us);

  // Other keys are untouched.
  got = engine->Get("other");
  REQUIRE(got.ok());
  CHECK(got->empty());
}

TEMPLATE_TEST_CASE("Visit and PutAndVisit show what Get and Put return", "[storage]",
                   ENGINE_TYPES) {
  TestType factory;
  factory.limits.siblings_max = 2;
  auto engine = factory.Open();
  REQUIRE(engine != nullptr);

  int calls = 0;
  SiblingSet seen = {MakeVersion(9, 9)};
  REQUIRE(engine->Visit("k", [&](const SiblingSet& s) {
    ++calls;
    seen = s;
  }).ok());
  CHECK(calls == 1);
  CHECK(seen.empty());

  Version v1 = MakeVersion(1, 1);
  Version w1 = MakeVersion(2, 1);
  REQUIRE(engine->PutAndVisit("k", {v1}, kWrite, [&](const SiblingSet& s) { seen = s; }).ok());
  CHECK(seen == SiblingSet{v1});
  REQUIRE(engine->PutAndVisit("k", {w1}, kWrite, [&](const SiblingSet& s) { seen = s; }).ok());
  CHECK(seen == SiblingSet{v1, w1});
  // A dominated version changes nothing; the reader still sees the set.
  REQUIRE(engine->PutAndVisit("k", {v1}, kWrite, [&](const SiblingSet& s) { seen = s; }).ok());
  CHECK(seen == SiblingSet{v1, w1});
  REQUIRE(engine->Visit("k", [&](const SiblingSet& s) { seen = s; }).ok());
  CHECK(seen == SiblingSet{v1, w1});
  auto got = engine->Get("k");
  REQUIRE(got.ok());
  CHECK(*got == seen);

  // Past siblings_max: an error, no call, nothing written.
  calls = 0;
  absl::Status over = engine->PutAndVisit("k", {MakeVersion(3, 1)}, kWrite,
                                          [&](const SiblingSet&) { ++calls; });
  CHECK(over.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(calls == 0);
  got = engine->Get("k");
  REQUIRE(got.ok());
  CHECK(*got == SiblingSet{v1, w1});

  // Bad keys are refused as by Get and Put.
  const std::string long_key(factory.limits.key_bytes_max + 1, 'x');
  CHECK(engine->Visit(long_key, [&](const SiblingSet&) { ++calls; }).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(engine->PutAndVisit(long_key, {v1}, kWrite, [&](const SiblingSet&) { ++calls; }).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(calls == 0);
}

TEMPLATE_TEST_CASE("Update builds the write from the stored set in one call", "[storage]",
                   ENGINE_TYPES) {
  TestType factory;
  factory.limits.siblings_max = 2;
  auto engine = factory.Open();
  REQUIRE(engine != nullptr);
  const Version v1 = MakeVersion(1, 1);
  const Version w1 = MakeVersion(2, 1);
  REQUIRE(engine->Put("k", {v1}, kWrite).ok());

  // prepare sees what is stored and fills the incoming set; the reader sees
  // the merge.
  SiblingSet incoming;
  SiblingSet before, after;
  REQUIRE(engine
              ->Update(
                  "k", incoming, kWrite,
                  [&](const SiblingSet& stored) {
                    before = stored;
                    incoming = {MakeVersion(1, 2, Clock({{1, 1}}))};  // supersedes v1
                    return absl::OkStatus();
                  },
                  [&](const SiblingSet& stored) { after = stored; })
              .ok());
  CHECK(before == SiblingSet{v1});
  CHECK(after == incoming);
  auto got = engine->Get("k");
  REQUIRE(got.ok());
  CHECK(*got == incoming);

  // A failed prepare: its status, nothing written, no reader call.
  int reads = 0;
  absl::Status refused = engine->Update(
      "k", incoming, kWrite,
      [&](const SiblingSet&) {
        incoming = {w1};
        return absl::InvalidArgumentError("prepare says no");
      },
      [&](const SiblingSet&) { ++reads; });
  CHECK(refused.code() == absl::StatusCode::kInvalidArgument);
  CHECK(refused.message() == "prepare says no");
  got = engine->Get("k");
  REQUIRE(got.ok());
  CHECK(got->size() == 1);

  // What prepare builds is held to the limits: too many siblings, too large a value.
  REQUIRE(engine->Put("k", {w1}, kWrite).ok());
  auto add = [&](Version v) {
    return engine->Update(
        "k", incoming, kWrite,
        [&](const SiblingSet&) {
          incoming = {v};
          return absl::OkStatus();
        },
        [&](const SiblingSet&) { ++reads; });
  };
  CHECK(add(MakeVersion(3, 1)).code() == absl::StatusCode::kFailedPrecondition);
  Version large = MakeVersion(4, 1);
  large.value.assign(factory.limits.value_bytes_max + 1, 'v');
  CHECK(add(large).code() == absl::StatusCode::kInvalidArgument);
  CHECK(reads == 0);
  got = engine->Get("k");
  REQUIRE(got.ok());
  CHECK(got->size() == 2);

  // A key never written: prepare sees the empty set.
  before = {v1};
  REQUIRE(engine
              ->Update(
                  "fresh", incoming, kWrite,
                  [&](const SiblingSet& stored) {
                    before = stored;
                    incoming = {v1};
                    return absl::OkStatus();
                  },
                  [&](const SiblingSet& stored) { after = stored; })
              .ok());
  CHECK(before.empty());
  CHECK(after == SiblingSet{v1});
}

// A wrapper that overrides only Get and Put, as a fault-injecting test does.
class FailingReadsAndWrites : public StorageEngineWrapper {
 public:
  using StorageEngineWrapper::StorageEngineWrapper;
  absl::StatusOr<SiblingSet> Get(std::string_view key) override {
    if (fail_reads) return absl::DataLossError("injected read fault");
    return StorageEngineWrapper::Get(key);
  }
  absl::StatusOr<SiblingSet> Put(std::string_view key, const SiblingSet& incoming,
                                 const WriteOptions& options) override {
    if (fail_writes) return absl::UnavailableError("injected write fault");
    return StorageEngineWrapper::Put(key, incoming, options);
  }
  bool fail_reads = false;
  bool fail_writes = false;
};

TEST_CASE("Visit, PutAndVisit and Update of a wrapper go through its Get and Put", "[storage]") {
  MemoryEngine engine;
  REQUIRE(engine.Put("k", {MakeVersion(1, 1)}, kWrite).ok());
  FailingReadsAndWrites faulty(&engine);
  int calls = 0;
  auto count = [&](const SiblingSet&) { ++calls; };
  auto prepare = [&](const SiblingSet&) {
    ++calls;
    return absl::OkStatus();
  };
  faulty.fail_reads = true;
  CHECK(faulty.Visit("k", count).code() == absl::StatusCode::kDataLoss);
  // A write reads the key first (to merge into it), so a read fault fails it.
  CHECK(faulty.PutAndVisit("k", {MakeVersion(2, 1)}, kWrite, count).code() ==
        absl::StatusCode::kDataLoss);
  CHECK(calls == 0);
  faulty.fail_reads = false;
  faulty.fail_writes = true;
  CHECK(faulty.PutAndVisit("k", {MakeVersion(2, 1)}, kWrite, count).code() ==
        absl::StatusCode::kUnavailable);
  CHECK(faulty.Update("k", {MakeVersion(2, 1)}, kWrite, prepare, count).code() ==
        absl::StatusCode::kUnavailable);
  CHECK(calls == 1);  // prepare ran, the reader did not
  auto got = engine.Get("k");
  REQUIRE(got.ok());
  CHECK(got->size() == 1);
  faulty.fail_writes = false;
  REQUIRE(faulty.Update("k", {MakeVersion(2, 1)}, kWrite, prepare, count).ok());
  CHECK(calls == 3);
  got = engine.Get("k");
  REQUIRE(got.ok());
  CHECK(got->size() == 2);
}

TEMPLATE_TEST_CASE("siblings_max refuses the put and writes nothing", "[storage]",
                   ENGINE_TYPES) {
  TestType factory;
  factory.limits.siblings_max = 3;
  auto engine = factory.Open();
  REQUIRE(engine != nullptr);
  for (ActorId a = 1; a <= 3; ++a) REQUIRE(engine->Put("k", {MakeVersion(a, 1)}, kWrite).ok());
  auto put = engine->Put("k", {MakeVersion(4, 1)}, kWrite);
  CHECK(put.status().code() == absl::StatusCode::kFailedPrecondition);
  // Several incoming versions at once: all or nothing.
  put = engine->Put("k2", {MakeVersion(1, 1), MakeVersion(2, 1), MakeVersion(3, 1),
                           MakeVersion(4, 1)},
                    kWrite);
  CHECK(put.status().code() == absl::StatusCode::kFailedPrecondition);
  auto got = engine->Get("k");
  REQUIRE(got.ok());
  CHECK(got->size() == 3);
  got = engine->Get("k2");
  REQUIRE(got.ok());
  CHECK(got->empty());
  // A version replacing them all is still accepted.
  put = engine->Put("k", {MakeVersion(5, 1, Clock({{1, 1}, {2, 1}, {3, 1}}))}, kWrite);
  REQUIRE(put.ok());
  CHECK(put->size() == 1);
}

TEMPLATE_TEST_CASE("Replicated versions merge past siblings_max up to replicated_siblings_max",
                   "[storage]", ENGINE_TYPES) {
  TestType factory;
  factory.limits.siblings_max = 3;
  factory.limits.replicated_siblings_max = 5;
  auto engine = factory.Open();
  REQUIRE(engine != nullptr);
  WriteOptions replicated;
  replicated.replicated = true;
  for (ActorId a = 1; a <= 3; ++a) REQUIRE(engine->Put("k", {MakeVersion(a, 1)}, kWrite).ok());
  // Another replica's versions: merged past siblings_max.
  auto put = engine->Put("k", {MakeVersion(4, 1), MakeVersion(5, 1)}, replicated);
  REQUIRE(put.ok());
  CHECK(put->size() == 5);
  // Not past replicated_siblings_max, all or nothing.
  put = engine->Put("k", {MakeVersion(6, 1)}, replicated);
  CHECK(put.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(absl::StrContains(put.status().message(), "replicated_siblings_max 5"));
  // A client's write to a key over siblings_max is refused; one that
  // supersedes the siblings is taken.
  put = engine->Put("k", {MakeVersion(7, 1)}, kWrite);
  CHECK(put.status().code() == absl::StatusCode::kFailedPrecondition);
  auto got = engine->Get("k");
  REQUIRE(got.ok());
  CHECK(got->size() == 5);
  put = engine->Put("k", {MakeVersion(8, 1, Clock({{1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}}))},
                    kWrite);
  REQUIRE(put.ok());
  CHECK(put->size() == 1);
  // A replicated limit below siblings_max counts as siblings_max.
  TestType low;
  low.limits.siblings_max = 3;
  low.limits.replicated_siblings_max = 1;
  auto other = low.Open();
  REQUIRE(other != nullptr);
  put = other->Put("k", {MakeVersion(1, 1), MakeVersion(2, 1), MakeVersion(3, 1)}, replicated);
  CHECK(put.ok());
}

TEMPLATE_TEST_CASE("Keys and values over the limits are invalid arguments", "[storage]",
                   ENGINE_TYPES) {
  TestType factory;
  factory.limits.value_bytes_max = 100;
  auto engine = factory.Open();
  REQUIRE(engine != nullptr);
  const std::string long_key(factory.limits.key_bytes_max + 1, 'k');
  const std::string max_key(factory.limits.key_bytes_max, 'k');
  CHECK(engine->Put(long_key, {MakeVersion(1, 1)}, kWrite).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(engine->Get(long_key).status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(engine->PutHint(7, long_key, {MakeVersion(1, 1)}).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(engine->Put(max_key, {MakeVersion(1, 1)}, kWrite).ok());

  CHECK(engine->Put("k", {MakeVersion(1, 1, {}, std::string(101, 'x'))}, kWrite)
            .status()
            .code() == absl::StatusCode::kInvalidArgument);
  CHECK(engine->PutHint(7, "k", {MakeVersion(1, 1, {}, std::string(101, 'x'))}).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(engine->Put("k", {MakeVersion(1, 1, {}, std::string(100, 'x'))}, kWrite).ok());
  auto got = engine->Get("k");
  REQUIRE(got.ok());
  REQUIRE(got->size() == 1);
  CHECK(got->front().value == std::string(100, 'x'));
}

TEMPLATE_TEST_CASE("Tombstones are kept until reaped", "[storage]", ENGINE_TYPES) {
  TestType factory;
  auto engine = factory.Open();
  REQUIRE(engine != nullptr);
  Version value = MakeVersion(1, 1);
  Version tomb = MakeVersion(2, 1, {}, "", /*tombstone=*/true);
  REQUIRE(engine->Put("k", {value, tomb}, kWrite).ok());
  auto got = engine->Get("k");
  REQUIRE(got.ok());
  CHECK(got->size() == 2);

  // Non-tombstones in the list are ignored; unknown tombstones change nothing.
  REQUIRE(engine->ReapTombstones("k", {value, MakeVersion(3, 1, {}, "", true)}).ok());
  got = engine->Get("k");
  REQUIRE(got.ok());
  CHECK(got->size() == 2);

  REQUIRE(engine->ReapTombstones("k", {tomb}).ok());
  got = engine->Get("k");
  REQUIRE(got.ok());
  CHECK(*got == SiblingSet{value});

  // A key holding only a tombstone disappears once it is reaped.
  Version delete_all = MakeVersion(1, 2, Clock({{1, 1}}), "", true);
  REQUIRE(engine->Put("k", {delete_all}, kWrite).ok());
  got = engine->Get("k");
  REQUIRE(got.ok());
  CHECK(*got == SiblingSet{delete_all});
  REQUIRE(engine->ReapTombstones("k", {delete_all}).ok());
  got = engine->Get("k");
  REQUIRE(got.ok());
  CHECK(got->empty());
  auto scan = engine->Scan(TokenRange{}, "", ScanLimits());
  REQUIRE(scan.ok());
  CHECK(scan->entries.empty());
  REQUIRE(engine->ReapTombstones("missing", {delete_all}).ok());
}

TEMPLATE_TEST_CASE("Erase removes every version", "[storage]", ENGINE_TYPES) {
  TestType factory;
  auto engine = factory.Open();
  REQUIRE(engine != nullptr);
  REQUIRE(engine->Put("a", {MakeVersion(1, 1), MakeVersion(2, 1)}, kWrite).ok());
  REQUIRE(engine->Put("b", {MakeVersion(1, 2)}, kWrite).ok());
  REQUIRE(engine->Erase("a").ok());
  REQUIRE(engine->Erase("never-written").ok());
  auto got = engine->Get("a");
  REQUIRE(got.ok());
  CHECK(got->empty());
  auto scan = engine->Scan(TokenRange{}, "", ScanLimits());
  REQUIRE(scan.ok());
  REQUIRE(scan->entries.size() == 1);
  CHECK(scan->entries[0].key == "b");
  REQUIRE(engine->Flush().ok());
  got = engine->Get("a");
  REQUIRE(got.ok());
  CHECK(got->empty());
}

TEMPLATE_TEST_CASE("Prefetch is only a hint: it creates, changes and reports nothing", "[storage]",
                   ENGINE_TYPES) {
  TestType factory;
  auto engine = factory.Open();
  REQUIRE(engine != nullptr);
  const std::string_view first[] = {"k0", "k1"};
  engine->Prefetch(first);  // on an empty engine
  engine->Prefetch({});
  for (int i = 0; i < 50; ++i) {
    REQUIRE(engine->Put("k" + std::to_string(i), {MakeVersion(1, 1 + i)}, kWrite).ok());
  }
  auto before = engine->Scan(TokenRange{}, "", ScanLimits());
  REQUIRE(before.ok());
  REQUIRE(before->entries.size() == 50);
  // Present, absent, empty, embedded NUL, and longer than any key may be.
  std::vector<std::string> keys;
  for (int i = 0; i < 100; ++i) keys.push_back("k" + std::to_string(i));
  keys.push_back("");
  keys.push_back(std::string("default\0k1", 10));
  keys.push_back(std::string(engine->limits().key_bytes_max + 1, 'x'));
  keys.push_back("k3");  // twice in one batch
  const std::vector<std::string_view> views(keys.begin(), keys.end());
  engine->Prefetch(views);
  auto after = engine->Scan(TokenRange{}, "", ScanLimits());
  REQUIRE(after.ok());
  REQUIRE(after->entries.size() == before->entries.size());
  for (size_t i = 0; i < after->entries.size(); ++i) {
    CHECK(after->entries[i].key == before->entries[i].key);
    CHECK(after->entries[i].siblings == before->entries[i].siblings);
  }
  auto absent = engine->Get("k77");
  REQUIRE(absent.ok());
  CHECK(absent->empty());
}

// Scans every page of `range` and checks each page keeps its limits.
template <typename Engine>
std::vector<KeyEntry> ScanAll(Engine& engine, const TokenRange& range, const ScanLimits& limits) {
  std::vector<KeyEntry> all;
  std::string cursor;
  for (int page = 0; page < 100000; ++page) {
    auto result = engine.Scan(range, cursor, limits);
    REQUIRE(result.ok());
    CHECK(result->entries.size() <= limits.entries_max);
    for (auto& e : result->entries) all.push_back(std::move(e));
    if (result->resume_cursor.empty()) return all;
    CHECK(!result->entries.empty());
    cursor = result->resume_cursor;
  }
  FAIL("scan did not terminate");
  return all;
}

TEMPLATE_TEST_CASE("Scans by token range match brute force (seed 7)", "[storage]",
                   ENGINE_TYPES) {
  TestType factory;
  auto engine = factory.Open();
  REQUIRE(engine != nullptr);
  std::mt19937_64 rng(7);
  // key -> value, the model.
  std::map<std::string, std::string> model;
  const int kKeys = TestType::kLmdb ? 300 : 600;
  for (int i = 0; i < kKeys; ++i) {
    std::string key = "key" + std::to_string(rng() % 100000);
    std::string value(rng() % 200, static_cast<char>('a' + rng() % 26));
    Version v = MakeVersion(1 + rng() % 5, 1 + i, {}, value);
    // Each write dominates whatever was there.
    auto stored = engine->Get(key);
    REQUIRE(stored.ok());
    v.context = MergedClock(*stored);
    REQUIRE(engine->Put(key, {v}, kWrite).ok());
    model[key] = v.value;
  }
  // Erase a few, so the buffered engine has deletions pending too.
  for (int i = 0; i < 20; ++i) {
    auto it = model.begin();
    std::advance(it, static_cast<long>(rng() % model.size()));
    REQUIRE(engine->Erase(it->first).ok());
    model.erase(it);
  }

  // Brute force: the keys of `range` in ring order from the start of the
  // arc (ties by key); the whole ring is scanned from token 0.
  auto expected_keys = [&](const TokenRange& range) {
    std::vector<std::pair<Token, std::string>> keys;
    const Token origin = range.begin == range.end ? Token(0) : range.begin + 1;
    for (const auto& [key, value] : model) {
      if (range.Contains(KeyToken(key))) keys.emplace_back(KeyToken(key) - origin, key);
    }
    std::sort(keys.begin(), keys.end());
    std::vector<std::string> out;
    for (auto& [token, key] : keys) out.push_back(key);
    return out;
  };

  std::vector<TokenRange> ranges = {
      TokenRange{},                                    // whole ring
      TokenRange{12345, 12345},                        // whole ring, begin == end != 0
      TokenRange{0, absl::Uint128Max()},               // all but token 0
      TokenRange{absl::Uint128Max(), 0},               // wraps: only token 0
      TokenRange{absl::Uint128Max() / 2, absl::Uint128Max() / 4},  // wraps, most of the ring
  };
  // Ranges whose ends are exactly keys' tokens: begin excluded, end included.
  auto key_at = [&](size_t i) {
    auto it = model.begin();
    std::advance(it, static_cast<long>(i % model.size()));
    return KeyToken(it->first);
  };
  ranges.push_back(TokenRange{key_at(3), key_at(50)});
  ranges.push_back(TokenRange{key_at(50), key_at(3)});
  for (int i = 0; i < 20; ++i) {
    Token a = absl::MakeUint128(rng(), rng()), b = absl::MakeUint128(rng(), rng());
    ranges.push_back(TokenRange{a, b});
  }

  for (const TokenRange& range : ranges) {
    INFO("range (" << TokenToString(range.begin) << ", " << TokenToString(range.end) << "]");
    std::vector<std::string> want = expected_keys(range);
    for (ScanLimits limits : {ScanLimits(), ScanLimits{7, 1 << 20}, ScanLimits{1000, 700},
                              ScanLimits{1, 1}}) {
      std::vector<KeyEntry> got = ScanAll(*engine, range, limits);
      std::vector<std::string> got_keys;
      for (const KeyEntry& e : got) {
        got_keys.push_back(e.key);
        REQUIRE(e.siblings.size() == 1);
        CHECK(e.siblings[0].value == model.at(e.key));
      }
      CHECK(got_keys == want);
    }
  }

  // A cursor from another range is refused.
  auto bad = engine->Scan(TokenRange{5, 10}, std::string(16, '\xff') + "x", ScanLimits());
  CHECK(bad.status().code() == absl::StatusCode::kInvalidArgument);
  bad = engine->Scan(TokenRange{}, "short", ScanLimits());
  CHECK(bad.status().code() == absl::StatusCode::kInvalidArgument);
}

TEMPLATE_TEST_CASE("Hints merge, scan in (owner, token, key) order and delete", "[storage]",
                   ENGINE_TYPES) {
  TestType factory;
  auto engine = factory.Open();
  REQUIRE(engine != nullptr);
  auto usage = engine->GetHintUsage();
  REQUIRE(usage.ok());
  CHECK(usage->count == 0);
  CHECK(usage->bytes == 0);

  std::set<std::tuple<NodeId, Token, std::string>> want;
  for (int i = 0; i < 40; ++i) {
    NodeId owner = 1 + i % 3;
    std::string key = "hint" + std::to_string(i);
    REQUIRE(engine->PutHint(owner, key, {MakeVersion(9, 1 + i)}).ok());
    want.emplace(owner, KeyToken(key), key);
  }
  usage = engine->GetHintUsage();
  REQUIRE(usage.ok());
  CHECK(usage->count == 40);
  CHECK(usage->bytes > 0);

  std::vector<std::tuple<NodeId, Token, std::string>> got;
  std::string cursor;
  do {
    auto page = engine->ScanHints(cursor, ScanLimits{6, 1 << 20});
    REQUIRE(page.ok());
    CHECK(page->entries.size() <= 6);
    for (const HintEntry& e : page->entries) got.emplace_back(e.owner, KeyToken(e.key), e.key);
    cursor = page->resume_cursor;
  } while (!cursor.empty());
  CHECK(got == std::vector<std::tuple<NodeId, Token, std::string>>(want.begin(), want.end()));

  // A hint delivered while a concurrent version arrived keeps that version.
  Version first = MakeVersion(1, 1), concurrent = MakeVersion(2, 1);
  REQUIRE(engine->PutHint(5, "h", {first}).ok());
  REQUIRE(engine->PutHint(5, "h", {concurrent}).ok());
  REQUIRE(engine->DeleteHint(5, "h", {first}).ok());
  auto page = engine->ScanHints("", ScanLimits{1000, 1 << 20});
  REQUIRE(page.ok());
  auto it = std::find_if(page->entries.begin(), page->entries.end(),
                         [](const HintEntry& e) { return e.owner == 5; });
  REQUIRE(it != page->entries.end());
  CHECK(it->siblings == SiblingSet{concurrent});
  // A newer version merged in since delivery replaces the delivered one and stays.
  Version newer = MakeVersion(2, 2, Clock({{2, 1}}));
  REQUIRE(engine->PutHint(5, "h", {newer}).ok());
  REQUIRE(engine->DeleteHint(5, "h", {concurrent}).ok());
  page = engine->ScanHints("", ScanLimits{1000, 1 << 20});
  REQUIRE(page.ok());
  it = std::find_if(page->entries.begin(), page->entries.end(),
                    [](const HintEntry& e) { return e.owner == 5; });
  REQUIRE(it != page->entries.end());
  CHECK(it->siblings == SiblingSet{newer});
  REQUIRE(engine->DeleteHint(5, "h", {newer}).ok());
  // Delivering everything empties the namespace and its usage.
  for (const auto& [owner, token, key] : want) {
    auto hint = engine->ScanHints("", ScanLimits{1, 1 << 20});
    REQUIRE(hint.ok());
    REQUIRE(hint->entries.size() == 1);
    CHECK(hint->entries[0].key == key);
    REQUIRE(engine->DeleteHint(owner, key, hint->entries[0].siblings).ok());
  }
  REQUIRE(engine->DeleteHint(77, "absent", {first}).ok());
  usage = engine->GetHintUsage();
  REQUIRE(usage.ok());
  CHECK(usage->count == 0);
  CHECK(usage->bytes == 0);
  page = engine->ScanHints("", ScanLimits());
  REQUIRE(page.ok());
  CHECK(page->entries.empty());
  CHECK(page->resume_cursor.empty());
  // Hints do not show up as data.
  auto scan = engine->Scan(TokenRange{}, "", ScanLimits());
  REQUIRE(scan.ok());
  CHECK(scan->entries.empty());
}

TEMPLATE_TEST_CASE("Metadata and identity", "[storage]", ENGINE_TYPES) {
  TestType factory;
  auto engine = factory.Open();
  REQUIRE(engine != nullptr);
  auto meta = engine->GetMetadata("ring");
  REQUIRE(meta.ok());
  CHECK(!meta->has_value());
  REQUIRE(engine->PutMetadata("ring", "state-1").ok());
  REQUIRE(engine->PutMetadata("ring", std::string("state\0-2", 8)).ok());
  REQUIRE(engine->PutMetadata(std::string("\0format", 7), "mine").ok());
  meta = engine->GetMetadata("ring");
  REQUIRE(meta.ok());
  CHECK(meta->value() == std::string("state\0-2", 8));
  meta = engine->GetMetadata(std::string("\0format", 7));
  REQUIRE(meta.ok());
  CHECK(meta->value() == "mine");

  auto id = engine->GetIdentity();
  REQUIRE(id.ok());
  CHECK(!id->has_value());
  NodeIdentity identity{42, 3, 0xdeadbeefcafeULL};
  REQUIRE(engine->PutIdentity(identity).ok());
  id = engine->GetIdentity();
  REQUIRE(id.ok());
  CHECK(id->value() == identity);
}

TEMPLATE_TEST_CASE("Everything survives closing and reopening", "[storage]", ENGINE_TYPES) {
  TestType factory;
  Version v = MakeVersion(1, 1, Clock({{3, 4}}), "persisted");
  Version w = MakeVersion(2, 5, {}, "", true);
  NodeIdentity identity{7, 1, 99, 20000};  // the counter lease end survives too
  HintUsage usage_before;
  {
    auto engine = factory.Open();
    REQUIRE(engine != nullptr);
    REQUIRE(engine->Put("k", {v, w}, kWrite).ok());
    for (int i = 0; i < 20; ++i) {
      REQUIRE(engine->Put("n" + std::to_string(i), {MakeVersion(1, 2 + i)}, kWrite).ok());
    }
    REQUIRE(engine->PutHint(3, "hk", {v}).ok());
    REQUIRE(engine->PutMetadata("m", "meta").ok());
    REQUIRE(engine->PutIdentity(identity).ok());
    usage_before = *engine->GetHintUsage();
    // No Flush(): closing the engine writes out a buffer.
  }
  auto engine = factory.Open();
  REQUIRE(engine != nullptr);
  auto got = engine->Get("k");
  REQUIRE(got.ok());
  CHECK(*got == SiblingSet{v, w});
  CHECK(got->front().context.entries() == v.context.entries());
  auto scan = engine->Scan(TokenRange{}, "", ScanLimits());
  REQUIRE(scan.ok());
  CHECK(scan->entries.size() == 21);
  auto hints = engine->ScanHints("", ScanLimits());
  REQUIRE(hints.ok());
  REQUIRE(hints->entries.size() == 1);
  CHECK(hints->entries[0].owner == 3);
  CHECK(hints->entries[0].siblings == SiblingSet{v});
  auto usage = engine->GetHintUsage();
  REQUIRE(usage.ok());
  CHECK(usage->count == usage_before.count);
  CHECK(usage->bytes == usage_before.bytes);
  CHECK(engine->GetMetadata("m")->value() == "meta");
  CHECK(engine->GetIdentity()->value() == identity);
}

TEMPLATE_TEST_CASE("Durable writes and Flush succeed", "[storage]", ENGINE_TYPES) {
  TestType factory;
  auto engine = factory.Open();
  REQUIRE(engine != nullptr);
  WriteOptions durable;
  durable.durable = true;
  REQUIRE(engine->Put("a", {MakeVersion(1, 1)}, kWrite).ok());
  auto put = engine->Put("b", {MakeVersion(1, 2)}, durable);
  REQUIRE(put.ok());
  CHECK(put->size() == 1);
  REQUIRE(engine->Flush().ok());
  REQUIRE(engine->Flush().ok());
  CHECK(engine->Get("a")->size() == 1);
  CHECK(engine->Get("b")->size() == 1);
}

TEST_CASE("MemoryEngine is small when empty", "[storage]") {
  CHECK(sizeof(MemoryEngine) <= 320);
  auto engine = MemoryEngine::Create();
  REQUIRE(engine.ok());
  CHECK((*engine)->key_count() == 0);
}

// An entry holds its key's bytes after its sibling set: keys of every length,
// keys that differ only in their last byte or around a NUL (a bucket's
// separator), and keys erased and written again must stay apart.
TEST_CASE("MemoryEngine keeps keys of every length apart through churn (seed 11)", "[storage]") {
  MemoryEngine engine;
  std::mt19937_64 rng(11);
  std::vector<std::string> keys;
  for (size_t length = 0; length <= 40; ++length) {
    std::string key = "b";
    key.push_back('\0');
    key.append(length, 'k');
    keys.push_back(key);
    key.back() = 'j';
    keys.push_back(key);
  }
  std::map<std::string, std::string> model;  // key -> value
  for (uint64_t step = 1; step <= 3000; ++step) {
    const std::string& key = keys[rng() % keys.size()];
    if (rng() % 3 == 0) {
      REQUIRE(engine.Erase(key).ok());
      model.erase(key);
    } else {
      // A new actor per step: concurrent with what is stored, so erase
      // first to keep one version per key.
      REQUIRE(engine.Erase(key).ok());
      const std::string value = std::to_string(step);
      REQUIRE(engine.Put(key, {MakeVersion(step, 1, {}, value)}, kWrite).ok());
      model[key] = value;
    }
  }
  CHECK(engine.key_count() == model.size());
  for (const std::string& key : keys) {
    absl::StatusOr<SiblingSet> got = engine.Get(key);
    REQUIRE(got.ok());
    auto it = model.find(key);
    if (it == model.end()) {
      CHECK(got->empty());
    } else {
      REQUIRE(got->size() == 1);
      CHECK(got->front().value == it->second);
    }
  }
  absl::StatusOr<ScanResult> scan = engine.Scan(TokenRange{}, "", ScanLimits());
  REQUIRE(scan.ok());
  std::map<std::string, std::string> scanned;
  for (const KeyEntry& entry : scan->entries) {
    REQUIRE(entry.siblings.size() == 1);
    CHECK(scanned.emplace(entry.key, entry.siblings.front().value).second);
  }
  CHECK(scanned == model);
}

TEST_CASE("MemoryEngine bytes_max: a write past it fails and changes nothing", "[storage]") {
  MemoryEngine engine(StorageLimits(), 2000);
  const std::string value(100, 'x');
  int stored = 0;
  absl::Status full;
  for (int i = 0; i < 100 && full.ok(); ++i) {
    absl::StatusOr<SiblingSet> put =
        engine.Put("k" + std::to_string(i), {MakeVersion(1, i + 1, {}, value)}, kWrite);
    if (put.ok()) {
      stored++;
    } else {
      full = put.status();
    }
  }
  REQUIRE(absl::IsResourceExhausted(full));
  CHECK(absl::StrContains(full.message(), "bytes_max 2000"));
  CHECK(absl::StrContains(full.message(), "k" + std::to_string(stored)));
  CHECK(stored >= 8);
  CHECK(engine.bytes() <= 2000);
  CHECK(engine.key_count() == static_cast<size_t>(stored));
  CHECK(engine.Get("k" + std::to_string(stored))->empty());
  CHECK(engine.Get("k0")->at(0).value == value);

  // Replacing a version by a descendant needs room only for what it adds
  // (a clock entry); a concurrent sibling needs room for itself, and leaves
  // the key as it was.
  const uint64_t before = engine.bytes();
  REQUIRE(engine.Put("k0", {MakeVersion(1, 500, Clock({{1, 1}}), value)}, kWrite).ok());
  CHECK(engine.bytes() == before + 12);
  absl::StatusOr<SiblingSet> sibling = engine.Put("k1", {MakeVersion(2, 1, {}, value)}, kWrite);
  CHECK(absl::IsResourceExhausted(sibling.status()));
  CHECK(engine.Get("k1")->size() == 1);
  // Hints count too.
  CHECK(absl::IsResourceExhausted(engine.PutHint(7, "h", {MakeVersion(3, 1, {}, value)})));
  CHECK(engine.GetHintUsage()->count == 0);

  // Erasing makes room; tombstones reaped give their bytes back.
  REQUIRE(engine.Erase("k1").ok());
  REQUIRE(engine.Put("k" + std::to_string(stored), {MakeVersion(1, 900, {}, value)}, kWrite).ok());
  Version dead = MakeVersion(1, 901, Clock({{1, 900}}), "", true);
  REQUIRE(engine.Put("k" + std::to_string(stored), {dead}, kWrite).ok());
  REQUIRE(engine.ReapTombstones("k" + std::to_string(stored), {dead}).ok());
  for (int i = 0; i < stored; ++i) REQUIRE(engine.Erase("k" + std::to_string(i)).ok());
  CHECK(engine.key_count() == 0);
  CHECK(engine.bytes() == 0);
}

}  // namespace
}  // namespace dynamo::testing

// LmdbEngine's write buffer (write_buffer.h): hashed point lookups and an
// order of the dirty entries sorted on demand must agree with plain ordered
// sets through inserts, entries turning dirty and clean, erases, flushed
// prefixes and dropped clean copies, including keys whose first 8 bytes tie
// (the integer prefix the order compares first).
#include "storage/write_buffer.h"

#include <catch2/catch.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace dynamo::internal {
namespace {

std::vector<std::string> DirtyInOrder(WriteBuffer& buffer) {
  std::vector<std::string> keys;
  for (const WriteBuffer::Ordered& o : buffer.InOrder()) {
    CHECK(o.entry->second.dirty);
    keys.push_back(std::string(o.entry->first.view()));
  }
  return keys;
}

std::string RandomElement(const std::set<std::string>& keys, std::mt19937_64& rng) {
  auto it = keys.begin();
  std::advance(it, static_cast<ptrdiff_t>(rng() % keys.size()));
  return *it;
}

TEST_CASE("WriteBuffer keeps its dirty keys in order through every change (seed 11)", "[storage]") {
  std::mt19937_64 rng(11);
  // Short keys, and keys sharing their first 8 bytes, besides random ones.
  auto random_key = [&] {
    std::string key;
    switch (rng() % 3) {
      case 0:
        key = "prefix!!";  // 8 bytes shared, then a tail (or none)
        break;
      case 1:
        key = std::string(rng() % 3, '\0');
        break;
      default:
        break;
    }
    const size_t tail = rng() % 20;
    for (size_t i = 0; i < tail; ++i) key.push_back(static_cast<char>(rng() % 4));
    return key;
  };
  WriteBuffer buffer;
  std::set<std::string> dirty, clean;
  std::set<std::string> deleting;  // dirty keys with an empty set
  for (int round = 0; round < 400; ++round) {
    const int inserts = static_cast<int>(rng() % 20);
    for (int i = 0; i < inserts; ++i) {
      std::string key = random_key();
      WriteBuffer::Entry* found = buffer.Find(key);
      if (found != nullptr) {
        REQUIRE(dirty.count(key) + clean.count(key) == 1);
        REQUIRE(found->second.dirty == (dirty.count(key) == 1));
        if (!found->second.dirty) {  // a put on a clean copy
          buffer.MarkDirty(*found);
          clean.erase(key);
          dirty.insert(key);
        }
        continue;
      }
      SiblingSet siblings;
      if (rng() % 5 == 0) {
        deleting.insert(key);
      } else {
        Version v;
        v.dot = Dot{1, static_cast<uint64_t>(round), 0};
        siblings.push_back(v);
      }
      buffer.Insert(key, std::move(siblings));
      dirty.insert(key);
    }
    if (rng() % 4 == 0 && !dirty.empty()) {
      const std::string victim = RandomElement(dirty, rng);
      if (rng() % 2 == 0 || deleting.count(victim) == 1) {
        buffer.Erase(victim);
        REQUIRE(buffer.Find(victim) == nullptr);
        dirty.erase(victim);
        deleting.erase(victim);
      } else {  // an undone write on a key that was clean
        WriteBuffer::Entry* found = buffer.Find(victim);
        REQUIRE(found != nullptr);
        buffer.Restore(*found, WriteBuffer::Slot{found->second.siblings, /*dirty=*/false});
        dirty.erase(victim);
        clean.insert(victim);
      }
    }
    if (rng() % 10 == 0) {
      buffer.DropClean();
      for (const std::string& key : clean) REQUIRE(buffer.Find(key) == nullptr);
      clean.clear();
    }
    REQUIRE(buffer.dirty_count() == dirty.size());
    REQUIRE(buffer.clean_count() == clean.size());
    if (rng() % 2 == 0) continue;  // let unsorted keys pile up
    REQUIRE(DirtyInOrder(buffer) == std::vector<std::string>(dirty.begin(), dirty.end()));
    const std::string probe = random_key();
    const bool exclusive = rng() % 2 == 0;
    auto expected = exclusive ? dirty.upper_bound(probe) : dirty.lower_bound(probe);
    CHECK(buffer.LowerBound(probe, exclusive) ==
          static_cast<size_t>(std::distance(dirty.begin(), expected)));
    if (rng() % 5 == 0) {  // a flushed batch: deletions go, the rest turn clean
      const size_t n = rng() % (dirty.size() + 1);
      buffer.MarkWrittenFirstInOrder(n);
      for (size_t i = 0; i < n; ++i) {
        const std::string key = *dirty.begin();
        dirty.erase(dirty.begin());
        if (deleting.erase(key) == 1) {
          REQUIRE(buffer.Find(key) == nullptr);
        } else {
          clean.insert(key);
        }
      }
      REQUIRE(DirtyInOrder(buffer) == std::vector<std::string>(dirty.begin(), dirty.end()));
    }
  }
  for (const std::string& key : dirty) {
    const WriteBuffer::Entry* found = buffer.Find(key);
    REQUIRE(found != nullptr);
    CHECK(found->second.dirty);
    CHECK(found->second.siblings.size() == (deleting.count(key) == 1 ? 0u : 1u));
  }
  for (const std::string& key : clean) {
    const WriteBuffer::Entry* found = buffer.Find(key);
    REQUIRE(found != nullptr);
    CHECK(!found->second.dirty);
    CHECK(found->second.siblings.size() == 1);
  }
  CHECK(buffer.size() == dirty.size() + clean.size());
}

TEST_CASE(
    "WriteBuffer marks written only the sets a background flush took and nobody changed since",
    "[storage]") {
  WriteBuffer buffer;
  Version v;
  v.dot = Dot{1, 1, 0};
  for (const char* key : {"a", "b", "c", "e"}) buffer.Insert(key, {v});
  buffer.Insert("d", {});  // a delete
  REQUIRE(DirtyInOrder(buffer) == std::vector<std::string>{"a", "b", "c", "d", "e"});
  // The flush takes these five; then b changes and f arrives (unsorted).
  const uint64_t taken = buffer.last_stamp();
  buffer.MarkDirty(*buffer.Find("b"));
  buffer.Insert("f", {v});
  std::vector<std::string> seen;
  auto see = [&](const WriteBuffer::Entry& entry) { seen.push_back(std::string(entry.first.view())); };
  // Its transactions committed up to "d".
  buffer.MarkWrittenUpTo(taken, std::string_view("d"), see);
  CHECK(seen == std::vector<std::string>{"a", "c", "d"});
  CHECK(DirtyInOrder(buffer) == std::vector<std::string>{"b", "e", "f"});
  REQUIRE(buffer.Find("a") != nullptr);
  CHECK(!buffer.Find("a")->second.dirty);
  CHECK(buffer.Find("d") == nullptr);  // the delete went out: nothing left to hold
  CHECK(buffer.Find("b")->second.dirty);
  // The whole batch committed: e too, but not b and f, changed after.
  seen.clear();
  buffer.MarkWrittenUpTo(taken, std::nullopt, see);
  CHECK(seen == std::vector<std::string>{"e"});
  CHECK(DirtyInOrder(buffer) == std::vector<std::string>{"b", "f"});
  CHECK(buffer.clean_count() == 3);
  // A restored slot counts as a change too.
  const uint64_t before_restore = buffer.last_stamp();
  buffer.Restore(*buffer.Find("b"), WriteBuffer::Slot{{v}, /*dirty=*/true});
  buffer.MarkWrittenUpTo(before_restore, std::nullopt, see);
  CHECK(DirtyInOrder(buffer) == std::vector<std::string>{"b"});
}

}  // namespace
}  // namespace dynamo::internal

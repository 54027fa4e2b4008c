// LmdbEngine's write-buffer index (write_buffer.h): hashed point lookups and
// an order sorted on demand must agree with a plain ordered set through
// inserts, single erases and flushed prefixes, including keys whose first 8
// bytes tie (the integer prefix the order compares first).
#include "storage/write_buffer.h"

#include <catch2/catch.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace dynamo::internal {
namespace {

std::vector<std::string> KeysInOrder(WriteBuffer& buffer) {
  std::vector<std::string> keys;
  for (const WriteBuffer::Ordered& o : buffer.InOrder()) keys.push_back(o.entry->first);
  return keys;
}

TEST_CASE("WriteBuffer keeps a sorted order through inserts, erases and flushed batches (seed 11)",
          "[storage]") {
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
  std::set<std::string> model;
  for (int round = 0; round < 300; ++round) {
    const int inserts = static_cast<int>(rng() % 20);
    for (int i = 0; i < inserts; ++i) {
      std::string key = random_key();
      if (buffer.Find(key) != nullptr) {
        REQUIRE(model.count(key) == 1);
        continue;
      }
      REQUIRE(model.count(key) == 0);
      Version v;
      v.dot = Dot{1, static_cast<uint64_t>(round), 0};
      buffer.Insert(key, {v});
      model.insert(key);
    }
    if (rng() % 4 == 0 && !model.empty()) {
      auto victim = model.begin();
      std::advance(victim, static_cast<ptrdiff_t>(rng() % model.size()));
      buffer.Erase(*victim);
      REQUIRE(buffer.Find(*victim) == nullptr);
      model.erase(victim);
    }
    REQUIRE(buffer.size() == model.size());
    if (rng() % 2 == 0) continue;  // let unsorted inserts pile up
    REQUIRE(KeysInOrder(buffer) == std::vector<std::string>(model.begin(), model.end()));
    const std::string probe = random_key();
    const bool exclusive = rng() % 2 == 0;
    auto expected = exclusive ? model.upper_bound(probe) : model.lower_bound(probe);
    CHECK(buffer.LowerBound(probe, exclusive) ==
          static_cast<size_t>(std::distance(model.begin(), expected)));
    if (rng() % 5 == 0) {
      const size_t n = rng() % (model.size() + 1);
      buffer.EraseFirstInOrder(n);
      model.erase(model.begin(), std::next(model.begin(), static_cast<ptrdiff_t>(n)));
      REQUIRE(KeysInOrder(buffer) == std::vector<std::string>(model.begin(), model.end()));
    }
  }
  for (const std::string& key : model) {
    const SiblingSet* found = buffer.Find(key);
    REQUIRE(found != nullptr);
    CHECK(found->size() == 1);
  }
}

}  // namespace
}  // namespace dynamo::internal

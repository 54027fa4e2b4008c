#include "dynamo/merkle_tree.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <set>
#include <string>

#include "xxhash.h"

namespace dynamo {
namespace {

struct KeyState {
  Token token;
  uint64_t hash;
};

// Keys spread over the whole ring, with a version string each.
std::map<std::string, KeyState> MakeKeys(int count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::map<std::string, KeyState> keys;
  for (int i = 0; i < count; ++i) {
    std::string key = "key-" + std::to_string(rng());
    keys[key] = KeyState{KeyToken(key), MerkleTree::KeyHash(key, "v1")};
  }
  return keys;
}

MerkleTree Build(const std::map<std::string, KeyState>& keys, TokenRange range = {},
                 MerkleOptions options = {}) {
  auto tree = MerkleTree::Create(range, options);
  REQUIRE(tree.ok());
  for (const auto& [key, state] : keys) {
    tree->Prefetch(state.token);  // ignored outside the range
    if (range.Contains(state.token)) REQUIRE(tree->Update(state.token, 0, state.hash).ok());
  }
  return *std::move(tree);
}

// Runs a diff to completion, the remote answering each request.
MerkleDiff RunDiff(const MerkleTree& local, const MerkleTree& remote,
                   MerkleDiff::Options options = {}) {
  MerkleDiff diff(&local, options);
  std::vector<uint64_t> reply;
  for (int round = 0; !diff.done(); ++round) {
    REQUIRE(round < 1000);
    REQUIRE(remote.AnswerRequest(diff.request(), &reply).ok());
    REQUIRE(diff.AcceptReply(reply).ok());
  }
  return diff;
}

TEST_CASE("MerkleTree finds exactly the leaves of planted differences") {
  const auto keys = MakeKeys(20000, 1);
  const MerkleTree local = Build(keys);
  for (int k : {1, 10, 100}) {
    INFO("k = " << k);
    std::mt19937_64 rng(100 + k);
    MerkleTree remote = local;
    std::set<uint64_t> expected;
    std::vector<std::string> names;
    for (const auto& [key, state] : keys) names.push_back(key);
    std::set<std::string> picked;
    while (static_cast<int>(picked.size()) < k) picked.insert(names[rng() % names.size()]);
    int i = 0;
    for (const std::string& key : picked) {
      const KeyState& s = keys.at(key);
      switch (i++ % 3) {
        case 0:  // a newer version on the remote
          REQUIRE(remote.Update(s.token, s.hash, MerkleTree::KeyHash(key, "v2")).ok());
          break;
        case 1:  // deleted (never written) on the remote
          REQUIRE(remote.Update(s.token, s.hash, 0).ok());
          break;
        default: {  // a key only the remote has
          std::string extra = key + "-extra";
          REQUIRE(remote.Update(KeyToken(extra), 0, MerkleTree::KeyHash(extra, "v1")).ok());
          expected.insert(remote.LeafOf(KeyToken(extra)));
          continue;
        }
      }
      expected.insert(local.LeafOf(s.token));
    }
    MerkleDiff diff = RunDiff(local, remote);
    CHECK(std::set<uint64_t>(diff.differing_leaves().begin(), diff.differing_leaves().end()) ==
          expected);
    CHECK(diff.differing_leaves().size() == expected.size());
    CHECK(std::is_sorted(diff.differing_leaves().begin(), diff.differing_leaves().end()));
    CHECK(diff.rounds() == 5);  // root + 4 levels, batches never full here
    // Cost: at most fanout hashes per differing node per level.
    CHECK(diff.leaves_compared() <= 16 * expected.size());
    CHECK(diff.hashes_exchanged() <= 1 + 4 * 16 * expected.size());
    // Symmetric: the remote finds the same leaves.
    MerkleDiff back = RunDiff(remote, local);
    CHECK(back.differing_leaves() == diff.differing_leaves());
  }
}

TEST_CASE("MerkleTree diff of identical trees takes one round") {
  const auto keys = MakeKeys(5000, 2);
  MerkleTree a = Build(keys), b = Build(keys);
  MerkleDiff diff = RunDiff(a, b);
  CHECK(diff.rounds() == 1);
  CHECK(diff.hashes_exchanged() == 1);
  CHECK(diff.differing_leaves().empty());
  CHECK(a.Root() != 0);
  CHECK(a.key_count() == 5000);
}

TEST_CASE("MerkleTree root does not depend on insertion order") {
  auto keys = MakeKeys(3000, 3);
  std::vector<std::pair<std::string, KeyState>> order(keys.begin(), keys.end());
  MerkleTree forward = Build(keys);
  std::mt19937_64 rng(33);
  std::shuffle(order.begin(), order.end(), rng);
  auto shuffled = MerkleTree::Create(TokenRange{});
  REQUIRE(shuffled.ok());
  // Interleave writes of an older version that is then replaced.
  for (const auto& [key, s] : order) {
    uint64_t old = MerkleTree::KeyHash(key, "v0");
    shuffled->Prefetch(s.token);  // a hint: changes nothing
    REQUIRE(shuffled->Update(s.token, 0, old).ok());
    REQUIRE(shuffled->Update(s.token, old, s.hash).ok());
  }
  CHECK(shuffled->Root() == forward.Root());
  for (int level = 0; level <= 4; ++level) {
    for (uint64_t i = 0; i < forward.NodesAt(level); i += 97) {
      CHECK(shuffled->Hash(level, i) == forward.Hash(level, i));
    }
  }
}

TEST_CASE("MerkleTree removal restores the previous root") {
  auto keys = MakeKeys(1000, 4);
  MerkleTree tree = Build(keys);
  const uint64_t before = tree.Root();
  std::vector<uint64_t> level1 = tree.ChildHashes(0, 0);
  Token t = KeyToken("new key");
  uint64_t h = MerkleTree::KeyHash("new key", "v9");
  tree.Prefetch(t);
  CHECK(tree.Root() == before);
  REQUIRE(tree.Update(t, 0, h).ok());
  CHECK(tree.Root() != before);
  CHECK(tree.key_count() == 1001);
  REQUIRE(tree.Update(t, h, 0).ok());
  CHECK(tree.Root() == before);
  CHECK(tree.ChildHashes(0, 0) == level1);
  CHECK(tree.key_count() == 1000);
  // Interior hashes are the XOR of their children.
  uint64_t x = 0;
  for (uint64_t c : tree.ChildHashes(0, 0)) x ^= c;
  CHECK(x == tree.Root());
  tree.Clear();
  CHECK(tree.Root() == 0);
  CHECK(tree.key_count() == 0);
}

TEST_CASE("MerkleTree Prefetch changes no hash, whichever token the next Update names") {
  // A wrapping range, so that token 0 is inside it too.
  const TokenRange range{absl::MakeUint128(0xf000000000000000ULL, 0), absl::MakeUint128(1, 0)};
  auto plain = MerkleTree::Create(range, MerkleOptions{.fanout = 4, .depth = 3});
  auto hinted = MerkleTree::Create(range, MerkleOptions{.fanout = 4, .depth = 3});
  REQUIRE(plain.ok());
  REQUIRE(hinted.ok());
  std::mt19937_64 rng(5);
  const Token tokens[] = {0, range.end, range.begin + 1, absl::MakeUint128(0xf800000000000000ULL, 7)};
  for (int i = 0; i < 200; ++i) {
    const Token t = tokens[rng() % 4];
    const Token prefetched = rng() % 2 ? t : tokens[rng() % 4];  // sometimes another key's
    const uint64_t h = rng() | 1;
    hinted->Prefetch(prefetched);
    CHECK(hinted->Root() == plain->Root());
    REQUIRE(plain->Update(t, 0, h).ok());
    REQUIRE(hinted->Update(t, 0, h).ok());
    REQUIRE(hinted->Root() == plain->Root());
  }
  for (int level = 0; level <= 3; ++level) {
    for (uint64_t i = 0; i < plain->NodesAt(level); ++i) REQUIRE(hinted->Hash(level, i) == plain->Hash(level, i));
  }
}

TEST_CASE("MerkleTree leaves tile its range") {
  std::mt19937_64 rng(5);
  const TokenRange ranges[] = {
      TokenRange{},  // whole ring
      TokenRange{Token(1000), Token(1000 + 4096 * 3 + 17)},
      TokenRange{absl::MakeUint128(0xf000000000000000ull, 5), absl::MakeUint128(0x0fff, 9)},
      TokenRange{Token(7), absl::MakeUint128(3, 0)},
  };
  for (const TokenRange& range : ranges) {
    auto tree = MerkleTree::Create(range, MerkleOptions{.fanout = 8, .depth = 4});
    REQUIRE(tree.ok());
    CHECK(tree->leaf_count() == 4096);
    Token prev_end = range.begin;
    for (uint64_t leaf = 0; leaf < tree->leaf_count(); ++leaf) {
      TokenRange lr = tree->LeafRange(leaf);
      CHECK(lr.begin == prev_end);
      CHECK(lr.begin != lr.end);
      CHECK(tree->LeafOf(lr.end) == leaf);
      CHECK(tree->LeafOf(lr.begin + 1) == leaf);
      prev_end = lr.end;
    }
    CHECK(prev_end == range.end);
    for (int i = 0; i < 2000; ++i) {
      const uint64_t high = rng();  // sequenced: argument order is unspecified
      const Token random = absl::MakeUint128(high, rng());
      const Token size = range.end - range.begin;
      Token t = range.begin + 1 + random % (size == 0 ? ~absl::uint128(0) : size);
      REQUIRE(range.Contains(t));
      CHECK(tree->LeafRange(tree->LeafOf(t)).Contains(t));
    }
  }
}

TEST_CASE("MerkleTree diff over a sub-range with small batches and non-power-of-two fanout") {
  TokenRange range{absl::MakeUint128(1ull << 62, 0), absl::MakeUint128(3ull << 62, 0)};
  MerkleOptions shape{.fanout = 10, .depth = 3};
  auto keys = MakeKeys(20000, 6);
  MerkleTree local = Build(keys, range, shape);
  MerkleTree remote = local;
  std::set<uint64_t> expected;
  int changed = 0;
  for (const auto& [key, s] : keys) {
    if (!range.Contains(s.token) || changed == 40) continue;
    REQUIRE(remote.Update(s.token, s.hash, MerkleTree::KeyHash(key, "v2")).ok());
    expected.insert(local.LeafOf(s.token));
    ++changed;
  }
  REQUIRE(changed == 40);
  MerkleDiff diff = RunDiff(local, remote, MerkleDiff::Options{.request_nodes_max = 7});
  CHECK(std::set<uint64_t>(diff.differing_leaves().begin(), diff.differing_leaves().end()) ==
        expected);
  CHECK(diff.rounds() > 4);
  // A key outside the range is refused.
  CHECK(local.Update(range.begin, 0, 1).code() == absl::StatusCode::kInvalidArgument);
  CHECK(local.Update(range.end + 1, 0, 1).code() == absl::StatusCode::kInvalidArgument);
  CHECK(local.Update(range.end, 0, 1).ok());
}

TEST_CASE("MerkleTree rejects bad shapes, requests and replies") {
  CHECK(MerkleTree::Create({}, MerkleOptions{.fanout = 1, .depth = 4}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(MerkleTree::Create({}, MerkleOptions{.fanout = 16, .depth = 0}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(MerkleTree::Create({}, MerkleOptions{.fanout = 16, .depth = 7}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(MerkleTree::Create(TokenRange{Token(0), Token(100)}, MerkleOptions{.fanout = 16, .depth = 2})
            .status()
            .code() == absl::StatusCode::kInvalidArgument);
  CHECK(MerkleTree::Create(TokenRange{Token(0), Token(256)}, MerkleOptions{.fanout = 16, .depth = 2})
            .ok());
  auto tree = MerkleTree::Create({}, MerkleOptions{.fanout = 4, .depth = 2});
  REQUIRE(tree.ok());
  std::vector<uint64_t> hashes;
  std::vector<MerkleNodeRef> bad = {{0, 0}, {2, 16}};
  CHECK(tree->AnswerRequest(bad, &hashes).code() == absl::StatusCode::kInvalidArgument);
  std::vector<MerkleNodeRef> bad_level = {{3, 0}};
  CHECK(tree->AnswerRequest(bad_level, &hashes).code() == absl::StatusCode::kInvalidArgument);
  std::vector<MerkleNodeRef> negative = {{-1, 0}};
  CHECK(tree->AnswerRequest(negative, &hashes).code() == absl::StatusCode::kInvalidArgument);
  MerkleDiff diff(&*tree);
  std::vector<uint64_t> two = {1, 2};
  CHECK(diff.AcceptReply(two).code() == absl::StatusCode::kInvalidArgument);
  CHECK(diff.request().size() == 1);
  CHECK(MerkleTree::KeyHash("a", "b") != MerkleTree::KeyHash("b", "a"));
  CHECK(MerkleTree::KeyHash("a", "b") != 0);
  SiblingSet siblings(1);
  siblings[0].dot = Dot{.actor = 1, .counter = 2, .timestamp_us = 3};
  siblings[0].value = "x";
  SiblingSet other = siblings;
  other[0].value = "y";
  CHECK(MerkleTree::KeyHash("k", siblings) == MerkleTree::KeyHash("k", siblings));
  // A dot names one value; an exchange could not repair two values under one
  // dot (a merge keeps either), so the value does not take part.
  CHECK(MerkleTree::KeyHash("k", siblings) == MerkleTree::KeyHash("k", other));
  CHECK(MerkleTree::KeyHash("k", siblings) != MerkleTree::KeyHash("j", siblings));
  SiblingSet deleted = siblings;
  deleted[0].tombstone = true;
  CHECK(MerkleTree::KeyHash("k", siblings) != MerkleTree::KeyHash("k", deleted));
  SiblingSet later = siblings;
  later[0].dot.counter = 3;
  CHECK(MerkleTree::KeyHash("k", siblings) != MerkleTree::KeyHash("k", later));
  SiblingSet pair = siblings;
  pair.push_back(later[0]);
  CHECK(MerkleTree::KeyHash("k", pair) != MerkleTree::KeyHash("k", siblings));
  // The context is fixed by the dot, so it does not take part.
  SiblingSet with_context = siblings;
  with_context[0].context.Increment(7, 0);
  CHECK(MerkleTree::KeyHash("k", siblings) == MerkleTree::KeyHash("k", with_context));
}

TEST_CASE("A key's hash is XXH3 of the key and each version's dot and flag, however many") {
  // Small sets are hashed from a stack buffer, large ones streamed: both
  // must be the hash of the same bytes (every replica must agree).
  for (size_t n : {0, 1, 2, 20, 21, 64}) {
    SiblingSet set(n);
    std::string bytes = "key";
    for (size_t i = 0; i < n; ++i) {
      set[i].dot = Dot{.actor = 1000 + i, .counter = 7 * i + 1, .timestamp_us = -static_cast<int64_t>(i)};
      set[i].tombstone = i % 3 == 0;
      for (uint64_t w : {set[i].dot.actor, set[i].dot.counter,
                         static_cast<uint64_t>(set[i].dot.timestamp_us)}) {
        for (int b = 0; b < 8; ++b) bytes.push_back(static_cast<char>(w >> (8 * b)));
      }
      bytes.push_back(set[i].tombstone ? 1 : 0);
    }
    INFO(n << " versions, " << bytes.size() << " bytes");
    uint64_t expected = XXH3_64bits(bytes.data(), bytes.size());
    CHECK(MerkleTree::KeyHash("key", set) == (expected == 0 ? 1 : expected));
  }
}

}  // namespace
}  // namespace dynamo

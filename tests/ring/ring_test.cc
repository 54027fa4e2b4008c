#include "dynamo/ring.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <string>

#include "ring/token_index.h"

namespace dynamo {
namespace {

// The two draws are sequenced explicitly: the evaluation order of function
// arguments differs between compilers (GCC and Clang drew different tokens).
Token RandomTokenFrom(std::mt19937_64& rng) {
  const uint64_t high = rng();
  return absl::MakeUint128(high, rng());
}

RingOptions Options(PartitionStrategy strategy, size_t t = 64, size_t q = 1024,
                    uint64_t seed = 7) {
  RingOptions o;
  o.strategy = strategy;
  o.tokens_per_node = t;
  o.partitions = q;
  o.seed = seed;
  return o;
}

RingMember Member(NodeId id, double weight = 1.0, std::vector<Token> tokens = {}) {
  RingMember m;
  m.id = id;
  m.weight = weight;
  m.tokens = std::move(tokens);
  return m;
}

Ring MakeRing(const RingOptions& o, size_t nodes, size_t zones = 0) {
  Ring ring(o);
  for (size_t i = 1; i <= nodes; ++i) {
    RingMember m;
    m.id = i * 10;
    if (zones > 0) m.zone = "zone-" + std::to_string(i % zones);
    REQUIRE(ring.AddNode(m).ok());
  }
  return ring;
}

// Reference implementation: walk the members' tokens clockwise, the slow and
// obvious way, collecting distinct nodes (no zones).
std::vector<NodeId> BruteForceList(const Ring& ring, Token t, size_t len) {
  std::vector<std::pair<Token, NodeId>> points;
  for (const RingMember& m : ring.members()) {
    for (Token tok : m.tokens) points.emplace_back(tok, m.id);
  }
  std::sort(points.begin(), points.end());
  Token start = t;
  if (ring.options().strategy == PartitionStrategy::kRandomTokensEqualPartitions) {
    start = Ring::PartitionEnd(ring.options().partitions,
                               Ring::PartitionOf(ring.options().partitions, t));
  }
  size_t i = std::lower_bound(points.begin(), points.end(), std::make_pair(start, NodeId{0})) -
             points.begin();
  std::vector<NodeId> out;
  for (size_t step = 0; step < points.size() && out.size() < len; ++step) {
    NodeId id = points[(i + step) % points.size()].second;
    if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
  }
  return out;
}

std::vector<NodeId> Sorted(std::vector<NodeId> v) {
  std::sort(v.begin(), v.end());
  return v;
}

const PartitionStrategy kAllStrategies[] = {PartitionStrategy::kRandomTokens,
                                            PartitionStrategy::kRandomTokensEqualPartitions,
                                            PartitionStrategy::kEqualPartitions};

TEST_CASE("Ring partition convention is exact at every boundary") {
  // Up to the largest ring, and past 2^31, where the ends are computed in
  // 128 bits instead of 64.
  for (size_t q : {size_t{1}, size_t{3}, size_t{7}, size_t{1000}, size_t{1024}, size_t{4097},
                   kRingPartitionsMax - 1, kRingPartitionsMax, (size_t{1} << 31) + 11,
                   (size_t{1} << 40) + 7}) {
    INFO("Q = " << q);
    CHECK(Ring::PartitionEnd(q, q - 1) == ~absl::uint128(0));
    CHECK(Ring::PartitionOf(q, 0) == 0);
    for (size_t i = 0; i < q; i += std::max<size_t>(1, q / 64)) {
      Token end = Ring::PartitionEnd(q, i);
      CHECK(Ring::PartitionOf(q, end) == i);
      if (i + 1 < q) CHECK(Ring::PartitionOf(q, end + 1) == i + 1);
    }
  }
  // Equal partitions: widths differ by at most one token.
  Token w0 = Ring::PartitionEnd(3, 0) + 1;
  Token w1 = Ring::PartitionEnd(3, 1) - Ring::PartitionEnd(3, 0);
  Token w2 = Ring::PartitionEnd(3, 2) - Ring::PartitionEnd(3, 1);
  CHECK(std::max({w0, w1, w2}) - std::min({w0, w1, w2}) <= 1);
}

TEST_CASE("Strategy 3 members hold exactly the partition ends PartitionEnd gives") {
  // The ring computes its partition ends once, in one pass, and assigns
  // them to members; every one must be held, by one member, for Q prime,
  // odd, and a power of two up to 2^20.
  for (size_t q : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{1000}, size_t{1024},
                   size_t{4097}, size_t{65537}, size_t{1} << 20}) {
    INFO("Q = " << q);
    RingOptions o;
    o.strategy = PartitionStrategy::kEqualPartitions;
    o.partitions = q;
    Ring ring(o);
    for (NodeId id = 1; id <= std::min<size_t>(q, 3); ++id) REQUIRE(ring.AddNode(Member(id)).ok());
    if (ring.size() > 1) REQUIRE(ring.RemoveNode(1).ok());  // rebuilt after a removal too
    std::vector<Token> held;
    for (const RingMember& m : ring.members()) {
      held.insert(held.end(), m.tokens.begin(), m.tokens.end());
    }
    std::sort(held.begin(), held.end());
    REQUIRE(held.size() == q);
    size_t mismatches = 0;
    for (size_t p = 0; p < q; ++p) mismatches += held[p] != Ring::PartitionEnd(q, p);
    CHECK(mismatches == 0);
  }
}

TEST_CASE("Ring preference lists match a brute-force walk and hold distinct nodes") {
  std::mt19937_64 rng(1);
  for (PartitionStrategy strategy : kAllStrategies) {
    INFO("strategy " << static_cast<int>(strategy));
    Ring ring = MakeRing(Options(strategy, 32, 256), 10);
    std::vector<NodeId> list;
    for (int i = 0; i < 2000; ++i) {
      Token t = RandomTokenFrom(rng);
      ring.PreferenceList(t, 3, 2, &list);
      REQUIRE(list.size() == 5);
      CHECK(std::set<NodeId>(list.begin(), list.end()).size() == 5);
      CHECK(list == BruteForceList(ring, t, 5));
      // A smaller request is a prefix of the larger one.
      std::vector<NodeId> three;
      ring.PreferenceList(t, 3, 0, &three);
      CHECK(std::equal(three.begin(), three.end(), list.begin()));
    }
    // More replicas than nodes: every node once.
    ring.PreferenceList(Token(5), 20, 4, &list);
    CHECK(list.size() == 10);
    CHECK(std::set<NodeId>(list.begin(), list.end()).size() == 10);
    CHECK(ring.PreferenceList("some key", 3) == BruteForceList(ring, KeyToken("some key"), 3));
  }
}

TEST_CASE("Ring keys on a token belong to that token's range") {
  Ring ring = MakeRing(Options(PartitionStrategy::kRandomTokens, 16), 5);
  std::vector<TokenRange> ranges = ring.Ranges();
  REQUIRE(ranges.size() == 80);
  std::vector<NodeId> at_end, after_begin;
  for (const TokenRange& r : ranges) {
    ring.PreferenceList(r.end, 3, 0, &at_end);
    ring.PreferenceList(r.begin + 1, 3, 0, &after_begin);
    CHECK(at_end == after_begin);
    CHECK(r.Contains(r.end));
    CHECK_FALSE(r.Contains(r.begin));
  }
}

TEST_CASE("Ring ranges tile the token space") {
  for (PartitionStrategy strategy : kAllStrategies) {
    Ring ring = MakeRing(Options(strategy, 16, 100), 6);
    std::vector<TokenRange> ranges = ring.Ranges();
    REQUIRE(!ranges.empty());
    for (size_t i = 0; i < ranges.size(); ++i) {
      CHECK(ranges[i].begin == ranges[(i + ranges.size() - 1) % ranges.size()].end);
      if (i > 0) CHECK(ranges[i].end > ranges[i - 1].end);
    }
    Ring::LoadStats stats = ring.Balance(1);
    double total = 0;
    for (const auto& l : stats.nodes) total += l.primary_share;
    CHECK(total == Approx(1.0).epsilon(1e-9));
  }
}

TEST_CASE("Ring spreads replicas over distinct zones") {
  std::mt19937_64 rng(2);
  for (PartitionStrategy strategy : kAllStrategies) {
    INFO("strategy " << static_cast<int>(strategy));
    Ring three_zones = MakeRing(Options(strategy, 16, 256), 9, 3);
    Ring two_zones = MakeRing(Options(strategy, 16, 256), 9, 2);
    std::map<NodeId, std::string> zone;
    for (const RingMember& m : three_zones.members()) zone[m.id] = m.zone;
    std::vector<NodeId> list;
    for (int i = 0; i < 1000; ++i) {
      Token t = RandomTokenFrom(rng);
      three_zones.PreferenceList(t, 3, 3, &list);
      REQUIRE(list.size() == 6);
      CHECK(std::set<NodeId>(list.begin(), list.end()).size() == 6);
      std::set<std::string> zones = {zone[list[0]], zone[list[1]], zone[list[2]]};
      CHECK(zones.size() == 3);
      // Fewer zones than replicas: both zones still hold a replica.
      two_zones.PreferenceList(t, 3, 0, &list);
      REQUIRE(list.size() == 3);
      CHECK(std::set<NodeId>(list.begin(), list.end()).size() == 3);
      std::set<std::string> zones2;
      for (NodeId id : list) zones2.insert("zone-" + std::to_string((id / 10) % 2));
      CHECK(zones2.size() == 2);
    }
  }
}

TEST_CASE("Ring is deterministic from its seed and restorable from members") {
  std::mt19937_64 rng(3);
  for (PartitionStrategy strategy : kAllStrategies) {
    INFO("strategy " << static_cast<int>(strategy));
    Ring a = MakeRing(Options(strategy, 32, 512, 99), 12, 3);
    Ring b = MakeRing(Options(strategy, 32, 512, 99), 12, 3);
    REQUIRE(a.RemoveNode(50).ok());
    REQUIRE(b.RemoveNode(50).ok());
    CHECK(a.members() == b.members());
    auto restored = Ring::FromMembers(a.options(), a.members());
    REQUIRE(restored.ok());
    CHECK(restored->members() == a.members());
    // Members given in another order restore the same ring.
    std::vector<RingMember> reversed = a.members();
    std::reverse(reversed.begin(), reversed.end());
    auto restored2 = Ring::FromMembers(a.options(), reversed);
    REQUIRE(restored2.ok());
    std::vector<NodeId> x, y, z;
    for (int i = 0; i < 1000; ++i) {
      Token t = RandomTokenFrom(rng);
      a.PreferenceList(t, 3, 2, &x);
      restored->PreferenceList(t, 3, 2, &y);
      restored2->PreferenceList(t, 3, 2, &z);
      CHECK(x == y);
      CHECK(x == z);
    }
    if (strategy != PartitionStrategy::kEqualPartitions) {
      Ring other_seed = MakeRing(Options(strategy, 32, 512, 100), 12, 3);
      CHECK(other_seed.members()[0].tokens != a.members()[0].tokens);
    }
  }
}

TEST_CASE("Ring random tokens of different seeds, nodes and indexes are all distinct") {
  // Rings of neighbouring seeds once drew the same tokens (XXH3's own seed
  // is folded in almost linearly on short inputs): an experiment over seeds
  // 0..9 compared five rings twice.
  std::set<Token> seen;
  size_t drawn = 0;
  for (uint64_t seed = 0; seed < 64; ++seed) {
    for (NodeId id = 1; id <= 4; ++id) {
      for (uint64_t index = 0; index < 64; ++index) {
        seen.insert(Ring::RandomToken(seed, id, index));
        ++drawn;
      }
    }
  }
  CHECK(seen.size() == drawn);
  for (PartitionStrategy strategy : kAllStrategies) {
    INFO("strategy " << static_cast<int>(strategy));
    const Ring zero = MakeRing(Options(strategy, 32, 512, 0), 4);
    const Ring one = MakeRing(Options(strategy, 32, 512, 1), 4);
    CHECK(zero.members() != one.members());
  }
}

TEST_CASE("Ring history replays to the same ring, and ends with explicit tokens") {
  for (PartitionStrategy strategy : kAllStrategies) {
    INFO("strategy " << static_cast<int>(strategy));
    const RingOptions options = Options(strategy, 32, 512, 99);
    Ring ring(options);
    REQUIRE(ring.history().has_value());
    CHECK(ring.history()->empty());
    // Joins out of id order, weights, zones and removals between them.
    std::vector<RingChange> expected;
    for (NodeId id : {30, 10, 70, 20, 50, 60, 40}) {
      RingMember m = Member(id, id == 70 ? 2.5 : 1.0);
      m.zone = "zone-" + std::to_string(id % 3);
      REQUIRE(ring.AddNode(m).ok());
      expected.push_back(RingChange{false, id, m.zone, m.weight});
      if (id == 20) {
        REQUIRE(ring.RemoveNode(30).ok());
        expected.push_back(RingChange{true, 30, "", 0});
      }
    }
    // A refused change is no change.
    CHECK_FALSE(ring.AddNode(Member(10)).ok());
    CHECK_FALSE(ring.RemoveNode(99).ok());
    REQUIRE(ring.history().has_value());
    CHECK(*ring.history() == expected);
    Ring replayed(options);
    for (const RingChange& change : *ring.history()) {
      if (change.remove) {
        REQUIRE(replayed.RemoveNode(change.id).ok());
      } else {
        RingMember m = Member(change.id, change.weight);
        m.zone = change.zone;
        REQUIRE(replayed.AddNode(m).ok());
      }
    }
    CHECK(replayed.members() == ring.members());
    CHECK(replayed.history() == ring.history());

    // Restored tokens were not chosen by a replay: no history, also after
    // later changes. Members without tokens only are an ordinary build.
    auto restored = Ring::FromMembers(options, ring.members());
    REQUIRE(restored.ok());
    CHECK_FALSE(restored->history().has_value());
    REQUIRE(restored->AddNode(Member(80)).ok());
    CHECK_FALSE(restored->history().has_value());
    auto tokenless = Ring::FromMembers(options, {Member(2), Member(1)});
    REQUIRE(tokenless.ok());
    REQUIRE(tokenless->history().has_value());
    CHECK(*tokenless->history() ==
          std::vector<RingChange>{{false, 1, "", 1.0}, {false, 2, "", 1.0}});
    if (strategy != PartitionStrategy::kEqualPartitions) {
      Ring explicit_tokens(options);
      REQUIRE(explicit_tokens.AddNode(Member(1, 1.0, {Token(5), Token(9)})).ok());
      CHECK_FALSE(explicit_tokens.history().has_value());
    }
  }
}

TEST_CASE("Ring strategy 3: a joining node takes about 1/(S+1) of the keys") {
  const size_t s = 10;
  Ring before = MakeRing(Options(PartitionStrategy::kEqualPartitions, 1, 1024), s);
  Ring after = before;
  REQUIRE(after.AddNode(Member(999)).ok());
  std::mt19937_64 rng(4);
  const int keys = 100000;
  int primary_moved = 0, replica_set_changed = 0;
  std::vector<NodeId> x, y;
  for (int i = 0; i < keys; ++i) {
    Token t = KeyToken("key-" + std::to_string(rng()));
    before.PreferenceList(t, 3, 0, &x);
    after.PreferenceList(t, 3, 0, &y);
    if (x[0] != y[0]) {
      ++primary_moved;
      CHECK(y[0] == 999);  // keys only move to the new node
    }
    if (Sorted(x) != Sorted(y)) {
      ++replica_set_changed;
      std::vector<NodeId> sx = Sorted(x), sy = Sorted(y), gained;
      std::set_difference(sy.begin(), sy.end(), sx.begin(), sx.end(), std::back_inserter(gained));
      CHECK(gained == std::vector<NodeId>{999});  // only the joiner gains data
    }
  }
  const double expected = 1.0 / (s + 1);
  CHECK(primary_moved / double(keys) == Approx(expected).margin(0.01));
  CHECK(replica_set_changed / double(keys) <= 3 * expected + 0.02);
  // The partition counts stay within one of each other.
  std::vector<size_t> counts;
  for (const RingMember& m : after.members()) counts.push_back(m.tokens.size());
  CHECK(*std::max_element(counts.begin(), counts.end()) -
            *std::min_element(counts.begin(), counts.end()) <=
        1);
  // Leaving again moves only the leaver's keys, to the least loaded nodes.
  Ring left = after;
  REQUIRE(left.RemoveNode(999).ok());
  int moved_back = 0;
  for (int i = 0; i < 20000; ++i) {
    Token t = KeyToken("k" + std::to_string(i));
    after.PreferenceList(t, 1, 0, &x);
    left.PreferenceList(t, 1, 0, &y);
    if (x != y) {
      ++moved_back;
      CHECK(x[0] == 999);
    }
  }
  CHECK(moved_back / 20000.0 == Approx(expected).margin(0.015));
}

TEST_CASE("Ring weights shift load proportionally") {
  for (PartitionStrategy strategy : kAllStrategies) {
    INFO("strategy " << static_cast<int>(strategy));
    Ring ring(Options(strategy, 256, 4096));
    for (NodeId id = 1; id <= 4; ++id) {
      REQUIRE(ring.AddNode(Member(id, id == 2 ? 2.0 : 1.0)).ok());
    }
    Ring::LoadStats stats = ring.Balance(1);
    REQUIRE(stats.nodes.size() == 4);
    CHECK(stats.nodes[1].primary_share == Approx(0.4).margin(0.05));
    CHECK(stats.nodes[0].primary_share == Approx(0.2).margin(0.04));
    if (strategy != PartitionStrategy::kEqualPartitions) {
      CHECK(ring.members()[1].tokens.size() == 512);
    } else {
      CHECK(ring.members()[1].tokens.size() == Approx(4096 * 0.4).margin(2));
    }
  }
}

TEST_CASE("Ring balance: strategy 3 beats strategy 1 (paper figure 8)") {
  // S = 30 nodes, N = 3 as in the paper; the same number of ring positions.
  const size_t s = 30, t = 32;
  Ring s1 = MakeRing(Options(PartitionStrategy::kRandomTokens, t, 1, 11), s);
  Ring s2 = MakeRing(Options(PartitionStrategy::kRandomTokensEqualPartitions, t, s * t, 11), s);
  Ring s3 = MakeRing(Options(PartitionStrategy::kEqualPartitions, t, s * t, 11), s);
  Ring::LoadStats b1 = s1.Balance(3), b2 = s2.Balance(3), b3 = s3.Balance(3);
  INFO("efficiency s1=" << b1.efficiency << " s2=" << b2.efficiency << " s3=" << b3.efficiency);
  CHECK(b1.mean == Approx(1.0).epsilon(1e-9));
  CHECK(b3.mean == Approx(1.0).epsilon(1e-9));
  CHECK(b3.efficiency > b1.efficiency);
  CHECK(b3.efficiency > 0.9);
  CHECK(b1.efficiency < 0.95);
  CHECK(b3.out_of_balance_count == 0);
  CHECK(b1.out_of_balance_count >= b3.out_of_balance_count);
  CHECK(b2.efficiency > 0.5);
  double replicas = 0;
  for (const auto& l : b3.nodes) replicas += l.replica_share;
  CHECK(replicas == Approx(3.0).epsilon(1e-9));
}

void CheckDiffAgainstBruteForce(const Ring& before, const Ring& after, size_t n,
                                uint64_t seed) {
  std::vector<Ring::RangeMove> moves = Ring::Diff(before, after, n);
  for (size_t i = 1; i < moves.size(); ++i) CHECK(moves[i].range.end > moves[i - 1].range.end);
  std::mt19937_64 rng(seed);
  std::vector<NodeId> x, y;
  auto check_token = [&](Token t) {
    before.PreferenceList(t, n, 0, &x);
    after.PreferenceList(t, n, 0, &y);
    const Ring::RangeMove* hit = nullptr;
    for (const Ring::RangeMove& m : moves) {
      if (m.range.Contains(t)) {
        CHECK(hit == nullptr);  // ranges do not overlap
        hit = &m;
      }
    }
    if (Sorted(x) == Sorted(y)) {
      CHECK(hit == nullptr);
    } else {
      REQUIRE(hit != nullptr);
      CHECK(hit->from == x);
      CHECK(hit->to == y);
    }
  };
  for (int i = 0; i < 5000; ++i) check_token(RandomTokenFrom(rng));
  for (const Ring::RangeMove& m : moves) {  // both ends of every reported range
    check_token(m.range.end);
    check_token(m.range.begin + 1);
  }
}

TEST_CASE("Ring Diff reports exactly the ranges whose replicas changed") {
  for (PartitionStrategy strategy : kAllStrategies) {
    INFO("strategy " << static_cast<int>(strategy));
    Ring before = MakeRing(Options(strategy, 16, 256), 8);
    Ring joined = before;
    REQUIRE(joined.AddNode(Member(5)).ok());
    Ring left = before;
    REQUIRE(left.RemoveNode(30).ok());
    CheckDiffAgainstBruteForce(before, joined, 3, 5);
    CheckDiffAgainstBruteForce(before, left, 3, 6);
    CheckDiffAgainstBruteForce(before, left, 1, 7);
    CHECK(Ring::Diff(before, before, 3).empty());
    CHECK_FALSE(Ring::Diff(before, joined, 3).empty());
  }
  // From nothing: every range moves.
  Ring empty(Options(PartitionStrategy::kEqualPartitions, 1, 16));
  Ring one = empty;
  REQUIRE(one.AddNode(Member(1)).ok());
  auto moves = Ring::Diff(empty, one, 3);
  CHECK(moves.size() == 16);
  CHECK(moves[0].from.empty());
  CHECK(moves[0].to == std::vector<NodeId>{1});
}

TEST_CASE("Ring ReplicatedRanges lists the ranges a node stores") {
  for (PartitionStrategy strategy : kAllStrategies) {
    Ring ring = MakeRing(Options(strategy, 16, 128), 7);
    const size_t n = 3;
    double total = 0;
    std::vector<NodeId> list;
    for (const RingMember& m : ring.members()) {
      std::vector<TokenRange> mine = ring.ReplicatedRanges(m.id, n);
      size_t expected = 0;
      for (const TokenRange& r : ring.Ranges()) {
        ring.PreferenceList(r.end, n, 0, &list);
        if (std::find(list.begin(), list.end(), m.id) != list.end()) ++expected;
      }
      CHECK(mine.size() == expected);
      for (const TokenRange& r : mine) {
        ring.PreferenceList(r.end, n, 0, &list);
        CHECK(std::find(list.begin(), list.end(), m.id) != list.end());
        total += r.end - r.begin == 0 ? 1.0 : std::ldexp(static_cast<double>(r.end - r.begin), -128);
      }
    }
    CHECK(total == Approx(3.0).epsilon(1e-9));
    CHECK(ring.ReplicatedRanges(12345, n).empty());
  }
}

TEST_CASE("Ring rejects bad input with a clear status") {
  Ring ring(Options(PartitionStrategy::kRandomTokens, 4));
  REQUIRE(ring.AddNode(Member(1)).ok());
  CHECK(ring.AddNode(Member(1)).code() == absl::StatusCode::kAlreadyExists);
  CHECK(ring.AddNode(Member(0)).code() == absl::StatusCode::kInvalidArgument);
  CHECK(ring.AddNode(Member(2, 0)).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(ring.AddNode(Member(2, -1)).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(ring.AddNode(Member(2, std::nan(""))).code() ==
        absl::StatusCode::kInvalidArgument);
  Token taken = ring.members()[0].tokens[0];
  absl::Status s = ring.AddNode(Member(2, 1.0, {Token(1), taken}));
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(s.message().find("already taken") != std::string::npos);
  CHECK(ring.AddNode(Member(2, 1.0, {Token(3), Token(3)})).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK_FALSE(ring.Contains(2));
  CHECK(ring.size() == 1);
  CHECK(ring.RemoveNode(42).code() == absl::StatusCode::kNotFound);

  Ring bad_options(Options(PartitionStrategy::kEqualPartitions, 4, 0));
  CHECK(bad_options.AddNode(Member(1)).code() == absl::StatusCode::kInvalidArgument);
  CHECK(Ring::ValidateOptions(Options(PartitionStrategy::kRandomTokens, 0)).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(Ring::ValidateOptions(Options(static_cast<PartitionStrategy>(4))).code() ==
        absl::StatusCode::kInvalidArgument);

  RingOptions q4 = Options(PartitionStrategy::kEqualPartitions, 1, 4);
  Ring s3(q4);
  CHECK(s3.AddNode(Member(1, 1.0, {Ring::PartitionEnd(4, 0)})).code() ==
        absl::StatusCode::kInvalidArgument);
  // FromMembers under strategy 3: partitions must be covered exactly once by end tokens.
  auto uncovered = Ring::FromMembers(q4, {Member(1, 1.0, {Ring::PartitionEnd(4, 0)})});
  CHECK(uncovered.status().code() == absl::StatusCode::kInvalidArgument);
  auto not_end = Ring::FromMembers(q4, {Member(1, 1.0, {Token(17)})});
  CHECK(not_end.status().code() == absl::StatusCode::kInvalidArgument);
  auto twice = Ring::FromMembers(
      q4, {Member(1, 1.0, {Ring::PartitionEnd(4, 0), Ring::PartitionEnd(4, 1)}),
           Member(2, 1.0, {Ring::PartitionEnd(4, 1), Ring::PartitionEnd(4, 2),
                                 Ring::PartitionEnd(4, 3)})});
  CHECK(twice.status().code() == absl::StatusCode::kInvalidArgument);
  auto dup_ids = Ring::FromMembers(Options(PartitionStrategy::kRandomTokens),
                                   {Member(1, 1.0, {Token(1)}),
                                    Member(1, 1.0, {Token(2)})});
  CHECK(dup_ids.status().code() == absl::StatusCode::kAlreadyExists);
}

TEST_CASE("Ring empty and tiny rings") {
  Ring ring(Options(PartitionStrategy::kEqualPartitions, 1, 8));
  std::vector<NodeId> list = {1, 2, 3};
  ring.PreferenceList(Token(0), 3, 1, &list);
  CHECK(list.empty());
  CHECK(ring.Ranges().empty());
  CHECK(ring.Balance(3).nodes.empty());
  REQUIRE(ring.AddNode(Member(9)).ok());
  ring.PreferenceList(Token(0), 3, 1, &list);
  CHECK(list == std::vector<NodeId>{9});
  CHECK(ring.members()[0].tokens.size() == 8);
  REQUIRE(ring.RemoveNode(9).ok());
  CHECK(ring.size() == 0);
  ring.PreferenceList(Token(0), 3, 1, &list);
  CHECK(list.empty());
  // A single partition is the whole ring: (max, max].
  Ring whole(Options(PartitionStrategy::kEqualPartitions, 1, 1));
  REQUIRE(whole.AddNode(Member(4)).ok());
  REQUIRE(whole.Ranges().size() == 1);
  CHECK(whole.Ranges()[0].begin == whole.Ranges()[0].end);
  CHECK(whole.Balance(1).nodes[0].primary_share == 1.0);
}

TEST_CASE("Ring lookup tables follow membership changes") {
  Ring ring = MakeRing(Options(PartitionStrategy::kRandomTokens, 8), 4);
  std::vector<NodeId> list;
  std::mt19937_64 rng(8);
  for (int round = 0; round < 6; ++round) {
    for (size_t n : {size_t{1}, size_t{2}, size_t{3}, size_t{4}, size_t{5}}) {
      for (int i = 0; i < 100; ++i) {
        Token t = RandomTokenFrom(rng);
        ring.PreferenceList(t, n, 1, &list);
        CHECK(list == BruteForceList(ring, t, std::min(n + 1, ring.size())));
      }
    }
    REQUIRE(ring.AddNode(Member(100 + static_cast<NodeId>(round))).ok());
    if (round % 2 == 1) REQUIRE(ring.RemoveNode(ring.members()[0].id).ok());
  }
}

// Everything a ring answers, for comparing two rings.
struct RingState {
  std::vector<RingMember> members;
  std::vector<TokenRange> ranges;
  std::vector<std::vector<NodeId>> lists;  // of sampled tokens, n = 3
  bool operator==(const RingState&) const = default;
};

RingState StateOf(const Ring& ring) {
  RingState state{ring.members(), ring.Ranges(), {}};
  std::mt19937_64 rng(11);
  for (int i = 0; i < 200; ++i) {
    ring.PreferenceList(RandomTokenFrom(rng), 3, 1, &state.lists.emplace_back());
  }
  return state;
}

TEST_CASE("Ring copies share their state until one changes, and a change leaves the others be") {
  for (PartitionStrategy strategy : kAllStrategies) {
    INFO("strategy " << static_cast<int>(strategy));
    const RingOptions o = Options(strategy, 8, 64);
    Ring original = MakeRing(o, 5);
    const RingState before = StateOf(original);
    Ring grown = original;
    Ring shrunk = original;
    Ring moved_to = original;
    REQUIRE(grown.AddNode(Member(60)).ok());
    REQUIRE(shrunk.RemoveNode(20).ok());
    Ring moved = std::move(moved_to);
    CHECK(StateOf(original) == before);
    CHECK(StateOf(moved) == before);
    CHECK(StateOf(grown) == StateOf(MakeRing(o, 6)));
    Ring shrunk_fresh = MakeRing(o, 5);
    REQUIRE(shrunk_fresh.RemoveNode(20).ok());
    CHECK(StateOf(shrunk) == StateOf(shrunk_fresh));
    // The original changes last: its copies keep what they hold.
    const RingState grown_before = StateOf(grown);
    REQUIRE(original.RemoveNode(10).ok());
    REQUIRE(original.AddNode(Member(70)).ok());
    CHECK(StateOf(grown) == grown_before);
    CHECK(StateOf(moved) == before);
  }
}

}  // namespace
}  // namespace dynamo

namespace dynamo::internal {
namespace {

TEST_CASE("TokenIndex finds what a bisection finds, for any token") {
  std::mt19937_64 rng(7);
  auto random_token = [&] { return RandomTokenFrom(rng); };
  for (size_t count : {0, 1, 2, 3, 17, 256, 1000, 5000}) {
    INFO("tokens " << count);
    std::vector<Token> sorted;
    for (size_t i = 0; i < count; ++i) sorted.push_back(random_token());
    if (count >= 3) {
      // The extremes, a duplicate and a cluster inside one bucket.
      sorted[0] = 0;
      sorted[1] = ~absl::uint128(0);
      sorted[2] = sorted[count / 2];
      for (size_t i = 0; i + 3 < std::min<size_t>(count, 40); ++i) sorted.push_back(sorted[3] + i);
    }
    std::sort(sorted.begin(), sorted.end());
    TokenIndex index;
    index.Build(sorted);
    std::vector<Token> queries = {0, 1, ~absl::uint128(0), ~absl::uint128(0) - 1};
    for (Token t : sorted) {
      queries.push_back(t);
      queries.push_back(t - 1);
      queries.push_back(t + 1);
    }
    for (int i = 0; i < 2000; ++i) queries.push_back(random_token());
    size_t mismatches = 0, scan_starts_after = 0;
    for (Token q : queries) {
      size_t expected = std::lower_bound(sorted.begin(), sorted.end(), q) - sorted.begin();
      if (index.FirstAtOrAfter(sorted, q) != expected) ++mismatches;
      index.Prefetch(q);  // a hint: changes nothing
      if (index.ScanStart(q) > expected) ++scan_starts_after;
    }
    CHECK(mismatches == 0);
    CHECK(scan_starts_after == 0);  // the scan starts at or before the answer
  }
}

}  // namespace
}  // namespace dynamo::internal

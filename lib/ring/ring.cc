#include "dynamo/ring.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ring/token_index.h"
#include "xxhash.h"

namespace dynamo {

namespace {

// Lookup tables kept at once (one per replica count n in use).
constexpr size_t kTablesMax = 4;
// A joining node avoids taking a partition within this distance of one it
// already holds, so the preference lists of N = 3 replicas that walk over its
// partitions still find three distinct nodes (see AssignPartitionsToNew).
constexpr size_t kSpreadPartitions = 2;

// The ring's seed is hashed as part of the input, not given as XXH3's seed:
// on inputs of 9 to 16 bytes XXH3 folds its seed in almost linearly, and
// seeds 0 and 1 drew the same tokens (index i of one was index i ^ 1 of the
// other), so rings meant to differ by seed did not.
uint64_t Mix(uint64_t seed, uint64_t a, uint64_t b) {
  const uint64_t buf[3] = {seed, a, b};
  return XXH3_64bits(buf, sizeof(buf));
}

// 2^128 * x as a double in [0, 1] of the token space.
double Share(Token size_or_zero_for_whole) {
  if (size_or_zero_for_whole == 0) return 1.0;
  return std::ldexp(static_cast<double>(size_or_zero_for_whole), -128);
}

std::string NodeName(NodeId id) { return absl::StrCat("node ", id); }

}  // namespace

struct Ring::LookupTable {
  size_t n = 0;
  size_t fallbacks = 0;
  size_t len = 0;  // entries per range: min(n + fallbacks, members)
  std::vector<NodeId> lists;  // RangeCount() * len
  internal::TokenIndex token_index;  // strategy 1: over point_tokens_
};

Ring::Ring(RingOptions options) : options_(options) {}

absl::Status Ring::ValidateOptions(const RingOptions& o) {
  int s = static_cast<int>(o.strategy);
  if (s < 1 || s > 3) {
    return absl::InvalidArgumentError(absl::StrCat("unknown partition strategy ", s));
  }
  if (o.tokens_per_node < 1 || o.tokens_per_node > kRingTokensPerNodeMax) {
    return absl::InvalidArgumentError(absl::StrCat("tokens_per_node ", o.tokens_per_node,
                                                   " not in [1, ", kRingTokensPerNodeMax, "]"));
  }
  if (o.partitions < 1 || o.partitions > kRingPartitionsMax) {
    return absl::InvalidArgumentError(absl::StrCat("partitions ", o.partitions, " not in [1, ",
                                                   kRingPartitionsMax, "]"));
  }
  return absl::OkStatus();
}

namespace {

// The end tokens of Q equal partitions. With 2^128 = q0 * Q + r1,
// ceil(j * 2^128 / Q) = j * q0 + ceil(j * r1 / Q): the two 128-bit divisions
// are done once, here, and each end then costs one 64-bit division. Rings
// ask for all Q ends at a time (ranges, strategy 3's positions), and 128-bit
// divisions per partition were most of that.
class EqualPartitionEnds {
 public:
  explicit EqualPartitionEnds(size_t partitions)
      : q_(partitions), q0_(kAll / q_), r1_(kAll % q_ + 1) {}

  Token End(size_t i) const {
    if (i + 1 >= q_) return kAll;
    const absl::uint128 j = i + 1;
    // j * r1 < Q * (Q + 1) fits 64 bits for any ring (Q <= 2^24); the
    // static helper takes any Q and keeps the 128-bit form past that.
    if (q_ <= kSmallPartitionsMax) {
      const uint64_t jr = static_cast<uint64_t>(j) * static_cast<uint64_t>(r1_);
      const uint64_t q = static_cast<uint64_t>(q_);
      return j * q0_ + (jr + q - 1) / q - 1;
    }
    return j * q0_ + (j * r1_ + q_ - 1) / q_ - 1;
  }

 private:
  static constexpr absl::uint128 kAll = ~absl::uint128(0);
  static constexpr uint64_t kSmallPartitionsMax = uint64_t{1} << 31;
  static_assert(kRingPartitionsMax <= kSmallPartitionsMax);
  absl::uint128 q_, q0_, r1_;
};

}  // namespace

Token Ring::PartitionEnd(size_t partitions, size_t i) {
  return EqualPartitionEnds(partitions).End(i);
}

size_t Ring::PartitionOf(size_t partitions, Token t) {
  if (std::has_single_bit(partitions)) {
    int bits = std::countr_zero(partitions);
    return bits == 0 ? 0 : static_cast<size_t>(t >> (128 - bits));
  }
  // floor(t * Q / 2^128) without a 192-bit product.
  const absl::uint128 q = partitions;
  const absl::uint128 a = absl::uint128(absl::Uint128High64(t)) * q;
  const absl::uint128 b = (absl::uint128(absl::Uint128Low64(t)) * q) >> 64;
  return static_cast<size_t>((a + b) >> 64);
}

Token Ring::RandomToken(uint64_t seed, NodeId id, uint64_t index) {
  const uint64_t buf[3] = {seed, id, index};  // see Mix: the seed is input
  XXH128_hash_t h = XXH3_128bits(buf, sizeof(buf));
  return absl::MakeUint128(h.high64, h.low64);
}

bool Ring::Contains(NodeId id) const {
  auto it = std::lower_bound(members_.begin(), members_.end(), id,
                             [](const RingMember& m, NodeId v) { return m.id < v; });
  return it != members_.end() && it->id == id;
}

void Ring::Invalidate() {
  tables_.clear();
  // Dense zone indices, assigned in sorted zone order so they do not depend
  // on the order members joined.
  std::vector<std::string> zones;
  zones.reserve(members_.size());
  for (const RingMember& m : members_) zones.push_back(m.zone);
  std::sort(zones.begin(), zones.end());
  zones.erase(std::unique(zones.begin(), zones.end()), zones.end());
  zone_count_ = zones.size();
  member_zone_.resize(members_.size());
  for (size_t i = 0; i < members_.size(); ++i) {
    member_zone_[i] = static_cast<uint32_t>(
        std::lower_bound(zones.begin(), zones.end(), members_[i].zone) - zones.begin());
  }
}

void Ring::InsertMember(RingMember member) {
  auto it = std::lower_bound(members_.begin(), members_.end(), member.id,
                             [](const RingMember& m, NodeId v) { return m.id < v; });
  const uint32_t k = static_cast<uint32_t>(it - members_.begin());
  std::vector<RingMember>& members = members_.Mutable();
  members.insert(members.begin() + k, std::move(member));
  for (uint32_t& o : point_owners_.Mutable()) o += (o >= k);
  for (uint32_t& o : partition_owner_.Mutable()) o += (o >= k);
}

void Ring::RebuildPoints() {
  if (options_.strategy == PartitionStrategy::kEqualPartitions) {
    if (members_.empty()) {
      point_tokens_ = std::vector<Token>();
      point_owners_ = std::vector<uint32_t>();
      return;
    }
    FillPartitionEnds();
    point_owners_ = partition_owner_;
    return;
  }
  std::vector<std::pair<Token, uint32_t>> points;
  for (size_t i = 0; i < members_.size(); ++i) {
    for (Token t : members_[i].tokens) points.emplace_back(t, static_cast<uint32_t>(i));
  }
  std::sort(points.begin(), points.end());
  std::vector<Token> tokens(points.size());
  std::vector<uint32_t> owners(points.size());
  for (size_t i = 0; i < points.size(); ++i) {
    tokens[i] = points[i].first;
    owners[i] = points[i].second;
  }
  point_tokens_ = std::move(tokens);
  point_owners_ = std::move(owners);
}

void Ring::RebuildPartitionTokens() {
  std::vector<RingMember>& members = members_.Mutable();
  for (RingMember& m : members) m.tokens.clear();
  FillPartitionEnds();
  for (size_t p = 0; p < partition_owner_.size(); ++p) {
    members[partition_owner_[p]].tokens.push_back(point_tokens_[p]);
  }
}

// Strategy 3's positions are the partition ends, whoever holds them, so they
// are computed once per ring: every node builds its rings from the view,
// join by join.
void Ring::FillPartitionEnds() {
  const size_t q = options_.partitions;
  if (point_tokens_.size() == q) return;
  std::vector<Token> tokens(q);
  const EqualPartitionEnds ends(q);
  for (size_t i = 0; i < q; ++i) tokens[i] = ends.End(i);
  point_tokens_ = std::move(tokens);
}

absl::Status Ring::AddNode(RingMember member) {
  RingChange change{/*remove=*/false, member.id, member.zone, member.weight};
  const bool assigned_by_strategy = member.tokens.empty();
  if (absl::Status s = AddNodeInternal(std::move(member), /*allow_explicit_partitions=*/false);
      !s.ok()) {
    return s;
  }
  if (!assigned_by_strategy) {
    history_.reset();  // explicit tokens: a replay could not choose them
  } else if (history_.has_value()) {
    history_->push_back(std::move(change));
  }
  return absl::OkStatus();
}

absl::Status Ring::AddNodeInternal(RingMember member, bool allow_explicit_partitions) {
  if (absl::Status s = ValidateOptions(options_); !s.ok()) return s;
  if (member.id == kNoNode) return absl::InvalidArgumentError("node id 0 is reserved (kNoNode)");
  if (Contains(member.id)) {
    return absl::AlreadyExistsError(absl::StrCat(NodeName(member.id), " is already on the ring"));
  }
  if (!(member.weight > 0) || !(member.weight <= kRingWeightMax)) {
    return absl::InvalidArgumentError(absl::StrCat("weight ", member.weight, " of ",
                                                   NodeName(member.id), " not in (0, ",
                                                   kRingWeightMax, "]"));
  }
  if (members_.size() >= kRingMembersMax) {
    return absl::ResourceExhaustedError(
        absl::StrCat("ring already has the maximum of ", kRingMembersMax, " members"));
  }
  const bool partitioned = options_.strategy == PartitionStrategy::kEqualPartitions;
  if (partitioned && !member.tokens.empty() && !allow_explicit_partitions) {
    return absl::InvalidArgumentError(absl::StrCat(
        "explicit tokens for ", NodeName(member.id),
        " under strategy 3: partitions are assigned by the ring (use FromMembers to restore)"));
  }
  if (member.tokens.size() > kRingTokensPerNodeMax && !partitioned) {
    return absl::InvalidArgumentError(absl::StrCat(NodeName(member.id), " has ",
                                                   member.tokens.size(), " tokens, more than ",
                                                   kRingTokensPerNodeMax));
  }
  auto taken = [this](Token t) {
    return std::binary_search(point_tokens_.begin(), point_tokens_.end(), t);
  };
  if (partitioned) {
    if (!member.tokens.empty()) {
      return absl::InternalError("explicit strategy-3 tokens are handled by FromMembers");
    }
    const NodeId id = member.id;
    InsertMember(std::move(member));
    const size_t k = std::lower_bound(members_.begin(), members_.end(), id,
                                      [](const RingMember& m, NodeId v) { return m.id < v; }) -
                     members_.begin();
    AssignPartitionsToNew(k);
    RebuildPartitionTokens();
    RebuildPoints();
    Invalidate();
    return absl::OkStatus();
  }
  if (member.tokens.empty()) {
    double scaled = std::round(static_cast<double>(options_.tokens_per_node) * member.weight);
    size_t count = static_cast<size_t>(
        std::clamp(scaled, 1.0, static_cast<double>(kRingTokensPerNodeMax)));
    member.tokens.reserve(count);
    // A collision of 128-bit hashes is astronomically unlikely; skipping the
    // index keeps the function total and still deterministic.
    for (uint64_t index = 0; member.tokens.size() < count; ++index) {
      Token t = RandomToken(options_.seed, member.id, index);
      if (!taken(t)) member.tokens.push_back(t);
    }
    std::sort(member.tokens.begin(), member.tokens.end());
    member.tokens.erase(std::unique(member.tokens.begin(), member.tokens.end()),
                        member.tokens.end());
  } else {
    std::sort(member.tokens.begin(), member.tokens.end());
    for (size_t i = 0; i < member.tokens.size(); ++i) {
      if ((i > 0 && member.tokens[i] == member.tokens[i - 1]) || taken(member.tokens[i])) {
        return absl::InvalidArgumentError(absl::StrCat("token ", TokenToString(member.tokens[i]),
                                                       " of ", NodeName(member.id),
                                                       " is already taken"));
      }
    }
  }
  // Merge the new tokens into the sorted positions: O(positions).
  const NodeId id = member.id;
  std::vector<Token> new_tokens = member.tokens;
  InsertMember(std::move(member));
  const uint32_t k = static_cast<uint32_t>(
      std::lower_bound(members_.begin(), members_.end(), id,
                       [](const RingMember& m, NodeId v) { return m.id < v; }) -
      members_.begin());
  std::vector<Token> tokens;
  std::vector<uint32_t> owners;
  tokens.reserve(point_tokens_.size() + new_tokens.size());
  owners.reserve(tokens.capacity());
  size_t a = 0, b = 0;
  while (a < point_tokens_.size() || b < new_tokens.size()) {
    if (b == new_tokens.size() || (a < point_tokens_.size() && point_tokens_[a] < new_tokens[b])) {
      tokens.push_back(point_tokens_[a]);
      owners.push_back(point_owners_[a++]);
    } else {
      tokens.push_back(new_tokens[b++]);
      owners.push_back(k);
    }
  }
  point_tokens_ = std::move(tokens);
  point_owners_ = std::move(owners);
  Invalidate();
  return absl::OkStatus();
}

void Ring::AssignPartitionsToNew(size_t m) {
  const size_t q = options_.partitions;
  if (members_.size() == 1) {
    partition_owner_ = std::vector<uint32_t>(q, static_cast<uint32_t>(m));
    return;
  }
  double total_weight = 0;
  for (const RingMember& mem : members_) total_weight += mem.weight;
  std::vector<size_t> count(members_.size(), 0);
  for (uint32_t o : partition_owner_) ++count[o];
  const size_t target = static_cast<size_t>(
      std::llround(static_cast<double>(q) * members_[m].weight / total_weight));
  // The order in which each donor gives up its partitions: a seeded hash of
  // the partition and the joining node (ties by partition), so that a
  // joiner's partitions are spread around the ring rather than clustered.
  // Scored and sorted only for the donors that give any: a joiner takes
  // about Q/n partitions, so in a large cluster most members give none
  // (scoring and sorting the whole ring per join was most of building a
  // 200-node ring, which every node does). Member j's partitions are
  // by_owner[first[j], first[j + 1]), one array rather than a vector per
  // member (n allocations per join).
  std::vector<size_t> first(members_.size() + 1, 0);
  for (size_t j = 0; j < members_.size(); ++j) first[j + 1] = first[j] + count[j];
  std::vector<uint32_t> by_owner(q);
  {
    std::vector<size_t> next(first.begin(), first.end() - 1);
    for (size_t p = 0; p < q; ++p) by_owner[next[partition_owner_[p]]++] = static_cast<uint32_t>(p);
  }
  std::vector<bool> ordered(members_.size(), false);
  std::vector<std::pair<uint64_t, uint32_t>> scored;
  auto order_of = [&](size_t donor) {
    // Its partitions before this join: count[] drops as the joiner takes them.
    std::span<uint32_t> partitions(by_owner.data() + first[donor],
                                   by_owner.data() + first[donor + 1]);
    if (ordered[donor]) return partitions;
    ordered[donor] = true;
    scored.clear();
    for (uint32_t p : partitions) scored.emplace_back(Mix(options_.seed, members_[m].id, p), p);
    std::sort(scored.begin(), scored.end());
    for (size_t i = 0; i < scored.size(); ++i) partitions[i] = scored[i].second;
    return partitions;
  };
  // Prefer a partition with no neighbour already held by the joiner: two
  // adjacent partitions of one node put fewer distinct nodes on the
  // preference lists that walk over them.
  auto adjacent = [&](size_t p) {
    for (size_t d = 1; d <= kSpreadPartitions && d < q; ++d) {
      if (partition_owner_[(p + d) % q] == m || partition_owner_[(p + q - d) % q] == m) {
        return true;
      }
    }
    return false;
  };
  // Positions in each donor's order. The joiner only gains partitions here,
  // so a partition once taken or next to the joiner stays so: `next_apart`
  // passes each such partition once, `next_any` each taken one, and the
  // whole placement is O(Q log Q) at most rather than a scan of the ring per
  // partition taken (which made a 3-node ring of 1024 partitions take
  // milliseconds, on every membership change of every node).
  std::vector<size_t> next_apart(members_.size(), 0), next_any(members_.size(), 0);
  for (size_t taken = 0; taken < target; ++taken) {
    size_t donor = members_.size();
    for (size_t j = 0; j < members_.size(); ++j) {
      if (j == m || count[j] == 0) continue;
      if (donor == members_.size()) {
        donor = j;
        continue;
      }
      double lj = count[j] / members_[j].weight, ld = count[donor] / members_[donor].weight;
      if (lj > ld || (lj == ld && count[j] > count[donor])) donor = j;  // ties: lowest id
    }
    if (donor == members_.size()) break;
    // Stop once taking more would make the joiner the most loaded node.
    if ((count[m] + 1) / members_[m].weight > count[donor] / members_[donor].weight) break;
    const std::span<const uint32_t> candidates = order_of(donor);
    size_t& apart = next_apart[donor];
    while (apart < candidates.size() &&
           (partition_owner_[candidates[apart]] != donor || adjacent(candidates[apart]))) {
      ++apart;
    }
    size_t best;
    if (apart < candidates.size()) {
      best = candidates[apart];
    } else {
      // Every partition left to the donor is next to the joiner's: the
      // first of them in the order. count[donor] > 0, so there is one.
      size_t& any = next_any[donor];
      while (partition_owner_[candidates[any]] != donor) ++any;
      best = candidates[any];
    }
    partition_owner_.Mutable()[best] = static_cast<uint32_t>(m);
    --count[donor];
    ++count[m];
  }
}

void Ring::ReleasePartitionsOf(size_t m) {
  const size_t q = options_.partitions;
  if (members_.size() == 1) {
    partition_owner_ = std::vector<uint32_t>();
    return;
  }
  std::vector<size_t> count(members_.size(), 0);
  for (uint32_t o : partition_owner_) ++count[o];
  std::vector<size_t> mine;
  for (size_t p = 0; p < q; ++p) {
    if (partition_owner_[p] == m) mine.push_back(p);
  }
  std::vector<std::pair<uint64_t, size_t>> order;
  for (size_t p : mine) order.emplace_back(Mix(options_.seed, members_[m].id, p), p);
  std::sort(order.begin(), order.end());
  for (const auto& [unused_score, p] : order) {
    size_t to = members_.size();
    for (size_t j = 0; j < members_.size(); ++j) {
      if (j == m) continue;
      if (to == members_.size()) {
        to = j;
        continue;
      }
      double lj = (count[j] + 1) / members_[j].weight, lt = (count[to] + 1) / members_[to].weight;
      if (lj < lt) to = j;  // ties: lowest id
    }
    partition_owner_.Mutable()[p] = static_cast<uint32_t>(to);
    ++count[to];
  }
}

absl::Status Ring::RemoveNode(NodeId id) {
  auto it = std::lower_bound(members_.begin(), members_.end(), id,
                             [](const RingMember& m, NodeId v) { return m.id < v; });
  if (it == members_.end() || it->id != id) {
    return absl::NotFoundError(absl::StrCat(NodeName(id), " is not on the ring"));
  }
  const uint32_t k = static_cast<uint32_t>(it - members_.begin());
  std::vector<RingMember>& members = members_.Mutable();
  if (options_.strategy == PartitionStrategy::kEqualPartitions) {
    ReleasePartitionsOf(k);
    members.erase(members.begin() + k);
    for (uint32_t& o : partition_owner_.Mutable()) o -= (o > k);
    RebuildPartitionTokens();
    RebuildPoints();
  } else {
    members.erase(members.begin() + k);
    std::vector<Token>& tokens = point_tokens_.Mutable();
    std::vector<uint32_t>& owners = point_owners_.Mutable();
    size_t w = 0;
    for (size_t r = 0; r < tokens.size(); ++r) {
      if (owners[r] == k) continue;
      tokens[w] = tokens[r];
      owners[w++] = owners[r] - (owners[r] > k);
    }
    tokens.resize(w);
    owners.resize(w);
  }
  Invalidate();
  if (history_.has_value()) history_->push_back(RingChange{/*remove=*/true, id, "", 0});
  return absl::OkStatus();
}

absl::StatusOr<Ring> Ring::FromMembers(RingOptions options, std::vector<RingMember> members) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  Ring ring(options);
  std::sort(members.begin(), members.end(),
            [](const RingMember& a, const RingMember& b) { return a.id < b.id; });
  std::vector<RingMember> later;  // members without tokens join afterwards
  const bool partitioned = options.strategy == PartitionStrategy::kEqualPartitions;
  const size_t q = options.partitions;
  std::vector<RingMember> explicit_members;
  for (RingMember& m : members) {
    if (m.tokens.empty()) {
      later.push_back(std::move(m));
    } else {
      explicit_members.push_back(std::move(m));
    }
  }
  // Restored tokens have no history that would choose them again.
  if (!explicit_members.empty()) ring.history_.reset();
  if (partitioned && !explicit_members.empty()) {
    std::vector<uint32_t> owner(q, UINT32_MAX);
    const EqualPartitionEnds ends(q);
    for (size_t i = 0; i < explicit_members.size(); ++i) {
      const RingMember& m = explicit_members[i];
      if (i > 0 && explicit_members[i - 1].id == m.id) {
        return absl::AlreadyExistsError(absl::StrCat(NodeName(m.id), " listed twice"));
      }
      if (m.id == kNoNode) return absl::InvalidArgumentError("node id 0 is reserved (kNoNode)");
      if (!(m.weight > 0) || !(m.weight <= kRingWeightMax)) {
        return absl::InvalidArgumentError(
            absl::StrCat("weight ", m.weight, " of ", NodeName(m.id), " out of range"));
      }
      for (Token t : m.tokens) {
        size_t p = PartitionOf(q, t);
        if (ends.End(p) != t) {
          return absl::InvalidArgumentError(absl::StrCat("token ", TokenToString(t), " of ",
                                                         NodeName(m.id),
                                                         " is not a partition end token"));
        }
        if (owner[p] != UINT32_MAX) {
          return absl::InvalidArgumentError(
              absl::StrCat("partition ", p, " claimed by ", NodeName(m.id), " and ",
                           NodeName(explicit_members[owner[p]].id)));
        }
        owner[p] = static_cast<uint32_t>(i);
      }
    }
    for (size_t p = 0; p < q; ++p) {
      if (owner[p] == UINT32_MAX) {
        return absl::InvalidArgumentError(absl::StrCat("partition ", p, " of ", q,
                                                       " is held by no member"));
      }
    }
    ring.members_ = std::move(explicit_members);
    ring.partition_owner_ = std::move(owner);
    ring.RebuildPartitionTokens();
    ring.RebuildPoints();
    ring.Invalidate();
  } else if (!explicit_members.empty()) {
    std::vector<std::pair<Token, NodeId>> all;
    for (size_t i = 0; i < explicit_members.size(); ++i) {
      RingMember& m = explicit_members[i];
      if (i > 0 && explicit_members[i - 1].id == m.id) {
        return absl::AlreadyExistsError(absl::StrCat(NodeName(m.id), " listed twice"));
      }
      if (m.id == kNoNode) return absl::InvalidArgumentError("node id 0 is reserved (kNoNode)");
      if (!(m.weight > 0) || !(m.weight <= kRingWeightMax)) {
        return absl::InvalidArgumentError(
            absl::StrCat("weight ", m.weight, " of ", NodeName(m.id), " out of range"));
      }
      if (m.tokens.size() > kRingTokensPerNodeMax) {
        return absl::InvalidArgumentError(
            absl::StrCat(NodeName(m.id), " has too many tokens: ", m.tokens.size()));
      }
      std::sort(m.tokens.begin(), m.tokens.end());
      for (Token t : m.tokens) all.emplace_back(t, m.id);
    }
    if (explicit_members.size() > kRingMembersMax) {
      return absl::ResourceExhaustedError("too many ring members");
    }
    std::sort(all.begin(), all.end());
    for (size_t i = 1; i < all.size(); ++i) {
      if (all[i].first == all[i - 1].first) {
        return absl::InvalidArgumentError(absl::StrCat("token ", TokenToString(all[i].first),
                                                       " claimed by ", NodeName(all[i - 1].second),
                                                       " and ", NodeName(all[i].second)));
      }
    }
    ring.members_ = std::move(explicit_members);
    ring.RebuildPoints();
    ring.Invalidate();
  }
  for (RingMember& m : later) {
    if (absl::Status s = ring.AddNode(std::move(m)); !s.ok()) return s;
  }
  return ring;
}

size_t Ring::RangeCount() const {
  if (members_.empty()) return 0;
  return options_.strategy == PartitionStrategy::kRandomTokens ? point_tokens_.size()
                                                                : options_.partitions;
}

size_t Ring::WalkStart(size_t range) const {
  switch (options_.strategy) {
    case PartitionStrategy::kRandomTokensEqualPartitions: {
      Token end = PartitionEnd(options_.partitions, range);
      size_t i = std::lower_bound(point_tokens_.begin(), point_tokens_.end(), end) -
                 point_tokens_.begin();
      return i == point_tokens_.size() ? 0 : i;
    }
    default:
      return range;  // strategy 1: ranges are positions; 3: positions are partitions
  }
}

void Ring::ComputeList(size_t start, size_t n, size_t len, std::vector<uint32_t>& seen,
                       uint32_t stamp, std::vector<uint32_t>* picked) const {
  // seen[member] == stamp: member picked; seen[S + zone] == stamp: zone used.
  picked->clear();
  const size_t positions = point_tokens_.size();
  const size_t s = members_.size();
  const size_t replicas = std::min(n, s);
  if (zone_count_ > 1 && replicas > 1) {
    const size_t zones_wanted = std::min(replicas, zone_count_);
    for (size_t step = 0; step < positions && picked->size() < zones_wanted; ++step) {
      size_t i = start + step;
      if (i >= positions) i -= positions;
      uint32_t m = point_owners_[i];
      uint32_t z = member_zone_[m];
      if (seen[s + z] == stamp || seen[m] == stamp) continue;
      seen[s + z] = stamp;
      seen[m] = stamp;
      picked->push_back(m);
    }
  }
  for (size_t step = 0; step < positions && picked->size() < len; ++step) {
    size_t i = start + step;
    if (i >= positions) i -= positions;
    uint32_t m = point_owners_[i];
    if (seen[m] == stamp) continue;
    seen[m] = stamp;
    picked->push_back(m);
  }
}

const Ring::LookupTable& Ring::Table(size_t n, size_t fallbacks_max) const {
  const size_t s = members_.size();
  fallbacks_max = std::min(fallbacks_max, s);
  for (const auto& t : tables_) {
    if (t->n == n && t->fallbacks >= fallbacks_max) return *t;
  }
  size_t fallbacks = fallbacks_max;
  for (auto it = tables_.begin(); it != tables_.end(); ++it) {
    if ((*it)->n == n) {
      fallbacks = std::max(fallbacks, (*it)->fallbacks);
      tables_.erase(it);
      break;
    }
  }
  auto table = std::make_shared<LookupTable>();
  table->n = n;
  table->fallbacks = fallbacks;
  table->len = std::min(n, s) + std::min(fallbacks, s - std::min(n, s));
  const size_t ranges = RangeCount();
  table->lists.resize(ranges * table->len);
  std::vector<uint32_t> seen(s + zone_count_, 0);
  std::vector<uint32_t> picked;
  for (size_t r = 0; r < ranges; ++r) {
    ComputeList(WalkStart(r), n, table->len, seen, static_cast<uint32_t>(r + 1), &picked);
    for (size_t k = 0; k < picked.size(); ++k) {
      table->lists[r * table->len + k] = members_[picked[k]].id;
    }
  }
  if (options_.strategy == PartitionStrategy::kRandomTokens) {
    table->token_index.Build(point_tokens_.get());
  }
  if (tables_.size() >= kTablesMax) tables_.erase(tables_.begin());
  tables_.push_back(std::move(table));
  return *tables_.back();
}

size_t Ring::RangeOfToken(Token t, const LookupTable& table) const {
  if (options_.strategy != PartitionStrategy::kRandomTokens) {
    return PartitionOf(options_.partitions, t);
  }
  const size_t i = table.token_index.FirstAtOrAfter(point_tokens_.get(), t);
  return i == point_tokens_.size() ? 0 : i;
}

void Ring::PreferenceList(Token t, size_t n, size_t fallbacks_max,
                          std::vector<NodeId>* out) const {
  out->clear();
  const size_t s = members_.size();
  if (s == 0) return;
  const LookupTable& table = Table(n, fallbacks_max);
  const size_t count =
      std::min(n, s) + std::min(std::min(fallbacks_max, s), s - std::min(n, s));
  const NodeId* list = table.lists.data() + RangeOfToken(t, table) * table.len;
  out->insert(out->end(), list, list + count);
}

std::vector<NodeId> Ring::PreferenceList(std::string_view key, size_t n,
                                         size_t fallbacks_max) const {
  std::vector<NodeId> out;
  PreferenceList(KeyToken(key), n, fallbacks_max, &out);
  return out;
}

std::vector<TokenRange> Ring::Ranges() const {
  std::vector<TokenRange> out;
  const size_t ranges = RangeCount();
  out.reserve(ranges);
  if (options_.strategy == PartitionStrategy::kRandomTokens) {
    for (size_t i = 0; i < ranges; ++i) {
      out.push_back({point_tokens_[i == 0 ? ranges - 1 : i - 1], point_tokens_[i]});
    }
  } else {
    const EqualPartitionEnds ends(options_.partitions);
    Token prev = ends.End(options_.partitions - 1);
    for (size_t p = 0; p < ranges; ++p) {
      Token end = ends.End(p);
      out.push_back({prev, end});
      prev = end;
    }
  }
  return out;
}

std::vector<TokenRange> Ring::ReplicatedRanges(NodeId node, size_t n) const {
  std::vector<TokenRange> out;
  if (members_.empty() || !Contains(node)) return out;
  const LookupTable& table = Table(n, 0);
  const size_t replicas = std::min(n, members_.size());
  std::vector<TokenRange> ranges = Ranges();
  for (size_t r = 0; r < ranges.size(); ++r) {
    const NodeId* list = table.lists.data() + r * table.len;
    if (std::find(list, list + replicas, node) != list + replicas) out.push_back(ranges[r]);
  }
  return out;
}

std::vector<Ring::RangeMove> Ring::Diff(const Ring& before, const Ring& after, size_t n) {
  std::vector<Token> bounds;
  for (const Ring* ring : {&before, &after}) {
    for (const TokenRange& r : ring->Ranges()) bounds.push_back(r.end);
  }
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  std::vector<RangeMove> moves;
  std::vector<NodeId> from, to, from_sorted, to_sorted;
  for (size_t i = 0; i < bounds.size(); ++i) {
    // Every token of (bounds[i-1], bounds[i]] lies in one elementary range of
    // each ring, so the range's end token stands for all of them.
    before.PreferenceList(bounds[i], n, 0, &from);
    after.PreferenceList(bounds[i], n, 0, &to);
    from_sorted = from;
    to_sorted = to;
    std::sort(from_sorted.begin(), from_sorted.end());
    std::sort(to_sorted.begin(), to_sorted.end());
    if (from_sorted == to_sorted) continue;
    TokenRange range{bounds[i == 0 ? bounds.size() - 1 : i - 1], bounds[i]};
    moves.push_back(RangeMove{range, from, to});
  }
  return moves;
}

Ring::LoadStats Ring::Balance(size_t n) const {
  LoadStats stats;
  const size_t s = members_.size();
  if (s == 0) return stats;
  stats.nodes.resize(s);
  double total_weight = 0;
  for (size_t i = 0; i < s; ++i) {
    stats.nodes[i].id = members_[i].id;
    stats.nodes[i].weight = members_[i].weight;
    total_weight += members_[i].weight;
  }
  const LookupTable& table = Table(n, 0);
  const size_t replicas = std::min(n, s);
  std::vector<TokenRange> ranges = Ranges();
  for (size_t r = 0; r < ranges.size(); ++r) {
    const double share = Share(ranges[r].end - ranges[r].begin);
    const NodeId* list = table.lists.data() + r * table.len;
    for (size_t k = 0; k < replicas; ++k) {
      size_t m = std::lower_bound(members_.begin(), members_.end(), list[k],
                                  [](const RingMember& a, NodeId v) { return a.id < v; }) -
                 members_.begin();
      if (k == 0) stats.nodes[m].primary_share += share;
      stats.nodes[m].replica_share += share;
    }
  }
  double sum = 0;
  for (NodeLoad& l : stats.nodes) {
    double fair = static_cast<double>(replicas) * l.weight / total_weight;
    l.relative_load = fair > 0 ? l.replica_share / fair : 0;
    sum += l.relative_load;
    stats.max = std::max(stats.max, l.relative_load);
  }
  stats.mean = sum / static_cast<double>(s);
  stats.efficiency = stats.max > 0 ? stats.mean / stats.max : 0;
  for (const NodeLoad& l : stats.nodes) {
    if (std::abs(l.relative_load - stats.mean) > 0.15 * stats.mean) ++stats.out_of_balance_count;
  }
  return stats;
}

}  // namespace dynamo

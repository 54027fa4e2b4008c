// Ring: the consistent-hashing ring of paper sections 4.2 (partitioning), 4.3
// (replication: the preference list) and 6.2 (the three partitioning
// strategies). It maps a key's 128-bit token (KeyToken, XXH3-128) to the list
// of physical nodes that store it, and answers the questions membership
// changes raise: which ranges a node replicates, which ranges move when a node
// joins or leaves, and how evenly the token space is spread.
//
// One representation serves all three strategies: every member carries the
// tokens it owns on the ring.
//   1. T random tokens per node (T scaled by weight). The elementary ranges are
//      the arcs between consecutive tokens; a key belongs to the first token at
//      or after its position.
//   2. T random tokens per node plus Q equal partitions. The elementary ranges
//      are the partitions; a partition is placed by walking the random tokens
//      clockwise from the partition's end token.
//   3. Q equal partitions, about Q/S per node (scaled by weight). A member's
//      tokens are the end tokens of the partitions it holds. A joining node
//      takes partitions from the most loaded members; a leaving node's
//      partitions go to the least loaded ones.
//
// Partition convention (strategies 2 and 3): partition i, 0 <= i < Q, is the
// inclusive token interval [ceil(i * 2^128 / Q), ceil((i+1) * 2^128 / Q) - 1],
// written as the TokenRange (PartitionEnd(i-1), PartitionEnd(i)] (partition 0
// begins after PartitionEnd(Q-1) = 2^128-1, i.e. at 0). With this convention
// the partition of token t is exactly floor(t * Q / 2^128).
//
// Determinism: random tokens are a pure function of (options.seed, node id,
// token index), partition moves are decided by loads, node ids and a seeded
// hash, and nothing iterates a hash map, so every node that sees the same
// membership computes the same ring, bit for bit.
//
// Thread-safety: Ring is a copyable value type. Const methods fill a lookup
// cache lazily (so that PreferenceList is a table lookup), therefore one Ring
// object needs external synchronization even between const calls; distinct
// copies share nothing mutable.
#ifndef DYNAMO_RING_H_
#define DYNAMO_RING_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dynamo/types.h"

namespace dynamo {

// The numbering follows the paper's section 6.2.
enum class PartitionStrategy : int {
  kRandomTokens = 1,
  kRandomTokensEqualPartitions = 2,
  kEqualPartitions = 3,
};

struct RingOptions {
  PartitionStrategy strategy = PartitionStrategy::kEqualPartitions;
  // T: random tokens of a weight-1.0 node (strategies 1 and 2).
  size_t tokens_per_node = 256;
  // Q: number of equal partitions (strategies 2 and 3); any value >= 1.
  size_t partitions = 1024;
  // Seeds the random tokens and the tie-breaking of partition moves. Every
  // node of a cluster must use the same seed.
  uint64_t seed = 0;
  friend bool operator==(const RingOptions&, const RingOptions&) = default;
};

// Upper bounds checked by Ring::ValidateOptions and AddNode. They bound the
// memory of the ring and of its lookup tables.
inline constexpr size_t kRingTokensPerNodeMax = 1 << 16;
inline constexpr size_t kRingPartitionsMax = 1 << 24;
inline constexpr size_t kRingMembersMax = 1 << 20;
inline constexpr double kRingWeightMax = 1024.0;

// One physical node as the ring sees it. `zone` (an availability zone or data
// centre, may be empty) is used to spread replicas; `weight` scales the share
// of the token space the node gets (1.0 = a standard machine).
struct RingMember {
  NodeId id = kNoNode;
  std::string zone;
  double weight = 1.0;
  std::vector<Token> tokens;  // sorted ascending once in a Ring
  friend bool operator==(const RingMember&, const RingMember&) = default;
};

// One change of a ring's membership: a member added by AddNode with its
// tokens left to the strategy, or a member removed. Replaying a ring's
// changes on an empty ring of the same options rebuilds it token for token
// (see Ring::history).
struct RingChange {
  bool remove = false;
  NodeId id = kNoNode;
  std::string zone;   // of an addition
  double weight = 0;  // of an addition
  friend bool operator==(const RingChange&, const RingChange&) = default;
};

class Ring {
 public:
  explicit Ring(RingOptions options);

  Ring(const Ring&) = default;
  Ring& operator=(const Ring&) = default;
  Ring(Ring&&) = default;
  Ring& operator=(Ring&&) = default;

  // kInvalidArgument when an option is out of range (see the limits above).
  static absl::Status ValidateOptions(const RingOptions& options);

  // Adds a node. When member.tokens is empty the tokens are assigned by the
  // strategy (for strategy 3 this moves partitions from other members). With
  // explicit tokens (strategies 1 and 2 only) they are used as given.
  // Errors: kAlreadyExists if the id is present; kInvalidArgument for id 0,
  // weight not in (0, kRingWeightMax], a token already owned (or repeated),
  // explicit tokens under strategy 3 (use FromMembers), or bad options.
  absl::Status AddNode(RingMember member);

  // Removes a node; under strategy 3 its partitions go to the least loaded
  // remaining members. kNotFound if absent.
  absl::Status RemoveNode(NodeId id);

  // Rebuilds a ring from explicit members, as gossiped membership carries
  // them. Members with empty tokens are assigned tokens as by AddNode, after
  // all members with explicit tokens. Under strategy 3 explicit tokens must be
  // partition end tokens and, together, cover every partition exactly once.
  static absl::StatusOr<Ring> FromMembers(RingOptions options, std::vector<RingMember> members);

  const RingOptions& options() const { return options_; }
  // Sorted by id; each member's tokens sorted ascending.
  const std::vector<RingMember>& members() const { return members_; }
  // The changes that built this ring from an empty one, in order, while
  // those are all that built it; none once a member came with explicit
  // tokens (AddNode with tokens, FromMembers). Rings are deterministic, so
  // two rings of equal options and equal histories are equal: a node that
  // would rebuild its ring from a membership view skips the work when the
  // view's changes are the ring's history, and grows the ring when the
  // history is where they start.
  const std::optional<std::vector<RingChange>>& history() const { return history_; }
  bool Contains(NodeId id) const;
  size_t size() const { return members_.size(); }

  // Clears `out`, then appends the first `n` distinct physical nodes met
  // walking clockwise from `t` (the replicas; the first is the natural
  // coordinator), then up to `fallbacks_max` further distinct nodes in walk
  // order (the sloppy-quorum candidates of section 4.6). When members have
  // Z > 1 distinct zones, the replicas first cover min(n, Z) distinct zones
  // (in walk order) and are then filled with distinct nodes in walk order.
  // The result has min(n + fallbacks_max, size()) entries (min(n, size()) if
  // n > size()). Reuses out's capacity: no allocation once the lookup table
  // for `n` is built.
  void PreferenceList(Token t, size_t n, size_t fallbacks_max, std::vector<NodeId>* out) const;
  std::vector<NodeId> PreferenceList(std::string_view key, size_t n,
                                     size_t fallbacks_max = 0) const;

  // All elementary ranges in token order: arcs between consecutive tokens
  // (strategy 1) or the Q partitions (strategies 2 and 3). Every key falls in
  // exactly one, and all keys of one range have the same preference list.
  std::vector<TokenRange> Ranges() const;

  // The elementary ranges for which `node` is among the first n of the
  // preference list, in token order.
  std::vector<TokenRange> ReplicatedRanges(NodeId node, size_t n) const;

  // An elementary range whose set of n replicas differs between two rings.
  struct RangeMove {
    TokenRange range;
    std::vector<NodeId> from;  // preference list (first n) before
    std::vector<NodeId> to;    // preference list (first n) after
  };
  // Every elementary range of the union of both rings' boundaries whose set
  // of first-n replicas changed (a reordering of the same nodes moves no data
  // and is not reported), in token order.
  static std::vector<RangeMove> Diff(const Ring& before, const Ring& after, size_t n);

  struct NodeLoad {
    NodeId id = kNoNode;
    double weight = 1.0;
    double primary_share = 0;  // fraction of the token space it coordinates
    double replica_share = 0;  // fraction it stores as one of n replicas
    // replica_share divided by its fair share, n' * weight / total weight
    // with n' = min(n, size()): 1.0 is a perfectly balanced node.
    double relative_load = 0;
  };
  struct LoadStats {
    std::vector<NodeLoad> nodes;  // sorted by id
    double mean = 0;              // mean relative_load
    double max = 0;               // largest relative_load
    double efficiency = 0;        // mean / max, paper figure 8
    // Nodes whose relative load deviates more than 15% from the mean (6.2).
    size_t out_of_balance_count = 0;
  };
  LoadStats Balance(size_t n) const;

  // Partition helpers for strategies 2 and 3 (see the convention above).
  // REQUIRES: partitions >= 1, i < partitions.
  static Token PartitionEnd(size_t partitions, size_t i);
  static size_t PartitionOf(size_t partitions, Token t);

  // Member tokens of strategies 1 and 2: a pure function of the arguments.
  static Token RandomToken(uint64_t seed, NodeId id, uint64_t index);

 private:
  struct LookupTable;

  // A vector that copies of a ring share until one of them changes it. A
  // node keeps copies of its cluster's ring (the ring it serves and the one
  // it moves to), and a simulation holds hundreds of nodes: the rings'
  // partition ends and owners were most of a large simulation's memory, and
  // copying them most of its start.
  template <typename T>
  class SharedVector {
   public:
    SharedVector() : v_(std::make_shared<std::vector<T>>()) {}
    // Moving shares too (no move operations are declared), so a ring moved
    // from still holds its vectors, as a ring of std::vectors would hold
    // valid ones.
    SharedVector(const SharedVector&) = default;
    SharedVector& operator=(const SharedVector&) = default;
    SharedVector& operator=(std::vector<T> v) {
      v_ = std::make_shared<std::vector<T>>(std::move(v));
      return *this;
    }
    operator const std::vector<T>&() const { return *v_; }
    const std::vector<T>& get() const { return *v_; }
    size_t size() const { return v_->size(); }
    bool empty() const { return v_->empty(); }
    const T& operator[](size_t i) const { return (*v_)[i]; }
    auto begin() const { return v_->cbegin(); }
    auto end() const { return v_->cend(); }
    // The vector to change: copied first if another ring shares it. A
    // vector held by this ring alone may still have been read by another
    // thread's ring that let go of it just now; the fence orders those
    // reads before the writes that follow.
    std::vector<T>& Mutable() {
      if (v_.use_count() > 1) {
        v_ = std::make_shared<std::vector<T>>(*v_);
      } else {
        std::atomic_thread_fence(std::memory_order_acquire);
      }
      return *v_;
    }

   private:
    std::shared_ptr<std::vector<T>> v_;
  };

  absl::Status AddNodeInternal(RingMember member, bool allow_explicit_partitions);
  void InsertMember(RingMember member);  // keeps members_ sorted
  void RebuildPoints();
  void RebuildPartitionTokens();  // strategy 3: members' tokens from owners
  void FillPartitionEnds();       // strategy 3: point_tokens_, if not yet there
  void Invalidate();
  size_t RangeCount() const;
  size_t RangeOfToken(Token t, const LookupTable& table) const;
  // Walk start (index into point_tokens_) of elementary range r.
  size_t WalkStart(size_t range) const;
  const LookupTable& Table(size_t n, size_t fallbacks_max) const;
  void ComputeList(size_t start, size_t n, size_t len, std::vector<uint32_t>& seen,
                   uint32_t stamp, std::vector<uint32_t>* picked) const;
  void AssignPartitionsToNew(size_t member_index);
  void ReleasePartitionsOf(size_t member_index);

  RingOptions options_;
  SharedVector<RingMember> members_;  // sorted by id
  std::optional<std::vector<RingChange>> history_{std::in_place};
  // The ring positions, sorted, and the member index owning each.
  SharedVector<Token> point_tokens_;
  SharedVector<uint32_t> point_owners_;
  // Strategy 3: the member index holding each partition.
  SharedVector<uint32_t> partition_owner_;
  size_t zone_count_ = 0;
  std::vector<uint32_t> member_zone_;  // dense zone index per member

  // Lazily built lookup tables, one per replica count n; shared between
  // copies (they are immutable once built) and dropped on any change.
  mutable std::vector<std::shared_ptr<const LookupTable>> tables_;
};

}  // namespace dynamo

#endif  // DYNAMO_RING_H_

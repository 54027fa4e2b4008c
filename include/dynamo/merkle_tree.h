// MerkleTree: the hash tree of paper section 4.7 that lets two replicas of a
// key range find the keys on which they disagree while exchanging little
// more than the hashes of the differing branches.
//
// One tree covers one TokenRange. Its shape is fixed by MerkleOptions: a
// fan-out F and a depth D give F^D leaves; level 0 is the root and level D
// the leaves. A key lands in the leaf of its token's position inside the range
// (equal-width buckets), so both replicas put the same key in the same leaf
// without agreeing on anything but the range and the options.
//
// Hashes combine by XOR ("tictac" trees, as Riak's anti-entropy uses): a
// leaf's hash is the XOR of the KeyHash of its keys and an interior node's the
// XOR of its children. An update is therefore O(depth) XORs with no rehashing,
// a key can be added, changed or removed in any order, and the same set of
// (key, version) pairs always gives the same tree. Because KeyHash mixes the
// key with its version bytes through XXH3-64, an accidental cancellation of
// two differences has probability 2^-64. The flip side of XOR: structured
// per-key values (say, the same delta applied to two keys) cancel exactly, so
// callers must pass KeyHash values, never hand-made ones.
//
// MerkleDiff runs the comparison as an exchange of messages: the local side
// asks for the remote hashes of a batch of (level, index) nodes, descends into
// children only where the hashes differ, and ends with the exact list of
// differing leaves. The remote side answers with MerkleTree::AnswerRequest.
//
// Memory: 8 bytes per node, about 8 * F^D * F/(F-1) bytes (the defaults, F=16
// and D=4, take 560 KiB); use a smaller depth for many small ranges.
//
// Thread-safety: plain value types; one object needs external
// synchronization.
#ifndef DYNAMO_MERKLE_TREE_H_
#define DYNAMO_MERKLE_TREE_H_

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "dynamo/types.h"
#include "dynamo/version.h"

namespace dynamo {

struct MerkleOptions {
  size_t fanout = 16;  // children per interior node, >= 2
  int depth = 4;       // levels below the root, >= 1; leaves = fanout^depth
};

// Bounds checked by MerkleTree::Create.
inline constexpr size_t kMerkleLeavesMax = size_t{1} << 24;

// One node of a tree, as named in MerkleDiff requests.
struct MerkleNodeRef {
  int level = 0;       // 0 = root, depth = leaves
  uint64_t index = 0;  // 0 <= index < fanout^level
  friend bool operator==(const MerkleNodeRef&, const MerkleNodeRef&) = default;
};

class MerkleTree {
 public:
  // kInvalidArgument if fanout < 2, depth < 1, the leaf count exceeds
  // kMerkleLeavesMax, or the range holds fewer tokens than there are leaves.
  static absl::StatusOr<MerkleTree> Create(TokenRange range, MerkleOptions options = {});

  // The contribution of one key to the tree. `version_bytes` identifies the
  // stored state of the key: replicas that store the same state must pass the
  // same bytes (EncodeSiblingSet's output, as stored, serves). Never 0, since
  // 0 means "absent" in Update.
  static uint64_t KeyHash(std::string_view key, std::string_view version_bytes);
  // The contribution of a key holding `siblings` (not empty): XXH3-64 of the
  // key followed by each version's dot (actor, counter, timestamp as 64-bit
  // little-endian) and tombstone flag (one byte), in the set's canonical
  // order.
  // A dot names one write, whose value and context never change, and
  // reconciliation treats versions with equal dots as one (Version::Descends):
  // replicas holding different bytes under one dot could never be repaired
  // by an exchange, only exchange forever, so neither value nor context takes
  // part. Nothing is read but the dots, because every replicated write
  // computes this twice (before and after) and the old set's value is a cache
  // miss away.
  static uint64_t KeyHash(std::string_view key, const SiblingSet& siblings);

  // Replaces a key's contribution: old_key_hash is what the tree holds for it
  // (0 if it was absent), new_key_hash what it should hold (0 to remove it).
  // O(depth). kInvalidArgument if `token` is outside the range.
  absl::Status Update(Token token, uint64_t old_key_hash, uint64_t new_key_hash);
  // A hint that Update(token, ...) follows soon: starts loading the nodes it
  // will change, so that their cache misses (one per level, in a tree among
  // hundreds) overlap with what the caller does in between, such as the
  // storage write whose hashes it will pass. Changes no hash (it remembers
  // the token's leaf for that Update); a token outside the range is ignored.
  void Prefetch(Token token);

  // Forgets every key.
  void Clear();

  uint64_t Root() const { return nodes_[0]; }
  // REQUIRES: 0 <= level <= depth, index < NodesAt(level).
  uint64_t Hash(int level, uint64_t index) const { return nodes_[offsets_[level] + index]; }
  // The hashes of the children of an interior node, in order.
  // REQUIRES: level < depth, index < NodesAt(level).
  std::vector<uint64_t> ChildHashes(int level, uint64_t index) const;

  // Hashes of the requested nodes, in request order, for the remote side of
  // a MerkleDiff. The request comes from the network: kInvalidArgument if a
  // node does not exist in this tree.
  absl::Status AnswerRequest(absl::Span<const MerkleNodeRef> request,
                             std::vector<uint64_t>* hashes) const;

  size_t LeafOf(Token token) const;     // REQUIRES: range().Contains(token)
  TokenRange LeafRange(uint64_t leaf) const;  // REQUIRES: leaf < leaf_count()

  const TokenRange& range() const { return range_; }
  const MerkleOptions& options() const { return options_; }
  uint64_t NodesAt(int level) const { return offsets_[level + 1] - offsets_[level]; }
  uint64_t leaf_count() const { return NodesAt(options_.depth); }
  // Keys the tree holds, assuming updates named the old hashes correctly.
  size_t key_count() const { return key_count_; }
  // Same range and options: hashes of the two trees are comparable.
  bool SameShape(const MerkleTree& other) const {
    return range_ == other.range_ && options_.fanout == other.options_.fanout &&
           options_.depth == other.options_.depth;
  }

 private:
  MerkleTree(TokenRange range, MerkleOptions options);
  // The index of a node's parent, one level up.
  uint64_t Parent(uint64_t index) const {
    return fanout_shift_ >= 0 ? index >> fanout_shift_ : index / options_.fanout;
  }

  // Laid out for a write, which reads the first two cache lines (64 bytes
  // each, the object 64-aligned in AntiEntropy's ranges) and writes the
  // third: a node keeps ~1000 trees, and each line of one is a likely miss.
  TokenRange range_;
  std::vector<uint64_t> nodes_;  // all levels, root first
  // Offsets relative to range_.begin + 1 are bucketed as
  // floor((offset >> shift_) * leaves / scaled_size_), exact in 128 bits.
  int shift_ = 0;
  int fanout_shift_ = -1;     // log2(fanout) when it is a power of two
  uint64_t scaled_size_ = 0;  // ((size - 1) >> shift_) + 1, <= 2^64 - 1
  MerkleOptions options_;
  // depth + 2 entries: start of each level (fewer than 2^26 nodes, as
  // kMerkleLeavesMax bounds the leaves). Inline for depths up to 4, so that
  // an update does not miss on a separate allocation first.
  absl::InlinedVector<uint32_t, 6> offsets_;
  size_t key_count_ = 0;
  // The leaf the last Prefetch found, for the Update that follows it (a
  // write would otherwise find it twice). The shape never changes, so the
  // pair stays true.
  bool prefetched_ = false;
  Token prefetched_token_ = 0;
  uint64_t prefetched_leaf_ = 0;
};

// The local side of a tree comparison, as a state machine driven by messages:
//
//   MerkleDiff diff(&local);
//   while (!diff.done()) {
//     send(diff.request());                 // a batch of (level, index)
//     reply = remote.AnswerRequest(...);    // their hashes, same order
//     DYNAMO_RETURN_IF_ERROR(diff.AcceptReply(reply));
//   }
//   diff.differing_leaves();                // exchange these leaves' keys
//
// Each batch holds at most `request_nodes_max` nodes, so every message is
// bounded. Identical trees take one round (the root). The local tree must
// not change during the diff (changes make the result stale, not wrong in
// memory terms: leaves are only ever indices into the fixed shape).
class MerkleDiff {
 public:
  struct Options {
    size_t request_nodes_max = 4096;  // nodes per request batch, >= 1
  };
  // `local` is borrowed and must outlive the diff.
  explicit MerkleDiff(const MerkleTree* local) : MerkleDiff(local, Options{}) {}
  MerkleDiff(const MerkleTree* local, Options options);

  bool done() const { return request_.empty(); }
  // The nodes whose remote hashes are needed next; empty when done.
  const std::vector<MerkleNodeRef>& request() const { return request_; }
  // The remote hashes for request(), in the same order. kInvalidArgument if
  // the count does not match (the diff is then unchanged).
  absl::Status AcceptReply(absl::Span<const uint64_t> remote_hashes);

  // Sorted, final once done().
  const std::vector<uint64_t>& differing_leaves() const { return differing_leaves_; }

  // Cost counters.
  size_t rounds() const { return rounds_; }                    // replies accepted
  size_t hashes_exchanged() const { return hashes_exchanged_; }  // remote hashes received
  size_t leaves_compared() const { return leaves_compared_; }    // leaf hashes received

 private:
  void FillRequest();

  const MerkleTree* local_;
  Options options_;
  std::vector<MerkleNodeRef> pending_;  // FIFO of nodes still to ask about
  size_t pending_head_ = 0;
  std::vector<MerkleNodeRef> request_;
  std::vector<uint64_t> differing_leaves_;
  size_t rounds_ = 0;
  size_t hashes_exchanged_ = 0;
  size_t leaves_compared_ = 0;
};

}  // namespace dynamo

#endif  // DYNAMO_MERKLE_TREE_H_

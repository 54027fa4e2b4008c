// Membership: who is in the cluster, as each node believes it (paper 4.8).
// Every member has one entry (address, zone, weight, status, epoch) carrying
// a version that whoever changes the entry increments. Views are merged entry
// by entry, the higher version winning and ties broken by content, so merging
// is commutative, associative and idempotent: nodes that have seen the same
// entries hold the same view, whatever the order they arrived in. Gossip
// spreads the entries; the view is persisted in the storage engine's
// metadata namespace so a restarted node remembers the ring.
//
// The ring is derived from the view, not stored: members joined and were
// removed at positions (sequence numbers) in the cluster's history, and
// replaying those events in order with Ring::AddNode / RemoveNode gives every
// node the same token assignment, with the minimal movement each single
// change implies (paper 4.9).
//
// Statuses: kJoining (receiving its ranges; gets writes, serves no reads),
// kUp, kLeaving (handing its data to the new owners), kRemoved (kept as a
// tombstone entry so the removal itself is remembered and replayed).
#ifndef DYNAMO_MEMBERSHIP_H_
#define DYNAMO_MEMBERSHIP_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "dynamo/ring.h"
#include "dynamo/types.h"

namespace dynamo {

enum class MemberStatus : uint8_t { kJoining = 1, kUp = 2, kLeaving = 3, kRemoved = 4 };
const char* MemberStatusName(MemberStatus status);

struct MemberEntry {
  NodeId id = kNoNode;
  std::string address;  // how the transport reaches it ("" in simulation)
  std::string zone;
  double weight = 1.0;
  MemberStatus status = MemberStatus::kUp;
  uint64_t version = 0;     // incremented by every change to this entry
  uint64_t join_seq = 0;    // position of the join in the cluster's history
  uint64_t remove_seq = 0;  // position of the removal (leaving/removed), else 0
  uint64_t epoch = 1;       // the member's vector-clock epoch
  ActorId actor = 0;        // its vector-clock actor in that epoch (0: not yet announced)
  friend bool operator==(const MemberEntry&, const MemberEntry&) = default;
};

class Membership {
 public:
  // A view in which every member of `ring` is up, joined in id order (the
  // first start of a statically configured cluster).
  static Membership FromRing(const Ring& ring);

  // Merges one entry; true if the view changed.
  bool Merge(const MemberEntry& entry);
  bool MergeAll(const std::vector<MemberEntry>& entries);

  // Every entry, in id order.
  const std::vector<MemberEntry>& entries() const { return entries_; }
  // The member's entry, or null. Valid until the next Merge: an entry added
  // moves the others.
  const MemberEntry* Find(NodeId id) const;
  // Members not removed, in id order. Kept until an entry is added or its
  // status changes (each gossip round picks its peer from it; walking the
  // view for it every round was 6% of an idle 500-node simulation); like
  // RingChanges, a const call may fill that cache.
  const std::vector<NodeId>& Live() const;

  // Each entry's digest, a hash of its encoding, in id order: what gossip
  // compares. Kept as entries change, so a gossip round neither re-encodes
  // the view nor hashes it (with 100 members that was 40% of an idle
  // simulation's time).
  using Digest = std::vector<std::pair<NodeId, uint64_t>>;
  const Digest& digest() const { return digest_; }
  // One hash of the whole digest: views holding the same entries have the
  // same one, so a gossip round that finds its peer agreeing sends 8 bytes
  // instead of 16 per member (in an idle 1000-node simulation, encoding and
  // decoding full digests was a third of the time). Computed when first
  // asked for after a change, then kept (a const call may fill the cache).
  uint64_t ViewDigest() const;

  // One past the largest sequence number in the view.
  uint64_t NextSeq() const;

  // What a ring is computed from: the view's joins and removals as ring
  // changes, in the order they are replayed (by sequence number), each join
  // with the member's zone and weight. Views with equal changes build equal
  // rings, so a node rebuilds its rings only when these differ from its
  // rings' histories, not when an entry changes only its actor, address or
  // epoch (every node announces those as it starts, and with hundreds of
  // members the rebuilds were most of a simulation's time). With `pending`,
  // the changes of the ring the cluster is moving to (see BuildRing).
  // Computed when first asked for after a change of what rings are built
  // from (an entry added, or its status, sequence numbers, zone or weight
  // changed), then kept: a const call may fill that cache, so one view needs
  // external synchronization even between const calls.
  const std::vector<RingChange>& RingChanges(bool pending) const;
  // Counts the changes of what rings are built from: while it stays the
  // same, so do RingChanges(), and a node whose rings follow them need not
  // compare them again (with 1000 members that comparison, on every view
  // change, was 5% of starting a simulation).
  uint64_t ring_inputs_version() const { return ring_inputs_version_; }
  // The ring `changes` describe, replayed in order on an empty ring.
  static absl::StatusOr<Ring> BuildRing(const RingOptions& options,
                                        const std::vector<RingChange>& changes);
  // The same ring, grown from `base` when base has these options and its
  // history is where `changes` start: replaying is deterministic, so applying
  // the rest to `base` gives what replaying all would (a join or removal
  // then costs one ring change, not a replay of the cluster's history).
  // Otherwise replays all.
  static absl::StatusOr<Ring> BuildRing(const RingOptions& options,
                                        const std::vector<RingChange>& changes, const Ring& base);

  // The ring that serves requests: members up or leaving. With `pending`,
  // the ring the cluster is moving to: joining members in, leaving ones out.
  absl::StatusOr<Ring> BuildRing(const RingOptions& options, bool pending) const {
    return BuildRing(options, RingChanges(pending));
  }

 private:
  // The entries, their digests and their encodings, each in id order: one
  // binary search over digest_ finds a member in all three (a tree of
  // entries per node cost a cache miss per level; with 1000 members finding
  // entries was a sixth of starting a simulation).
  size_t IndexOf(NodeId id) const;
  std::vector<MemberEntry> entries_;
  Digest digest_;
  // Each entry's encoding, in id order: what the digest hashes, what
  // equal-version conflicts are ordered by, and what the view is persisted
  // as (on every change; re-encoding all entries each time was a fifth of
  // starting 500 nodes).
  std::vector<std::string> entry_bytes_;
  void DropRingChanges() {
    ++ring_inputs_version_;
    for (auto& changes : ring_changes_) changes.reset();
  }
  // RingChanges(false) and RingChanges(true), once computed.
  mutable std::optional<std::vector<RingChange>> ring_changes_[2];
  uint64_t ring_inputs_version_ = 0;
  mutable std::optional<std::vector<NodeId>> live_;  // Live(), once computed
  mutable std::optional<uint64_t> view_digest_;      // ViewDigest(), once computed

  friend std::string EncodeMemberEntries(const Membership& view);
};

// Wire and storage form of a list of entries. Decoding is bounded and
// returns kInvalidArgument for malformed bytes.
std::string EncodeMemberEntries(const std::vector<MemberEntry>& entries);
// The whole view, as EncodeMemberEntries(view.entries()) without encoding it.
std::string EncodeMemberEntries(const Membership& view);
absl::StatusOr<std::vector<MemberEntry>> DecodeMemberEntries(std::string_view bytes);

}  // namespace dynamo

#endif  // DYNAMO_MEMBERSHIP_H_

// Node: one Dynamo storage node (paper section 4). It composes the pieces:
// a Ring to place keys, a StorageEngine to keep them, a Runtime for time,
// timers, randomness and the network, and a Coordinator that runs each
// client request as a small state machine. It also serves the replica side
// of other nodes' requests, keeps hints for unreachable peers and hands them
// back when they recover (hinted handoff, 4.6), and tracks which peers answer
// (FailureDetector, 4.8).
//
// A Node is a single-threaded deterministic state machine: it does nothing
// but react to messages and timers delivered by its Runtime, so it runs the
// same in a seeded simulation and in a TCP server.
//
// Thread-safety: all methods, and all callbacks, run on the runtime's thread.
// Ownership: the runtime and the storage engine are borrowed and must
// outlive the node.
#ifndef DYNAMO_NODE_H_
#define DYNAMO_NODE_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dynamo/context.h"
#include "dynamo/coordinator.h"
#include "dynamo/failure_detector.h"
#include "dynamo/membership.h"
#include "dynamo/metrics.h"
#include "dynamo/options.h"
#include "dynamo/ring.h"
#include "dynamo/runtime.h"
#include "dynamo/storage_engine.h"

namespace dynamo {

namespace internal {
struct ReplicaPutReply;
struct JoinRequest;
struct JoinReply;
struct TransferRequest;
}  // namespace internal

namespace internal {
struct CodecLimits;
class AdmissionController;
class AntiEntropy;
class ObservedStorage;
class DotCounter;
}  // namespace internal

class Node {
 public:
  // Starts a node on `runtime` with `storage`. The storage's identity record
  // decides the node's vector-clock actor: kept across restarts, drawn anew
  // (from the runtime's random source) when the storage holds none, e.g.
  // after the disk was wiped. The record is rewritten at once with a new
  // dot counter lease (NodeIdentity::counter_lease_end), so dot counters
  // resume above any an earlier run minted. Fails with kFailedPrecondition
  // if the storage belongs to another node id, kInvalidArgument for invalid
  // options (a bucket with R or W > N, N > ring size, or zero; a zero
  // dot_counter_lease_counters), and passes on storage errors.
  // REQUIRES: runtime and storage non-null.
  static absl::StatusOr<std::unique_ptr<Node>> Create(NodeOptions options, Runtime* runtime,
                                                      StorageEngine* storage, Ring ring);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // The paper's interface (4.1). The callback runs exactly once, on this
  // node's thread, possibly before the call returns when the request fails
  // at once.
  void Get(std::string_view bucket, std::string_view key, GetCallback done);
  void Put(std::string_view bucket, std::string_view key, const Context& context,
           std::string value, PutCallback done);
  void Delete(std::string_view bucket, std::string_view key, const Context& context,
              PutCallback done);
  // A hint that requests for these keys come soon, in this order
  // (StorageEngine::Prefetch of their local copies): a server holding a
  // pipelined batch names the batch's keys before serving the first.
  // Changes nothing.
  void Prefetch(std::string_view bucket, std::span<const std::string_view> keys);

  // Replaces the node's view of the ring with a static one (every member
  // up). For tests and embedders without gossip; membership changes made
  // with Join/Leave/Remove replace it again.
  absl::Status SetRing(Ring ring);

  // Membership administration (paper 4.8: joins and removals are explicit).
  // Join: ask `seed`, any member, to add this node; it then pulls the ranges
  // it will own and becomes up. `done` says whether the seed accepted.
  void Join(NodeId seed, PutCallback done);
  // Marks this node leaving: it hands its data to the new owners, then marks
  // itself removed.
  absl::Status Leave();
  // Removes another node (e.g. a dead one) from the ring; the new owners of
  // its ranges pull them from the remaining replicas. Failure detection
  // never does this by itself.
  absl::Status Remove(NodeId id);

  const Membership& membership() const { return membership_; }
  // The ring the cluster is moving to (equal to ring() when nothing moves).
  const Ring& pending_ring() const { return pending_ring_; }
  // Ownership transfers queued or running.
  size_t transfers_pending() const { return transfers_.size(); }

  NodeId id() const { return runtime_->self(); }
  // The node's identity; its counter lease end is always the stored one.
  const NodeIdentity& identity() const;
  const Ring& ring() const { return ring_; }
  const NodeOptions& options() const { return options_; }
  const NodeMetrics& metrics() const { return metrics_; }
  const FailureDetector& failure_detector() const { return failure_detector_; }
  StorageEngine& storage() { return *storage_; }
  size_t hint_deliveries_in_flight() const { return hint_deliveries_.size(); }
  // Checks each built Merkle tree (paper 4.7) against a scan of the keys it
  // covers: kInternal naming the first range that differs. It reads all of
  // storage in one call, during which the node does nothing else: for tests
  // and maintenance, not for a node under load.
  absl::Status VerifyMerkleTrees();

 private:
  struct Transfer {
    TokenRange range;
    std::vector<NodeId> sources;  // every old owner; each is pulled fully
    size_t source_index = 0;
    size_t source_failures = 0;
    size_t sources_done = 0;
    std::string cursor;
    uint64_t request_id = 0;  // 0 when no batch is outstanding
    TimerId timer = kNoTimer;
    bool for_join = false;
  };
  struct PushedKey {  // a key handed to its owners, dropped once all confirm
    std::string key;
    SiblingSet siblings;
    size_t acks_needed = 0;
    bool erase_when_confirmed = true;
    std::vector<NodeId> targets;  // the owners it was pushed to
  };
  struct HintDelivery {
    NodeId owner;
    std::string key;
    SiblingSet siblings;
    TimerId timeout;
  };

  Node(NodeOptions options, Runtime* runtime, StorageEngine* storage, Ring ring);
  absl::Status Start();
  void OnMessage(NodeId from, std::string_view bytes);
  // The transport's lookahead: names the keys of the replica reads and
  // writes among `messages` to storage before they are handled.
  void LookAhead(std::span<const std::string_view> messages);
  void SendMessage(NodeId to, std::string bytes);
  void OnReplicaPutReply(NodeId from, const internal::ReplicaPutReply& reply);
  // Queues a replica's "done" for `to` (a put, or a get that found the
  // coordinator's known versions); the turn's acks to `to` leave as one
  // ReplicaAcks message when the turn ends (FlushAcks).
  void SendAck(NodeId to, uint64_t request_id, bool is_get);
  void FlushAcks();
  void ScheduleHandoff();
  void DeliverHints();
  void OnHintDelivered(uint64_t id, bool ok);
  void ScheduleProbe();
  void ScheduleFlush();

  // Membership and gossip.
  absl::Status LoadMembership(const Ring& initial);
  void OnMembershipChanged();
  void UpdateOwnEntry(const std::function<void(MemberEntry&)>& change);
  void ScheduleGossip();
  void GossipRound();
  void OnGossipSummary(NodeId from, uint64_t view_digest);
  void OnGossipDigest(NodeId from, const Membership::Digest& digest);
  void OnGossipEntries(NodeId from, std::string_view entries, const std::vector<NodeId>& wanted);
  size_t ReplicationMax() const;
  void OnJoinRequest(NodeId from, const internal::JoinRequest& request);
  void OnJoinReply(const internal::JoinReply& reply);
  void OnTransferRequest(NodeId from, const internal::TransferRequest& request);

  // Ownership transfer.
  void EnqueueTransfers(const Ring& before, const Ring& after, bool for_join);
  void PumpTransfers();
  void OnTransferBatch(NodeId from, uint64_t request_id, int code,
                       std::vector<std::pair<std::string, SiblingSet>>& entries,
                       std::string next_cursor);
  void OnTransferTimeout(uint64_t request_id);
  void FinishTransferSource(Transfer& t, bool success);
  void RetireTransfers();
  void ScheduleCleanup();
  void Sweep();
  bool OnPushAck(NodeId from, uint64_t request_id, bool ok);
  void RestartLeavePass();
  void SettleOwnEntry();
  void FinishLeave();

  NodeOptions options_;
  Runtime* runtime_;
  StorageEngine* storage_;
  Ring ring_;          // serves requests: members up or leaving
  Ring pending_ring_;  // where the cluster is moving: joiners in, leavers out
  // pending_ring_ while it differs from ring_, else empty: the coordinator
  // copies writes to owners-to-be only during a move (otherwise it would
  // hash the key and walk the ring a second time per write for nothing).
  Ring moving_to_;
  Membership membership_;
  bool fresh_identity_ = false;  // identity created at this start (no data)
  // Owns the identity record and mints the counters of the node's dots.
  std::unique_ptr<internal::DotCounter> dot_counter_;
  // What peers' messages are decoded with: the engine's limits (fixed for
  // its life), computed once rather than per message.
  std::unique_ptr<const internal::CodecLimits> codec_limits_;
  NodeMetrics metrics_;
  FailureDetector failure_detector_;
  uint64_t request_id_counter_ = 0;
  std::unique_ptr<Coordinator> coordinator_;

  struct PendingAcks {
    NodeId to;
    std::vector<uint64_t> puts;
    std::vector<uint64_t> gets_same_as_known;
  };
  std::vector<PendingAcks> acks_pending_;  // one per coordinator answered this turn
  TimerId acks_flush_ = kNoTimer;          // the deferred FlushAcks
  // Prefetch's and LookAhead's batch of storage keys (kept for their
  // capacity), and the bytes of the keys Prefetch builds.
  std::vector<std::string_view> prefetch_keys_;
  std::string prefetch_bytes_;

  std::map<uint64_t, HintDelivery> hint_deliveries_;
  std::string hint_cursor_;
  TimerId handoff_timer_ = kNoTimer;
  TimerId probe_timer_ = kNoTimer;
  TimerId flush_timer_ = kNoTimer;
  TimerId gossip_timer_ = kNoTimer;
  TimerId cleanup_timer_ = kNoTimer;
  TimerId transfer_pump_timer_ = kNoTimer;
  // The pause before the next transfer batches: transfer_batch_interval in
  // proportion to how full the last batch was.
  absl::Duration transfer_pause_;
  uint64_t gossip_round_ = 0;
  std::map<uint64_t, std::pair<PutCallback, TimerId>> joins_;  // request id -> callback, timeout
  TimerId settle_timer_ = kNoTimer;
  std::vector<Transfer> transfers_;
  bool join_transfers_enqueued_ = false;
  // Sweep state: a cursor over this node's data, and keys pushed to their
  // owners awaiting acknowledgements (request id -> index in pushed_).
  std::string sweep_cursor_;
  bool leave_pass_ = false;  // sweeping to hand everything over before removal
  bool leave_final_batch_ = false;   // the current batch ends the pass
  bool leave_batch_failed_ = false;  // an owner refused: the pass starts over
  bool own_entry_settled_ = true;    // see OnMembershipChanged
  // The view's ring_inputs_version() when ring_ and pending_ring_ were last
  // found to follow it.
  std::optional<uint64_t> rings_follow_inputs_;
  std::map<uint64_t, size_t> push_requests_;
  std::vector<PushedKey> pushed_;
  uint64_t push_generation_ = 0;
  // Anti-entropy and admission control (lib/node/anti_entropy.h, admission.h);
  // storage_ points at observed_storage_ once started.
  std::unique_ptr<internal::AdmissionController> admission_;
  std::unique_ptr<internal::ObservedStorage> observed_storage_;
  std::unique_ptr<internal::AntiEntropy> anti_entropy_;
};

}  // namespace dynamo

#endif  // DYNAMO_NODE_H_

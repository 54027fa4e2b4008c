// Coordinator: the request path of paper sections 4.5 and 4.6. One small
// state machine per client request:
//
//   put: build a version that descends from the caller's context, write it
//        locally, send it to the rest of the key's N-replica preference list
//        and succeed once W replicas (this one included) acknowledged.
//        Replicas known to be unreachable, or that miss the replica timeout,
//        are replaced by the next healthy nodes on the ring, which keep the
//        version as a hint for the intended owner (sloppy quorum).
//   get:  ask the N replicas, answer once R replied with every causally
//        unrelated version (syntactic reconciliation), then send the
//        reconciled set to replicas that answered with less (read repair).
//
// A node not among a key's top N forwards the request to one that is. The
// same class also runs inside the partition-aware client library (paper
// 6.4) with no local storage: it coordinates reads itself and sends writes
// to the replica that answered the previous read fastest.
//
// Every request has a deadline; failures say why (kUnavailable: too few
// replicas reachable; kDeadlineExceeded: too few answered in time) and how
// many replicas answered.
//
// Thread-safety: used on the owning node's thread only. Callbacks run on it.
#ifndef DYNAMO_COORDINATOR_H_
#define DYNAMO_COORDINATOR_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "dynamo/context.h"
#include "dynamo/failure_detector.h"
#include "dynamo/metrics.h"
#include "dynamo/options.h"
#include "dynamo/ring.h"
#include "dynamo/runtime.h"
#include "dynamo/storage_engine.h"

namespace dynamo {

namespace internal {
struct ReplicaPutReply;
struct ReplicaGetReply;
struct ClientRequest;
struct ClientReply;
class DotCounter;
}  // namespace internal

using GetCallback = absl::AnyInvocable<void(absl::StatusOr<GetResult>)>;
using PutCallback = absl::AnyInvocable<void(absl::Status)>;

// What a coordinator works with. Nothing here is owned by the coordinator;
// everything must outlive it.
struct CoordinatorEnv {
  Runtime* runtime = nullptr;
  // Null for a client-side coordinator: it then coordinates gets remotely
  // and sends puts to a replica.
  StorageEngine* storage = nullptr;
  const Ring* ring = nullptr;  // the current ring; the object may change between requests
  // The ring the cluster is moving to during a membership change; null or
  // empty when it is not moving.
  // Its owners that are not yet owners get a copy of every write (not
  // counted toward W), so nothing written during a transfer is missed.
  const Ring* pending_ring = nullptr;
  FailureDetector* failure_detector = nullptr;
  const NodeOptions* options = nullptr;
  NodeMetrics* metrics = nullptr;
  ActorId actor = 0;                      // this node's vector-clock actor
  // Where the counters of `actor`'s dots come from. Required with storage.
  internal::DotCounter* dot_counter = nullptr;
  uint64_t* request_id_counter = nullptr;  // shared with the node's other requesters
};

class Coordinator {
 public:
  explicit Coordinator(CoordinatorEnv env);
  ~Coordinator();  // pending requests are dropped without calling back
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  void Get(std::string_view bucket, std::string_view key, GetCallback done);
  void Put(std::string_view bucket, std::string_view key, const Context& context,
           std::string value, PutCallback done);
  void Delete(std::string_view bucket, std::string_view key, const Context& context,
              PutCallback done);

  // A request sent by a client or forwarded by another node; the reply goes
  // back to `from`.
  void HandleClientRequest(NodeId from, internal::ClientRequest request);

  // Replies to requests this coordinator sent. Return false if the request
  // id is not one of ours (it may belong to another component).
  bool OnReplicaPutReply(NodeId from, const internal::ReplicaPutReply& reply);
  bool OnReplicaGetReply(NodeId from, internal::ReplicaGetReply&& reply);
  bool OnClientReply(NodeId from, internal::ClientReply&& reply);

  // Gets and puts whose callers still wait, plus forwarded requests.
  size_t requests_in_flight() const;

  // The key under which a bucket's key is stored and placed on the ring.
  static std::string StorageKey(std::string_view bucket, std::string_view key);
  // Appends StorageKey(bucket, key) to `out`.
  static void AppendStorageKey(std::string_view bucket, std::string_view key, std::string* out);

 private:
  struct PutOp;
  struct GetOp;
  struct ForwardOp;
  enum class Route { kLocal, kForward, kFailed };

  const BucketOptions* FindBucket(std::string_view bucket) const;
  absl::Status CheckRequest(std::string_view bucket, std::string_view key, size_t value_bytes,
                            const BucketOptions** out) const;
  void Read(std::string_view bucket, std::string_view key, uint32_t hops, GetCallback done);
  void Write(const BucketOptions& bucket, std::string_view key, const Context& context,
             std::string value, bool tombstone, uint32_t hops, PutCallback done);
  void Forward(absl::Span<const NodeId> candidates, internal::ClientRequest request,
               GetCallback get_done, PutCallback put_done, ConflictPolicy policy);
  void ForwardAttempt(uint64_t id);
  void StartGet(const BucketOptions& bucket, std::string skey, absl::Span<const NodeId> owners,
                GetCallback done);
  void FinishGet(GetOp& op, absl::Status status);
  void MaybeCompleteGet(uint64_t id);
  void RepairAndRetire(uint64_t id);
  // Sends the reconciled set to every replica whose reply differs from it.
  void Repair(GetOp& op);
  // After FinishGet gave the reconciled set away: rebuilds it from this
  // node's storage and the later replies, or returns false when no reply
  // differs (or storage fails) and there is nothing to repair.
  bool TakeBackReconciled(GetOp& op);
  struct RequestTimer;
  struct TimerLane;
  enum class TimerKind : uint8_t { kPut, kGet, kForward };
  // Arms a request's timer for `step` (a replica timeout), or for what is
  // left until the deadline if that is sooner. REQUIRES: the request is in
  // its map (puts_, gets_, forwards_), where the lane looks for it.
  void Arm(RequestTimer& timer, absl::Duration step, TimerKind kind, uint64_t id);
  // Disarms it: the lane entry goes stale and is dropped without firing.
  static void Disarm(RequestTimer& timer);
  // Called first when a request's timer fires: true at the deadline.
  bool Fired(RequestTimer& timer);
  // The runtime timer of `lane` fired: runs the request timers that are due.
  void OnLaneTimer(TimerLane* lane);
  // True if the request the entry was armed for still waits on it.
  bool LaneEntryLive(TimerKind kind, uint64_t id, uint64_t arm) const;
  void ArmLane(TimerLane& lane);
  void DropStaleEntries(TimerLane& lane);
  void OnGetTimer(uint64_t id);
  void OnPutTimer(uint64_t id);
  void OnForwardTimer(uint64_t id);
  void FinishPut(PutOp& op, absl::Status status);
  // Records a replica's answer and merges its versions into the get's.
  void AddReply(GetOp& op, NodeId from, SiblingSet siblings);
  // The op's replica write, addressed to `hint_owner` (kNoNode: a real owner).
  std::string EncodeReplicaWrite(PutOp& op, NodeId hint_owner);
  void MaybeRetirePut(uint64_t id);
  // Retires the oldest finished requests while more than
  // requests_in_flight_max of them still wait on replicas.
  void ShedSettling();
  void Send(NodeId to, std::string bytes);
  void SendToAll(absl::Span<const NodeId> targets, std::string bytes);
  uint64_t NextRequestId() { return ++*env_.request_id_counter; }
  NodeId self() const { return env_.runtime->self(); }

  CoordinatorEnv env_;
  // By request id. A callback run while one is looked up may add requests
  // (and rehash), so code that ran a callback finds its request again by id.
  absl::flat_hash_map<uint64_t, std::unique_ptr<PutOp>> puts_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<GetOp>> gets_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<ForwardOp>> forwards_;
  // Gets and puts whose callback has not run yet.
  size_t callers_waiting_ = 0;
  // Ids of finished gets and puts in finishing order, some still waiting on
  // replicas (see ShedSettling), some already retired (dropped lazily).
  std::deque<uint64_t> settling_;
  // Request timers, one lane per delay in use (a handful: the replica
  // timeout and what is left of the deadline after it); see TimerLane.
  std::vector<std::unique_ptr<TimerLane>> timer_lanes_;
  uint64_t timer_arms_ = 0;  // numbers each arming, so stale entries are known
  std::vector<NodeId> walk_scratch_;
};

// Builds what a get returns from the reconciled versions.
GetResult MakeGetResult(SiblingSet versions, ConflictPolicy policy, NodeId fastest,
                        size_t replicas_answered);

}  // namespace dynamo

#endif  // DYNAMO_COORDINATOR_H_

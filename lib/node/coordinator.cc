#include "dynamo/coordinator.h"

#include <algorithm>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "node/dot_counter.h"
#include "node/messages.h"

namespace dynamo {

using internal::ClientOp;
using internal::ClientReply;
using internal::ClientRequest;
using internal::EncodeMessage;
using internal::ReplicaGet;
using internal::ReplicaGetReply;
using internal::ReplicaPut;
using internal::ReplicaPutReply;

namespace {
// Preference lists are short (N plus a few fallbacks): kept inline in the op.
using NodeList = absl::InlinedVector<NodeId, 8>;
}  // namespace

// One timer per request: it fires at each replica timeout (the request's
// next step) and at the latest at the request deadline, which is reached
// when the delays of the timers that fired add up to request_timeout. A
// deadline timer beside a replica timer cost every request a schedule and a
// cancel more, and most requests finish before either fires.
struct Coordinator::RequestTimer {
  uint64_t arm = 0;       // the arming its lane entry must match; 0: disarmed
  absl::Duration waited;  // the delays of the timers that fired
  absl::Duration armed;   // the delay of the one armed
};

// Request timers armed with the same delay, in arming order, which (time
// being monotonic) is the order they fall due: one runtime timer, for the
// first entry still armed, serves them all. Almost every request finishes
// before its timer would fire, and finishing only disarms it (the entry
// goes stale and is skipped when reached), so a request costs the runtime
// no timer of its own: no schedule, no cancel, and no timer slot.
struct Coordinator::TimerLane {
  struct Entry {
    absl::Duration due;  // on Runtime::Elapsed(): a wall clock step moves no deadline
    uint64_t id;
    uint64_t arm;
    TimerKind kind;
  };
  absl::Duration delay;
  std::deque<Entry> entries;
  TimerId timer = kNoTimer;  // armed for the first live entry's due time
  bool firing = false;       // OnLaneTimer runs; it arms the timer when done
};

struct Coordinator::PutOp {
  struct Target {
    NodeId node = kNoNode;
    NodeId hint_owner = kNoNode;  // kNoNode: node is a real owner
    bool replied = false;
    bool replaced = false;  // timed out and handed to a fallback
  };
  uint64_t id = 0;
  size_t w = 0;
  // The replica write, built once: its key, and the new version as a
  // one-element sibling set, are what the coordinator stores locally; once
  // stored, the coordinator's other siblings with its actor join it (see
  // Put) and it is sent to every replica (hint_owner set per target).
  internal::ReplicaPut write;
  NodeList fallbacks;  // healthy candidates not yet used, in ring order
  absl::InlinedVector<Target, 4> targets;
  size_t acks = 0;
  size_t errors = 0;
  bool done = false;
  RequestTimer timer;
  PutCallback callback;
};

struct Coordinator::GetOp {
  // A replica's answer, kept as the dots of the versions it held: a dot
  // names one write, so a reply is current exactly when its dots are the
  // reconciled set's (read repair needs no more of it).
  struct Reply {
    NodeId node;
    absl::InlinedVector<Dot, 2> dots;
  };
  uint64_t id = 0;
  size_t r = 0;
  ConflictPolicy policy = ConflictPolicy::kKeepSiblings;
  std::string skey;
  NodeList targets;  // remote replicas asked
  bool local = false;  // this node read its own copy too
  absl::InlinedVector<Reply, 3> replies;
  // Every reply's versions merged in (moved, not copied) as it arrives.
  SiblingSet reconciled;
  // FinishGet moved `reconciled` into the caller's result instead of
  // copying it, because this node's own reply held exactly that set: read
  // repair, needed only when a reply differs, takes the set from local
  // storage again. `reconciled` then holds what later replies brought.
  bool reconciled_given = false;
  size_t errors = 0;
  NodeId fastest = kNoNode;
  bool done = false;
  bool replica_timeout_passed = false;
  RequestTimer timer;
  GetCallback callback;
};

struct Coordinator::ForwardOp {
  internal::ClientRequest request;  // kept to retry on another replica
  NodeList candidates;  // replicas not tried yet, in preference order
  NodeId target = kNoNode;
  RequestTimer timer;
  ClientOp op = ClientOp::kGet;
  ConflictPolicy policy = ConflictPolicy::kKeepSiblings;
  GetCallback get_done;
  PutCallback put_done;
};

namespace {

absl::Status StatusFromWire(int code, const std::string& error) {
  return absl::Status(static_cast<absl::StatusCode>(code), error);
}

bool Contains(absl::Span<const NodeId> nodes, NodeId id) {
  return std::find(nodes.begin(), nodes.end(), id) != nodes.end();
}

}  // namespace

GetResult MakeGetResult(SiblingSet versions, ConflictPolicy policy, NodeId fastest,
                        size_t replicas_answered) {
  GetResult result;
  result.context.clock = MergedClock(versions);
  result.context.coordinator = fastest;
  result.replicas_answered = replicas_answered;
  if (policy == ConflictPolicy::kLastWriteWins) {
    if (!versions.empty()) {
      const Version& winner = LastWriteWins(versions);
      if (!winner.tombstone) result.values.push_back(winner.value);
    }
  } else {
    result.values.reserve(versions.size());
    for (const Version& v : versions) {
      if (!v.tombstone) result.values.push_back(v.value);
    }
  }
  result.versions = std::move(versions);
  return result;
}

Coordinator::Coordinator(CoordinatorEnv env) : env_(env) {}

Coordinator::~Coordinator() {
  for (const auto& lane : timer_lanes_) env_.runtime->Cancel(lane->timer);
}

size_t Coordinator::requests_in_flight() const {
  return callers_waiting_ + forwards_.size();
}

void Coordinator::ShedSettling() {
  // A finished request waits up to a replica timeout for its last replicas
  // (read repair, stand-ins for silent owners), so under load their number
  // is rate x timeout, not bounded by the callers waiting. Past
  // requests_in_flight_max the oldest are let go early: a get repairs with
  // the replies it has, a put stops waiting (anti-entropy brings any replica
  // it missed up to date).
  auto settling = [this] { return puts_.size() + gets_.size() - callers_waiting_; };
  while (!settling_.empty()) {
    const uint64_t id = settling_.front();
    const bool is_get = gets_.contains(id);
    auto put = puts_.find(id);
    if (is_get || put != puts_.end()) {
      if (settling() <= env_.options->requests_in_flight_max) return;
      env_.metrics->requests_settled_early++;
      if (is_get) {
        RepairAndRetire(id);
      } else {
        Disarm(put->second->timer);
        puts_.erase(put);
      }
    }
    settling_.pop_front();  // retired now, or earlier on its own
  }
}

std::string Coordinator::StorageKey(std::string_view bucket, std::string_view key) {
  std::string out;
  out.reserve(bucket.size() + 1 + key.size());
  AppendStorageKey(bucket, key, &out);
  return out;
}

void Coordinator::AppendStorageKey(std::string_view bucket, std::string_view key,
                                   std::string* out) {
  out->append(bucket);
  out->push_back('\0');  // bucket names never contain NUL, so this is unambiguous
  out->append(key);
}

const BucketOptions* Coordinator::FindBucket(std::string_view bucket) const {
  for (const BucketOptions& b : env_.options->buckets) {
    if (b.name == bucket) return &b;
  }
  return nullptr;
}

absl::Status Coordinator::CheckRequest(std::string_view bucket, std::string_view key,
                                       size_t value_bytes, const BucketOptions** out) const {
  *out = FindBucket(bucket);
  if (*out == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown bucket '", std::string(bucket), "'"));
  }
  const StorageLimits limits = env_.storage ? env_.storage->limits() : StorageLimits();
  size_t key_bytes = bucket.size() + 1 + key.size();
  if (key.empty()) return absl::InvalidArgumentError("empty key");
  if (key_bytes > limits.key_bytes_max) {
    return absl::InvalidArgumentError(absl::StrCat("key of ", key_bytes,
                                                   " bytes (with its bucket) exceeds the maximum of ",
                                                   limits.key_bytes_max));
  }
  if (value_bytes > limits.value_bytes_max) {
    return absl::InvalidArgumentError(absl::StrCat("value of ", value_bytes,
                                                   " bytes exceeds the maximum of ",
                                                   limits.value_bytes_max));
  }
  if (requests_in_flight() >= env_.options->requests_in_flight_max) {
    env_.metrics->requests_rejected_overload++;
    return absl::ResourceExhaustedError(absl::StrCat(
        "node is coordinating ", requests_in_flight(), " requests, the maximum"));
  }
  return absl::OkStatus();
}

void Coordinator::Send(NodeId to, std::string bytes) {
  // A local send error (unknown peer, full queue) looks to the protocol like
  // a lost message: the replica timeout and the deadline handle both.
  (void)env_.runtime->transport().Send(to, std::move(bytes));
}

void Coordinator::SendToAll(absl::Span<const NodeId> targets, std::string bytes) {
  for (size_t i = 0; i < targets.size(); ++i) {
    Send(targets[i], i + 1 == targets.size() ? std::move(bytes) : bytes);  // the last one takes it
  }
}

void Coordinator::Arm(RequestTimer& timer, absl::Duration step, TimerKind kind, uint64_t id) {
  timer.armed = std::min(step, env_.options->request_timeout - timer.waited);
  timer.arm = ++timer_arms_;
  TimerLane* lane = nullptr;
  for (const auto& l : timer_lanes_) {
    if (l->delay == timer.armed) lane = l.get();
  }
  if (lane == nullptr) {
    lane = timer_lanes_.emplace_back(std::make_unique<TimerLane>()).get();
    lane->delay = timer.armed;
  }
  // Stale entries leave a lane when its timer reaches them; with timers far
  // apart they are dropped here too, so a lane holds O(requests in flight).
  if (lane->entries.size() >= 2 * (puts_.size() + gets_.size() + forwards_.size()) + 1024) {
    DropStaleEntries(*lane);
  }
  lane->entries.push_back({env_.runtime->Elapsed() + timer.armed, id, timer.arm, kind});
  if (lane->timer == kNoTimer && !lane->firing) ArmLane(*lane);
}

void Coordinator::Disarm(RequestTimer& timer) { timer.arm = 0; }

bool Coordinator::Fired(RequestTimer& timer) {
  timer.arm = 0;
  timer.waited += timer.armed;
  return timer.waited >= env_.options->request_timeout;
}

bool Coordinator::LaneEntryLive(TimerKind kind, uint64_t id, uint64_t arm) const {
  switch (kind) {
    case TimerKind::kPut: {
      auto it = puts_.find(id);
      return it != puts_.end() && it->second->timer.arm == arm;
    }
    case TimerKind::kGet: {
      auto it = gets_.find(id);
      return it != gets_.end() && it->second->timer.arm == arm;
    }
    case TimerKind::kForward: {
      auto it = forwards_.find(id);
      return it != forwards_.end() && it->second->timer.arm == arm;
    }
  }
  return false;
}

void Coordinator::DropStaleEntries(TimerLane& lane) {
  std::erase_if(lane.entries,
                [this](const TimerLane::Entry& e) { return !LaneEntryLive(e.kind, e.id, e.arm); });
}

void Coordinator::ArmLane(TimerLane& lane) {
  while (!lane.entries.empty()) {
    const TimerLane::Entry& head = lane.entries.front();
    if (LaneEntryLive(head.kind, head.id, head.arm)) break;
    lane.entries.pop_front();
  }
  if (lane.entries.empty()) return;
  TimerLane* target = &lane;
  lane.timer = env_.runtime->Schedule(lane.entries.front().due - env_.runtime->Elapsed(),
                                      [this, target] { OnLaneTimer(target); });
}

void Coordinator::OnLaneTimer(TimerLane* lane) {
  lane->timer = kNoTimer;
  lane->firing = true;
  const absl::Duration now = env_.runtime->Elapsed();
  // A request timer that fires may arm another, in this lane too (due
  // later than now, so behind every entry this loop will reach).
  while (!lane->entries.empty() && lane->entries.front().due <= now) {
    TimerLane::Entry e = lane->entries.front();
    lane->entries.pop_front();
    if (!LaneEntryLive(e.kind, e.id, e.arm)) continue;
    switch (e.kind) {
      case TimerKind::kPut:
        OnPutTimer(e.id);
        break;
      case TimerKind::kGet:
        OnGetTimer(e.id);
        break;
      case TimerKind::kForward:
        OnForwardTimer(e.id);
        break;
    }
  }
  lane->firing = false;
  ArmLane(*lane);
  if (lane->entries.empty()) {
    std::erase_if(timer_lanes_, [lane](const auto& l) { return l.get() == lane; });
  }
}

// ---------------------------------------------------------------- get

void Coordinator::Get(std::string_view bucket_name, std::string_view key, GetCallback done) {
  Read(bucket_name, key, 0, std::move(done));
}

void Coordinator::Read(std::string_view bucket_name, std::string_view key, uint32_t hops,
                       GetCallback done) {
  const BucketOptions* bucket;
  absl::Status status = CheckRequest(bucket_name, key, 0, &bucket);
  if (!status.ok()) {
    env_.metrics->gets_failed++;
    done(status);
    return;
  }
  std::string skey = StorageKey(bucket_name, key);
  env_.ring->PreferenceList(KeyToken(skey), bucket->n, 0, &walk_scratch_);
  if (walk_scratch_.size() < bucket->n) {
    env_.metrics->gets_failed++;
    done(absl::UnavailableError(absl::StrCat("the ring has ", walk_scratch_.size(),
                                             " nodes but bucket '", bucket->name, "' needs N=",
                                             bucket->n)));
    return;
  }
  const NodeList owners(walk_scratch_.begin(), walk_scratch_.end());
  if (env_.storage != nullptr && !Contains(owners, self())) {
    if (hops >= env_.options->forward_hops_max) {
      env_.metrics->gets_failed++;
      done(absl::UnavailableError("get was forwarded too many times"));
      return;
    }
    if (std::none_of(owners.begin(), owners.end(),
                     [this](NodeId o) { return env_.failure_detector->IsReachable(o); })) {
      env_.metrics->gets_failed++;
      done(absl::UnavailableError("no replica of the key is reachable to forward the get to"));
      return;
    }
    ClientRequest request;
    request.hops = hops + 1;
    request.op = ClientOp::kGet;
    request.bucket = std::string(bucket_name);
    request.key = std::string(key);
    Forward(owners, std::move(request), std::move(done), nullptr, bucket->policy);
    return;
  }
  StartGet(*bucket, std::move(skey), owners, std::move(done));
}

void Coordinator::StartGet(const BucketOptions& bucket, std::string skey,
                           absl::Span<const NodeId> owners, GetCallback done) {
  auto op = std::make_unique<GetOp>();
  op->id = NextRequestId();
  op->r = bucket.r;
  op->policy = bucket.policy;
  op->skey = std::move(skey);
  op->callback = std::move(done);
  bool local = env_.storage != nullptr && Contains(owners, self());
  op->local = local;
  for (NodeId o : owners) {
    if (o != self() && env_.failure_detector->IsReachable(o)) op->targets.push_back(o);
  }
  size_t reachable = op->targets.size() + (local ? 1 : 0);
  if (reachable < op->r) {
    env_.metrics->gets_failed++;
    op->callback(absl::UnavailableError(absl::StrCat("get needs R=", op->r, " replicas but only ",
                                                     reachable, " of N=", bucket.n,
                                                     " are reachable")));
    return;
  }
  if (local) {
    absl::StatusOr<SiblingSet> mine = env_.storage->Get(op->skey);
    if (mine.ok()) {
      AddReply(*op, self(), *std::move(mine));
      op->fastest = self();
    } else {
      env_.metrics->storage_errors++;
      op->errors++;
    }
  }
  if (op->targets.empty() && op->replies.size() >= op->r) {
    // Nothing to wait for (N = 1, or R = 1 with every other replica
    // unreachable): the local reply is the answer and a lone reply has
    // nothing to repair, so the get ends here without a timer or request
    // state, as such a put does.
    env_.metrics->gets_ok++;
    op->callback(MakeGetResult(std::move(op->reconciled), op->policy, op->fastest, 1));
    return;
  }
  uint64_t id = op->id;
  ReplicaGet ask{id, op->skey, std::nullopt};
  // Replicas holding what this node read (its reply, the first) answer in a
  // few bytes instead of sending the versions back (most do: N-1 values
  // less to encode, send, decode and merge per get).
  if (!op->replies.empty()) {
    ask.known.emplace(op->replies.front().dots.begin(), op->replies.front().dots.end());
  }
  SendToAll(op->targets, EncodeMessage(ask));
  ShedSettling();
  GetOp& ref = *op;
  gets_.emplace(id, std::move(op));
  Arm(ref.timer, env_.options->replica_timeout, TimerKind::kGet, id);
  callers_waiting_++;
  MaybeCompleteGet(id);
}

void Coordinator::OnGetTimer(uint64_t id) {
  auto it = gets_.find(id);
  if (it == gets_.end()) return;
  GetOp& g = *it->second;
  const bool deadline = Fired(g.timer);
  if (!g.replica_timeout_passed) {
    g.replica_timeout_passed = true;
    for (NodeId t : g.targets) {
      bool replied = std::any_of(g.replies.begin(), g.replies.end(),
                                 [t](const GetOp::Reply& r) { return r.node == t; });
      if (!replied) env_.failure_detector->OnTimeout(t, env_.runtime->Elapsed());
    }
  }
  if (deadline && !g.done) {
    FinishGet(g, absl::DeadlineExceededError(absl::StrCat("get: ", g.replies.size(), " of R=", g.r,
                                                          " replicas answered before the deadline")));
  }
  // A finished get repairs with the replies it has rather than wait for
  // silent replicas; an unfinished one waits for them until the deadline.
  if (deadline || g.done) {
    RepairAndRetire(id);
    return;
  }
  Arm(g.timer, absl::InfiniteDuration(), TimerKind::kGet, id);
}

void Coordinator::FinishGet(GetOp& op, absl::Status status) {
  op.done = true;
  callers_waiting_--;
  settling_.push_back(op.id);
  if (!status.ok()) {
    env_.metrics->gets_failed++;
    op.callback(std::move(status));
    return;
  }
  env_.metrics->gets_ok++;
  // Most gets end with this node's copy current (it replied first, and the
  // others matched it): the result takes the set, and a copy of every
  // value and clock is saved (~5% of a pipelined TCP GET's coordinator).
  const bool mine_is_reconciled = env_.storage != nullptr && !op.replies.empty() &&
                                  op.replies.front().node == self() &&
                                  internal::SameDots(op.reconciled, op.replies.front().dots);
  if (!mine_is_reconciled) {
    op.callback(MakeGetResult(op.reconciled, op.policy, op.fastest, op.replies.size()));
    return;
  }
  op.reconciled_given = true;
  op.callback(MakeGetResult(std::exchange(op.reconciled, SiblingSet()), op.policy, op.fastest,
                            op.replies.size()));
}

void Coordinator::AddReply(GetOp& op, NodeId from, SiblingSet siblings) {
  GetOp::Reply& reply = op.replies.emplace_back();
  reply.node = from;
  reply.dots.reserve(siblings.size());
  for (const Version& v : siblings) reply.dots.push_back(v.dot);
  // Each reply is an antichain, so merging them one into another is
  // Reconcile of their union.
  for (Version& v : siblings) MergeVersion(op.reconciled, std::move(v));
}

void Coordinator::MaybeCompleteGet(uint64_t id) {
  auto it = gets_.find(id);
  if (it == gets_.end()) return;
  GetOp& op = *it->second;
  size_t outstanding = op.targets.size() + (op.local ? 1 : 0) - op.replies.size() - op.errors;
  if (!op.done) {
    if (op.replies.size() >= op.r) {
      FinishGet(op, absl::OkStatus());
    } else if (op.replies.size() + outstanding < op.r) {
      FinishGet(op, absl::UnavailableError(absl::StrCat(
                        "get: ", op.replies.size(), " of R=", op.r, " replicas answered, ",
                        op.errors, " failed")));
    }
  }
  if (outstanding == 0) RepairAndRetire(id);
}

void Coordinator::RepairAndRetire(uint64_t id) {
  auto it = gets_.find(id);
  if (it == gets_.end()) return;
  GetOp& op = *it->second;
  if (!op.reconciled_given || TakeBackReconciled(op)) Repair(op);
  Disarm(op.timer);
  gets_.erase(it);
}

bool Coordinator::TakeBackReconciled(GetOp& op) {
  // The set given away was this node's reply, the first; later replies
  // that matched it need nothing.
  const GetOp::Reply& mine = op.replies.front();
  const bool all_current = std::all_of(op.replies.begin(), op.replies.end(), [&](const auto& r) {
    return std::equal(r.dots.begin(), r.dots.end(), mine.dots.begin(), mine.dots.end());
  });
  if (all_current) return false;
  // The repair sends what this node holds now (what it replied, or newer)
  // with what the later replies brought.
  absl::StatusOr<SiblingSet> held = env_.storage->Get(op.skey);
  if (!held.ok()) {
    env_.metrics->storage_errors++;
    return false;
  }
  op.replies.front().dots.clear();  // this node's reply stands for what it holds
  for (const Version& v : *held) op.replies.front().dots.push_back(v.dot);
  MergeSiblings(*held, op.reconciled);
  op.reconciled = *std::move(held);
  op.reconciled_given = false;
  return true;
}

void Coordinator::Repair(GetOp& op) {
  const SiblingSet& reconciled = op.reconciled;
  if (reconciled.empty()) return;
  std::string repair;
  for (const GetOp::Reply& r : op.replies) {
    if (std::equal(r.dots.begin(), r.dots.end(), reconciled.begin(), reconciled.end(),
                   [](const Dot& d, const Version& v) { return d == v.dot; })) {
      continue;
    }
    env_.metrics->read_repairs_sent++;
    if (r.node == self() && env_.storage != nullptr) {
      if (!env_.storage->Put(op.skey, reconciled, WriteOptions{.replicated = true}).ok()) {
        env_.metrics->storage_errors++;
      }
      continue;
    }
    // Request id 0: the replica's acknowledgement matches no request and
    // is ignored; read repair is best effort.
    if (repair.empty())
      repair =
          EncodeMessage(ReplicaPut{0, op.skey, reconciled, kNoNode, false, /*replicated=*/true});
    Send(r.node, repair);
  }
}

bool Coordinator::OnReplicaGetReply(NodeId from, ReplicaGetReply&& reply) {
  auto it = gets_.find(reply.request_id);
  if (it == gets_.end()) return false;
  GetOp& op = *it->second;
  if (!Contains(op.targets, from)) return true;
  for (const GetOp::Reply& r : op.replies) {
    if (r.node == from) return true;  // a duplicated reply
  }
  // "Same as yours" stands for this node's own reply, the first one (StartGet
  // named its dots), already merged into op.reconciled; to a get that named
  // nothing it is an error.
  const bool named_mine = !op.replies.empty() && op.replies.front().node == self();
  if (reply.code != 0 || (reply.same_as_known && !named_mine)) {
    op.errors++;
  } else if (reply.same_as_known) {
    // Copied first: the push may move the replies.
    absl::InlinedVector<Dot, 2> dots = op.replies.front().dots;
    op.replies.push_back(GetOp::Reply{.node = from, .dots = std::move(dots)});
  } else {
    if (op.replies.empty()) op.fastest = from;
    AddReply(op, from, std::move(reply.siblings));
  }
  MaybeCompleteGet(reply.request_id);
  return true;
}

// ---------------------------------------------------------------- put

void Coordinator::Put(std::string_view bucket_name, std::string_view key, const Context& context,
                      std::string value, PutCallback done) {
  const BucketOptions* bucket;
  absl::Status status = CheckRequest(bucket_name, key, value.size(), &bucket);
  if (!status.ok()) {
    env_.metrics->puts_failed++;
    done(status);
    return;
  }
  Write(*bucket, key, context, std::move(value), false, 0, std::move(done));
}

void Coordinator::Delete(std::string_view bucket_name, std::string_view key,
                         const Context& context, PutCallback done) {
  const BucketOptions* bucket;
  absl::Status status = CheckRequest(bucket_name, key, 0, &bucket);
  if (!status.ok()) {
    env_.metrics->puts_failed++;
    done(status);
    return;
  }
  Write(*bucket, key, context, "", true, 0, std::move(done));
}

void Coordinator::Write(const BucketOptions& bucket, std::string_view key, const Context& context,
                        std::string value, bool tombstone, uint32_t hops, PutCallback done) {
  std::string skey = StorageKey(bucket.name, key);
  const Ring& ring = *env_.ring;
  ring.PreferenceList(KeyToken(skey), bucket.n, env_.options->fallbacks_max, &walk_scratch_);
  if (walk_scratch_.size() < bucket.n) {
    env_.metrics->puts_failed++;
    done(absl::UnavailableError(absl::StrCat("the ring has ", walk_scratch_.size(),
                                             " nodes but bucket '", bucket.name, "' needs N=",
                                             bucket.n)));
    return;
  }
  const NodeList owners(walk_scratch_.begin(), walk_scratch_.begin() + bucket.n);
  const NodeList spares(walk_scratch_.begin() + bucket.n, walk_scratch_.end());

  if (env_.storage == nullptr || !Contains(owners, self())) {
    // Not a replica of this key: hand the write to one that is, preferably
    // the one that answered the caller's last read fastest (paper 6.4).
    if (hops >= env_.options->forward_hops_max) {
      env_.metrics->puts_failed++;
      done(absl::UnavailableError("put was forwarded too many times"));
      return;
    }
    NodeList candidates;
    if (Contains(owners, context.coordinator)) candidates.push_back(context.coordinator);
    for (NodeId o : owners) {
      if (o != context.coordinator) candidates.push_back(o);
    }
    if (std::none_of(candidates.begin(), candidates.end(), [this](NodeId o) {
          return o != self() && env_.failure_detector->IsReachable(o);
        })) {
      env_.metrics->puts_failed++;
      done(absl::UnavailableError("no replica of the key is reachable to forward the put to"));
      return;
    }
    ClientRequest request;
    request.op = tombstone ? ClientOp::kDelete : ClientOp::kPut;
    request.bucket = bucket.name;
    request.key = std::string(key);
    request.context = context.Encode();
    request.value = std::move(value);
    request.hops = hops + 1;
    Forward(candidates, std::move(request), nullptr, std::move(done), bucket.policy);
    return;
  }

  auto op = std::make_unique<PutOp>();
  op->id = NextRequestId();
  op->w = bucket.w;
  op->write.request_id = op->id;
  op->write.key = std::move(skey);
  for (NodeId s : spares) {
    if (s != self() && env_.failure_detector->IsReachable(s)) op->fallbacks.push_back(s);
  }
  // Pick the replicas before writing anything, so that a put that cannot
  // reach W writes nothing.
  size_t next_fallback = 0;
  for (NodeId o : owners) {
    if (o == self()) continue;
    if (env_.failure_detector->IsReachable(o)) {
      op->targets.push_back({o, kNoNode});
    } else if (next_fallback < op->fallbacks.size()) {
      op->targets.push_back({op->fallbacks[next_fallback++], o});
    }
  }
  op->fallbacks.erase(op->fallbacks.begin(), op->fallbacks.begin() + next_fallback);
  size_t reachable = 1 + op->targets.size();
  if (reachable < op->w) {
    env_.metrics->puts_failed++;
    done(absl::UnavailableError(absl::StrCat("put needs W=", op->w, " replicas but only ",
                                             reachable, " nodes are reachable")));
    return;
  }

  const std::string& skey_ref = op->write.key;
  WriteOptions durable;
  durable.durable = env_.options->coordinator_writes_durably;  // paper 6.1
  size_t siblings_stored = 0;
  // A version's clock counts its dot as (actor, counter), which covers every
  // lower counter of that actor. A replica that received only the new
  // version would therefore hand readers a context covering this actor's
  // concurrent siblings (written earlier, with contexts that did not see
  // each other) and the next put would drop them. So they travel with it.
  // Found by sim_soak seed 123 (acknowledged adds lost after a removal).
  SiblingSet same_actor;
  // The new version is built from the stored siblings in the same engine
  // call that stores it: one lookup of the key per put.
  absl::Status minted = absl::OkStatus();
  bool lease_ran_out = false;
  uint64_t key_counter = 0;
  auto build_version = [&](const SiblingSet& local) -> absl::Status {
    VectorClock clock = context.clock;
    // Under last-write-wins, and for a blind write, the write supersedes
    // everything this replica has.
    if (bucket.policy == ConflictPolicy::kLastWriteWins || context.supersede_coordinator_copy) {
      clock.Merge(MergedClock(local));
    }
    key_counter = KeyCounterOf(local, clock, env_.actor);
    // Node-wide, so a dot is new even if this node erased the key's versions.
    absl::StatusOr<std::optional<uint64_t>> counter =
        env_.dot_counter->NextWithinLease(key_counter);
    if (!counter.ok()) return minted = counter.status();
    if (!counter->has_value()) {
      lease_ran_out = true;  // renewed below, outside the engine's callback
      return minted = absl::AbortedError("the dot counter lease ran out");
    }
    // Moved in, not assign(1, ...), which would copy the value.
    op->write.versions.clear();
    op->write.versions.push_back(
        NewVersion(Dot{env_.actor, **counter, absl::ToUnixMicros(env_.runtime->Now())},
                   std::move(clock), std::move(value), tombstone, env_.options->clock_entries_max));
    return absl::OkStatus();
  };
  auto see_stored = [&](const SiblingSet& stored) {
    siblings_stored = stored.size();
    for (const Version& s : stored) {
      if (s.dot.actor == env_.actor && s.dot != op->write.versions.front().dot) {
        same_actor.push_back(s);
      }
    }
  };
  absl::Status written =
      env_.storage->Update(skey_ref, op->write.versions, durable, build_version, see_stored);
  if (lease_ran_out) {
    // Once per lease (dot_counter_lease_counters puts): a durable write of
    // the identity record, then the same put again.
    minted = env_.dot_counter->RenewLeaseFor(key_counter);
    if (minted.ok()) {
      written =
          env_.storage->Update(skey_ref, op->write.versions, durable, build_version, see_stored);
    } else {
      written = minted;
    }
  }
  if (!written.ok()) {
    if (written.code() == absl::StatusCode::kFailedPrecondition) {
      env_.metrics->puts_over_sibling_limit++;
    } else if (!absl::IsInvalidArgument(minted) && !absl::IsOutOfRange(minted)) {
      // A refused counter (forged context, counters used up) is not storage's fault.
      env_.metrics->storage_errors++;
    }
    env_.metrics->puts_failed++;
    done(written);
    return;
  }
  if (siblings_stored >= env_.options->siblings_warn_count) {
    env_.metrics->keys_over_sibling_warning++;
  }
  MergeSiblings(op->write.versions, same_actor);
  op->acks = 1;
  op->callback = std::move(done);
  uint64_t id = op->id;
  NodeList real_owners;  // one encoding for every target that is a real owner
  for (const PutOp::Target& t : op->targets) {
    if (t.hint_owner != kNoNode) {
      env_.metrics->hinted_writes_sent++;
      Send(t.node, EncodeReplicaWrite(*op, t.hint_owner));
    } else {
      real_owners.push_back(t.node);
    }
  }
  if (!real_owners.empty()) SendToAll(real_owners, EncodeReplicaWrite(*op, kNoNode));
  if (env_.pending_ring != nullptr && env_.pending_ring->size() > 0) {
    std::vector<NodeId> future;
    env_.pending_ring->PreferenceList(KeyToken(skey_ref), bucket.n, 0, &future);
    std::string copy;
    for (NodeId f : future) {
      if (f == self() || Contains(owners, f)) continue;
      if (copy.empty()) copy = EncodeMessage(ReplicaPut{0, skey_ref, op->write.versions, kNoNode, false});
      Send(f, copy);
    }
  }
  if (op->targets.empty()) {
    // Nothing to wait for (N = 1, or W = 1 with every other replica
    // unreachable and no stand-in): done without a timer or request state.
    env_.metrics->puts_ok++;
    op->callback(absl::OkStatus());
    return;
  }
  PutOp& ref = *op;
  ShedSettling();
  puts_.emplace(id, std::move(op));
  Arm(ref.timer, env_.options->replica_timeout, TimerKind::kPut, id);
  callers_waiting_++;
  if (ref.acks >= ref.w) FinishPut(ref, absl::OkStatus());
  MaybeRetirePut(id);
}

void Coordinator::OnPutTimer(uint64_t id) {
  auto it = puts_.find(id);
  if (it == puts_.end()) return;
  PutOp& op = *it->second;
  if (Fired(op.timer)) {
    if (!op.done) {
      FinishPut(op, absl::DeadlineExceededError(absl::StrCat(
                        "put: ", op.acks, " of W=", op.w, " replicas acknowledged before the deadline")));
    }
    puts_.erase(id);  // not `it`: the callback may have added requests
    return;
  }
  // Sloppy quorum: every replica that stayed silent is suspected, and its
  // copy goes to the next healthy node as a hint, so the write still reaches
  // N nodes and W can still be met.
  size_t count = op.targets.size();
  for (size_t i = 0; i < count; ++i) {
    PutOp::Target& t = op.targets[i];
    if (t.replied || t.replaced) continue;
    env_.failure_detector->OnTimeout(t.node, env_.runtime->Elapsed());
    while (!op.fallbacks.empty() && !env_.failure_detector->IsReachable(op.fallbacks.front())) {
      op.fallbacks.erase(op.fallbacks.begin());
    }
    if (op.fallbacks.empty()) continue;
    NodeId fallback = op.fallbacks.front();
    op.fallbacks.erase(op.fallbacks.begin());
    NodeId owner = t.hint_owner != kNoNode ? t.hint_owner : t.node;
    t.replaced = true;
    op.targets.push_back({fallback, owner});
    env_.metrics->hinted_writes_sent++;
    Send(fallback, EncodeReplicaWrite(op, owner));
  }
  // Stand-ins can be unreachable too: keep trying the next ones, one replica
  // timeout at a time, until the deadline or the candidates run out.
  bool waiting = std::any_of(op.targets.begin(), op.targets.end(),
                             [](const PutOp::Target& t) { return !t.replied && !t.replaced; });
  Arm(op.timer,
      waiting && !op.fallbacks.empty() ? env_.options->replica_timeout : absl::InfiniteDuration(),
      TimerKind::kPut, id);
  MaybeRetirePut(id);
}

std::string Coordinator::EncodeReplicaWrite(PutOp& op, NodeId hint_owner) {
  op.write.hint_owner = hint_owner;
  return EncodeMessage(op.write);
}

void Coordinator::FinishPut(PutOp& op, absl::Status status) {
  op.done = true;
  callers_waiting_--;
  settling_.push_back(op.id);
  if (status.ok()) {
    env_.metrics->puts_ok++;
  } else {
    env_.metrics->puts_failed++;
  }
  op.callback(std::move(status));
}

void Coordinator::MaybeRetirePut(uint64_t id) {
  auto it = puts_.find(id);
  if (it == puts_.end()) return;
  PutOp& op = *it->second;
  bool settled = std::all_of(op.targets.begin(), op.targets.end(),
                             [](const PutOp::Target& t) { return t.replied || t.replaced; });
  if (!settled) return;
  if (!op.done) {
    FinishPut(op, absl::UnavailableError(absl::StrCat("put: ", op.acks, " of W=", op.w,
                                                      " replicas acknowledged, ", op.errors,
                                                      " refused")));
  }
  Disarm(op.timer);
  puts_.erase(id);  // not `it`: FinishPut's callback may have added requests
}

bool Coordinator::OnReplicaPutReply(NodeId from, const ReplicaPutReply& reply) {
  auto it = puts_.find(reply.request_id);
  if (it == puts_.end()) return false;
  PutOp& op = *it->second;
  for (PutOp::Target& t : op.targets) {
    if (t.node != from || t.replied) continue;
    t.replied = true;
    if (reply.code == 0) {
      op.acks++;
    } else {
      op.errors++;
    }
    break;
  }
  if (!op.done && op.acks >= op.w) FinishPut(op, absl::OkStatus());
  MaybeRetirePut(reply.request_id);
  return true;
}

// ---------------------------------------------------------------- forwarding

void Coordinator::Forward(absl::Span<const NodeId> candidates, ClientRequest request,
                          GetCallback get_done, PutCallback put_done, ConflictPolicy policy) {
  auto op = std::make_unique<ForwardOp>();
  uint64_t id = NextRequestId();
  request.request_id = id;
  op->candidates.assign(candidates.begin(), candidates.end());
  op->op = request.op;
  op->policy = policy;
  op->get_done = std::move(get_done);
  op->put_done = std::move(put_done);
  op->request = std::move(request);
  forwards_.emplace(id, std::move(op));
  env_.metrics->requests_forwarded++;
  ForwardAttempt(id);
}

void Coordinator::OnForwardTimer(uint64_t id) {
  auto it = forwards_.find(id);
  if (it == forwards_.end()) return;
  if (!Fired(it->second->timer)) {
    ForwardAttempt(id);
    return;
  }
  std::unique_ptr<ForwardOp> f = std::move(it->second);
  forwards_.erase(it);
  absl::Status status =
      absl::DeadlineExceededError("the coordinating replica did not answer before the deadline");
  if (f->op == ClientOp::kGet) {
    env_.metrics->gets_failed++;
    f->get_done(status);
  } else {
    env_.metrics->puts_failed++;
    f->put_done(status);
  }
}

void Coordinator::ForwardAttempt(uint64_t id) {
  auto it = forwards_.find(id);
  if (it == forwards_.end()) return;
  ForwardOp& f = *it->second;
  if (f.target != kNoNode) env_.failure_detector->OnTimeout(f.target, env_.runtime->Elapsed());
  f.target = kNoNode;
  while (!f.candidates.empty() && f.target == kNoNode) {
    NodeId next = f.candidates.front();
    f.candidates.erase(f.candidates.begin());
    if (next != self() && env_.failure_detector->IsReachable(next)) f.target = next;
  }
  if (f.target == kNoNode) {
    // The deadline reports the failure.
    Arm(f.timer, absl::InfiniteDuration(), TimerKind::kForward, id);
    return;
  }
  Send(f.target, EncodeMessage(f.request));
  // The replica may itself need a replica timeout to assemble a sloppy
  // quorum; silence for twice that means it is unreachable, so try the next
  // one. A late answer from the first still completes the request (same id).
  Arm(f.timer, 2 * env_.options->replica_timeout, TimerKind::kForward, id);
}

bool Coordinator::OnClientReply(NodeId /*from*/, ClientReply&& reply) {
  auto it = forwards_.find(reply.request_id);
  if (it == forwards_.end()) return false;
  std::unique_ptr<ForwardOp> f = std::move(it->second);
  forwards_.erase(it);
  Disarm(f->timer);
  absl::Status status = StatusFromWire(reply.code, reply.error);
  if (f->op == ClientOp::kGet) {
    if (!status.ok()) {
      env_.metrics->gets_failed++;
      f->get_done(status);
      return true;
    }
    env_.metrics->gets_ok++;
    f->get_done(MakeGetResult(std::move(reply.siblings), f->policy, reply.fastest,
                              reply.replicas_answered));
  } else {
    if (status.ok()) {
      env_.metrics->puts_ok++;
    } else {
      env_.metrics->puts_failed++;
    }
    f->put_done(status);
  }
  return true;
}

void Coordinator::HandleClientRequest(NodeId from, ClientRequest request) {
  uint64_t reply_id = request.request_id;
  auto reply_put = [this, from, reply_id](absl::Status status) {
    ClientReply reply;
    reply.request_id = reply_id;
    reply.code = static_cast<int>(status.code());
    reply.error = std::string(status.message());
    Send(from, EncodeMessage(reply));
  };
  const BucketOptions* bucket;
  absl::Status status = CheckRequest(request.bucket, request.key, request.value.size(), &bucket);
  if (!status.ok()) {
    reply_put(status);
    return;
  }
  if (request.op == ClientOp::kGet) {
    Read(request.bucket, request.key, request.hops, [this, from, reply_id](absl::StatusOr<GetResult> result) {
      ClientReply reply;
      reply.request_id = reply_id;
      reply.code = static_cast<int>(result.status().code());
      if (result.ok()) {
        reply.siblings = std::move(result->versions);
        reply.fastest = result->context.coordinator;
        reply.replicas_answered = static_cast<uint32_t>(result->replicas_answered);
      } else {
        reply.error = std::string(result.status().message());
      }
      Send(from, EncodeMessage(reply));
    });
    return;
  }
  Context context;
  if (!request.context.empty()) {
    absl::StatusOr<Context> decoded = Context::Decode(request.context);
    if (!decoded.ok()) {
      reply_put(decoded.status());
      return;
    }
    context = *std::move(decoded);
  }
  Write(*bucket, request.key, context, std::move(request.value),
        request.op == ClientOp::kDelete, request.hops, std::move(reply_put));
}

}  // namespace dynamo

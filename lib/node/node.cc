#include "dynamo/node.h"

#include <algorithm>
#include <utility>
#include <variant>

#include "absl/random/distributions.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "node/admission.h"
#include "node/anti_entropy.h"
#include "node/dot_counter.h"
#include "node/messages.h"
#include "node/ring_codec.h"
#include "storage/storage_util.h"
#include "xxhash.h"

namespace dynamo {

using internal::ClientReply;
using internal::ClientRequest;
using internal::EncodeMessage;
using internal::GossipDigest;
using internal::GossipEntries;
using internal::GossipSummary;
using internal::JoinReply;
using internal::JoinRequest;
using internal::Message;
using internal::Ping;
using internal::Pong;
using internal::ReplicaGet;
using internal::ReplicaGetReply;
using internal::ReplicaPut;
using internal::ReplicaPutReply;
using internal::RingReply;
using internal::RingRequest;
using internal::TransferBatch;
using internal::TransferRequest;

absl::StatusOr<std::unique_ptr<Node>> Node::Create(NodeOptions options, Runtime* runtime,
                                                   StorageEngine* storage, Ring ring) {
  if (runtime == nullptr || storage == nullptr) {
    return absl::InvalidArgumentError("Node::Create needs a runtime and a storage engine");
  }
  if (options.buckets.empty()) return absl::InvalidArgumentError("no buckets configured");
  // An empty ring is a node that is not yet a member; it joins later.
  for (const BucketOptions& b : options.buckets) {
    DYNAMO_RETURN_IF_ERROR(ValidateBucket(b, ring.size() == 0 ? b.n : ring.size()));
  }
  std::unique_ptr<Node> node(new Node(std::move(options), runtime, storage, std::move(ring)));
  DYNAMO_RETURN_IF_ERROR(node->Start());
  return node;
}

Node::Node(NodeOptions options, Runtime* runtime, StorageEngine* storage, Ring ring)
    : options_(std::move(options)),
      runtime_(runtime),
      storage_(storage),
      ring_(std::move(ring)),
      pending_ring_(ring_),
      moving_to_(ring_.options()),
      codec_limits_(std::make_unique<const internal::CodecLimits>(
          internal::CodecLimitsFor(storage->limits()))) {}

Node::~Node() {
  runtime_->transport().SetReceiveHandler(nullptr);
  runtime_->transport().SetLookaheadHandler(nullptr);
  runtime_->Cancel(handoff_timer_);
  runtime_->Cancel(probe_timer_);
  runtime_->Cancel(flush_timer_);
  runtime_->Cancel(gossip_timer_);
  runtime_->Cancel(cleanup_timer_);
  runtime_->Cancel(transfer_pump_timer_);
  runtime_->Cancel(settle_timer_);
  runtime_->Cancel(acks_flush_);
  for (auto& [request, join] : joins_) runtime_->Cancel(join.second);
  for (auto& [id, d] : hint_deliveries_) runtime_->Cancel(d.timeout);
  for (Transfer& t : transfers_) runtime_->Cancel(t.timer);
}

absl::Status Node::Start() {
  DYNAMO_ASSIGN_OR_RETURN(std::optional<NodeIdentity> stored, storage_->GetIdentity());
  NodeIdentity loaded;
  if (stored.has_value()) {
    if (stored->node != id()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "storage belongs to node ", stored->node, ", not to node ", id()));
    }
    loaded = *stored;
  } else {
    // No identity: a new node, or one whose data was lost. A fresh random
    // actor guarantees no vector-clock counter of an earlier life is reused.
    loaded.node = id();
    loaded.epoch = 1;
    fresh_identity_ = true;
    do {
      loaded.actor = runtime_->Rng()();
    } while (loaded.actor == 0);
  }
  // Stores the identity with a new counter lease: the actor's counters
  // resume above everything an earlier run of it may have minted.
  DYNAMO_ASSIGN_OR_RETURN(dot_counter_,
                          internal::DotCounter::Start(storage_, loaded,
                                                      options_.dot_counter_lease_counters));
  DYNAMO_RETURN_IF_ERROR(LoadMembership(ring_));
  if (fresh_identity_ && membership_.Find(id()) != nullptr) {
    // We may be a member that lost its data: hear from the cluster before
    // announcing an actor (see OnMembershipChanged), but not forever.
    own_entry_settled_ = false;
    settle_timer_ = runtime_->Schedule(3 * options_.gossip_interval, [this] {
      settle_timer_ = kNoTimer;
      SettleOwnEntry();
    });
  }
  // Every use of storage_ from here on goes through ObservedStorage, which
  // keeps the Merkle trees current and times foreground reads (paper 6.5).
  admission_ = std::make_unique<internal::AdmissionController>(internal::AdmissionOptionsFor(options_));
  observed_storage_ = std::make_unique<internal::ObservedStorage>(storage_, runtime_, admission_.get());
  storage_ = observed_storage_.get();
  CoordinatorEnv env;
  env.runtime = runtime_;
  env.storage = storage_;
  env.ring = &ring_;
  env.pending_ring = &moving_to_;
  env.failure_detector = &failure_detector_;
  env.options = &options_;
  env.metrics = &metrics_;
  env.actor = identity().actor;
  env.dot_counter = dot_counter_.get();
  env.request_id_counter = &request_id_counter_;
  coordinator_ = std::make_unique<Coordinator>(env);
  runtime_->transport().SetReceiveHandler(
      [this](NodeId from, std::string_view bytes) { OnMessage(from, bytes); });
  runtime_->transport().SetLookaheadHandler(
      [this](NodeId, std::span<const std::string_view> messages) { LookAhead(messages); });
  ScheduleHandoff();
  ScheduleProbe();
  ScheduleFlush();
  ScheduleGossip();
  ScheduleCleanup();
  OnMembershipChanged();
  anti_entropy_ = std::make_unique<internal::AntiEntropy>(internal::AntiEntropyEnv{
      runtime_, observed_storage_->target(), storage_, &ring_, &failure_detector_, &options_,
      &metrics_, admission_.get(), &request_id_counter_});
  observed_storage_->set_anti_entropy(anti_entropy_.get());
  anti_entropy_->Start();
  return absl::OkStatus();
}

const NodeIdentity& Node::identity() const { return dot_counter_->identity(); }

void Node::Prefetch(std::string_view bucket, std::span<const std::string_view> keys) {
  // The storage keys side by side in one buffer, sized first so that the
  // views into it stay valid.
  size_t bytes = 0;
  for (std::string_view key : keys) bytes += bucket.size() + 1 + key.size();
  prefetch_bytes_.clear();
  prefetch_bytes_.reserve(bytes);
  prefetch_keys_.clear();
  for (std::string_view key : keys) {
    const size_t begin = prefetch_bytes_.size();
    Coordinator::AppendStorageKey(bucket, key, &prefetch_bytes_);
    prefetch_keys_.push_back(std::string_view(prefetch_bytes_).substr(begin));
  }
  storage_->Prefetch(prefetch_keys_);
}

void Node::LookAhead(std::span<const std::string_view> messages) {
  prefetch_keys_.clear();
  for (std::string_view message : messages) {
    if (std::optional<std::string_view> key = internal::PeekReplicaKey(message)) {
      prefetch_keys_.push_back(*key);
    }
  }
  if (!prefetch_keys_.empty()) storage_->Prefetch(prefetch_keys_);
}

void Node::Get(std::string_view bucket, std::string_view key, GetCallback done) {
  coordinator_->Get(bucket, key, std::move(done));
}

void Node::Put(std::string_view bucket, std::string_view key, const Context& context,
               std::string value, PutCallback done) {
  coordinator_->Put(bucket, key, context, std::move(value), std::move(done));
}

void Node::Delete(std::string_view bucket, std::string_view key, const Context& context,
                  PutCallback done) {
  coordinator_->Delete(bucket, key, context, std::move(done));
}

absl::Status Node::SetRing(Ring ring) {
  for (const BucketOptions& b : options_.buckets) {
    DYNAMO_RETURN_IF_ERROR(ValidateBucket(b, ring.size()));
  }
  membership_ = Membership::FromRing(ring);
  rings_follow_inputs_.reset();  // a new view counts its changes afresh
  ring_ = std::move(ring);
  pending_ring_ = ring_;
  moving_to_ = Ring(ring_.options());
  if (anti_entropy_) anti_entropy_->OnRingChanged(ring_);
  // Rebuilds the rings only if the one given is not what its view builds
  // (a ring restored with FromMembers has no history to tell).
  OnMembershipChanged();
  return absl::OkStatus();
}

void Node::SendMessage(NodeId to, std::string bytes) {
  (void)runtime_->transport().Send(to, std::move(bytes));
}

// Far below the decoder's bound; a bigger turn sends several messages.
constexpr size_t kAcksPerMessageMax = 4096;

void Node::SendAck(NodeId to, uint64_t request_id, bool is_get) {
  auto pending = std::find_if(acks_pending_.begin(), acks_pending_.end(),
                              [to](const PendingAcks& p) { return p.to == to; });
  if (pending == acks_pending_.end()) {
    pending = acks_pending_.insert(acks_pending_.end(), PendingAcks{to, {}, {}});
  }
  (is_get ? pending->gets_same_as_known : pending->puts).push_back(request_id);
  if (pending->puts.size() + pending->gets_same_as_known.size() >= kAcksPerMessageMax) {
    FlushAcks();
    return;
  }
  if (acks_flush_ == kNoTimer) {
    acks_flush_ = runtime_->Defer([this] {
      acks_flush_ = kNoTimer;
      FlushAcks();
    });
  }
}

void Node::FlushAcks() {
  for (PendingAcks& p : acks_pending_) {
    if (p.puts.empty() && p.gets_same_as_known.empty()) continue;
    metrics_.replica_acks += p.puts.size() + p.gets_same_as_known.size();
    metrics_.replica_ack_messages++;
    SendMessage(p.to, internal::EncodeReplicaAcks(p.puts, p.gets_same_as_known));
    p.puts.clear();  // the buffers serve the next turn
    p.gets_same_as_known.clear();
  }
  // Coordinators come and go; keep only a few empty entries around.
  if (acks_pending_.size() > 8) acks_pending_.clear();
}

void Node::OnReplicaPutReply(NodeId from, const ReplicaPutReply& m) {
  if (coordinator_->OnReplicaPutReply(from, m)) return;
  if (OnPushAck(from, m.request_id, m.code == 0)) return;
  auto it = hint_deliveries_.find(m.request_id);
  if (it != hint_deliveries_.end() && it->second.owner == from) {
    OnHintDelivered(m.request_id, m.code == 0);
  }
}

void Node::OnMessage(NodeId from, std::string_view bytes) {
  // Peers send what their engines hold: as many siblings and as large values
  // as this node's engine takes (the engine's limits may exceed the codec's
  // defaults).
  absl::StatusOr<Message> decoded = internal::DecodeMessage(bytes, *codec_limits_);
  if (!decoded.ok()) {
    // Bad bytes from the network are dropped and counted; they never stop
    // the node.
    metrics_.messages_malformed++;
    return;
  }
  failure_detector_.OnHeard(from, runtime_->Elapsed());
  std::visit(
      [&](auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, ReplicaPut>) {
          ReplicaPutReply reply;
          reply.request_id = m.request_id;
          absl::Status status;
          if (m.hint_owner != kNoNode && m.hint_owner != id()) {
            absl::StatusOr<HintUsage> usage = storage_->GetHintUsage();
            if (!usage.ok()) {
              status = usage.status();
            } else if (usage->count >= options_.hints_count_max ||
                       usage->bytes >= options_.hints_bytes_max) {
              metrics_.hints_rejected_full++;
              status = absl::ResourceExhaustedError(absl::StrCat(
                  "hint store full: ", usage->count, " hints, ", usage->bytes, " bytes"));
            } else {
              status = storage_->PutHint(m.hint_owner, m.key, m.versions);
              if (status.ok()) metrics_.hints_stored++;
            }
          } else {
            WriteOptions wo;
            wo.durable = m.durable;
            wo.replicated = m.replicated;
            status = storage_->PutAndVisit(m.key, m.versions, wo, [&](const SiblingSet& stored) {
              if (stored.size() >= options_.siblings_warn_count) {
                metrics_.keys_over_sibling_warning++;
              }
            });
            if (status.code() == absl::StatusCode::kFailedPrecondition) {
              metrics_.puts_over_sibling_limit++;
            }
          }
          metrics_.replica_puts++;
          if (!status.ok() && status.code() != absl::StatusCode::kResourceExhausted &&
              status.code() != absl::StatusCode::kFailedPrecondition) {
            metrics_.storage_errors++;
          }
          if (m.request_id == 0) return;  // read repair: nobody waits for the answer
          if (status.ok()) {
            SendAck(from, m.request_id, /*is_get=*/false);
            return;
          }
          reply.code = static_cast<int>(status.code());
          reply.error = std::string(status.message());
          SendMessage(from, EncodeMessage(reply));
        } else if constexpr (std::is_same_v<T, ReplicaGet>) {
          metrics_.replica_gets++;
          std::string encoded;
          bool same_as_known = false;
          absl::Status read = storage_->Visit(m.key, [&](const SiblingSet& siblings) {
            // The coordinator has these versions: say so, not send them.
            same_as_known = m.known.has_value() && internal::SameDots(siblings, *m.known);
            if (!same_as_known) encoded = internal::EncodeReplicaGetReply(m.request_id, siblings);
          });
          if (read.ok() && same_as_known) {
            metrics_.replica_gets_same_as_known++;
            SendAck(from, m.request_id, /*is_get=*/true);
            return;
          }
          if (!read.ok()) {
            metrics_.storage_errors++;
            ReplicaGetReply reply;
            reply.request_id = m.request_id;
            reply.code = static_cast<int>(read.code());
            reply.error = std::string(read.message());
            encoded = EncodeMessage(reply);
          }
          SendMessage(from, std::move(encoded));
        } else if constexpr (std::is_same_v<T, ReplicaPutReply>) {
          OnReplicaPutReply(from, m);
        } else if constexpr (std::is_same_v<T, ReplicaGetReply>) {
          coordinator_->OnReplicaGetReply(from, std::move(m));
        } else if constexpr (std::is_same_v<T, internal::ReplicaAcks>) {
          ReplicaPutReply put_ok;
          for (uint64_t id : m.puts) {
            put_ok.request_id = id;
            OnReplicaPutReply(from, put_ok);
          }
          for (uint64_t id : m.gets_same_as_known) {
            ReplicaGetReply same;
            same.request_id = id;
            same.same_as_known = true;
            coordinator_->OnReplicaGetReply(from, std::move(same));
          }
        } else if constexpr (std::is_same_v<T, ClientRequest>) {
          coordinator_->HandleClientRequest(from, std::move(m));
        } else if constexpr (std::is_same_v<T, ClientReply>) {
          coordinator_->OnClientReply(from, std::move(m));
        } else if constexpr (std::is_same_v<T, Ping>) {
          SendMessage(from, EncodeMessage(Pong{m.nonce}));
        } else if constexpr (std::is_same_v<T, Pong>) {
          // OnHeard above already marked the peer reachable.
        } else if constexpr (std::is_same_v<T, RingRequest>) {
          SendMessage(from, EncodeMessage(RingReply{m.request_id, EncodeRing(ring_)}));
        } else if constexpr (std::is_same_v<T, RingReply>) {
          // Nodes do not ask for rings; clients do.
        } else if constexpr (internal::kIsAntiEntropyMessage<T>) {
          anti_entropy_->Handle(from, m);
        } else if constexpr (std::is_same_v<T, GossipSummary>) {
          OnGossipSummary(from, m.view_digest);
        } else if constexpr (std::is_same_v<T, GossipDigest>) {
          OnGossipDigest(from, m.entry_hashes);
        } else if constexpr (std::is_same_v<T, GossipEntries>) {
          OnGossipEntries(from, m.entries, m.wanted);
        } else if constexpr (std::is_same_v<T, JoinRequest>) {
          OnJoinRequest(from, m);
        } else if constexpr (std::is_same_v<T, JoinReply>) {
          OnJoinReply(m);
        } else if constexpr (std::is_same_v<T, TransferRequest>) {
          OnTransferRequest(from, m);
        } else if constexpr (std::is_same_v<T, TransferBatch>) {
          OnTransferBatch(from, m.request_id, m.code, m.entries, std::move(m.next_cursor));
        }
      },
      *decoded);
}

// ---------------------------------------------------------------- hinted handoff

void Node::ScheduleHandoff() {
  handoff_timer_ = runtime_->Schedule(options_.hint_delivery_interval, [this] {
    handoff_timer_ = kNoTimer;
    DeliverHints();
    ScheduleHandoff();
  });
}

void Node::DeliverHints() {
  absl::StatusOr<HintUsage> usage = storage_->GetHintUsage();
  if (usage.ok()) metrics_.hints_held = usage->count;
  if (usage.ok() && usage->count == 0) return;
  size_t room = options_.hint_deliveries_in_flight_max - hint_deliveries_.size();
  if (room == 0 || !options_.hinted_handoff_enabled) return;
  room = admission_->TryAcquire(runtime_->Elapsed(), room);  // background budget (paper 6.5)
  if (room == 0) return;
  ScanLimits limits;
  limits.entries_max = room;
  absl::StatusOr<HintScanResult> batch = storage_->ScanHints(hint_cursor_, limits);
  if (!batch.ok()) {
    metrics_.storage_errors++;
    return;
  }
  // Resume after this batch next time; start over once past the end, so
  // every hint is retried at a bounded rate.
  hint_cursor_ = batch->resume_cursor;
  for (HintEntry& hint : batch->entries) {
    if (!failure_detector_.IsReachable(hint.owner)) continue;
    bool in_flight = false;
    for (const auto& [id, d] : hint_deliveries_) {
      if (d.owner == hint.owner && d.key == hint.key) in_flight = true;
    }
    if (in_flight) continue;
    uint64_t id = ++request_id_counter_;
    SendMessage(hint.owner, EncodeMessage(ReplicaPut{id, hint.key, hint.siblings, kNoNode, false,
                                                     /*replicated=*/true}));
    TimerId timeout = runtime_->Schedule(options_.replica_timeout, [this, id] {
      auto it = hint_deliveries_.find(id);
      if (it == hint_deliveries_.end()) return;
      failure_detector_.OnTimeout(it->second.owner, runtime_->Elapsed());
      hint_deliveries_.erase(it);
    });
    hint_deliveries_.emplace(id, HintDelivery{hint.owner, std::move(hint.key),
                                              std::move(hint.siblings), timeout});
  }
}

void Node::OnHintDelivered(uint64_t id, bool ok) {
  auto it = hint_deliveries_.find(id);
  HintDelivery d = std::move(it->second);
  hint_deliveries_.erase(it);
  runtime_->Cancel(d.timeout);
  if (!ok) return;  // the owner refused (e.g. sibling limit); keep the hint
  // Only what the owner acknowledged is removed; versions merged into the
  // hint since the delivery started stay for the next round.
  if (storage_->DeleteHint(d.owner, d.key, d.siblings).ok()) {
    metrics_.hints_delivered++;
  } else {
    metrics_.storage_errors++;
  }
}

// ---------------------------------------------------------------- probes, flush

void Node::ScheduleProbe() {
  probe_timer_ = runtime_->Schedule(options_.probe_interval, [this] {
    probe_timer_ = kNoTimer;
    metrics_.peers_suspected_by_phi +=
        failure_detector_.SuspectByPhi(runtime_->Elapsed(), options_.phi_threshold);
    internal::PingUnreachable(failure_detector_, runtime_->transport(), &request_id_counter_);
    ScheduleProbe();
  });
}

void Node::ScheduleFlush() {
  flush_timer_ = runtime_->Schedule(options_.storage_flush_interval, [this] {
    flush_timer_ = kNoTimer;
    if (!storage_->StartFlush().ok()) metrics_.storage_errors++;
    ScheduleFlush();
  });
}

// ---------------------------------------------------------------- membership

size_t Node::ReplicationMax() const {
  size_t n = 1;
  for (const BucketOptions& b : options_.buckets) n = std::max(n, b.n);
  return n;
}

absl::Status Node::LoadMembership(const Ring& initial) {
  DYNAMO_ASSIGN_OR_RETURN(std::optional<std::string> saved, storage_->GetMetadata("membership"));
  if (saved.has_value()) {
    absl::StatusOr<std::vector<MemberEntry>> entries = DecodeMemberEntries(*saved);
    if (!entries.ok()) {
      return absl::DataLossError(absl::StrCat("stored membership is corrupt: ",
                                              std::string(entries.status().message())));
    }
    membership_.MergeAll(*entries);
  } else {
    // First start: the ring we were given is the cluster (every member up,
    // joined in id order). An empty ring means we are not a member yet.
    membership_ = Membership::FromRing(initial);
  }
  return absl::OkStatus();
}

void Node::UpdateOwnEntry(const std::function<void(MemberEntry&)>& change) {
  const MemberEntry* mine = membership_.Find(id());
  if (mine == nullptr) return;
  MemberEntry e = *mine;
  change(e);
  e.version = mine->version + 1;
  membership_.Merge(e);
}

void Node::OnMembershipChanged() {
  metrics_.membership_changes++;
  // Announce this incarnation's actor. A node that lost its data finds
  // another actor in its cluster entry: that was its previous life, so it
  // moves to the next epoch. It waits until it has heard from the cluster
  // (own_entry_settled_), or it would only see its own bootstrap view.
  // The transport address is announced the same way (options_.address).
  if (const MemberEntry* mine = membership_.Find(id());
      own_entry_settled_ && mine != nullptr && mine->status != MemberStatus::kRemoved &&
      (mine->actor != identity().actor ||
       (!options_.address.empty() && mine->address != options_.address))) {
    if (mine->actor != identity().actor && mine->actor != 0 && fresh_identity_) {
      if (!dot_counter_->SetEpoch(std::max(identity().epoch, mine->epoch + 1)).ok()) {
        metrics_.storage_errors++;
      }
    }
    fresh_identity_ = false;
    UpdateOwnEntry([this](MemberEntry& e) {
      e.actor = identity().actor;
      e.epoch = identity().epoch;
      if (!options_.address.empty()) e.address = options_.address;
    });
  }
  if (!storage_->PutMetadata("membership", EncodeMemberEntries(membership_)).ok()) {
    metrics_.storage_errors++;
  }
  if (options_.on_membership_changed) options_.on_membership_changed(membership_);
  // Read only before anything below changes the view again.
  const uint64_t ring_inputs = membership_.ring_inputs_version();
  const std::vector<RingChange>& routing_changes = membership_.RingChanges(/*pending=*/false);
  const std::vector<RingChange>& pending_changes = membership_.RingChanges(/*pending=*/true);
  // A ring whose history is the view's changes is the ring the view builds
  // (the ring given at creation usually is): a view change that leaves the
  // changes as they were, such as an announced actor, rebuilds nothing.
  if (rings_follow_inputs_ != ring_inputs &&
      (ring_.history() != routing_changes || pending_ring_.history() != pending_changes)) {
    const RingOptions& options = ring_.options();
    // Each ring grows from the one before when the changes only add to its
    // history (a join or a removal is appended: it takes the next sequence
    // number); the pending ring usually adds a joiner or a leaver to the
    // routing ring's changes, or is the same ring.
    absl::StatusOr<Ring> routing = Membership::BuildRing(options, routing_changes, ring_);
    absl::StatusOr<Ring> pending = routing;
    if (pending_changes != routing_changes && routing.ok()) {
      pending = Membership::BuildRing(options, pending_changes, *routing);
    }
    if (!routing.ok() || !pending.ok()) {
      metrics_.storage_errors++;  // an inconsistent view; keep the old rings
      return;
    }
    metrics_.ring_rebuilds++;
    Ring before = std::move(ring_);  // replaced at once: no copy needed
    ring_ = *std::move(routing);
    pending_ring_ = *std::move(pending);
    moving_to_ =
        pending_ring_.members() == ring_.members() ? Ring(ring_.options()) : pending_ring_;
    if (anti_entropy_) anti_entropy_->OnRingChanged(ring_);  // trees follow the ranges
    if (before.size() > 0 && ring_.Contains(id())) {
      // Ranges this node gained (a member was removed, or this node became
      // up) are pulled from their previous owners.
      EnqueueTransfers(before, ring_, /*for_join=*/false);
    }
  }
  rings_follow_inputs_ = ring_inputs;
  const MemberEntry* mine = membership_.Find(id());
  if (mine != nullptr && mine->status == MemberStatus::kJoining && !join_transfers_enqueued_) {
    join_transfers_enqueued_ = true;
    EnqueueTransfers(ring_, pending_ring_, /*for_join=*/true);
    if (transfers_.empty()) {
      UpdateOwnEntry([](MemberEntry& e) { e.status = MemberStatus::kUp; });
      OnMembershipChanged();
      return;
    }
  }
  if (mine != nullptr && mine->status == MemberStatus::kLeaving && !leave_pass_) {
    leave_pass_ = true;
    sweep_cursor_.clear();
  }
  PumpTransfers();
}

void Node::SettleOwnEntry() {
  if (own_entry_settled_) return;
  own_entry_settled_ = true;
  OnMembershipChanged();
}

void Node::OnJoinRequest(NodeId from, const JoinRequest& m) {
  JoinReply reply;
  reply.request_id = m.request_id;
  absl::StatusOr<std::vector<MemberEntry>> entry = DecodeMemberEntries(m.entry);
  if (!entry.ok() || entry->size() != 1 || entry->front().id != from) {
    reply.code = static_cast<int>(absl::StatusCode::kInvalidArgument);
    reply.error = "join: expected exactly the joiner's own entry";
  } else if (membership_.Find(id()) == nullptr) {
    reply.code = static_cast<int>(absl::StatusCode::kFailedPrecondition);
    reply.error = "join: the seed is not a member of a cluster itself";
  } else {
    const MemberEntry* known = membership_.Find(from);
    if (known == nullptr || known->status == MemberStatus::kRemoved) {
      MemberEntry e = entry->front();
      e.status = MemberStatus::kJoining;
      e.join_seq = membership_.NextSeq();
      e.remove_seq = 0;
      e.version = known == nullptr ? 1 : known->version + 1;
      if (membership_.Merge(e)) OnMembershipChanged();
    }
    reply.entries = EncodeMemberEntries(membership_);
  }
  SendMessage(from, EncodeMessage(reply));
}

void Node::OnJoinReply(const JoinReply& m) {
  auto it = joins_.find(m.request_id);
  if (it == joins_.end()) return;
  PutCallback done = std::move(it->second.first);
  runtime_->Cancel(it->second.second);
  joins_.erase(it);
  if (m.code != 0) {
    done(absl::Status(static_cast<absl::StatusCode>(m.code), m.error));
    return;
  }
  absl::StatusOr<std::vector<MemberEntry>> entries = DecodeMemberEntries(m.entries);
  if (!entries.ok()) {
    done(entries.status());
    return;
  }
  if (membership_.MergeAll(*entries)) OnMembershipChanged();
  SettleOwnEntry();
  done(absl::OkStatus());
}

void Node::OnTransferRequest(NodeId from, const TransferRequest& m) {
  TransferBatch reply;
  reply.request_id = m.request_id;
  ScanLimits limits;
  limits.entries_max = options_.transfer_batch_entries;
  limits.bytes_max = options_.transfer_batch_bytes;
  absl::StatusOr<ScanResult> scan = storage_->Scan(TokenRange{m.begin, m.end}, m.cursor, limits);
  if (!scan.ok()) {
    metrics_.storage_errors++;
    reply.code = static_cast<int>(scan.status().code());
    reply.error = std::string(scan.status().message());
  } else {
    for (KeyEntry& e : scan->entries) {
      reply.entries.emplace_back(std::move(e.key), std::move(e.siblings));
    }
    reply.next_cursor = std::move(scan->resume_cursor);
  }
  SendMessage(from, EncodeMessage(reply));
}

void Node::Join(NodeId seed, PutCallback done) {
  if (const MemberEntry* mine = membership_.Find(id());
      mine != nullptr && mine->status != MemberStatus::kRemoved) {
    done(absl::OkStatus());  // already a member
    return;
  }
  MemberEntry e;
  e.id = id();
  e.zone = options_.zone;
  e.address = options_.address;
  e.weight = options_.weight;
  e.status = MemberStatus::kJoining;
  e.epoch = identity().epoch;
  e.actor = identity().actor;
  uint64_t request = ++request_id_counter_;
  TimerId timeout = runtime_->Schedule(options_.join_timeout, [this, request] {
    auto it = joins_.find(request);
    if (it == joins_.end()) return;
    PutCallback cb = std::move(it->second.first);
    joins_.erase(it);
    cb(absl::DeadlineExceededError("join: the seed did not answer in time"));
  });
  joins_.emplace(request, std::make_pair(std::move(done), timeout));
  SendMessage(seed, EncodeMessage(JoinRequest{request, EncodeMemberEntries({e})}));
}

absl::Status Node::Leave() {
  const MemberEntry* mine = membership_.Find(id());
  if (mine == nullptr || mine->status != MemberStatus::kUp) {
    return absl::FailedPreconditionError("leave: this node is not an up member");
  }
  uint64_t seq = membership_.NextSeq();
  UpdateOwnEntry([seq](MemberEntry& e) {
    e.status = MemberStatus::kLeaving;
    e.remove_seq = seq;
  });
  OnMembershipChanged();
  return absl::OkStatus();
}

absl::Status Node::Remove(NodeId node) {
  const MemberEntry* entry = membership_.Find(node);
  if (entry == nullptr || entry->status == MemberStatus::kRemoved) {
    return absl::NotFoundError(absl::StrCat("remove: node ", node, " is not a member"));
  }
  size_t remaining = membership_.Live().size() - 1;
  if (remaining < ReplicationMax()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "remove: ", remaining, " members would remain, fewer than N=", ReplicationMax()));
  }
  MemberEntry e = *entry;
  e.status = MemberStatus::kRemoved;
  if (e.remove_seq == 0) e.remove_seq = membership_.NextSeq();
  e.version++;
  membership_.Merge(e);
  OnMembershipChanged();
  return absl::OkStatus();
}

// ---------------------------------------------------------------- gossip

void Node::ScheduleGossip() {
  gossip_timer_ = runtime_->Schedule(options_.gossip_interval, [this] {
    gossip_timer_ = kNoTimer;
    GossipRound();
    ScheduleGossip();
  });
}

void Node::GossipRound() {
  ++gossip_round_;
  metrics_.gossip_rounds++;
  std::string bytes = EncodeMessage(GossipSummary{membership_.ViewDigest()});
  // A live member other than this node, drawn uniformly.
  const std::vector<NodeId>& live = membership_.Live();
  const auto self = std::lower_bound(live.begin(), live.end(), id());
  const bool self_live = self != live.end() && *self == id();
  const size_t peers = live.size() - self_live;
  if (peers > 0) {
    size_t k = absl::Uniform<size_t>(runtime_->Rng(), 0, peers);
    if (self_live && k >= static_cast<size_t>(self - live.begin())) ++k;  // skip this node
    SendMessage(live[k], bytes);
  }
  // Seeds are contacted as well, so nodes that joined through different
  // members never stay in separate rings (paper 4.8).
  std::vector<NodeId> seeds;
  for (NodeId s : options_.seeds) {
    if (s != id()) seeds.push_back(s);
  }
  if (!seeds.empty() && (peers == 0 || gossip_round_ % options_.seed_gossip_period_rounds == 0)) {
    SendMessage(seeds[absl::Uniform<size_t>(runtime_->Rng(), 0, seeds.size())], bytes);
  }
}

void Node::OnGossipSummary(NodeId from, uint64_t view_digest) {
  if (view_digest == membership_.ViewDigest()) return;  // the views agree
  SendMessage(from, EncodeMessage(GossipDigest{membership_.digest()}));
}

void Node::OnGossipDigest(NodeId from, const Membership::Digest& digest) {
  // Both digests in id order, walked side by side. A peer sends its own in
  // id order; any other order is sorted first, and of an id listed twice
  // the first counts.
  const auto by_id = [](const auto& a, const auto& b) { return a.first < b.first; };
  const auto by_id_strictly = [](const auto& a, const auto& b) { return a.first >= b.first; };
  Membership::Digest sorted;
  const Membership::Digest* theirs = &digest;
  if (std::adjacent_find(digest.begin(), digest.end(), by_id_strictly) != digest.end()) {
    sorted = digest;
    std::stable_sort(sorted.begin(), sorted.end(), by_id);
    sorted.erase(std::unique(sorted.begin(), sorted.end(),
                             [](const auto& a, const auto& b) { return a.first == b.first; }),
                 sorted.end());
    theirs = &sorted;
  }
  const Membership::Digest& mine = membership_.digest();
  std::vector<NodeId> send;
  GossipEntries reply;
  auto m = mine.begin();
  auto t = theirs->begin();
  while (m != mine.end() || t != theirs->end()) {
    if (t == theirs->end() || (m != mine.end() && m->first < t->first)) {
      send.push_back((m++)->first);  // they lack it
    } else if (m == mine.end() || t->first < m->first) {
      reply.wanted.push_back((t++)->first);  // we lack it
    } else {
      if (m->second != t->second) {  // the same member seen differently
        send.push_back(m->first);
        reply.wanted.push_back(t->first);
      }
      ++m;
      ++t;
    }
  }
  if (send.empty() && reply.wanted.empty()) return;
  std::vector<MemberEntry> entries;
  entries.reserve(send.size());
  for (NodeId member : send) entries.push_back(*membership_.Find(member));
  reply.entries = EncodeMemberEntries(entries);
  SendMessage(from, EncodeMessage(reply));
}

void Node::OnGossipEntries(NodeId from, std::string_view entries,
                           const std::vector<NodeId>& wanted) {
  absl::StatusOr<std::vector<MemberEntry>> decoded = DecodeMemberEntries(entries);
  if (!decoded.ok()) {
    metrics_.messages_malformed++;
    return;
  }
  if (membership_.MergeAll(*decoded)) OnMembershipChanged();
  SettleOwnEntry();
  if (wanted.empty()) return;
  std::vector<MemberEntry> send;
  for (NodeId w : wanted) {
    if (const MemberEntry* e = membership_.Find(w)) send.push_back(*e);
  }
  if (!send.empty()) SendMessage(from, EncodeMessage(GossipEntries{EncodeMemberEntries(send), {}}));
}

// ---------------------------------------------------------------- ownership transfer

void Node::EnqueueTransfers(const Ring& before, const Ring& after, bool for_join) {
  if (before.size() == 0) return;
  for (const Ring::RangeMove& move : Ring::Diff(before, after, ReplicationMax())) {
    bool gains = std::find(move.to.begin(), move.to.end(), id()) != move.to.end() &&
                 std::find(move.from.begin(), move.from.end(), id()) == move.from.end();
    if (!gains) continue;
    Transfer t;
    t.range = move.range;
    for (NodeId s : move.from) {
      if (s != id()) t.sources.push_back(s);
    }
    if (t.sources.empty()) continue;
    t.for_join = for_join;
    transfers_.push_back(std::move(t));
    metrics_.transfers_started++;
  }
}

void Node::PumpTransfers() {
  size_t active = 0;
  for (const Transfer& t : transfers_) active += t.request_id != 0 ? 1 : 0;
  for (Transfer& t : transfers_) {
    if (active >= options_.transfers_in_flight_max) break;
    if (t.request_id != 0) continue;
    NodeId source = t.sources[t.source_index];
    t.request_id = ++request_id_counter_;
    ++active;
    SendMessage(source, EncodeMessage(TransferRequest{t.request_id, t.range.begin, t.range.end,
                                                       t.cursor}));
    uint64_t request = t.request_id;
    t.timer = runtime_->Schedule(options_.transfer_timeout,
                                 [this, request] { OnTransferTimeout(request); });
  }
}

void Node::FinishTransferSource(Transfer& t, bool success) {
  if (success) t.sources_done++;
  t.cursor.clear();
  t.source_failures = 0;
  t.source_index++;
}

void Node::OnTransferTimeout(uint64_t request_id) {
  transfer_pause_ = options_.transfer_batch_interval;
  for (Transfer& t : transfers_) {
    if (t.request_id != request_id) continue;
    t.request_id = 0;
    t.timer = kNoTimer;
    metrics_.transfer_timeouts++;
    failure_detector_.OnTimeout(t.sources[t.source_index], runtime_->Elapsed());
    // A stalled transfer resumes from its cursor; a source that keeps
    // failing is skipped for this pass.
    if (++t.source_failures >= options_.transfer_attempts_max) FinishTransferSource(t, false);
    if (t.source_index >= t.sources.size()) {
      if (t.sources_done == 0) {
        t.source_index = 0;  // no source answered at all: start another pass
      }
    }
    break;
  }
  RetireTransfers();
}

void Node::OnTransferBatch(NodeId from, uint64_t request_id, int code,
                           std::vector<std::pair<std::string, SiblingSet>>& entries,
                           std::string next_cursor) {
  for (Transfer& t : transfers_) {
    if (request_id == 0 || t.request_id != request_id || t.sources[t.source_index] != from) continue;
    runtime_->Cancel(t.timer);
    t.timer = kNoTimer;
    t.request_id = 0;
    if (code != 0) {
      transfer_pause_ = options_.transfer_batch_interval;
      if (++t.source_failures >= options_.transfer_attempts_max) FinishTransferSource(t, false);
      break;
    }
    // The throttle is on data moved, not on requests: a full batch (by
    // entries or bytes) waits the whole interval, an empty range none, so a
    // join into a nearly empty cluster is not paced by its ~1000 ranges.
    size_t bytes = 0;
    for (const auto& [key, siblings] : entries) bytes += internal::ApproxEntryBytes(key, siblings);
    const double full = std::max(
        static_cast<double>(entries.size()) / std::max<size_t>(options_.transfer_batch_entries, 1),
        static_cast<double>(bytes) / std::max<size_t>(options_.transfer_batch_bytes, 1));
    transfer_pause_ = options_.transfer_batch_interval * std::min(full, 1.0);
    for (auto& [key, siblings] : entries) {
      if (storage_->Put(key, siblings, WriteOptions{.replicated = true}).ok()) {
        metrics_.transfer_keys_received++;
      } else {
        metrics_.storage_errors++;
      }
    }
    if (next_cursor.empty()) {
      FinishTransferSource(t, true);
    } else {
      t.cursor = std::move(next_cursor);
    }
    break;
  }
  RetireTransfers();
}

void Node::RetireTransfers() {
  // Retire transfers that pulled every source (skipped ones allowed, as long
  // as at least one answered).
  bool join_pending = false;
  for (auto it = transfers_.begin(); it != transfers_.end();) {
    if (it->request_id == 0 && it->source_index >= it->sources.size() && it->sources_done > 0) {
      metrics_.transfers_completed++;
      it = transfers_.erase(it);
    } else {
      join_pending |= it->for_join;
      ++it;
    }
  }
  const MemberEntry* mine = membership_.Find(id());
  if (!join_pending && mine != nullptr && mine->status == MemberStatus::kJoining &&
      join_transfers_enqueued_) {
    UpdateOwnEntry([](MemberEntry& e) { e.status = MemberStatus::kUp; });
    OnMembershipChanged();
    return;
  }
  if (transfers_.empty() || transfer_pump_timer_ != kNoTimer) return;
  // Throttle: the next batches go out after a pause.
  transfer_pump_timer_ = runtime_->Schedule(transfer_pause_, [this] {
    transfer_pump_timer_ = kNoTimer;
    PumpTransfers();
  });
}

// ---------------------------------------------------------------- handing off and dropping data

void Node::ScheduleCleanup() {
  cleanup_timer_ = runtime_->Schedule(options_.cleanup_interval, [this] {
    cleanup_timer_ = kNoTimer;
    Sweep();
    ScheduleCleanup();
  });
}

void Node::Sweep() {
  // Drop nothing while pulling ranges, and run one batch at a time.
  if (!transfers_.empty() || !pushed_.empty() || ring_.size() == 0) return;
  const MemberEntry* mine = membership_.Find(id());
  if (mine == nullptr || mine->status == MemberStatus::kJoining) return;
  ScanLimits limits;
  limits.entries_max = options_.cleanup_batch_entries;
  absl::StatusOr<ScanResult> batch = storage_->Scan(TokenRange{}, sweep_cursor_, limits);
  if (!batch.ok()) {
    metrics_.storage_errors++;
    return;
  }
  size_t n = ReplicationMax();
  std::vector<NodeId> owners, future;
  for (KeyEntry& entry : batch->entries) {
    Token token = KeyToken(entry.key);
    ring_.PreferenceList(token, n, 0, &owners);
    pending_ring_.PreferenceList(token, n, 0, &future);
    bool keep = std::find(owners.begin(), owners.end(), id()) != owners.end() ||
                std::find(future.begin(), future.end(), id()) != future.end();
    if (keep && !leave_pass_) continue;
    // Hand the key to every owner that will hold it; drop it here only once
    // all of them confirmed (a leaving node keeps it until it is removed).
    std::vector<NodeId> targets;
    for (const std::vector<NodeId>* list : {&owners, &future}) {
      for (NodeId o : *list) {
        if (o != id() && std::find(targets.begin(), targets.end(), o) == targets.end()) {
          targets.push_back(o);
        }
      }
    }
    if (targets.empty()) continue;
    size_t index = pushed_.size();
    pushed_.push_back(PushedKey{entry.key, entry.siblings, targets.size(), !keep, targets});
    for (NodeId target : targets) {
      uint64_t request = ++request_id_counter_;
      push_requests_.emplace(request, index);
      metrics_.handoff_keys_sent++;
      SendMessage(target,
                  EncodeMessage(ReplicaPut{request, entry.key, entry.siblings, kNoNode, false,
                                           /*replicated=*/true}));
    }
  }
  bool pass_done = batch->resume_cursor.empty();
  sweep_cursor_ = std::move(batch->resume_cursor);
  if (leave_pass_ && pass_done) leave_final_batch_ = true;
  if (pushed_.empty()) {
    push_requests_.clear();
    if (leave_pass_ && leave_final_batch_) FinishLeave();
    return;
  }
  // Unanswered pushes are abandoned after a timeout; the next pass retries.
  uint64_t generation = ++push_generation_;
  runtime_->Schedule(options_.transfer_timeout, [this, generation] {
    if (generation != push_generation_) return;
    push_requests_.clear();
    pushed_.clear();
    RestartLeavePass();
  });
}

void Node::RestartLeavePass() {
  if (!leave_pass_) return;
  sweep_cursor_.clear();
  leave_final_batch_ = false;
  leave_batch_failed_ = false;
}

void Node::FinishLeave() {
  // Every key was handed to its new owners in one full pass, and each of
  // them confirmed: the node can go.
  leave_pass_ = false;
  leave_final_batch_ = false;
  UpdateOwnEntry([](MemberEntry& e) { e.status = MemberStatus::kRemoved; });
  OnMembershipChanged();
}

namespace {
// Whether a key pushed to `confirmed` may be dropped now: the rings may have
// moved while the pushes were in flight, so `self` must own it on neither
// ring and every owner on both must be among those that confirmed.
bool HandedToEveryOwner(NodeId self, const Ring& ring, const Ring& pending,
                        const std::string& key, size_t n, const std::vector<NodeId>& confirmed) {
  Token token = KeyToken(key);
  std::vector<NodeId> owners;
  for (const Ring* r : {&ring, &pending}) {
    if (r->size() == 0) continue;
    r->PreferenceList(token, n, 0, &owners);
    for (NodeId o : owners) {
      if (o == self || std::find(confirmed.begin(), confirmed.end(), o) == confirmed.end()) {
        return false;
      }
    }
  }
  return true;
}
}  // namespace

bool Node::OnPushAck(NodeId /*from*/, uint64_t request_id, bool ok) {
  auto it = push_requests_.find(request_id);
  if (it == push_requests_.end()) return false;
  PushedKey& pushed = pushed_[it->second];
  push_requests_.erase(it);
  if (!ok) leave_batch_failed_ = true;
  if (!ok && !push_requests_.empty()) return true;
  if (ok && --pushed.acks_needed == 0 && pushed.erase_when_confirmed &&
      HandedToEveryOwner(id(), ring_, pending_ring_, pushed.key, ReplicationMax(),
                         pushed.targets)) {
    // Erase only if nothing was written since: a newer version would be lost.
    absl::StatusOr<SiblingSet> now = storage_->Get(pushed.key);
    if (now.ok() && *now == pushed.siblings) {
      if (storage_->Erase(pushed.key).ok()) {
        metrics_.keys_dropped++;
      } else {
        metrics_.storage_errors++;
      }
    }
  }
  if (push_requests_.empty()) {
    pushed_.clear();
    ++push_generation_;  // disarm this batch's timeout
    if (leave_pass_ && leave_batch_failed_) {
      RestartLeavePass();
    } else if (leave_pass_ && leave_final_batch_) {
      FinishLeave();
      return true;
    }
    Sweep();  // next batch right away
  }
  return true;
}

absl::Status Node::VerifyMerkleTrees() {
  if (!anti_entropy_) return absl::FailedPreconditionError("the node has not started");
  return anti_entropy_->VerifyTrees();
}

}  // namespace dynamo

#include "dynamo/node.h"

#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "node/messages.h"
#include "node/ring_codec.h"

namespace dynamo {

using internal::ClientReply;
using internal::ClientRequest;
using internal::EncodeMessage;
using internal::Message;
using internal::Ping;
using internal::Pong;
using internal::ReplicaGet;
using internal::ReplicaGetReply;
using internal::ReplicaPut;
using internal::ReplicaPutReply;
using internal::RingReply;
using internal::RingRequest;

absl::StatusOr<std::unique_ptr<Node>> Node::Create(NodeOptions options, Runtime* runtime,
                                                   StorageEngine* storage, Ring ring) {
  if (runtime == nullptr || storage == nullptr) {
    return absl::InvalidArgumentError("Node::Create needs a runtime and a storage engine");
  }
  if (options.buckets.empty()) return absl::InvalidArgumentError("no buckets configured");
  for (const BucketOptions& b : options.buckets) {
    DYNAMO_RETURN_IF_ERROR(ValidateBucket(b, ring.size()));
  }
  std::unique_ptr<Node> node(new Node(std::move(options), runtime, storage, std::move(ring)));
  DYNAMO_RETURN_IF_ERROR(node->Start());
  return node;
}

Node::Node(NodeOptions options, Runtime* runtime, StorageEngine* storage, Ring ring)
    : options_(std::move(options)), runtime_(runtime), storage_(storage), ring_(std::move(ring)) {}

Node::~Node() {
  runtime_->transport().SetReceiveHandler(nullptr);
  runtime_->Cancel(handoff_timer_);
  runtime_->Cancel(probe_timer_);
  runtime_->Cancel(flush_timer_);
  for (auto& [id, d] : hint_deliveries_) runtime_->Cancel(d.timeout);
}

absl::Status Node::Start() {
  DYNAMO_ASSIGN_OR_RETURN(std::optional<NodeIdentity> stored, storage_->GetIdentity());
  if (stored.has_value()) {
    if (stored->node != id()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "storage belongs to node ", stored->node, ", not to node ", id()));
    }
    identity_ = *stored;
  } else {
    // No identity: a new node, or one whose data was lost. A fresh random
    // actor guarantees no vector-clock counter of an earlier life is reused.
    identity_.node = id();
    identity_.epoch = 1;
    do {
      identity_.actor = runtime_->Rng()();
    } while (identity_.actor == 0);
    DYNAMO_RETURN_IF_ERROR(storage_->PutIdentity(identity_));
  }
  CoordinatorEnv env;
  env.runtime = runtime_;
  env.storage = storage_;
  env.ring = &ring_;
  env.failure_detector = &failure_detector_;
  env.options = &options_;
  env.metrics = &metrics_;
  env.actor = identity_.actor;
  env.request_id_counter = &request_id_counter_;
  coordinator_ = std::make_unique<Coordinator>(env);
  runtime_->transport().SetReceiveHandler(
      [this](NodeId from, std::string_view bytes) { OnMessage(from, bytes); });
  ScheduleHandoff();
  ScheduleProbe();
  ScheduleFlush();
  return absl::OkStatus();
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
  ring_ = std::move(ring);
  return absl::OkStatus();
}

void Node::SendMessage(NodeId to, const std::string& bytes) {
  (void)runtime_->transport().Send(to, bytes);
}

void Node::OnMessage(NodeId from, std::string_view bytes) {
  absl::StatusOr<Message> decoded = internal::DecodeMessage(bytes);
  if (!decoded.ok()) {
    // Bad bytes from the network are dropped and counted; they never stop
    // the node.
    metrics_.messages_malformed++;
    return;
  }
  failure_detector_.OnHeard(from, runtime_->Now());
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
            absl::StatusOr<SiblingSet> stored = storage_->Put(m.key, m.versions, wo);
            status = stored.status();
            if (stored.ok() && stored->size() >= options_.siblings_warn_count) {
              metrics_.keys_over_sibling_warning++;
            }
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
          reply.code = static_cast<int>(status.code());
          reply.error = std::string(status.message());
          SendMessage(from, EncodeMessage(reply));
        } else if constexpr (std::is_same_v<T, ReplicaGet>) {
          metrics_.replica_gets++;
          ReplicaGetReply reply;
          reply.request_id = m.request_id;
          absl::StatusOr<SiblingSet> siblings = storage_->Get(m.key);
          if (siblings.ok()) {
            reply.siblings = *std::move(siblings);
          } else {
            metrics_.storage_errors++;
            reply.code = static_cast<int>(siblings.status().code());
            reply.error = std::string(siblings.status().message());
          }
          SendMessage(from, EncodeMessage(reply));
        } else if constexpr (std::is_same_v<T, ReplicaPutReply>) {
          if (coordinator_->OnReplicaPutReply(from, m)) return;
          auto it = hint_deliveries_.find(m.request_id);
          if (it != hint_deliveries_.end() && it->second.owner == from) {
            OnHintDelivered(m.request_id, m.code == 0);
          }
        } else if constexpr (std::is_same_v<T, ReplicaGetReply>) {
          coordinator_->OnReplicaGetReply(from, m);
        } else if constexpr (std::is_same_v<T, ClientRequest>) {
          coordinator_->HandleClientRequest(from, std::move(m));
        } else if constexpr (std::is_same_v<T, ClientReply>) {
          coordinator_->OnClientReply(from, m);
        } else if constexpr (std::is_same_v<T, Ping>) {
          SendMessage(from, EncodeMessage(Pong{m.nonce}));
        } else if constexpr (std::is_same_v<T, Pong>) {
          // OnHeard above already marked the peer reachable.
        } else if constexpr (std::is_same_v<T, RingRequest>) {
          SendMessage(from, EncodeMessage(RingReply{m.request_id, EncodeRing(ring_)}));
        } else if constexpr (std::is_same_v<T, RingReply>) {
          // Nodes do not ask for rings; clients do.
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
    SendMessage(hint.owner, EncodeMessage(ReplicaPut{id, hint.key, hint.siblings, kNoNode, false}));
    TimerId timeout = runtime_->Schedule(options_.replica_timeout, [this, id] {
      auto it = hint_deliveries_.find(id);
      if (it == hint_deliveries_.end()) return;
      failure_detector_.OnTimeout(it->second.owner, runtime_->Now());
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
    for (NodeId peer : failure_detector_.Unreachable()) {
      SendMessage(peer, EncodeMessage(Ping{++request_id_counter_}));
    }
    ScheduleProbe();
  });
}

void Node::ScheduleFlush() {
  flush_timer_ = runtime_->Schedule(options_.storage_flush_interval, [this] {
    flush_timer_ = kNoTimer;
    if (!storage_->Flush().ok()) metrics_.storage_errors++;
    ScheduleFlush();
  });
}

}  // namespace dynamo

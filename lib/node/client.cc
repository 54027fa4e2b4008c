#include "dynamo/client.h"

#include <variant>

#include "node/messages.h"
#include "node/ring_codec.h"

namespace dynamo {

absl::StatusOr<std::unique_ptr<Client>> Client::Create(ClientOptions options, Runtime* runtime) {
  if (runtime == nullptr) return absl::InvalidArgumentError("Client::Create needs a runtime");
  if (options.seeds.empty()) return absl::InvalidArgumentError("a client needs at least one seed");
  std::unique_ptr<Client> client(new Client(std::move(options), runtime));
  client->RefreshRing();
  client->ScheduleProbe();
  return client;
}

Client::Client(ClientOptions options, Runtime* runtime)
    : options_(std::move(options)), runtime_(runtime), ring_(RingOptions()) {
  CoordinatorEnv env;
  env.runtime = runtime_;
  env.storage = nullptr;  // reads are coordinated here, writes sent to a replica
  env.ring = &ring_;
  env.failure_detector = &failure_detector_;
  env.options = &options_.requests;
  env.metrics = &metrics_;
  env.request_id_counter = &request_id_counter_;
  coordinator_ = std::make_unique<Coordinator>(env);
  runtime_->transport().SetReceiveHandler(
      [this](NodeId from, std::string_view bytes) { OnMessage(from, bytes); });
}

Client::~Client() {
  runtime_->transport().SetReceiveHandler(nullptr);
  runtime_->Cancel(refresh_timer_);
  runtime_->Cancel(probe_timer_);
}

void Client::ScheduleProbe() {
  // Like a node, the client pings the replicas it stopped trusting, so it
  // notices when they come back (otherwise only a ring refresh would).
  probe_timer_ = runtime_->Schedule(options_.requests.probe_interval, [this] {
    probe_timer_ = kNoTimer;
    internal::PingUnreachable(failure_detector_, runtime_->transport(), &request_id_counter_);
    ScheduleProbe();
  });
}

void Client::RefreshRing() {
  NodeId seed = options_.seeds[next_seed_++ % options_.seeds.size()];
  (void)runtime_->transport().Send(
      seed, internal::EncodeMessage(internal::RingRequest{++request_id_counter_}));
  // Until a ring arrives, ask again soon (another seed may answer).
  absl::Duration next = has_ring_ ? options_.ring_refresh_interval
                                  : std::min(options_.ring_refresh_interval, absl::Milliseconds(200));
  refresh_timer_ = runtime_->Schedule(next, [this] {
    refresh_timer_ = kNoTimer;
    RefreshRing();
  });
}

void Client::OnMessage(NodeId from, std::string_view bytes) {
  absl::StatusOr<internal::Message> decoded = internal::DecodeMessage(bytes);
  if (!decoded.ok()) {
    metrics_.messages_malformed++;
    return;
  }
  failure_detector_.OnHeard(from, runtime_->Elapsed());
  if (auto* reply = std::get_if<internal::RingReply>(&*decoded)) {
    absl::StatusOr<Ring> ring = DecodeRing(reply->ring);
    if (!ring.ok() || ring->size() == 0) {
      metrics_.messages_malformed++;
      return;
    }
    ring_ = *std::move(ring);
    has_ring_ = true;
  } else if (auto* get = std::get_if<internal::ReplicaGetReply>(&*decoded)) {
    coordinator_->OnReplicaGetReply(from, std::move(*get));
  } else if (auto* put = std::get_if<internal::ReplicaPutReply>(&*decoded)) {
    coordinator_->OnReplicaPutReply(from, *put);
  } else if (auto* client = std::get_if<internal::ClientReply>(&*decoded)) {
    coordinator_->OnClientReply(from, std::move(*client));
  }
}

absl::Status Client::CheckRing() const {
  return has_ring_ ? absl::OkStatus() : absl::UnavailableError("the client has no ring yet");
}

void Client::Get(std::string_view bucket, std::string_view key, GetCallback done) {
  if (absl::Status s = CheckRing(); !s.ok()) {
    done(s);
    return;
  }
  coordinator_->Get(bucket, key, std::move(done));
}

void Client::Put(std::string_view bucket, std::string_view key, const Context& context,
                 std::string value, PutCallback done) {
  if (absl::Status s = CheckRing(); !s.ok()) {
    done(s);
    return;
  }
  coordinator_->Put(bucket, key, context, std::move(value), std::move(done));
}

void Client::Delete(std::string_view bucket, std::string_view key, const Context& context,
                    PutCallback done) {
  if (absl::Status s = CheckRing(); !s.ok()) {
    done(s);
    return;
  }
  coordinator_->Delete(bucket, key, context, std::move(done));
}

}  // namespace dynamo

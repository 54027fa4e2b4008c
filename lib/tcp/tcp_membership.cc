#include "tcp/tcp_membership.h"

#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace dynamo::internal {

absl::StatusOr<std::map<NodeId, Endpoint>> ParseMemberAddresses(std::string_view text) {
  std::map<NodeId, Endpoint> out;
  std::vector<std::string> entries = absl::StrSplit(std::string(text), ',', absl::SkipEmpty());
  for (const std::string& entry : entries) {
    std::vector<std::string> kv = absl::StrSplit(entry, absl::MaxSplits('=', 1));
    NodeId id = kNoNode;
    if (kv.size() != 2 || !absl::SimpleAtoi(kv[0], &id) || id == kNoNode) {
      return absl::InvalidArgumentError(absl::StrCat("'", entry, "' is not ID=HOST:PORT"));
    }
    absl::StatusOr<Endpoint> endpoint = Endpoint::Parse(kv[1]);
    if (!endpoint.ok()) return endpoint.status();
    if (!out.emplace(id, *endpoint).second) {
      return absl::InvalidArgumentError(absl::StrCat("node id ", id, " is listed twice"));
    }
  }
  return out;
}

absl::Status ApplyMemberAddresses(const Membership& membership, TcpRuntime& runtime) {
  // Removed members first: they are not redialled for ever, and their
  // places in peers_max go to the members added below.
  for (const MemberEntry& entry : membership.entries()) {
    if (entry.status == MemberStatus::kRemoved) runtime.RemovePeer(entry.id);
  }
  absl::Status first;
  for (const MemberEntry& entry : membership.entries()) {
    const NodeId id = entry.id;
    if (id == runtime.self() || entry.status == MemberStatus::kRemoved || entry.address.empty()) {
      continue;
    }
    absl::StatusOr<Endpoint> endpoint = Endpoint::Parse(entry.address);
    absl::Status s = endpoint.ok() ? runtime.SetPeer(id, *endpoint) : endpoint.status();
    if (!s.ok() && first.ok()) {
      first = absl::Status(s.code(), absl::StrCat("member ", id, ": ", s.message()));
    }
  }
  return first;
}

SeedJoin::SeedJoin(Node* node, TcpRuntime* runtime, std::map<NodeId, Endpoint> seeds,
                   size_t attempts_max, absl::Duration retry_interval,
                   std::function<void(const absl::Status&)> done)
    : node_(node),
      runtime_(runtime),
      seeds_(std::move(seeds)),
      attempts_max_(attempts_max),
      retry_interval_(retry_interval),
      done_(std::move(done)) {}

SeedJoin::~SeedJoin() {
  *alive_ = false;
  runtime_->Cancel(retry_timer_);
}

void SeedJoin::Start() {
  if (seeds_.empty()) {
    done_(absl::InvalidArgumentError("join: no seed given"));
    return;
  }
  for (const auto& [id, endpoint] : seeds_) {
    if (absl::Status s = runtime_->SetPeer(id, endpoint); !s.ok()) {
      done_(s);
      return;
    }
  }
  Attempt();
}

void SeedJoin::Attempt() {
  // Seeds in turn, so one that is down does not stall the join.
  auto seed = std::next(seeds_.begin(), static_cast<long>(attempts_ % seeds_.size()));
  NodeId seed_id = seed->first;
  ++attempts_;
  std::shared_ptr<bool> alive = alive_;
  node_->Join(seed_id, [this, alive, seed_id](absl::Status s) {
    if (!*alive) return;
    if (s.ok()) {
      done_(s);
      return;
    }
    absl::Status failed(s.code(), absl::StrCat("join through seed ", seed_id, ": ", s.message()));
    if (attempts_max_ != 0 && attempts_ >= attempts_max_) {
      done_(failed);
      return;
    }
    if (on_retry_) on_retry_(failed);
    retry_timer_ = runtime_->Schedule(retry_interval_, [this] {
      retry_timer_ = kNoTimer;
      Attempt();
    });
  });
}

}  // namespace dynamo::internal

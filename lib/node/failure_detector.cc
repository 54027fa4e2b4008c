#include "dynamo/failure_detector.h"

namespace dynamo {

bool FailureDetector::IsReachable(NodeId peer) const {
  auto it = peers_.find(peer);
  return it == peers_.end() || it->second.reachable;
}

void FailureDetector::OnHeard(NodeId peer, absl::Time now) {
  PeerState& s = peers_[peer];
  s.reachable = true;
  s.last_heard = now;
}

void FailureDetector::OnTimeout(NodeId peer, absl::Time now) {
  PeerState& s = peers_[peer];
  s.reachable = false;
  s.last_timeout = now;
}

std::vector<NodeId> FailureDetector::Unreachable() const {
  std::vector<NodeId> out;
  for (const auto& [id, s] : peers_) {
    if (!s.reachable) out.push_back(id);
  }
  return out;
}

absl::Time FailureDetector::LastHeard(NodeId peer) const {
  auto it = peers_.find(peer);
  return it == peers_.end() ? absl::InfinitePast() : it->second.last_heard;
}

}  // namespace dynamo

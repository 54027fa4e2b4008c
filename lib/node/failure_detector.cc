#include "dynamo/failure_detector.h"

#include <algorithm>

namespace dynamo {

bool FailureDetector::IsReachable(NodeId peer) const {
  auto it = peers_.find(peer);
  return it == peers_.end() || it->second.reachable;
}

void FailureDetector::OnHeard(NodeId peer, absl::Duration now) {
  PeerState& s = peers_[peer];
  if (s.last_sampled == -absl::InfiniteDuration()) {
    s.last_sampled = now;
    s.next_sample = now + kPhiSampleSpacing;
  } else if (now >= s.next_sample) {
    double interval = absl::ToDoubleSeconds(now - s.last_sampled);
    s.last_sampled = now;
    s.next_sample = now + kPhiSampleSpacing;
    s.intervals_s.push_back(interval);
    s.intervals_sum_s += interval;
    if (s.intervals_s.size() > kPhiWindow) {
      s.intervals_sum_s -= s.intervals_s.front();
      s.intervals_s.pop_front();
    }
  }
  s.reachable = true;
  s.last_heard = std::max(s.last_heard, now);
}

double FailureDetector::Phi(NodeId peer, absl::Duration now) const {
  auto it = peers_.find(peer);
  if (it == peers_.end() || it->second.intervals_s.size() < kPhiSamplesMin) return 0;
  const PeerState& s = it->second;
  double mean = std::max(s.intervals_sum_s / static_cast<double>(s.intervals_s.size()),
                         absl::ToDoubleSeconds(kPhiMeanIntervalMin));
  double silence = std::max(0.0, absl::ToDoubleSeconds(now - s.last_heard));
  // P(next arrival later than `silence`) = exp(-silence/mean), so
  // phi = -log10(exp(-silence/mean)) = silence / mean * log10(e).
  return silence / mean * 0.4342944819032518;
}

size_t FailureDetector::SuspectByPhi(absl::Duration now, double threshold) {
  size_t marked = 0;
  for (auto& [id, s] : peers_) {
    if (s.reachable && Phi(id, now) > threshold) {
      s.reachable = false;
      s.last_timeout = now;
      ++marked;
    }
  }
  return marked;
}

void FailureDetector::OnTimeout(NodeId peer, absl::Duration now) {
  PeerState& s = peers_[peer];
  s.reachable = false;
  s.last_timeout = now;
}

std::vector<NodeId> FailureDetector::Unreachable() const {
  std::vector<NodeId> out;
  for (const auto& [id, s] : peers_) {
    if (!s.reachable) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::Duration FailureDetector::LastHeard(NodeId peer) const {
  auto it = peers_.find(peer);
  return it == peers_.end() ? -absl::InfiniteDuration() : it->second.last_heard;
}

}  // namespace dynamo

// SimNetwork implementation. The event queue is a 4-ary min-heap of small
// trivially-copyable records ordered by (time, sequence number); the payload
// of each event (message bytes or a callback) lives in a pooled slot that is
// reused, so steady-state traffic allocates nothing beyond the messages
// themselves. Each slot knows where its record sits in the heap, so a
// cancelled or crashed event leaves the heap at once: almost every request
// arms a timer and cancels it, and stale records left behind made the heap
// several times deeper than the events really queued.
#include "dynamo/sim/sim_network.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"
#include "net/sim_random.h"
// Inlined: the digest hashes every delivered message, and the library's
// exported entry point adds a call and a dispatch on each.
#define XXH_INLINE_ALL
#include "xxhash.h"

namespace dynamo::sim {

using internal::Mix64;
using internal::Xoshiro256;

namespace {

constexpr int64_t kNeverNs = std::numeric_limits<int64_t>::max();

// Sequence numbers are unique, so (time, seq) orders events totally: any
// correct priority queue runs them in the same order.
template <typename E>
bool Earlier(const E& a, const E& b) {
  if (a.time_ns != b.time_ns) return a.time_ns < b.time_ns;
  return a.seq < b.seq;
}

// Four children per node: half the levels of a binary heap, and the four
// siblings share a cache line or two.
constexpr size_t kHeapArity = 4;

int64_t AddSaturating(int64_t now_ns, int64_t delay_ns) {
  if (delay_ns < 0) delay_ns = 0;
  if (delay_ns > kNeverNs - now_ns) return kNeverNs;
  return now_ns + delay_ns;
}

int64_t DurationNs(absl::Duration d) { return absl::ToInt64Nanoseconds(d); }

// Tags keep the digest of a timer from colliding with that of a message.
constexpr uint64_t kDigestMessage = 0x6d657373616765ULL;
constexpr uint64_t kDigestTimer = 0x74696d6572ULL;
constexpr uint64_t kDigestExternal = 0x65787465726eULL;

}  // namespace

// One node's view of the network: its Runtime and its Transport in one
// object, owned by the SimNetwork at a stable address.
class SimNetwork::NodeRuntime final : public Runtime, public Transport {
 public:
  NodeRuntime(SimNetwork* net, NodeId id, uint32_t index, uint64_t node_seed)
      : net_(net),
        id_(id),
        index_(index),
        rng_(node_seed),
        net_rng_(Mix64(node_seed ^ 0x6e6574776f726bULL)) {}

  // Runtime.
  NodeId self() const override { return id_; }
  // True virtual time, which timers run on, whatever this node's skew,
  // plus the time the node spent stalled (SimNetwork::Stall).
  absl::Duration Elapsed() override { return absl::Nanoseconds(net_->now_ns_ + stalled_ns_); }
  absl::Time Now() override {
    if (skew_offset_ns_ == 0 && drift_ppm_ == 0 && stalled_ns_ == 0) return net_->now_time_;
    const int64_t v = net_->now_ns_ + stalled_ns_;
    int64_t drift_ns = 0;
    if (drift_ppm_ != 0) {
      drift_ns = static_cast<int64_t>(
          std::llround(static_cast<double>(v - skew_anchor_ns_) * drift_ppm_ * 1e-6));
    }
    return TimeAt(v + skew_offset_ns_ + drift_ns);
  }
  TimerId Schedule(absl::Duration delay, absl::AnyInvocable<void()> callback) override {
    return net_->ScheduleTimer(index_, delay, std::move(callback));
  }
  TimerId Defer(absl::AnyInvocable<void()> callback) override {
    return net_->DeferOn(index_, std::move(callback));
  }
  void Cancel(TimerId timer) override { net_->CancelTimer(index_, timer); }
  absl::BitGenRef Rng() override { return absl::BitGenRef(rng_); }
  Transport& transport() override { return *this; }

  // Transport.
  absl::Status Send(NodeId to, std::string message) override {
    return net_->SendFrom(index_, to, std::move(message));
  }
  void SetReceiveHandler(ReceiveHandler handler) override {
    RetireHandler();
    if (handler) handler_ = std::make_unique<ReceiveHandler>(std::move(handler));
  }
  size_t message_bytes_max() const override { return net_->options_.message_bytes_max; }

  // The handler may replace itself, or crash its node, while it runs; the
  // running std::function must not be destroyed under it, so a replaced
  // handler is parked in retired_ until the call returns.
  void Deliver(NodeId from, std::string_view message) {
    if (!handler_) return;
    ReceiveHandler* handler = handler_.get();
    ++delivering_;
    (*handler)(from, message);
    if (--delivering_ == 0) retired_.clear();
  }
  void RetireHandler() {
    if (handler_ && delivering_ > 0) retired_.push_back(std::move(handler_));
    handler_.reset();
  }

  SimNetwork* const net_;
  const NodeId id_;
  const uint32_t index_;
  bool up_ = true;
  Xoshiro256 rng_;      // handed to node code via Rng()
  Xoshiro256 net_rng_;  // the network's fault decisions for this node's sends
  NodeStats stats_;
  int64_t stalled_ns_ = 0;
  int64_t skew_offset_ns_ = 0;
  int64_t skew_anchor_ns_ = 0;
  double drift_ppm_ = 0;
  std::unique_ptr<ReceiveHandler> handler_;
  std::vector<std::unique_ptr<ReceiveHandler>> retired_;
  int delivering_ = 0;
};

SimNetwork::SimNetwork(uint64_t seed, NetworkOptions options)
    : seed_(seed),
      options_(options),
      latency_ns_(LatencyBoundsOf(options_)),
      digest_(Mix64(seed ^ 0x64696765737400ULL)) {}

SimNetwork::~SimNetwork() {
  // Destroy callbacks before the runtimes they may point into.
  slots_.clear();
}

Runtime& SimNetwork::AddNode(NodeId id) {
  assert(id != kNoNode && "node id 0 is reserved (kNoNode)");
  assert(!index_.contains(id) && "node added twice");
  const uint32_t index = static_cast<uint32_t>(nodes_.size());
  // The node's streams depend on (seed, id) only: adding or removing other
  // nodes never shifts them.
  const uint64_t node_seed = Mix64(seed_ ^ Mix64(id));
  nodes_.push_back(std::make_unique<NodeRuntime>(this, id, index, node_seed));
  index_.emplace(id, index);
  group_.push_back(0);
  isolated_.push_back(false);
  links_.emplace_back();
  return *nodes_.back();
}

bool SimNetwork::HasNode(NodeId id) const { return index_.contains(id); }

std::vector<NodeId> SimNetwork::nodes() const {
  std::vector<NodeId> ids;
  ids.reserve(nodes_.size());
  for (const auto& n : nodes_) ids.push_back(n->id_);
  return ids;
}

uint32_t SimNetwork::IndexOf(NodeId id) const {
  auto it = index_.find(id);
  assert(it != index_.end() && "unknown node id");
  return it->second;
}

// ---------------------------------------------------------------------------
// Event queue.

uint32_t SimNetwork::AllocSlot() {
  if (free_head_ != 0) {
    const uint32_t slot = free_head_ - 1;
    free_head_ = slots_[slot].next_free;
    return slot;
  }
  slots_.emplace_back();
  return static_cast<uint32_t>(slots_.size() - 1);
}

void SimNetwork::FreeSlot(uint32_t slot) {
  Slot& s = slots_[slot];
  ++s.generation;  // invalidates any TimerId naming it
  s.kind = EventKind::kFree;
  s.payload.clear();
  s.callback = nullptr;
  s.next_free = free_head_;
  free_head_ = slot + 1;
}

void SimNetwork::Push(int64_t time_ns, uint32_t slot) {
  heap_.emplace_back();
  SiftUp(heap_.size() - 1, HeapEntry{time_ns, next_seq_++, slot});
}

void SimNetwork::SiftUp(size_t index, HeapEntry entry) {
  while (index > 0) {
    const size_t parent = (index - 1) / kHeapArity;
    if (!Earlier(entry, heap_[parent])) break;
    HeapPlace(index, heap_[parent]);
    index = parent;
  }
  HeapPlace(index, entry);
}

void SimNetwork::SiftDown(size_t index, HeapEntry entry) {
  const size_t size = heap_.size();
  while (true) {
    const size_t first = index * kHeapArity + 1;
    if (first >= size) break;
    const size_t last = std::min(first + kHeapArity, size);
    size_t best = first;
    for (size_t c = first + 1; c < last; ++c) {
      if (Earlier(heap_[c], heap_[best])) best = c;
    }
    if (!Earlier(heap_[best], entry)) break;
    HeapPlace(index, heap_[best]);
    index = best;
  }
  HeapPlace(index, entry);
}

void SimNetwork::RemoveFromHeap(uint32_t slot) {
  const size_t index = slots_[slot].heap_index;
  assert(index < heap_.size() && heap_[index].slot == slot && "slot is not queued");
  const HeapEntry last = heap_.back();
  heap_.pop_back();
  if (index == heap_.size()) return;  // it was the last record
  // The last record fills the hole and moves whichever way restores order.
  if (index > 0 && Earlier(last, heap_[(index - 1) / kHeapArity])) {
    SiftUp(index, last);
  } else {
    SiftDown(index, last);
  }
}

bool SimNetwork::Step() {
  if (!deferred_.empty()) {
    RunDeferred();
    return true;
  }
  if (heap_.empty()) return false;
  const HeapEntry top = heap_.front();
  const HeapEntry last = heap_.back();
  heap_.pop_back();
  if (!heap_.empty()) SiftDown(0, last);
  if (top.time_ns > now_ns_) SetNow(top.time_ns);
  RunEvent(top.slot);
  if (!deferred_.empty()) RunDeferred();
  return true;
}

void SimNetwork::RunFor(absl::Duration duration) {
  const int64_t end = AddSaturating(now_ns_, DurationNs(duration));
  int64_t t;
  while (NextTime(&t) && t <= end) Step();
  // An infinite duration runs everything but leaves the clock usable.
  if (end > now_ns_ && end != kNeverNs) SetNow(end);
}

bool SimNetwork::RunUntil(const std::function<bool()>& predicate, absl::Duration limit) {
  if (predicate()) return true;
  const int64_t end = AddSaturating(now_ns_, DurationNs(limit));
  int64_t t;
  while (NextTime(&t) && t <= end) {
    Step();
    if (predicate()) return true;
  }
  if (end > now_ns_ && end != kNeverNs) SetNow(end);
  return predicate();
}

void SimNetwork::Schedule(absl::Duration delay, absl::AnyInvocable<void()> callback) {
  const uint32_t slot = AllocSlot();
  Slot& s = slots_[slot];
  s.kind = EventKind::kExternal;
  s.callback = std::move(callback);
  Push(AddSaturating(now_ns_, DurationNs(delay)), slot);
}

TimerId SimNetwork::ScheduleTimer(uint32_t node, absl::Duration delay,
                                  absl::AnyInvocable<void()> callback) {
  if (!nodes_[node]->up_) {
    // A down node has no timers; its callback is dropped here. The id names
    // no slot, so cancelling it is a harmless no-op.
    return (static_cast<uint64_t>(next_seq_++) << 32) | 0xffffffffULL;
  }
  const uint32_t slot = AllocSlot();
  Slot& s = slots_[slot];
  s.kind = EventKind::kTimer;
  s.node = node;
  s.callback = std::move(callback);
  const uint32_t generation = s.generation;
  Push(AddSaturating(now_ns_, DurationNs(delay)), slot);
  // slot + 1 keeps the id non-zero (kNoTimer). A generation reused after 2^32
  // reuses of one slot could alias; no simulation runs that long on one slot.
  return (static_cast<uint64_t>(generation) << 32) | (static_cast<uint64_t>(slot) + 1);
}

TimerId SimNetwork::DeferOn(uint32_t node, absl::AnyInvocable<void()> callback) {
  const TimerId id = kDeferredIdBit | next_deferred_++;
  // Like a timer, a down node's call is dropped; its id cancels nothing.
  if (nodes_[node]->up_) deferred_.push_back(Deferred{node, id, std::move(callback)});
  return id;
}

void SimNetwork::RunDeferred() {
  // Indexed, not iterated: a call may defer more, which run in this loop.
  for (size_t i = 0; i < deferred_.size(); ++i) {
    if (!deferred_[i].callback) continue;  // cancelled
    absl::AnyInvocable<void()> callback = std::move(deferred_[i].callback);
    // Not mixed into the digest: a deferred call follows from the event
    // that made it, and what it sends is mixed like any message.
    ++events_run_;
    callback();
  }
  deferred_.clear();
}

void SimNetwork::CancelTimer(uint32_t node, TimerId timer) {
  if ((timer & kDeferredIdBit) != 0) {
    for (Deferred& d : deferred_) {
      if (d.id == timer && d.node == node) {
        absl::AnyInvocable<void()> doomed = std::move(d.callback);
        return;
      }
    }
    return;
  }
  const uint64_t slot_plus_one = timer & 0xffffffffULL;
  if (slot_plus_one == 0 || slot_plus_one > slots_.size()) return;
  const uint32_t slot = static_cast<uint32_t>(slot_plus_one - 1);
  Slot& s = slots_[slot];
  if (s.kind != EventKind::kTimer || s.node != node || s.generation != (timer >> 32)) return;
  // Destroy the callback only after the slot is consistent again, in case
  // its destructor calls back into the network.
  absl::AnyInvocable<void()> doomed = std::move(s.callback);
  RemoveFromHeap(slot);
  FreeSlot(slot);
}

void SimNetwork::RunEvent(uint32_t slot) {
  Slot& s = slots_[slot];
  ++events_run_;
  switch (s.kind) {
    case EventKind::kMessage:
      Deliver(slot);
      return;
    case EventKind::kTimer: {
      NodeRuntime& node = *nodes_[s.node];
      absl::AnyInvocable<void()> callback = std::move(s.callback);
      FreeSlot(slot);
      ++node.stats_.timers_fired;
      Mix(kDigestTimer, static_cast<uint64_t>(now_ns_), node.id_, 0);
      callback();
      return;
    }
    case EventKind::kExternal: {
      absl::AnyInvocable<void()> callback = std::move(s.callback);
      FreeSlot(slot);
      Mix(kDigestExternal, static_cast<uint64_t>(now_ns_), 0, 0);
      callback();
      return;
    }
    case EventKind::kFree:
      assert(false && "heap record names a free slot");
      return;
  }
}

void SimNetwork::Mix(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  uint64_t h = digest_;
  h = Mix64(h ^ a);
  h = Mix64(h ^ b);
  h = Mix64(h ^ c);
  h = Mix64(h ^ d);
  digest_ = h;
}

// ---------------------------------------------------------------------------
// Messages.

SimNetwork::LatencyNs SimNetwork::LatencyBoundsOf(const NetworkOptions& options) {
  LatencyNs ns;
  ns.min = std::max<int64_t>(0, DurationNs(options.latency_min));
  ns.mean = std::max<int64_t>(ns.min, DurationNs(options.latency_mean));
  ns.max = std::max(ns.min, DurationNs(options.latency_max));
  return ns;
}

int64_t SimNetwork::DrawLatencyNs(NodeRuntime& sender) {
  const int64_t min_ns = latency_ns_.min;
  const int64_t mean_ns = latency_ns_.mean;
  const double spread = static_cast<double>(mean_ns - min_ns);
  Xoshiro256& rng = sender.net_rng_;
  double latency;
  switch (options_.latency_distribution) {
    case LatencyDistribution::kConstant:
      return mean_ns;
    case LatencyDistribution::kUniform:
      latency = static_cast<double>(min_ns) + rng.Uniform01() * 2.0 * spread;
      break;
    case LatencyDistribution::kExponential:
      latency = static_cast<double>(min_ns) + rng.Exponential() * spread;
      break;
    case LatencyDistribution::kLogNormal: {
      if (spread <= 0) return min_ns;
      const double sigma = options_.latency_lognormal_sigma;
      const double mu = std::log(spread) - sigma * sigma / 2;  // so the mean is `spread`
      latency = static_cast<double>(min_ns) + std::exp(mu + sigma * rng.Normal());
      break;
    }
    default:
      latency = static_cast<double>(mean_ns);
  }
  const double max_ns = static_cast<double>(latency_ns_.max);
  return static_cast<int64_t>(std::min(latency, max_ns));
}

absl::Status SimNetwork::SendFrom(uint32_t from, NodeId to, std::string message) {
  NodeRuntime& sender = *nodes_[from];
  if (!sender.up_) {
    return absl::UnavailableError(absl::StrFormat("node %d is down and cannot send", sender.id_));
  }
  if (message.size() > options_.message_bytes_max) {
    return absl::InvalidArgumentError(
        absl::StrFormat("message of %d bytes from node %d to node %d exceeds message_bytes_max %d",
                        message.size(), sender.id_, to, options_.message_bytes_max));
  }
  auto it = index_.find(to);
  if (it == index_.end()) {
    return absl::NotFoundError(absl::StrFormat("node %d sent to unknown node %d", sender.id_, to));
  }
  const uint32_t to_index = it->second;
  LinkState& link_state = link(from, to_index);
  LinkStats& ls = link_state.stats;
  const size_t bytes = message.size();
  if (ls.in_flight >= options_.path_messages_in_flight_max) {
    ++ls.dropped_capacity;
    ++sender.stats_.messages_dropped;
    Record(TraceKind::kDrop, 0, from, to_index, bytes);
    return absl::ResourceExhaustedError(
        absl::StrFormat("link %d->%d has %d messages in flight (path_messages_in_flight_max)",
                        sender.id_, to, ls.in_flight));
  }
  if (heap_.size() >= options_.events_pending_max) {
    ++ls.dropped_overload;
    ++sender.stats_.messages_dropped;
    Record(TraceKind::kDrop, 0, from, to_index, bytes);
    return absl::ResourceExhaustedError(
        absl::StrFormat("simulation has %d pending events (events_pending_max)", heap_.size()));
  }

  ++ls.sent;
  ls.bytes_sent += bytes;
  ++sender.stats_.messages_sent;
  sender.stats_.bytes_sent += bytes;
  uint64_t message_id = next_message_id_++;
  Record(TraceKind::kSend, message_id, from, to_index, bytes);

  // A partitioned or lost message is accepted (the sender cannot tell) and
  // silently dropped, as on a real network.
  if (!CanTalkIndex(from, to_index)) {
    ++ls.dropped_partition;
    ++sender.stats_.messages_dropped;
    Record(TraceKind::kDrop, message_id, from, to_index, bytes);
    return absl::OkStatus();
  }
  if (sender.net_rng_.Bernoulli(options_.loss_probability)) {
    ++ls.dropped_loss;
    ++sender.stats_.messages_dropped;
    Record(TraceKind::kDrop, message_id, from, to_index, bytes);
    return absl::OkStatus();
  }
  int copies = 1;
  // A duplicate must respect the same bounds as the original.
  if (sender.net_rng_.Bernoulli(options_.duplicate_probability) &&
      ls.in_flight + 2 <= options_.path_messages_in_flight_max &&
      heap_.size() + 2 <= options_.events_pending_max) {
    copies = 2;
    ++ls.duplicated;
  }
  for (int copy = copies - 1; copy >= 0; --copy) {
    int64_t arrival = AddSaturating(now_ns_, DrawLatencyNs(sender));
    if (sender.net_rng_.Bernoulli(options_.reorder_probability)) {
      const double extra =
          sender.net_rng_.Uniform01() * static_cast<double>(DurationNs(options_.reorder_delay_max));
      arrival = AddSaturating(arrival, static_cast<int64_t>(extra));
    } else if (options_.links_fifo) {
      // Ties keep send order through the sequence number.
      arrival = std::max(arrival, link_state.last_arrival_ns);
      link_state.last_arrival_ns = arrival;
    }
    const uint32_t slot = AllocSlot();
    Slot& s = slots_[slot];
    s.kind = EventKind::kMessage;
    s.node = to_index;
    s.from = from;
    if (copy > 0) {
      s.message_id = next_message_id_++;
      s.payload = message;  // the duplicate gets a copy; the original moves last
      Record(TraceKind::kSend, s.message_id, from, to_index, bytes);
    } else {
      s.message_id = message_id;
      s.payload = std::move(message);
    }
    Push(arrival, slot);
    ++ls.in_flight;
    ls.in_flight_max = std::max(ls.in_flight_max, ls.in_flight);
  }
  return absl::OkStatus();
}

void SimNetwork::Deliver(uint32_t slot) {
  Slot& s = slots_[slot];
  const uint32_t from = s.from;
  const uint32_t to = s.node;
  const uint64_t message_id = s.message_id;
  std::string payload = std::move(s.payload);
  FreeSlot(slot);

  LinkStats& ls = link(from, to).stats;
  --ls.in_flight;
  NodeRuntime& sender = *nodes_[from];
  NodeRuntime& receiver = *nodes_[to];
  if (!receiver.up_) {
    ++ls.dropped_down;
    ++sender.stats_.messages_dropped;
    Record(TraceKind::kDrop, message_id, from, to, payload.size());
    return;
  }
  if (!CanTalkIndex(from, to)) {
    ++ls.dropped_partition;
    ++sender.stats_.messages_dropped;
    Record(TraceKind::kDrop, message_id, from, to, payload.size());
    return;
  }
  ++ls.delivered;
  ls.bytes_delivered += payload.size();
  ++receiver.stats_.messages_received;
  receiver.stats_.bytes_received += payload.size();
  Mix(kDigestMessage ^ static_cast<uint64_t>(now_ns_), sender.id_, receiver.id_,
      XXH3_64bits(payload.data(), payload.size()));
  Record(TraceKind::kDeliver, message_id, from, to, payload.size());
  receiver.Deliver(sender.id_, payload);
}

// ---------------------------------------------------------------------------
// Crash, restart, partitions, clocks.

void SimNetwork::Crash(NodeId id) {
  const uint32_t index = IndexOf(id);
  NodeRuntime& node = *nodes_[index];
  if (!node.up_) return;
  node.up_ = false;
  // Callbacks are destroyed after the scan: a destructor that calls back
  // into the network must not see half-updated slots.
  std::vector<absl::AnyInvocable<void()>> doomed;
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    if (s.node != index) continue;
    if (s.kind == EventKind::kTimer) {
      doomed.push_back(std::move(s.callback));
    } else if (s.kind == EventKind::kMessage) {
      LinkStats& ls = link(s.from, index).stats;
      --ls.in_flight;
      ++ls.dropped_down;
      ++nodes_[s.from]->stats_.messages_dropped;
      Record(TraceKind::kDrop, s.message_id, s.from, index, s.payload.size());
    } else {
      continue;
    }
    RemoveFromHeap(i);
    FreeSlot(i);
  }
  for (Deferred& d : deferred_) {
    if (d.node == index && d.callback) doomed.push_back(std::move(d.callback));
  }
  node.RetireHandler();
  doomed.clear();
}

void SimNetwork::Restart(NodeId id) { nodes_[IndexOf(id)]->up_ = true; }

bool SimNetwork::IsUp(NodeId id) const { return nodes_[IndexOf(id)]->up_; }

void SimNetwork::SetOptions(const NetworkOptions& options) {
  options_ = options;
  latency_ns_ = LatencyBoundsOf(options_);
}

void SimNetwork::Partition(const std::vector<std::vector<NodeId>>& groups) {
  partitioned_ = true;
  // Group 0 holds every node not named.
  std::fill(group_.begin(), group_.end(), 0);
  for (size_t g = 0; g < groups.size(); ++g) {
    for (NodeId id : groups[g]) group_[IndexOf(id)] = static_cast<uint32_t>(g + 1);
  }
}

void SimNetwork::BlockLink(NodeId from, NodeId to) {
  partitioned_ = true;
  blocked_.insert(LinkKey(IndexOf(from), IndexOf(to)));
}

void SimNetwork::UnblockLink(NodeId from, NodeId to) {
  blocked_.erase(LinkKey(IndexOf(from), IndexOf(to)));
}

void SimNetwork::Isolate(NodeId id) {
  partitioned_ = true;
  isolated_[IndexOf(id)] = true;
}

void SimNetwork::HealAll() {
  std::fill(group_.begin(), group_.end(), 0);
  std::fill(isolated_.begin(), isolated_.end(), false);
  blocked_.clear();
  partitioned_ = false;
}

bool SimNetwork::CanTalk(NodeId from, NodeId to) const {
  return CanTalkIndex(IndexOf(from), IndexOf(to));
}

bool SimNetwork::CanTalkPartitioned(uint32_t from, uint32_t to) const {
  if (group_[from] != group_[to] || isolated_[from] || isolated_[to]) return false;
  return blocked_.empty() || !blocked_.contains(LinkKey(from, to));
}

void SimNetwork::Stall(NodeId id, absl::Duration duration) {
  assert(duration >= absl::ZeroDuration() && "a stall cannot take time back");
  nodes_[IndexOf(id)]->stalled_ns_ += DurationNs(duration);
}

void SimNetwork::SetClockSkew(NodeId id, absl::Duration offset, double drift_ppm) {
  NodeRuntime& node = *nodes_[IndexOf(id)];
  node.skew_offset_ns_ = DurationNs(offset);
  node.skew_anchor_ns_ = now_ns_;
  node.drift_ppm_ = drift_ppm;
}

// ---------------------------------------------------------------------------
// Statistics and traces.

NodeStats SimNetwork::node_stats(NodeId id) const { return nodes_[IndexOf(id)]->stats_; }

LinkStats SimNetwork::link_stats(NodeId from, NodeId to) const {
  const std::vector<LinkState>& row = links_[IndexOf(from)];
  const uint32_t to_index = IndexOf(to);
  return to_index < row.size() && row[to_index].used ? row[to_index].stats : LinkStats{};
}

std::vector<LinkEntry> SimNetwork::links() const {
  std::vector<LinkEntry> out;
  for (uint32_t from = 0; from < links_.size(); ++from) {
    for (uint32_t to = 0; to < links_[from].size(); ++to) {
      const LinkState& state = links_[from][to];
      if (state.used) out.push_back(LinkEntry{nodes_[from]->id_, nodes_[to]->id_, state.stats});
    }
  }
  // Node ids need not follow AddNode order; the listing is by id.
  std::sort(out.begin(), out.end(), [](const LinkEntry& a, const LinkEntry& b) {
    return std::pair(a.from, a.to) < std::pair(b.from, b.to);
  });
  return out;
}

void SimNetwork::RecordTrace(TraceKind kind, uint64_t message_id, uint32_t from, uint32_t to,
                             size_t bytes) {
  trace_.push_back(TraceRecord{now_ns_, message_id, nodes_[from]->id_, nodes_[to]->id_,
                               static_cast<uint32_t>(bytes), kind});
}

namespace {
// Chrome traces count in microseconds; keep nanosecond precision as decimals.
std::string Micros(int64_t ns) { return absl::StrFormat("%d.%03d", ns / 1000, ns % 1000); }
}  // namespace

absl::Status SimNetwork::WriteChromeTrace(std::ostream& out) const {
  out << "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n";
  bool first = true;
  auto sep = [&]() -> std::ostream& {
    if (!first) out << ",\n";
    first = false;
    return out;
  };
  for (const auto& node : nodes_) {
    sep() << absl::StrFormat(
        R"({"name":"process_name","ph":"M","pid":%d,"tid":0,"args":{"name":"node %d"}})", node->id_,
        node->id_);
  }
  for (const TraceRecord& r : trace_) {
    const std::string ts = Micros(r.time_ns);
    switch (r.kind) {
      case TraceKind::kSend:
        sep() << absl::StrFormat(
            R"({"name":"send","cat":"net","ph":"X","ts":%s,"dur":0.001,"pid":%d,"tid":0,)"
            R"("args":{"to":%d,"bytes":%d,"id":%d}})",
            ts, r.from, r.to, r.bytes, r.message_id);
        sep() << absl::StrFormat(
            R"({"name":"msg","cat":"net","ph":"s","id":%d,"ts":%s,"pid":%d,"tid":0})", r.message_id,
            ts, r.from);
        break;
      case TraceKind::kDeliver:
        sep() << absl::StrFormat(
            R"({"name":"recv","cat":"net","ph":"X","ts":%s,"dur":0.001,"pid":%d,"tid":0,)"
            R"("args":{"from":%d,"bytes":%d,"id":%d}})",
            ts, r.to, r.from, r.bytes, r.message_id);
        sep() << absl::StrFormat(
            R"({"name":"msg","cat":"net","ph":"f","bp":"e","id":%d,"ts":%s,"pid":%d,"tid":0})",
            r.message_id, ts, r.to);
        break;
      case TraceKind::kDrop:
        sep() << absl::StrFormat(
            R"({"name":"drop","cat":"net","ph":"i","s":"t","ts":%s,"pid":%d,"tid":0,)"
            R"("args":{"to":%d,"bytes":%d,"id":%d}})",
            ts, r.from, r.to, r.bytes, r.message_id);
        break;
    }
  }
  out << "\n]}\n";
  if (!out) return absl::DataLossError("writing the Chrome trace failed: stream error");
  return absl::OkStatus();
}

}  // namespace dynamo::sim

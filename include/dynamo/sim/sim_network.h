// SimNetwork: a deterministic, single-threaded simulated network and clock for
// many libdynamo nodes in one process. Each node registered with AddNode()
// gets a Runtime (virtual-time clock and timers, a seeded random engine, and a
// Transport that moves messages through the simulated network). Nothing here
// reads a real clock or starts a thread: the owner drives time forward with
// Step()/RunFor()/RunUntil(), and every event (message delivery, timer,
// external callback) runs in (virtual time, sequence number) order. One
// 64-bit seed decides everything; the same seed and the same sequence of
// calls give the same trace, bit for bit, which TraceDigest() summarises.
//
// The fault model (latency distribution, loss, duplication, reordering, path
// capacity, message size limit) lives in NetworkOptions and may be changed
// while running; partitions (symmetric groups, one-way links, isolation),
// crashes/restarts and clock skew are separate calls.
//
// Crash/restart protocol for an owner that builds node objects on a Runtime&:
//   Runtime& rt = net.AddNode(id);  auto node = std::make_unique<Node>(rt, ...);
//   net.Crash(id);    // timers discarded, in-flight messages to it dropped,
//   node.reset();     // receive handler cleared; now destroy the node object
//   net.Restart(id);  // the same Runtime& works again
//   node = std::make_unique<Node>(rt, ...);  // installs a new handler
// Do not destroy a node object from inside one of its own callbacks; schedule
// an external event (SimNetwork::Schedule) to do it.
//
// Thread-safety: none. One thread owns the SimNetwork and everything it runs.
#ifndef DYNAMO_SIM_SIM_NETWORK_H_
#define DYNAMO_SIM_SIM_NETWORK_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "dynamo/runtime.h"
#include "dynamo/transport.h"
#include "dynamo/types.h"

namespace dynamo::sim {

// The shape of one message's one-way latency. Every distribution is shifted
// by NetworkOptions::latency_min and, before the cap latency_max, has mean
// latency_mean (so switching distribution keeps the average comparable).
enum class LatencyDistribution {
  kConstant,     // always latency_mean
  kUniform,      // uniform on [min, 2*mean - min]
  kExponential,  // min + exponential with mean (mean - min)
  kLogNormal,    // min + log-normal with mean (mean - min), shape latency_lognormal_sigma
};

struct NetworkOptions {
  LatencyDistribution latency_distribution = LatencyDistribution::kUniform;
  absl::Duration latency_min = absl::Microseconds(200);
  absl::Duration latency_mean = absl::Milliseconds(1);
  // Cap on the drawn latency (before reordering delay); heavy-tailed
  // distributions otherwise produce rare absurd delays.
  absl::Duration latency_max = absl::Seconds(1);
  double latency_lognormal_sigma = 1.0;

  // Each accepted message is lost with this probability (decided at send).
  double loss_probability = 0.0;
  // Each accepted, not-lost message is delivered twice with this probability;
  // the copy draws its own latency.
  double duplicate_probability = 0.0;
  // With this probability a message gets an extra delay uniform on
  // [0, reorder_delay_max] and ignores link FIFO order, so it can be
  // overtaken by later messages on the same link.
  double reorder_probability = 0.0;
  absl::Duration reorder_delay_max = absl::Milliseconds(10);
  // When true, messages on one directed link are delivered in send order
  // (latency jitter alone does not reorder them, as over TCP); only the
  // reorder fault above breaks the order. When false, jitter reorders.
  bool links_fifo = true;

  // Most messages in flight on one directed link. Send() beyond it fails
  // with kResourceExhausted and the message is counted in dropped_capacity.
  size_t path_messages_in_flight_max = 4096;
  // Largest message Send() accepts (Transport::message_bytes_max).
  size_t message_bytes_max = (1 << 20) + (64 << 10);
  // Most events (messages in flight, timers, external callbacks) queued at
  // once. A message sent beyond it fails with kResourceExhausted and is
  // counted in dropped_overload. Timers and external events are never
  // refused (node code depends on them), but they count toward the total.
  size_t events_pending_max = 1 << 22;

  // Records up to this many message events (send, deliver, drop) for
  // WriteChromeTrace(); 0 turns recording off. Later events are not recorded.
  size_t trace_events_max = 0;
};

// Counters for one node. A message refused by Send() with an error is not
// "sent"; one refused for capacity/overload counts as dropped.
struct NodeStats {
  uint64_t messages_sent = 0;      // Send() calls that returned OK
  uint64_t messages_received = 0;  // handler invocations (duplicates included)
  uint64_t messages_dropped = 0;   // its outgoing messages the network dropped or refused
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t timers_fired = 0;
};

// Counters for one directed link. Once nothing is in flight:
//   sent + duplicated == delivered + dropped_loss + dropped_partition + dropped_down
struct LinkStats {
  uint64_t sent = 0;               // accepted by Send()
  uint64_t delivered = 0;          // handed to the receiver's handler
  uint64_t dropped_loss = 0;       // random loss
  uint64_t dropped_partition = 0;  // blocked by a partition at send or at arrival
  uint64_t dropped_down = 0;       // receiver down at arrival, or crashed while in flight
  uint64_t dropped_capacity = 0;   // refused: path_messages_in_flight_max reached
  uint64_t dropped_overload = 0;   // refused: events_pending_max reached
  uint64_t duplicated = 0;         // extra copies made
  uint64_t bytes_sent = 0;
  uint64_t bytes_delivered = 0;
  uint64_t in_flight = 0;      // messages (copies included) now in flight
  uint64_t in_flight_max = 0;  // largest in_flight seen
};

struct LinkEntry {
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  LinkStats stats;
};

class SimNetwork {
 public:
  // Virtual time starts here, so simulated times look like real ones.
  static constexpr int64_t kEpochUnixNanos = int64_t{1'000'000'000} * 1'000'000'000;
  // FromUnixNanos is inline; absl::Time arithmetic is a library call, and
  // every node reads the clock many times per message.
  static absl::Time Epoch() { return absl::FromUnixNanos(kEpochUnixNanos); }
  // Epoch() + ns, saturating like absl::Time arithmetic does.
  static absl::Time TimeAt(int64_t ns) {
    int64_t unix_ns;
    if (__builtin_add_overflow(kEpochUnixNanos, ns, &unix_ns)) {
      return ns > 0 ? absl::InfiniteFuture() : absl::InfinitePast();
    }
    return absl::FromUnixNanos(unix_ns);
  }

  explicit SimNetwork(uint64_t seed, NetworkOptions options = {});
  ~SimNetwork();
  SimNetwork(const SimNetwork&) = delete;
  SimNetwork& operator=(const SimNetwork&) = delete;

  // Registers a node and returns its runtime, owned by the network and valid
  // (same address) for the network's lifetime. The node's random streams are
  // derived from (seed, id) only, so adding nodes never changes another
  // node's streams. REQUIRES: id != kNoNode and id not yet added.
  Runtime& AddNode(NodeId id);
  bool HasNode(NodeId id) const;
  // Node ids in AddNode order.
  std::vector<NodeId> nodes() const;

  // --- Crash and restart (see the protocol in the file comment).
  // Discards the node's pending timers (callbacks destroyed, never run),
  // drops messages in flight to it, clears its receive handler; while down,
  // Send() fails with kUnavailable and Schedule() discards its callback.
  // Crashing a down node is a no-op. REQUIRES: HasNode(id).
  void Crash(NodeId id);
  // Makes a crashed node's runtime work again. No-op if up.
  void Restart(NodeId id);
  bool IsUp(NodeId id) const;

  // --- Fault model.
  void SetOptions(const NetworkOptions& options);
  const NetworkOptions& options() const { return options_; }

  // Splits the nodes into groups; nodes in different groups cannot talk.
  // Nodes named in no group form one more group together. Replaces any
  // earlier Partition() (one-way blocks and isolation are kept).
  void Partition(const std::vector<std::vector<NodeId>>& groups);
  // Blocks messages from `from` to `to` (one way).
  void BlockLink(NodeId from, NodeId to);
  void UnblockLink(NodeId from, NodeId to);
  // Cuts the node off from every other node (itself included) until HealAll.
  void Isolate(NodeId id);
  // Removes partitions, one-way blocks and isolation.
  void HealAll();
  // True if a message from `from` to `to` would pass the partitions now.
  bool CanTalk(NodeId from, NodeId to) const;

  // The node spends `duration` in what it is doing now (a slow disk, a long
  // pause): its clocks, monotonic (Runtime::Elapsed) and wall, move on by
  // that much for good, so what it measures around the call sees it.
  // Virtual time, its timers and the other nodes do not move.
  // REQUIRES: HasNode(id), duration >= 0.
  void Stall(NodeId id, absl::Duration duration);

  // From now on the node's clock reads true time + `offset`, and runs fast by
  // `drift_ppm` parts per million (negative: slow). Timers still run on
  // virtual time. REQUIRES: HasNode(id).
  void SetClockSkew(NodeId id, absl::Duration offset, double drift_ppm);

  // --- Driving.
  // True virtual time (no skew).
  absl::Time Now() const { return now_time_; }
  // Runs the earliest event; false if there is none.
  bool Step();
  // Runs every event due within `duration`, then sets the time to now + duration.
  void RunFor(absl::Duration duration);
  // Runs events until `predicate` is true (checked before the first event and
  // after each) or `limit` of virtual time has passed or no events remain.
  // Returns the predicate's last value.
  bool RunUntil(const std::function<bool()>& predicate, absl::Duration limit);
  // Runs `callback` after `delay` of virtual time, outside any node (clients,
  // fault schedules, tests). Never dropped by crashes.
  void Schedule(absl::Duration delay, absl::AnyInvocable<void()> callback);
  // Events queued and not cancelled.
  size_t pending_events() const {
    return heap_.size() + std::count_if(deferred_.begin(), deferred_.end(),
                                        [](const Deferred& d) { return bool(d.callback); });
  }

  // --- Statistics. REQUIRES: the nodes were added.
  NodeStats node_stats(NodeId id) const;
  LinkStats link_stats(NodeId from, NodeId to) const;
  // Every link that carried or refused a message, sorted by (from, to).
  std::vector<LinkEntry> links() const;

  // A running hash over every delivered message (time, from, to, bytes) and
  // every fired timer (time, node). Equal seeds and calls give equal digests.
  uint64_t TraceDigest() const { return digest_; }
  uint64_t events_run() const { return events_run_; }

  // Writes the recorded message events (NetworkOptions::trace_events_max) as
  // Chrome trace-event JSON, one process per node, with a flow arrow from each
  // send to its delivery; open it in Perfetto or chrome://tracing.
  absl::Status WriteChromeTrace(std::ostream& out) const;
  size_t trace_events_recorded() const { return trace_.size(); }

 private:
  class NodeRuntime;
  friend class NodeRuntime;

  enum class EventKind : uint8_t { kFree, kTimer, kMessage, kExternal };
  enum class TraceKind : uint8_t { kSend, kDeliver, kDrop };

  // Payload of a queued event, pooled in `slots_` and reused.
  struct Slot {
    uint32_t generation = 0;  // bumped when freed, so a stale TimerId names nothing
    EventKind kind = EventKind::kFree;
    uint32_t node = 0;  // timer: owner index; message: receiver index
    uint32_t from = 0;  // message: sender index
    uint32_t next_free = 0;
    uint32_t heap_index = 0;  // where its record sits in heap_ while queued
    uint64_t message_id = 0;
    std::string payload;
    absl::AnyInvocable<void()> callback;
  };
  // What the heap orders: small and trivially copyable.
  struct HeapEntry {
    int64_t time_ns;
    uint64_t seq;
    uint32_t slot;
  };
  struct LinkState {
    LinkStats stats;
    int64_t last_arrival_ns = 0;  // for links_fifo
    bool used = false;            // carried or refused a message: links() lists it
  };
  struct TraceRecord {
    int64_t time_ns;
    uint64_t message_id;
    NodeId from;
    NodeId to;
    uint32_t bytes;
    TraceKind kind;
  };

  uint32_t IndexOf(NodeId id) const;  // REQUIRES: registered
  NodeRuntime& node_at(uint32_t index) { return *nodes_[index]; }
  static uint64_t LinkKey(uint32_t from, uint32_t to) {
    return (static_cast<uint64_t>(from) << 32) | to;
  }
  LinkState& link(uint32_t from, uint32_t to) {
    std::vector<LinkState>& row = links_[from];
    if (row.size() <= to) row.resize(nodes_.size());
    LinkState& state = row[to];
    state.used = true;
    return state;
  }
  // Every message asks this twice; with no partition in force (the common
  // case) it answers without looking anything up.
  bool CanTalkIndex(uint32_t from, uint32_t to) const {
    return !partitioned_ || CanTalkPartitioned(from, to);
  }
  bool CanTalkPartitioned(uint32_t from, uint32_t to) const;

  uint32_t AllocSlot();
  void FreeSlot(uint32_t slot);
  // The event queue: a 4-ary min-heap on (time_ns, seq) whose records know
  // their slot and whose slots know their record's position, so a cancelled
  // event leaves the heap at once.
  void Push(int64_t time_ns, uint32_t slot);
  void RemoveFromHeap(uint32_t slot);
  void HeapPlace(size_t index, const HeapEntry& entry) {
    heap_[index] = entry;
    slots_[entry.slot].heap_index = static_cast<uint32_t>(index);
  }
  void SiftUp(size_t index, HeapEntry entry);
  void SiftDown(size_t index, HeapEntry entry);
  // The earliest event's time; false if no event is queued. Deferred calls
  // are due now.
  bool NextTime(int64_t* time_ns) const {
    if (!deferred_.empty()) {
      *time_ns = now_ns_;
      return true;
    }
    if (heap_.empty()) return false;
    *time_ns = heap_.front().time_ns;
    return true;
  }

  absl::Status SendFrom(uint32_t from, NodeId to, std::string message);
  int64_t DrawLatencyNs(NodeRuntime& sender);
  TimerId ScheduleTimer(uint32_t node, absl::Duration delay, absl::AnyInvocable<void()> cb);
  void CancelTimer(uint32_t node, TimerId timer);
  TimerId DeferOn(uint32_t node, absl::AnyInvocable<void()> cb);
  // Runs the deferred calls, in the order they were made (and those they
  // make), before virtual time moves on.
  void RunDeferred();
  void RunEvent(uint32_t slot);
  void Deliver(uint32_t slot);
  // Recording is off unless trace_events_max is set; the check stays inline.
  void Record(TraceKind kind, uint64_t message_id, uint32_t from, uint32_t to, size_t bytes) {
    if (trace_.size() < options_.trace_events_max) RecordTrace(kind, message_id, from, to, bytes);
  }
  void RecordTrace(TraceKind kind, uint64_t message_id, uint32_t from, uint32_t to, size_t bytes);
  void Mix(uint64_t a, uint64_t b, uint64_t c, uint64_t d);

  const uint64_t seed_;
  NetworkOptions options_;
  // options_'s latency bounds in nanoseconds, computed once per SetOptions:
  // every message draws a latency, and converting Durations each time was
  // a measurable part of a send.
  struct LatencyNs {
    int64_t min = 0, mean = 0, max = 0;
  };
  static LatencyNs LatencyBoundsOf(const NetworkOptions& options);
  LatencyNs latency_ns_;
  int64_t now_ns_ = 0;  // virtual time since Epoch()
  // TimeAt(now_ns_), kept beside it: nodes read the clock several times per
  // message, and building an absl::Time divides.
  absl::Time now_time_ = Epoch();
  void SetNow(int64_t ns) {
    now_ns_ = ns;
    now_time_ = TimeAt(ns);
  }
  uint64_t next_seq_ = 1;
  uint64_t next_message_id_ = 1;
  uint64_t digest_;
  uint64_t events_run_ = 0;

  std::vector<std::unique_ptr<NodeRuntime>> nodes_;  // in AddNode order
  absl::flat_hash_map<NodeId, uint32_t> index_;      // lookups only

  // Runtime::Defer calls not yet run: they run after the event that made
  // them (RunEvent), or first in the next Step when made between events.
  // Ids have kDeferredIdBit set, apart from timer ids.
  struct Deferred {
    uint32_t node;
    TimerId id;
    absl::AnyInvocable<void()> callback;
  };
  static constexpr TimerId kDeferredIdBit = TimerId{1} << 63;
  std::vector<Deferred> deferred_;
  uint64_t next_deferred_ = 1;

  std::vector<HeapEntry> heap_;  // 4-ary min-heap on (time_ns, seq); every record is live
  std::vector<Slot> slots_;
  uint32_t free_head_ = 0;  // 1-based index into slots_; 0: none free

  // Partitions: lookups only, never iterated to decide behaviour.
  bool partitioned_ = false;               // some Partition/BlockLink/Isolate since HealAll
  std::vector<uint32_t> group_;            // per node index; equal groups may talk
  std::vector<bool> isolated_;             // per node index
  absl::flat_hash_set<uint64_t> blocked_;  // LinkKey of one-way blocks
  // links_[from][to] by node index, grown on first use; sorted before listed.
  std::vector<std::vector<LinkState>> links_;

  std::vector<TraceRecord> trace_;
};

}  // namespace dynamo::sim

#endif  // DYNAMO_SIM_SIM_NETWORK_H_

// Node: one Dynamo storage node (paper section 4). It composes the pieces:
// a Ring to place keys, a StorageEngine to keep them, a Runtime for time,
// timers, randomness and the network, and a Coordinator that runs each
// client request as a small state machine. It also serves the replica side
// of other nodes' requests, keeps hints for unreachable peers and hands them
// back when they recover (hinted handoff, 4.6), and tracks which peers answer
// (FailureDetector, 4.8).
//
// A Node is a single-threaded deterministic state machine: it does nothing
// but react to messages and timers delivered by its Runtime, so it runs the
// same in a seeded simulation and in a TCP server.
//
// Thread-safety: all methods, and all callbacks, run on the runtime's thread.
// Ownership: the runtime and the storage engine are borrowed and must
// outlive the node.
#ifndef DYNAMO_NODE_H_
#define DYNAMO_NODE_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dynamo/context.h"
#include "dynamo/coordinator.h"
#include "dynamo/failure_detector.h"
#include "dynamo/metrics.h"
#include "dynamo/options.h"
#include "dynamo/ring.h"
#include "dynamo/runtime.h"
#include "dynamo/storage_engine.h"

namespace dynamo {

class Node {
 public:
  // Starts a node on `runtime` with `storage`. The storage's identity record
  // decides the node's vector-clock actor: kept across restarts, drawn anew
  // (from the runtime's random source) when the storage holds none, e.g.
  // after the disk was wiped. Fails with kFailedPrecondition if the storage
  // belongs to another node id, kInvalidArgument for invalid options (a
  // bucket with R or W > N, N > ring size, or zero), and passes on storage
  // errors. REQUIRES: runtime and storage non-null.
  static absl::StatusOr<std::unique_ptr<Node>> Create(NodeOptions options, Runtime* runtime,
                                                      StorageEngine* storage, Ring ring);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // The paper's interface (4.1). The callback runs exactly once, on this
  // node's thread, possibly before the call returns when the request fails
  // at once.
  void Get(std::string_view bucket, std::string_view key, GetCallback done);
  void Put(std::string_view bucket, std::string_view key, const Context& context,
           std::string value, PutCallback done);
  void Delete(std::string_view bucket, std::string_view key, const Context& context,
              PutCallback done);

  // Replaces the node's view of the ring (an operator-installed membership,
  // until gossip distributes it).
  absl::Status SetRing(Ring ring);

  NodeId id() const { return runtime_->self(); }
  const NodeIdentity& identity() const { return identity_; }
  const Ring& ring() const { return ring_; }
  const NodeOptions& options() const { return options_; }
  const NodeMetrics& metrics() const { return metrics_; }
  const FailureDetector& failure_detector() const { return failure_detector_; }
  StorageEngine& storage() { return *storage_; }
  size_t hint_deliveries_in_flight() const { return hint_deliveries_.size(); }

 private:
  struct HintDelivery {
    NodeId owner;
    std::string key;
    SiblingSet siblings;
    TimerId timeout;
  };

  Node(NodeOptions options, Runtime* runtime, StorageEngine* storage, Ring ring);
  absl::Status Start();
  void OnMessage(NodeId from, std::string_view bytes);
  void SendMessage(NodeId to, const std::string& bytes);
  void ScheduleHandoff();
  void DeliverHints();
  void OnHintDelivered(uint64_t id, bool ok);
  void ScheduleProbe();
  void ScheduleFlush();

  NodeOptions options_;
  Runtime* runtime_;
  StorageEngine* storage_;
  Ring ring_;
  NodeIdentity identity_;
  NodeMetrics metrics_;
  FailureDetector failure_detector_;
  uint64_t request_id_counter_ = 0;
  std::unique_ptr<Coordinator> coordinator_;

  std::map<uint64_t, HintDelivery> hint_deliveries_;
  std::string hint_cursor_;
  TimerId handoff_timer_ = kNoTimer;
  TimerId probe_timer_ = kNoTimer;
  TimerId flush_timer_ = kNoTimer;
};

}  // namespace dynamo

#endif  // DYNAMO_NODE_H_

// Client: the partition-aware client library of paper section 6.4. It keeps
// a copy of the ring, refreshed from the cluster periodically (the paper's
// clients pick a node and download its membership view every 10 s), and so
// knows each key's preference list. It coordinates reads itself, asking the
// key's N replicas directly (one network hop fewer than going through a
// load balancer and a coordinator), and sends each write straight to a
// replica: the one that answered the preceding read of the key fastest,
// whose id travels in the context.
//
// A Client is an event-driven state machine like Node and runs on its own
// Runtime (a simulated endpoint, or a TCP endpoint).
//
// Thread-safety: all methods and callbacks run on the runtime's thread.
#ifndef DYNAMO_CLIENT_H_
#define DYNAMO_CLIENT_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "dynamo/context.h"
#include "dynamo/coordinator.h"
#include "dynamo/failure_detector.h"
#include "dynamo/metrics.h"
#include "dynamo/options.h"
#include "dynamo/ring.h"
#include "dynamo/runtime.h"

namespace dynamo {

struct ClientOptions {
  std::vector<NodeId> seeds;  // nodes asked for the ring, in turn
  absl::Duration ring_refresh_interval = absl::Seconds(10);
  // Buckets (N, R, W, policy) and deadlines; must match the cluster's.
  NodeOptions requests;
};

class Client {
 public:
  // REQUIRES: runtime non-null and outliving the client. kInvalidArgument
  // without seeds.
  static absl::StatusOr<std::unique_ptr<Client>> Create(ClientOptions options, Runtime* runtime);
  ~Client();

  // As Node's. Before the first ring arrives they fail with kUnavailable.
  void Get(std::string_view bucket, std::string_view key, GetCallback done);
  void Put(std::string_view bucket, std::string_view key, const Context& context,
           std::string value, PutCallback done);
  void Delete(std::string_view bucket, std::string_view key, const Context& context,
              PutCallback done);

  bool has_ring() const { return has_ring_; }
  const Ring& ring() const { return ring_; }
  const NodeMetrics& metrics() const { return metrics_; }

 private:
  Client(ClientOptions options, Runtime* runtime);
  void OnMessage(NodeId from, std::string_view bytes);
  void RefreshRing();
  void ScheduleProbe();
  absl::Status CheckRing() const;  // kUnavailable until the first ring arrives

  ClientOptions options_;
  Runtime* runtime_;
  Ring ring_;
  bool has_ring_ = false;
  NodeMetrics metrics_;
  FailureDetector failure_detector_;
  uint64_t request_id_counter_ = 0;
  size_t next_seed_ = 0;
  std::unique_ptr<Coordinator> coordinator_;
  TimerId refresh_timer_ = kNoTimer;
  TimerId probe_timer_ = kNoTimer;
};

}  // namespace dynamo

#endif  // DYNAMO_CLIENT_H_

// The TCP side of membership (paper 4.8) for dynamo-server. A member
// announces its transport address in its membership entry
// (NodeOptions::address) and gossip spreads the entries; this module feeds
// those addresses to the TcpRuntime, so every node learns how to reach every
// other one, including a node that joined after it started. It also parses
// the "ID=HOST:PORT,..." lists (--peers, --seeds) and joins a running
// cluster through seed addresses (paper 4.8: seeds are known to all).
#ifndef DYNAMO_TCP_TCP_MEMBERSHIP_H_
#define DYNAMO_TCP_TCP_MEMBERSHIP_H_

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dynamo/membership.h"
#include "dynamo/node.h"
#include "dynamo/tcp/tcp_runtime.h"

namespace dynamo::internal {

// Parses "ID=HOST:PORT,ID=HOST:PORT,...". kInvalidArgument naming the
// entry for a malformed one, an id of 0 or an id given twice.
absl::StatusOr<std::map<NodeId, Endpoint>> ParseMemberAddresses(std::string_view text);

// Gives `runtime` the address of every member of `membership` that is not
// removed and announced one, and forgets the removed members. Returns the
// first error (an unparsable address, the peer table full); the other
// entries are applied all the same.
absl::Status ApplyMemberAddresses(const Membership& membership, TcpRuntime& runtime);

// Joins `node` to a running cluster through `seeds`: their addresses go to
// the runtime, then Node::Join asks one seed after another, waiting
// `retry_interval` between attempts, until a seed accepts (done(OK)) or
// `attempts_max` attempts failed (done with the last error; 0 = no limit).
// A node that is already a member is done at once. Destroying the object
// abandons the join without calling `done`. REQUIRES: node and runtime
// outlive it; everything on the runtime's loop thread.
class SeedJoin {
 public:
  SeedJoin(Node* node, TcpRuntime* runtime, std::map<NodeId, Endpoint> seeds,
           size_t attempts_max, absl::Duration retry_interval,
           std::function<void(const absl::Status&)> done);
  ~SeedJoin();
  SeedJoin(const SeedJoin&) = delete;
  SeedJoin& operator=(const SeedJoin&) = delete;

  // Called with each failed attempt that will be retried (for a log).
  void set_on_retry(std::function<void(const absl::Status&)> on_retry) {
    on_retry_ = std::move(on_retry);
  }
  void Start();
  size_t attempts() const { return attempts_; }

 private:
  void Attempt();

  Node* node_;
  TcpRuntime* runtime_;
  std::map<NodeId, Endpoint> seeds_;
  size_t attempts_max_;
  absl::Duration retry_interval_;
  std::function<void(const absl::Status&)> done_;
  std::function<void(const absl::Status&)> on_retry_;
  size_t attempts_ = 0;
  TimerId retry_timer_ = kNoTimer;
  // Shared with the pending Node::Join callback so that a callback arriving
  // after this object is gone does nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace dynamo::internal

#endif  // DYNAMO_TCP_TCP_MEMBERSHIP_H_

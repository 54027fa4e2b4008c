// BlockingNode: a synchronous face on a Node for embedders that run the node
// on its own event-loop thread (a TcpRuntime's Run()) and call it from other
// threads. The paper's interface (section 4.1) is asynchronous because a
// node is a single-threaded state machine; this wrapper posts each call onto
// the node's loop through a thread-safe executor and waits for the callback,
// at most `wait_max`.
//
// Thread-safety: every method may be called from any thread *except* the
// node's loop thread (REQUIRES): waiting there would block the very loop
// that must complete the request, a deadlock. Calls from several threads
// may run concurrently; each waits for its own answer.
//
// Ownership: the node is borrowed and must outlive every call, including
// calls that returned kDeadlineExceeded (their request may still be running
// on the loop). The executor must stay valid as long as the BlockingNode.
#ifndef DYNAMO_BLOCKING_H_
#define DYNAMO_BLOCKING_H_

#include <functional>
#include <string>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dynamo/context.h"
#include "dynamo/node.h"

namespace dynamo {

// Runs a function on the node's loop thread; must be callable from any
// thread (TcpRuntime::executor() is one).
using LoopExecutor = std::function<void(absl::AnyInvocable<void()>)>;

class BlockingNode {
 public:
  // REQUIRES: node non-null; wait_max positive. The wait bound should exceed
  // the node's request_timeout, so that normally the node's own deadline
  // answers first (with its reason) and wait_max only catches a stalled loop.
  BlockingNode(Node* node, LoopExecutor executor, absl::Duration wait_max = absl::Seconds(10));

  // As Node::Get/Put/Delete, but blocking. kDeadlineExceeded if no answer
  // came within wait_max (the request may still complete later).
  absl::StatusOr<GetResult> Get(std::string_view bucket, std::string_view key);
  absl::Status Put(std::string_view bucket, std::string_view key, const Context& context,
                   std::string value);
  absl::Status Delete(std::string_view bucket, std::string_view key, const Context& context);

  // Runs `fn` on the loop thread and waits for it (bounded by wait_max), for
  // reading node state (metrics, ring) safely from another thread.
  absl::Status RunOnLoop(absl::AnyInvocable<void(Node&)> fn);

 private:
  Node* node_;
  LoopExecutor executor_;
  absl::Duration wait_max_;
};

}  // namespace dynamo

#endif  // DYNAMO_BLOCKING_H_

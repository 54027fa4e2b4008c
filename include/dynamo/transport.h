// Transport: how a node's messages reach other nodes. It moves opaque byte
// strings (each one a message encoded with the wire codec) between node ids;
// it knows nothing of what they mean. Implementations: SimNetwork's
// deterministic in-memory transport, and the TCP transport.
//
// Delivery is best effort, as on a real network: a message may be lost,
// delayed, duplicated or reordered, and Send() succeeding says only that the
// message was accepted locally. The node's protocols (retries, timeouts,
// quorums) make up for it.
//
// Thread-safety: called only from the node's own event-loop thread.
#ifndef DYNAMO_TRANSPORT_H_
#define DYNAMO_TRANSPORT_H_

#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "dynamo/types.h"

namespace dynamo {

class Transport {
 public:
  // Called on the node's thread for every message that arrives. `message` is
  // valid only during the call.
  using ReceiveHandler = std::function<void(NodeId from, std::string_view message)>;

  virtual ~Transport() = default;

  // Queues `message` for `to`. Errors are local and immediate:
  // kInvalidArgument for an oversize message, kNotFound for a node the
  // transport has never heard of, kResourceExhausted when the outgoing queue
  // to that peer is full (the message is dropped and counted).
  virtual absl::Status Send(NodeId to, std::string message) = 0;

  // Installs the handler for incoming messages, replacing any earlier one.
  virtual void SetReceiveHandler(ReceiveHandler handler) = 0;

  // Called, when the transport holds several messages from one peer at once
  // (one network read), with all of them before the receive handler gets
  // the first: a hint that lets the node start loading what they will touch
  // (Node names the keys of replica reads and writes to its storage,
  // StorageEngine::Prefetch). It must change nothing; `messages` are valid
  // only during the call and are delivered afterwards as usual, malformed
  // ones included. A transport that delivers one message at a time (the
  // simulator) never calls it, which the default makes explicit.
  using LookaheadHandler =
      std::function<void(NodeId from, std::span<const std::string_view> messages)>;
  virtual void SetLookaheadHandler(LookaheadHandler handler) { (void)handler; }

  // Largest message Send() accepts, in bytes.
  virtual size_t message_bytes_max() const = 0;
};

}  // namespace dynamo

#endif  // DYNAMO_TRANSPORT_H_

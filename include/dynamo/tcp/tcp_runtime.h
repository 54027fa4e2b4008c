// TcpRuntime: the real-time implementation of the Runtime/Transport seam
// (runtime.h, transport.h), so that the unchanged Node of paper section 4
// runs as one process of a real cluster. Time is the wall clock, timers run on
// a steady clock, randomness is seeded from std::random_device, and messages
// travel over TCP with asio, one event-loop thread per node.
//
// Wire format. Every frame is a 10-byte header — magic "DYNM", a version byte,
// a frame type byte and a 4-byte big-endian payload length — then the
// payload. A frame whose magic, version or type is wrong, or whose length
// exceeds frame_bytes_max, closes the connection and is counted; the node
// keeps serving everyone else. Data frames carry one codec-encoded node
// message each, untouched.
//
// Authentication. A peer connection opens with a handshake (its payloads are
// wire-codec encoded): the acceptor sends a challenge (cluster name, its node
// id, a random nonce); the dialer answers with its cluster name, node id, own
// nonce and HMAC-SHA256(secret, both nonces, the cluster name and both ids);
// the acceptor checks it and proves itself with its own HMAC over the same
// transcript. A process without the cluster secret therefore can neither
// receive, gossip nor write. The secret is not encryption: traffic is in the
// clear (put the cluster on a private network, or TLS later).
//
// Peers. The acceptor takes any node id that proves the secret, known or
// not, since a joining node dials its seed before anyone knows its address;
// the dialler checks that the acceptor is the node id it meant to reach.
// Peer addresses come from the options at start and from SetPeer() later
// (dynamo-server feeds it the addresses in the gossiped membership view).
//
// Connections. Each node dials every peer it sends to and sends only over
// that outbound connection; it receives over the connections its peers
// dialled. A lost connection is redialled with exponential backoff
// (reconnect_backoff_min .. reconnect_backoff_max). Each peer has a bounded
// outgoing queue (peer_queue_messages_max, peer_queue_bytes_max): Send() on a
// full queue drops the message, counts it and returns kResourceExhausted, as
// the Transport contract says; when a dial fails, the queued messages are
// dropped and counted (they are stale by the time the peer is back, and the
// node's protocols retry). Memory never grows without bound.
//
// Threading. Everything runs on the thread that calls Run(); Post() and
// Executor() are the only thread-safe entry points (and Stop()). Timers,
// receive callbacks and posted functions run there, one at a time. Other
// asio components (the Redis-protocol port of dynamo-server) may share the
// io_context, so they need no locking either.
//
// Errors: asio's exceptions never escape; they become absl::Status.
#ifndef DYNAMO_TCP_TCP_RUNTIME_H_
#define DYNAMO_TCP_TCP_RUNTIME_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dynamo/runtime.h"
#include "dynamo/transport.h"
#include "dynamo/types.h"

namespace asio {
class io_context;
}  // namespace asio

namespace dynamo {

// host:port of a listening socket. Host is a numeric IPv4/IPv6 address or a
// name resolved once when the runtime starts.
struct Endpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string ToString() const;
  // Parses "host:port" (or "[v6]:port"); kInvalidArgument naming the text.
  static absl::StatusOr<Endpoint> Parse(std::string_view text);
};

struct TcpRuntimeOptions {
  NodeId self = kNoNode;
  // Where peers connect to this node. Port 0 picks a free port
  // (see TcpRuntime::peer_port()). Loopback by default.
  Endpoint listen;
  // The peer addresses known at start (more are added with SetPeer(), e.g.
  // from the membership view's gossip). Send() to an id not known is
  // kNotFound. An entry for `self` is ignored.
  std::map<NodeId, Endpoint> peers;
  // Most peers this node dials (a bound on the peer table SetPeer grows).
  size_t peers_max = 1024;
  std::string cluster_name = "dynamo";
  // Shared by every member; both sides of a handshake prove they know it.
  // REQUIRED non-empty.
  std::string cluster_secret;

  // Largest payload of one frame; also Transport::message_bytes_max(). The
  // default fits a 1 MiB value with its key and clocks.
  size_t frame_bytes_max = (1 << 20) + (64 << 10);
  size_t peer_queue_messages_max = 4096;
  size_t peer_queue_bytes_max = size_t{16} << 20;
  // Queued messages copied into one buffer and written with one send. A
  // batch holds at least one message, however large.
  size_t write_batch_messages_max = 4096;
  size_t write_batch_bytes_max = 256 << 10;
  size_t inbound_connections_max = 256;
  absl::Duration handshake_timeout = absl::Seconds(2);
  absl::Duration connect_timeout = absl::Seconds(2);
  absl::Duration reconnect_backoff_min = absl::Milliseconds(50);
  absl::Duration reconnect_backoff_max = absl::Seconds(2);
  // Pending timers (a node keeps a handful plus one per request in flight).
  size_t timers_max = 1 << 20;
};

// Counters of the transport, for INFO and tests. Read on the loop thread.
struct TcpTransportMetrics {
  uint64_t messages_sent = 0;      // written to a socket
  uint64_t messages_received = 0;  // delivered to the receive handler
  uint64_t messages_looked_ahead = 0;  // shown to the lookahead handler first
  uint64_t bytes_sent = 0, bytes_received = 0;
  uint64_t dropped_queue_full = 0;     // Send() refused: the peer's queue was full
  uint64_t dropped_disconnected = 0;   // queued, then dropped when a dial failed
  uint64_t dropped_no_handler = 0;     // arrived with no receive handler installed
  uint64_t connects_ok = 0, connects_failed = 0;
  uint64_t inbound_accepted = 0;
  uint64_t inbound_refused_limit = 0;   // inbound_connections_max reached
  uint64_t handshakes_failed = 0;       // wrong secret, cluster, id, or malformed
  uint64_t frames_malformed = 0;        // bad magic/version/type/length: connection closed
  uint64_t timers_refused = 0;          // timers_max reached (the callback never runs)
};

// A thread-safe way to run a function on a node's loop thread.
using Executor = std::function<void(absl::AnyInvocable<void()>)>;

class TcpRuntime final : public Runtime, public Transport {
 public:
  // Validates the options, binds the listening socket (so peer_port() is
  // known at once) and resolves the peers. kInvalidArgument for bad options
  // (no secret, no self id), kUnavailable when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<TcpRuntime>> Create(TcpRuntimeOptions options);
  // REQUIRES: the loop is not running (Stop() and Run() returned).
  ~TcpRuntime() override;
  TcpRuntime(const TcpRuntime&) = delete;
  TcpRuntime& operator=(const TcpRuntime&) = delete;

  // Runs the event loop on the calling thread until Stop(). Returns the
  // first error an event handler let escape (none should), else OK.
  absl::Status Run();
  // Thread-safe. Makes Run() return soon; pending work is abandoned.
  void Stop();
  // Thread-safe: runs `fn` on the loop thread, after what is already queued.
  void Post(absl::AnyInvocable<void()> fn);
  // Post() as a value, for BlockingNode. Valid while the runtime lives.
  Executor executor();

  // The io_context the loop runs, for other asio components that should
  // share the node's thread (the server's client port).
  asio::io_context& io_context();
  uint16_t peer_port() const;

  // Runtime.
  NodeId self() const override { return options_.self; }
  absl::Time Now() override { return absl::Now(); }
  absl::Duration Elapsed() override;
  TimerId Schedule(absl::Duration delay, absl::AnyInvocable<void()> callback) override;
  TimerId Defer(absl::AnyInvocable<void()> callback) override;
  void Cancel(TimerId timer) override;
  absl::BitGenRef Rng() override;
  Transport& transport() override { return *this; }

  // Transport.
  absl::Status Send(NodeId to, std::string message) override;
  void SetReceiveHandler(ReceiveHandler handler) override;
  void SetLookaheadHandler(LookaheadHandler handler) override;
  size_t message_bytes_max() const override { return options_.frame_bytes_max; }

  // Loop thread only.
  // Adds a peer, or moves a known one to a new address (what was queued for
  // it is then dropped and counted, and the new address dialled soon). The
  // connection is dialled at once. An entry for self() is ignored.
  // kInvalidArgument for id 0, kResourceExhausted past peers_max.
  absl::Status SetPeer(NodeId id, const Endpoint& endpoint);
  // Forgets a peer (a member removed from the cluster): its connection is
  // closed, what was queued for it dropped and counted, it is not dialled
  // again and no longer counts against peers_max; Send to it fails with
  // kNotFound until a later SetPeer. Unknown ids are ignored. Connections
  // the peer dials in are the membership layer's to refuse, not this.
  void RemovePeer(NodeId id);
  // The peers this node dials (at most peers_max).
  size_t peer_count() const;
  // The address this node dials `peer` at, if known.
  std::optional<Endpoint> PeerAddress(NodeId peer) const;
  const TcpTransportMetrics& metrics() const;
  // True while the outbound connection to `peer` is authenticated and open.
  bool PeerConnected(NodeId peer) const;
  size_t PeerQueueMessages(NodeId peer) const;
  const TcpRuntimeOptions& options() const { return options_; }

 private:
  class Impl;
  explicit TcpRuntime(TcpRuntimeOptions options);

  TcpRuntimeOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dynamo

#endif  // DYNAMO_TCP_TCP_RUNTIME_H_

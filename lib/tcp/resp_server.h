// RespServer: dynamo-server's client port. It speaks RESP2 so that existing
// Redis clients work, and maps commands onto the paper's interface (4.1):
//
//   GET key            the value; with siblings, the live sibling with the
//                      largest (timestamp, actor, counter): last-write-wins,
//                      deterministic on every node
//   SET key value      a put that supersedes what the coordinator holds: on
//                      a replica of the key, with the context of its own
//                      copy (no quorum read first); elsewhere get for the
//                      context, then put with it (if the get fails, a blind
//                      put: Dynamo stays writeable). A version the context
//                      missed stays a sibling, and GET resolves it by LWW
//   DEL/EXISTS/MGET    as in Redis, built on get (+ delete with context)
//   DGET key           [context-hex, value1, value2, ...]: every sibling
//   DPUT key ctx value put descending from the hex context ("" = none)
//   DDEL key ctx       delete descending from the context
//   INFO [section]     node, ring, peers, hints, metrics, transport
//   DYNAMO.JOIN seed-id host:port   this node joins a cluster through the seed
//   DYNAMO.REMOVE id   removes a member (paper 4.8: explicit)
//   DYNAMO.LEAVE       this node hands its data over and leaves
//   PING ECHO QUIT SELECT COMMAND CONFIG CLIENT: enough for redis-cli and
//   redis-benchmark.
//
// It runs on the node's io_context, so node calls need no posting. Each
// connection answers its pipelined commands in order through a bounded
// window of pending replies; a full window or a full output buffer stops
// reading from that client (backpressure) instead of buffering more. A
// protocol error is answered with a RESP error and the connection closed;
// everyone else is served on.
#ifndef DYNAMO_TCP_RESP_SERVER_H_
#define DYNAMO_TCP_RESP_SERVER_H_

#include <functional>
#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "dynamo/node.h"
#include "dynamo/tcp/tcp_runtime.h"
#include "tcp/asio_config.h"
#include "tcp/resp.h"

namespace dynamo::internal {

struct RespServerOptions {
  Endpoint listen;  // port 0: any free port
  std::string bucket = "default";
  RespLimits limits;
  size_t connections_max = 1024;
  size_t pipeline_commands_max = 256;        // pending replies per connection
  size_t output_bytes_max = size_t{8} << 20;  // buffered replies per connection
  size_t read_chunk_bytes = 64 << 10;
  // Lines ("name:value\r\n") INFO node adds about the storage engine, asked
  // at each INFO (the server knows its engine; the node only the interface).
  std::function<std::string()> storage_info;
};

struct RespServerMetrics {
  uint64_t connections_accepted = 0, connections_refused = 0;
  uint64_t commands = 0, protocol_errors = 0;
};

class RespServer {
 public:
  // Binds the port. `runtime` may be null (INFO then has no transport
  // section). REQUIRES: node and io outlive the server; all on one thread.
  static absl::StatusOr<std::unique_ptr<RespServer>> Create(RespServerOptions options,
                                                            asio::io_context& io, Node* node,
                                                            TcpRuntime* runtime);
  ~RespServer();
  uint16_t port() const;
  // Stops accepting and closes every connection (pending node callbacks
  // then find their connection closed and drop the reply).
  void Close();
  const RespServerMetrics& metrics() const { return metrics_; }

 private:
  class Conn;
  RespServer(RespServerOptions options, asio::io_context& io, Node* node, TcpRuntime* runtime);
  void Accept();
  std::string Info(std::string_view section) const;

  RespServerOptions options_;
  asio::io_context& io_;
  asio::ip::tcp::acceptor acceptor_;
  Node* node_;
  TcpRuntime* runtime_;
  std::set<std::shared_ptr<Conn>> conns_;
  RespServerMetrics metrics_;
};

}  // namespace dynamo::internal

#endif  // DYNAMO_TCP_RESP_SERVER_H_

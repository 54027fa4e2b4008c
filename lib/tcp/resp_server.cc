#include "tcp/resp_server.h"

#include <algorithm>
#include <deque>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "dynamo/version.h"

namespace dynamo::internal {

using asio::ip::tcp;

namespace {

// Longer than any command name (DYNAMO.REMOVE is the longest), so a name is
// upper-cased on the stack.
constexpr size_t kCommandNameMax = 24;

// Debian's Abseil has its own string_view type.
absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// GET's answer when a key has siblings: the live version with the largest
// (timestamp, actor, counter) of its dot, so every node and every client
// picks the same one.
const Version* LiveWinner(const GetResult& r) {
  const Version* best = nullptr;
  for (const Version& v : r.versions) {
    if (v.tombstone) continue;
    if (best == nullptr || std::tie(v.dot.timestamp_us, v.dot.actor, v.dot.counter) >
                               std::tie(best->dot.timestamp_us, best->dot.actor, best->dot.counter)) {
      best = &v;
    }
  }
  return best;
}

std::string ErrorReply(const absl::Status& s) {
  std::string out;
  AppendError(&out, absl::StrCat("ERR ", s.ToString()));
  return out;
}

std::string ErrorReply(std::string_view message) {
  std::string out;
  AppendError(&out, message);
  return out;
}

std::string SimpleReply(std::string_view s) {
  std::string out;
  AppendSimple(&out, s);
  return out;
}

}  // namespace

class RespServer::Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(RespServer* server, tcp::socket socket)
      : server_(server), socket_(std::move(socket)), chunk_(server->options_.read_chunk_bytes) {}

  void Start() {
    asio::error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    ReadMore();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    asio::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    pending_.clear();
    std::string().swap(in_);
    std::string().swap(out_);
  }

 private:
  // Where a command's reply goes: its slot in this connection's pipeline,
  // kept alive by the reference. A plain class, not an AnyInvocable: the
  // node's callback that holds it is then one allocation per command, not
  // an AnyInvocable around a lambda around another (two).
  class Reply {
   public:
    Reply() = default;
    Reply(std::shared_ptr<Conn> conn, uint64_t seq) : conn_(std::move(conn)), seq_(seq) {}
    void operator()(std::string reply) {
      if (!conn_->closed_) conn_->Complete(seq_, std::move(reply));
    }

   private:
    std::shared_ptr<Conn> conn_;
    uint64_t seq_ = 0;
  };
  const RespServerOptions& options() const { return server_->options_; }

  // Closes and forgets this connection (the server's set holds it).
  void Drop() {
    if (closed_) return;
    Close();
    server_->conns_.erase(shared_from_this());
  }

  bool CanRead() const {
    return !closed_ && !reading_ && !close_after_flush_ &&
           pending_.size() < options().pipeline_commands_max &&
           out_.size() + writing_buf_.size() < options().output_bytes_max;
  }

  void ReadMore() {
    if (!CanRead()) return;
    reading_ = true;
    auto self = shared_from_this();
    socket_.async_read_some(asio::buffer(chunk_), [self](const asio::error_code& e, size_t n) {
      self->reading_ = false;
      if (self->closed_) return;
      if (e) {
        self->Drop();
        return;
      }
      self->in_.append(self->chunk_.data(), n);
      self->Pump();
    });
  }

  // Runs the complete commands buffered, as far as the window allows, and
  // reads more when there is room.
  void Pump() {
    if (pumping_ || closed_) return;
    pumping_ = true;
    PrefetchKeys();
    size_t offset = 0;
    while (!closed_ && !close_after_flush_ && pending_.size() < options().pipeline_commands_max &&
           out_.size() < options().output_bytes_max) {
      size_t consumed = 0;
      // args_ views in_, which stays as it is until the loop ends.
      auto parsed = ParseRespCommand(std::string_view(in_).substr(offset), options().limits,
                                     &consumed, &args_);
      if (!parsed.ok()) {
        server_->metrics_.protocol_errors++;
        // The stream's framing is lost: answer, then close after the reply.
        uint64_t seq = NewSlot();
        Complete(seq, ErrorReply(absl::StrCat("ERR ", parsed.status().message())));
        close_after_flush_ = true;
        offset = in_.size();
        break;
      }
      if (!*parsed) {
        // Incomplete. The parser bounds each argument; this bounds the
        // framing around them too.
        if (in_.size() - offset > options().limits.command_bytes_max + (64 << 10)) {
          server_->metrics_.protocol_errors++;
          Complete(NewSlot(), ErrorReply("ERR Protocol error: request too large"));
          close_after_flush_ = true;
          offset = in_.size();
        }
        break;
      }
      offset += consumed;
      if (args_.empty()) continue;
      server_->metrics_.commands++;
      Dispatch(args_, Reply(shared_from_this(), NewSlot()));
    }
    if (!closed_) in_.erase(0, offset);
    pumping_ = false;
    ReadMore();
  }

  // Names the keys of the GETs and SETs buffered (as many as the window
  // will run now) to the node before the first runs: each one's storage
  // lookup is a chain of cache misses, and started together they overlap.
  // Only a hint: the commands are parsed again, and checked, when they run.
  void PrefetchKeys() {
    const size_t window_max = options().pipeline_commands_max;
    const size_t room = pending_.size() < window_max ? window_max - pending_.size() : 0;
    size_t offset = 0;
    prefetch_keys_.clear();
    for (size_t i = 0; i < std::min(room, kPrefetchCommandsMax); ++i) {
      size_t consumed = 0;
      auto parsed = ParseRespCommand(std::string_view(in_).substr(offset), options().limits,
                                     &consumed, &prefetch_args_);
      if (!parsed.ok() || !*parsed) break;
      offset += consumed;
      if (prefetch_args_.size() >= 2 && prefetch_args_[0].size() == 3 &&
          (absl::EqualsIgnoreCase(AbslView(prefetch_args_[0]), "GET") ||
           absl::EqualsIgnoreCase(AbslView(prefetch_args_[0]), "SET"))) {
        prefetch_keys_.push_back(prefetch_args_[1]);
      }
    }
    if (prefetch_keys_.size() >= 2) server_->node_->Prefetch(options().bucket, prefetch_keys_);
  }

  uint64_t NewSlot() {
    pending_.emplace_back(false, std::string());
    return first_seq_ + pending_.size() - 1;
  }

  void Complete(uint64_t seq, std::string reply) {
    auto& slot = pending_[seq - first_seq_];
    slot.first = true;
    slot.second = std::move(reply);
    while (!pending_.empty() && pending_.front().first) {
      out_.append(pending_.front().second);
      pending_.pop_front();
      first_seq_++;
    }
    ScheduleWrite();
  }

  // Replies completed in the same loop turn (a pipelined batch answered
  // while it is parsed, or the requests a chunk of replica messages
  // finished) go out in one write: the write runs after the handler that
  // completed them, once per connection, instead of one send per reply.
  void ScheduleWrite() {
    if (write_posted_ || writing_ || closed_) return;
    write_posted_ = true;
    auto self = shared_from_this();
    asio::post(socket_.get_executor(), [self] {
      self->write_posted_ = false;
      self->Write();
    });
  }

  void Write() {
    if (writing_ || closed_) return;
    if (out_.empty()) {
      if (close_after_flush_ && pending_.empty()) Drop();
      return;
    }
    writing_ = true;
    writing_buf_.swap(out_);
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(writing_buf_),
                      [self](const asio::error_code& e, size_t) {
                        self->writing_ = false;
                        if (self->closed_) return;
                        if (e) {
                          self->Drop();
                          return;
                        }
                        self->writing_buf_.clear();
                        if (self->writing_buf_.capacity() > (size_t{1} << 20)) {
                          std::string().swap(self->writing_buf_);
                        }
                        self->Write();
                        self->Pump();
                      });
  }

  // ---------------------------------------------------------------- commands

  // `args` view the read buffer: whatever outlives this call is copied.
  void Dispatch(absl::Span<const std::string_view> args, Reply reply) {
    char upper[kCommandNameMax];
    // A name longer than any command matches none: the unknown-command reply.
    const size_t name_size = args[0].size() <= sizeof(upper) ? args[0].size() : 0;
    for (size_t i = 0; i < name_size; ++i) upper[i] = absl::ascii_toupper(args[0][i]);
    const std::string_view cmd(upper, name_size);
    Node* node = server_->node_;
    const std::string& bucket = options().bucket;
    auto arity = [&](size_t min, size_t max) {
      if (args.size() < min || args.size() > max) {
        reply(ErrorReply(absl::StrCat("ERR wrong number of arguments for '", std::string(args[0]),
                                      "' command")));
        return false;
      }
      return true;
    };
    if (cmd == "PING") {
      if (!arity(1, 2)) return;
      if (args.size() == 2) {
        std::string out;
        AppendBulk(&out, args[1]);
        reply(std::move(out));
      } else {
        reply(SimpleReply("PONG"));
      }
    } else if (cmd == "ECHO") {
      if (!arity(2, 2)) return;
      std::string out;
      AppendBulk(&out, args[1]);
      reply(std::move(out));
    } else if (cmd == "QUIT") {
      close_after_flush_ = true;
      reply(SimpleReply("OK"));
    } else if (cmd == "SELECT") {
      if (!arity(2, 2)) return;
      reply(args[1] == "0" ? SimpleReply("OK") : ErrorReply("ERR only database 0 exists"));
    } else if (cmd == "COMMAND" || cmd == "CONFIG") {
      std::string out;
      AppendArrayHeader(&out, 0);  // redis-benchmark and redis-cli probe these
      reply(std::move(out));
    } else if (cmd == "CLIENT") {
      reply(SimpleReply("OK"));
    } else if (cmd == "GET") {
      if (!arity(2, 2)) return;
      node->Get(bucket, args[1], [reply = std::move(reply)](absl::StatusOr<GetResult> r) mutable {
        if (!r.ok()) return reply(ErrorReply(r.status()));
        std::string out;
        const Version* v = LiveWinner(*r);
        if (v == nullptr) {
          AppendNull(&out);
        } else {
          AppendBulk(&out, v->value);
        }
        reply(std::move(out));
      });
    } else if (cmd == "SET") {
      if (args.size() != 3) {
        reply(ErrorReply(args.size() < 3 ? "ERR wrong number of arguments for 'set' command"
                                         : "ERR SET options (EX, NX, ...) are not supported"));
        return;
      }
      std::string value(args[2]);
      auto done = [reply = std::move(reply)](absl::Status s) mutable {
        reply(s.ok() ? SimpleReply("OK") : ErrorReply(s));
      };
      // A blind write: it supersedes every version the coordinating replica
      // holds, without a quorum read first. Versions it has not seen yet (a
      // write still on its way there) stay siblings until a later SET
      // through a replica that has them; GET answers their last-write-wins
      // winner meanwhile.
      Context blind;
      blind.supersede_coordinator_copy = true;
      node->Put(bucket, args[1], blind, std::move(value), std::move(done));
    } else if (cmd == "MGET" || cmd == "EXISTS" || cmd == "DEL") {
      if (!arity(2, options().limits.args_max)) return;
      MultiKey(cmd, args, std::move(reply));
    } else if (cmd == "DGET") {
      if (!arity(2, 2)) return;
      node->Get(bucket, args[1], [reply = std::move(reply)](absl::StatusOr<GetResult> r) mutable {
        if (!r.ok()) return reply(ErrorReply(r.status()));
        std::string out;
        AppendArrayHeader(&out, 1 + r->values.size());
        AppendBulk(&out, HexEncode(r->context.Encode()));
        for (const std::string& v : r->values) AppendBulk(&out, v);
        reply(std::move(out));
      });
    } else if (cmd == "DPUT" || cmd == "DDEL") {
      if (cmd == "DPUT" ? !arity(4, 4) : !arity(3, 3)) return;
      Context context;
      if (!args[2].empty()) {
        std::optional<std::string> bytes = HexDecode(args[2]);
        absl::StatusOr<Context> decoded =
            bytes ? Context::Decode(*bytes)
                  : absl::StatusOr<Context>(absl::InvalidArgumentError("context is not hex"));
        if (!decoded.ok()) return reply(ErrorReply(decoded.status()));
        context = std::move(*decoded);
      }
      auto done = [reply = std::move(reply)](absl::Status s) mutable {
        reply(s.ok() ? SimpleReply("OK") : ErrorReply(s));
      };
      if (cmd == "DPUT") {
        node->Put(bucket, args[1], context, std::string(args[3]), std::move(done));
      } else {
        node->Delete(bucket, args[1], context, std::move(done));
      }
    } else if (cmd == "INFO") {
      if (!arity(1, 2)) return;
      std::string out;
      AppendBulk(
          &out, server_->Info(args.size() == 2 ? absl::AsciiStrToLower(std::string(args[1])) : ""));
      reply(std::move(out));
    } else if (cmd == "DYNAMO.REMOVE") {
      // Explicit removal (paper 4.8): the new owners of the node's ranges
      // pull them from the remaining replicas; gossip spreads the change.
      if (!arity(2, 2)) return;
      uint64_t id = 0;
      if (!absl::SimpleAtoi(AbslView(args[1]), &id) || id == 0) {
        return reply(ErrorReply("ERR DYNAMO.REMOVE needs a node id"));
      }
      absl::Status s = node->Remove(id);
      reply(s.ok() ? SimpleReply("OK") : ErrorReply(s));
    } else if (cmd == "DYNAMO.LEAVE") {
      if (!arity(1, 1)) return;
      absl::Status s = node->Leave();
      reply(s.ok() ? SimpleReply("OK") : ErrorReply(s));
    } else if (cmd == "DYNAMO.JOIN") {
      // DYNAMO.JOIN SEED_ID HOST:PORT: this node asks the seed to add it
      // (paper 4.8). OK once the seed accepted; the node is then joining:
      // it pulls the ranges it will own and becomes up (INFO node).
      if (!arity(3, 3)) return;
      NodeId seed = kNoNode;
      absl::StatusOr<Endpoint> address = Endpoint::Parse(args[2]);
      if (!absl::SimpleAtoi(AbslView(args[1]), &seed) || seed == kNoNode) {
        return reply(ErrorReply("ERR DYNAMO.JOIN needs a seed node id"));
      }
      if (!address.ok()) return reply(ErrorReply(address.status()));
      if (server_->runtime_ == nullptr) {
        return reply(ErrorReply("ERR DYNAMO.JOIN needs a TCP runtime"));
      }
      if (absl::Status s = server_->runtime_->SetPeer(seed, *address); !s.ok()) {
        return reply(ErrorReply(s));
      }
      node->Join(seed, [reply = std::move(reply)](absl::Status s) mutable {
        reply(s.ok() ? SimpleReply("OK") : ErrorReply(s));
      });
    } else {
      reply(ErrorReply(
          absl::StrCat("ERR unknown command '", std::string(args[0].substr(0, 64)), "'")));
    }
  }

  // MGET / EXISTS / DEL over several keys: one get each (DEL then deletes
  // with the read context); the reply is sent when every key is done.
  void MultiKey(std::string_view cmd, absl::Span<const std::string_view> args, Reply reply) {
    struct State {
      std::string cmd;
      size_t outstanding = 0;
      long long count = 0;
      std::vector<std::optional<std::string>> values;
      absl::Status error;
      Reply reply;
      void Done() {
        if (--outstanding != 0) return;
        std::string out;
        if (!error.ok()) {
          out = ErrorReply(error);
        } else if (cmd == "MGET") {
          AppendArrayHeader(&out, values.size());
          for (const auto& v : values) v ? AppendBulk(&out, *v) : AppendNull(&out);
        } else {
          AppendInteger(&out, count);
        }
        reply(std::move(out));
      }
    };
    auto state = std::make_shared<State>();
    state->cmd = cmd;
    state->outstanding = args.size() - 1;
    state->values.resize(args.size() - 1);
    state->reply = std::move(reply);
    Node* node = server_->node_;
    const std::string bucket = options().bucket;
    for (size_t i = 1; i < args.size(); ++i) {
      std::string key(args[i]);
      node->Get(bucket, key, [state, i, node, bucket, key](absl::StatusOr<GetResult> r) {
        if (!r.ok()) {
          if (state->cmd != "MGET") state->error = r.status();
          state->Done();
          return;
        }
        const Version* v = LiveWinner(*r);
        if (state->cmd == "MGET") {
          if (v != nullptr) state->values[i - 1] = v->value;
        } else if (v != nullptr) {
          state->count++;
          if (state->cmd == "DEL") {
            node->Delete(bucket, key, r->context, [state](absl::Status s) {
              if (!s.ok()) state->error = s;
              state->Done();
            });
            return;
          }
        }
        state->Done();
      });
    }
  }

  RespServer* server_;
  tcp::socket socket_;
  std::vector<char> chunk_;
  std::string in_;
  std::vector<std::string_view> args_;  // the command being run, views into in_
  std::vector<std::string_view> prefetch_args_;  // PrefetchKeys' parse, views into in_
  std::vector<std::string_view> prefetch_keys_;  // PrefetchKeys' batch, views into in_
  // A client's pipelined batch; more would be evicted before they run.
  static constexpr size_t kPrefetchCommandsMax = 64;
  // Replies in command order; .first says whether it is ready.
  std::deque<std::pair<bool, std::string>> pending_;
  uint64_t first_seq_ = 0;  // sequence number of pending_.front()
  std::string out_, writing_buf_;
  bool closed_ = false, reading_ = false, writing_ = false, pumping_ = false;
  bool close_after_flush_ = false;
  bool write_posted_ = false;  // a Write() is posted to the loop
};

RespServer::RespServer(RespServerOptions options, asio::io_context& io, Node* node,
                       TcpRuntime* runtime)
    : options_(std::move(options)), io_(io), acceptor_(io), node_(node), runtime_(runtime) {}

RespServer::~RespServer() { Close(); }

absl::StatusOr<std::unique_ptr<RespServer>> RespServer::Create(RespServerOptions options,
                                                               asio::io_context& io, Node* node,
                                                               TcpRuntime* runtime) {
  std::unique_ptr<RespServer> server(new RespServer(std::move(options), io, node, runtime));
  asio::error_code ec;
  asio::ip::address address = asio::ip::make_address(server->options_.listen.host, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        "client address '", server->options_.listen.host, "' is not a numeric IP address"));
  }
  tcp::endpoint ep(address, server->options_.listen.port);
  server->acceptor_.open(ep.protocol(), ec);
  if (!ec) server->acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) server->acceptor_.bind(ep, ec);
  if (!ec) server->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", server->options_.listen.ToString(), ": ", ec.message()));
  }
  server->Accept();
  return server;
}

uint16_t RespServer::port() const {
  asio::error_code ec;
  tcp::endpoint ep = acceptor_.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

void RespServer::Close() {
  asio::error_code ignored;
  acceptor_.close(ignored);
  for (const auto& c : conns_) c->Close();
  conns_.clear();
}

void RespServer::Accept() {
  acceptor_.async_accept([this](const asio::error_code& e, tcp::socket socket) {
    if (e == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!e) {
      if (conns_.size() >= options_.connections_max) {
        metrics_.connections_refused++;
        std::string out;
        AppendError(&out, "ERR max number of clients reached");
        asio::error_code ignored;
        asio::write(socket, asio::buffer(out), ignored);
        socket.close(ignored);
      } else {
        metrics_.connections_accepted++;
        auto conn = std::make_shared<Conn>(this, std::move(socket));
        conns_.insert(conn);
        conn->Start();
      }
    }
    Accept();
  });
}

std::string RespServer::Info(std::string_view section) const {
  auto want = [&](std::string_view s) { return section.empty() || section == "all" || section == s; };
  std::string out;
  const Node& node = *node_;
  if (want("node")) {
    absl::StrAppend(&out, "# Node\r\nnode_id:", node.id(), "\r\nactor:", node.identity().actor,
                    "\r\nepoch:", node.identity().epoch, "\r\nclient_port:", port(), "\r\n");
    if (runtime_ != nullptr) {
      absl::StrAppend(&out, "cluster:", runtime_->options().cluster_name,
                      "\r\npeer_port:", runtime_->peer_port(), "\r\n");
    }
    if (options_.storage_info) out += options_.storage_info();
    for (const BucketOptions& b : node.options().buckets) {
      absl::StrAppend(&out, "bucket:", b.name, ",n=", b.n, ",r=", b.r, ",w=", b.w, ",policy=",
                      b.policy == ConflictPolicy::kLastWriteWins ? "lww" : "siblings", "\r\n");
    }
    const MemberEntry* mine = node.membership().Find(node.id());
    absl::StrAppend(&out, "member_status:", mine == nullptr ? "none" : MemberStatusName(mine->status),
                    "\r\ntransfers_pending:", node.transfers_pending(), "\r\n");
    for (const MemberEntry& e : node.membership().entries()) {
      absl::StrAppend(&out, "member:", e.id, ",status=", MemberStatusName(e.status),
                      ",epoch=", e.epoch, ",version=", e.version, ",address=", e.address, "\r\n");
    }
    absl::StrAppend(&out, "\r\n");
  }
  if (want("ring")) {
    const Ring& ring = node.ring();
    size_t n = node.options().buckets.empty() ? 3 : node.options().buckets[0].n;
    Ring::LoadStats stats = ring.Balance(n);
    absl::StrAppend(&out, "# Ring\r\nring_members:", ring.size(), "\r\nring_strategy:",
                    static_cast<int>(ring.options().strategy), "\r\nring_partitions:",
                    ring.options().partitions, "\r\nring_efficiency:",
                    absl::StrFormat("%.3f", stats.efficiency), "\r\n");
    for (const Ring::NodeLoad& l : stats.nodes) {
      size_t tokens = 0;
      for (const RingMember& m : ring.members()) {
        if (m.id == l.id) tokens = m.tokens.size();
      }
      absl::StrAppend(&out, "ring_node:", l.id, ",tokens=", tokens,
                      absl::StrFormat(",primary_share=%.4f,replica_share=%.4f,relative_load=%.3f",
                                      l.primary_share, l.replica_share, l.relative_load),
                      "\r\n");
    }
    absl::StrAppend(&out, "\r\n");
  }
  if (want("peers")) {
    absl::StrAppend(&out, "# Peers\r\n");
    for (NodeId id : node.membership().Live()) {
      if (id == node.id()) continue;
      // On the failure detector's clock, the runtime's monotonic one.
      absl::Duration heard = node.failure_detector().LastHeard(id);
      std::optional<Endpoint> address =
          runtime_ != nullptr ? runtime_->PeerAddress(id) : std::nullopt;
      absl::StrAppend(&out, "peer:", id,
                      ",connected=", runtime_ != nullptr && runtime_->PeerConnected(id) ? 1 : 0,
                      ",reachable=", node.failure_detector().IsReachable(id) ? 1 : 0,
                      ",queue=", runtime_ != nullptr ? runtime_->PeerQueueMessages(id) : 0,
                      ",last_heard_ms_ago=",
                      heard == -absl::InfiniteDuration() || runtime_ == nullptr
                          ? -1
                          : absl::ToInt64Milliseconds(runtime_->Elapsed() - heard),
                      ",status=", MemberStatusName(node.membership().Find(id)->status),
                      address ? absl::StrCat(",address=", address->ToString()) : "", "\r\n");
    }
    absl::StrAppend(&out, "\r\n");
  }
  const NodeMetrics& m = node.metrics();
  if (want("hints")) {
    absl::StrAppend(&out, "# Hints\r\nhints_held:", m.hints_held, "\r\nhints_stored:",
                    m.hints_stored, "\r\nhints_delivered:", m.hints_delivered,
                    "\r\nhints_rejected_full:", m.hints_rejected_full,
                    "\r\nhint_deliveries_in_flight:", node.hint_deliveries_in_flight(),
                    "\r\nhinted_writes_sent:", m.hinted_writes_sent, "\r\n\r\n");
  }
  if (want("metrics")) {
    absl::StrAppend(
        &out, "# Metrics\r\ngets_ok:", m.gets_ok, "\r\ngets_failed:", m.gets_failed,
        "\r\nputs_ok:", m.puts_ok, "\r\nputs_failed:", m.puts_failed,
        "\r\nrequests_forwarded:", m.requests_forwarded,
        "\r\nrequests_rejected_overload:", m.requests_rejected_overload,
        "\r\nrequests_settled_early:", m.requests_settled_early,
        "\r\nreplica_puts:", m.replica_puts, "\r\nreplica_gets:", m.replica_gets,
        "\r\nreplica_gets_same_as_known:", m.replica_gets_same_as_known,
        "\r\nreplica_acks:", m.replica_acks, "\r\nreplica_ack_messages:", m.replica_ack_messages,
        "\r\nread_repairs_sent:", m.read_repairs_sent,
        "\r\nmessages_malformed:", m.messages_malformed, "\r\nstorage_errors:", m.storage_errors,
        "\r\npeers_suspected_by_phi:", m.peers_suspected_by_phi,
        "\r\ntransfers_started:", m.transfers_started,
        "\r\ntransfers_completed:", m.transfers_completed,
        "\r\ntransfer_keys_received:", m.transfer_keys_received,
        "\r\nhandoff_keys_sent:", m.handoff_keys_sent, "\r\nkeys_dropped:", m.keys_dropped,
        "\r\nmerkle_trees:", m.merkle_trees, "\r\nmerkle_trees_built:", m.merkle_trees_built,
        "\r\nmerkle_key_updates:", m.merkle_key_updates, "\r\nresp_commands:", metrics_.commands,
        "\r\nresp_protocol_errors:", metrics_.protocol_errors,
        "\r\nresp_connections:", conns_.size(), "\r\n\r\n");
  }
  if (want("transport") && runtime_ != nullptr) {
    const TcpTransportMetrics& t = runtime_->metrics();
    absl::StrAppend(
        &out, "# Transport\r\npeers_dialled:", runtime_->peer_count(),
        "\r\nmessages_sent:", t.messages_sent, "\r\nmessages_received:", t.messages_received,
        "\r\nmessages_looked_ahead:", t.messages_looked_ahead,
        "\r\nbytes_sent:", t.bytes_sent, "\r\nbytes_received:", t.bytes_received,
        "\r\ndropped_queue_full:", t.dropped_queue_full,
        "\r\ndropped_disconnected:", t.dropped_disconnected, "\r\nconnects_ok:", t.connects_ok,
        "\r\nconnects_failed:", t.connects_failed, "\r\ninbound_accepted:", t.inbound_accepted,
        "\r\nhandshakes_failed:", t.handshakes_failed, "\r\nframes_malformed:", t.frames_malformed,
        "\r\n\r\n");
  }
  return out;
}

}  // namespace dynamo::internal

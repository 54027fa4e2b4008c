#include "dynamo/tcp/tcp_runtime.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <exception>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "tcp/asio_config.h"
#include "tcp/frame.h"

namespace dynamo {

using asio::ip::tcp;
using internal::FrameHeader;
using internal::FrameType;

std::string Endpoint::ToString() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<Endpoint> Endpoint::Parse(std::string_view text) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat("address '", std::string(text),
                                                   "' is not host:port"));
  }
  Endpoint ep;
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  ep.host = std::string(host);
  uint32_t port = 0;
  if (!absl::SimpleAtoi(std::string(text.substr(colon + 1)), &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("address '", std::string(text),
                                                   "' has an invalid port"));
  }
  ep.port = static_cast<uint16_t>(port);
  return ep;
}

namespace {

// Bytes asked of the socket per read of data frames.
constexpr size_t kReadChunkBytes = 64 << 10;
// Frames shown to the lookahead handler at a time: enough for the cache
// misses of their lookups to overlap, few enough that what the first
// brought in is still cached when the last is handled.
constexpr size_t kLookaheadFramesMax = 32;

std::chrono::nanoseconds ToChrono(absl::Duration d) {
  if (d < absl::ZeroDuration()) return std::chrono::nanoseconds(0);
  return absl::ToChronoNanoseconds(d);
}

// Reads one frame: the header, then a payload of at most `payload_max`
// bytes. `done(error, header, payload)`; on error the header is unspecified.
// `buffers` must outlive the read (it lives in the connection object that
// the handler keeps alive).
struct FrameBuffers {
  FrameHeader header;
  std::string payload;
};

template <typename Done>
void ReadFrame(tcp::socket& socket, FrameBuffers& buf, size_t payload_max, Done done) {
  asio::async_read(
      socket, asio::buffer(buf.header),
      [&socket, &buf, payload_max, done = std::move(done)](const asio::error_code& ec,
                                                           size_t) mutable {
        if (ec) {
          done(absl::UnavailableError(absl::StrCat("read: ", ec.message())),
               internal::ParsedHeader{});
          return;
        }
        absl::StatusOr<internal::ParsedHeader> h =
            internal::ParseFrameHeader(buf.header, payload_max);
        if (!h.ok()) {
          done(h.status(), internal::ParsedHeader{});
          return;
        }
        buf.payload.resize(h->payload_bytes);
        internal::ParsedHeader parsed = *h;
        asio::async_read(socket, asio::buffer(buf.payload),
                         [parsed, done = std::move(done)](const asio::error_code& ec2,
                                                          size_t) mutable {
                           if (ec2) {
                             done(absl::UnavailableError(absl::StrCat("read: ", ec2.message())),
                                  parsed);
                             return;
                           }
                           done(absl::OkStatus(), parsed);
                         });
      });
}

}  // namespace

class TcpRuntime::Impl {
 public:
  // One TCP connection, in either direction. Handlers hold a shared_ptr so
  // the object outlives every pending operation on it.
  struct Conn {
    explicit Conn(asio::io_context& io) : socket(io), timer(io) {}
    tcp::socket socket;
    asio::steady_timer timer;  // connect / handshake deadline
    FrameBuffers in;  // handshake frames
    // Data frames (inbound connections): bytes [data_begin, data_end) of
    // `data` are received and not yet delivered.
    std::string data;
    size_t data_begin = 0, data_end = 0;
    std::string out;  // a handshake frame being written
    std::string my_nonce;
    NodeId peer = kNoNode;
    bool closed = false;
    void Close() {
      if (closed) return;
      closed = true;
      asio::error_code ignored;
      socket.shutdown(tcp::socket::shutdown_both, ignored);
      socket.close(ignored);
      timer.cancel();
    }
  };

  // The outbound side towards one peer. Shared with the handlers of its
  // pending operations, so that RemovePeer can forget it while they finish.
  struct Peer : std::enable_shared_from_this<Peer> {
    explicit Peer(asio::io_context& io) : redial_timer(io) {}
    NodeId id = kNoNode;
    bool removed = false;  // by RemovePeer: never dialled again
    Endpoint endpoint;
    std::shared_ptr<Conn> conn;  // dialling, handshaking or ready
    bool ready = false;
    bool writing = false;
    bool flush_posted = false;  // a WriteBatch is posted to the loop
    std::deque<std::string> queue;
    size_t queue_bytes = 0;  // queued + being written
    // The frames being written, copied into one buffer: one send for many
    // small messages.
    std::string batch;
    size_t batch_messages = 0;
    size_t batch_payload_bytes = 0;
    absl::Duration backoff;
    asio::steady_timer redial_timer;
  };

  using Clock = std::chrono::steady_clock;
  // A pending timer's place in the deadline heap. Cancel() only forgets the
  // callback; its entry is skipped when it reaches the top (or dropped when
  // the heap is compacted), so cancelling costs no heap surgery.
  struct Deadline {
    Clock::time_point when;
    TimerId id;  // ties fire in the order they were scheduled
    bool operator>(const Deadline& o) const { return std::tie(when, id) > std::tie(o.when, o.id); }
  };

  Impl(TcpRuntime* owner, const TcpRuntimeOptions& options)
      : owner_(owner), options_(options), acceptor_(io_), wakeup_(io_) {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    rng_.seed(seq);
  }

  ~Impl() {
    asio::error_code ignored;
    acceptor_.close(ignored);
    for (auto& [id, peer] : peers_) {
      peer->removed = true;
      if (peer->conn) peer->conn->Close();
      peer->redial_timer.cancel();
    }
    for (const auto& conn : inbound_) conn->Close();
    inbound_.clear();
    timer_callbacks_.clear();
    deferred_.clear();
    peers_.clear();
  }

  absl::Status Init() {
    asio::error_code ec;
    asio::ip::address address = asio::ip::make_address(options_.listen.host, ec);
    if (ec) {
      return absl::InvalidArgumentError(absl::StrCat("listen address '", options_.listen.host,
                                                     "' is not a numeric IP address"));
    }
    tcp::endpoint ep(address, options_.listen.port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", options_.listen.ToString(), ": ", ec.message()));
    }
    Accept();
    for (const auto& [id, endpoint] : options_.peers) {
      DYNAMO_RETURN_IF_ERROR(AddPeer(id, endpoint));
    }
    return absl::OkStatus();
  }

  // ---------------------------------------------------------------- timers

  // Every node timer (one or two per request in flight) lives in one heap
  // ordered by deadline, and a single asio timer is armed for the earliest:
  // a steady_timer per request cost an allocation, an epoll/timerfd update
  // on arming and again on cancelling, per request.
  TimerId Schedule(absl::Duration delay, absl::AnyInvocable<void()> callback) {
    TimerId id = ++timer_counter_;
    if (timer_callbacks_.size() >= options_.timers_max) {
      // Never expected with sane limits; a dropped timer is visible.
      metrics_.timers_refused++;
      return id;
    }
    Clock::time_point now = Clock::now();
    std::chrono::nanoseconds wait = ToChrono(delay);  // absl::InfiniteDuration: the far future
    Clock::time_point when = wait < Clock::time_point::max() - now ? now + wait : Clock::time_point::max();
    timer_callbacks_.emplace(id, std::move(callback));
    deadlines_.push_back(Deadline{when, id});
    std::push_heap(deadlines_.begin(), deadlines_.end(), std::greater<>());
    CompactDeadlines();
    ArmWakeup();
    return id;
  }

  // A deferred call is a timer without a deadline (its callback kept with
  // the timers', so Cancel works alike). It runs when the runtime's handler
  // that made it returns: the delivery of a read's frames, a pass over due
  // timers, a posted function. One made from another handler on the loop (a
  // RESP command) gets a posted drain: posting one per turn cost the
  // unpipelined cluster's replicas a scheduler round trip per request.
  TimerId Defer(absl::AnyInvocable<void()> callback) {
    TimerId id = ++timer_counter_;
    if (timer_callbacks_.size() >= options_.timers_max) {
      metrics_.timers_refused++;
      return id;
    }
    timer_callbacks_.emplace(id, std::move(callback));
    deferred_.push_back(id);
    if (handler_depth_ == 0 && !drain_posted_) {
      drain_posted_ = true;
      asio::post(io_, [this] {
        drain_posted_ = false;
        RunDeferred();
      });
    }
    return id;
  }

  // Runs `handler` (node code) and then what it deferred.
  template <typename F>
  void RunHandler(F&& handler) {
    ++handler_depth_;
    handler();
    --handler_depth_;
    RunDeferred();
  }

  void RunDeferred() {
    ++handler_depth_;  // what these defer joins this loop
    for (size_t i = 0; i < deferred_.size(); ++i) {
      auto it = timer_callbacks_.find(deferred_[i]);
      if (it == timer_callbacks_.end()) continue;  // cancelled
      absl::AnyInvocable<void()> callback = std::move(it->second);
      timer_callbacks_.erase(it);
      callback();
    }
    deferred_.clear();
    --handler_depth_;
  }

  void Cancel(TimerId id) {
    if (id == kNoTimer) return;
    timer_callbacks_.erase(id);
  }

  // Cancelled timers leave their entries in the heap; rebuild it when they
  // outnumber the live ones, so it stays within 2 * timers_max + slack.
  void CompactDeadlines() {
    if (deadlines_.size() <= 2 * timer_callbacks_.size() + 1024) return;
    std::erase_if(deadlines_, [this](const Deadline& d) { return !timer_callbacks_.contains(d.id); });
    std::make_heap(deadlines_.begin(), deadlines_.end(), std::greater<>());
  }

  // Arms the asio timer for the earliest live deadline, unless it already
  // wakes up no later than that.
  void ArmWakeup() {
    while (!deadlines_.empty() && !timer_callbacks_.contains(deadlines_.front().id)) {
      std::pop_heap(deadlines_.begin(), deadlines_.end(), std::greater<>());
      deadlines_.pop_back();
    }
    if (deadlines_.empty()) return;
    Clock::time_point when = deadlines_.front().when;
    if (wakeup_armed_ && wakeup_at_ <= when) return;
    wakeup_armed_ = true;
    wakeup_at_ = when;
    wakeup_.expires_at(when);  // cancels a later wait, whose handler then ignores it
    wakeup_.async_wait([this, when](const asio::error_code& e) {
      if (e || !wakeup_armed_ || wakeup_at_ != when) return;  // replaced by an earlier one
      wakeup_armed_ = false;
      RunHandler([this] { RunDueTimers(); });
    });
  }

  // Runs the timers whose deadline has passed, in deadline order. A
  // callback may schedule or cancel timers; one scheduled with no delay
  // runs in this same pass only if it is due, never in an endless loop,
  // because each pass takes `now` once.
  void RunDueTimers() {
    Clock::time_point now = Clock::now();
    while (!deadlines_.empty() && deadlines_.front().when <= now) {
      TimerId id = deadlines_.front().id;
      std::pop_heap(deadlines_.begin(), deadlines_.end(), std::greater<>());
      deadlines_.pop_back();
      auto it = timer_callbacks_.find(id);
      if (it == timer_callbacks_.end()) continue;  // cancelled
      absl::AnyInvocable<void()> callback = std::move(it->second);
      timer_callbacks_.erase(it);
      callback();
    }
    ArmWakeup();
  }

  // ---------------------------------------------------------------- outbound

  absl::Status Send(NodeId to, std::string message) {
    if (message.size() > options_.frame_bytes_max) {
      return absl::InvalidArgumentError(absl::StrCat("message of ", message.size(),
                                                     " bytes exceeds frame_bytes_max ",
                                                     options_.frame_bytes_max));
    }
    auto it = peers_.find(to);
    if (it == peers_.end()) {
      return absl::NotFoundError(absl::StrCat("node ", to, " is not a known peer of node ",
                                              options_.self));
    }
    Peer& peer = *it->second;
    if (peer.queue.size() + peer.batch_messages >= options_.peer_queue_messages_max ||
        peer.queue_bytes + message.size() > options_.peer_queue_bytes_max) {
      metrics_.dropped_queue_full++;
      return absl::ResourceExhaustedError(
          absl::StrCat("outgoing queue to node ", to, " is full (", peer.queue.size(),
                       " messages, ", peer.queue_bytes, " bytes)"));
    }
    peer.queue_bytes += message.size();
    peer.queue.push_back(std::move(message));
    if (peer.ready && !peer.writing && !peer.flush_posted) {
      // Written once the handlers already due have run, so that the
      // messages they send to this peer share one gather write (one
      // syscall) instead of going out one by one.
      peer.flush_posted = true;
      std::shared_ptr<Peer> p = peer.shared_from_this();
      asio::post(io_, [this, p] {
        p->flush_posted = false;
        if (p->ready && !p->writing && !p->queue.empty()) WriteBatch(*p);
      });
    }
    return absl::OkStatus();
  }

  void Dial(Peer& peer) {
    if (peer.removed) return;
    auto conn = std::make_shared<Conn>(io_);
    peer.conn = conn;
    peer.ready = false;
    asio::error_code ec;
    asio::ip::address address = asio::ip::make_address(peer.endpoint.host, ec);
    if (ec) {
      // Names are resolved synchronously here: a config error, retried with
      // backoff like an unreachable peer.
      tcp::resolver resolver(io_);
      auto results = resolver.resolve(peer.endpoint.host, std::to_string(peer.endpoint.port), ec);
      if (ec || results.empty()) {
        PeerFailed(peer, conn);
        return;
      }
      address = results.begin()->endpoint().address();
    }
    tcp::endpoint ep(address, peer.endpoint.port);
    conn->timer.expires_after(ToChrono(options_.connect_timeout + options_.handshake_timeout));
    conn->timer.async_wait([conn](const asio::error_code& e) {
      if (!e) conn->Close();  // deadline: the pending operation fails
    });
    std::shared_ptr<Peer> p = peer.shared_from_this();
    conn->socket.async_connect(ep, [this, p, conn](const asio::error_code& e) {
      if (e || conn->closed) {
        PeerFailed(*p, conn);
        return;
      }
      asio::error_code ignored;
      conn->socket.set_option(tcp::no_delay(true), ignored);
      ReadFrame(conn->socket, conn->in, internal::kHandshakeFrameBytesMax,
                [this, p, conn](absl::Status s, internal::ParsedHeader h) {
                  if (s.ok() && h.type != FrameType::kChallenge) {
                    s = absl::InvalidArgumentError("expected a challenge frame");
                  }
                  absl::StatusOr<internal::Challenge> c =
                      s.ok() ? internal::DecodeChallenge(conn->in.payload)
                             : absl::StatusOr<internal::Challenge>(s);
                  if (c.ok() && (c->cluster != options_.cluster_name || c->node != p->id)) {
                    c = absl::PermissionDeniedError("peer is of another cluster or node id");
                  }
                  if (!c.ok()) {
                    if (!conn->closed) metrics_.handshakes_failed++;
                    PeerFailed(*p, conn);
                    return;
                  }
                  OnChallenge(*p, conn, *c);
                });
    });
  }

  void OnChallenge(Peer& peer, const std::shared_ptr<Conn>& conn, const internal::Challenge& c) {
    conn->my_nonce = internal::RandomNonce();
    internal::Hello hello;
    hello.cluster = options_.cluster_name;
    hello.node = options_.self;
    hello.nonce = conn->my_nonce;
    hello.mac = internal::HandshakeMac(options_.cluster_secret, 'C', options_.cluster_name, peer.id,
                                       options_.self, c.nonce, conn->my_nonce);
    std::string acceptor_nonce = c.nonce;
    conn->out = internal::EncodeFrame(FrameType::kHello, internal::EncodeHello(hello));
    std::shared_ptr<Peer> p = peer.shared_from_this();
    asio::async_write(conn->socket, asio::buffer(conn->out), [this, p, conn, acceptor_nonce](
                                                                 const asio::error_code& e, size_t) {
      if (e) {
        PeerFailed(*p, conn);
        return;
      }
      ReadFrame(conn->socket, conn->in, internal::kHandshakeFrameBytesMax,
                [this, p, conn, acceptor_nonce](absl::Status s, internal::ParsedHeader h) {
                  if (s.ok() && h.type != FrameType::kWelcome) {
                    s = absl::InvalidArgumentError("expected a welcome frame");
                  }
                  if (s.ok()) {
                    std::string expected = internal::HandshakeMac(
                        options_.cluster_secret, 'S', options_.cluster_name, p->id, options_.self,
                        acceptor_nonce, conn->my_nonce);
                    if (!internal::MacEqual(expected, conn->in.payload)) {
                      s = absl::PermissionDeniedError("peer failed to prove the cluster secret");
                    }
                  }
                  if (!s.ok()) {
                    if (!conn->closed) metrics_.handshakes_failed++;
                    PeerFailed(*p, conn);
                    return;
                  }
                  if (p->conn != conn) return;  // the peer was removed meanwhile
                  conn->timer.cancel();
                  p->ready = true;
                  p->backoff = options_.reconnect_backoff_min;
                  metrics_.connects_ok++;
                  // Peers never send on our outbound connection; a read that
                  // completes means it closed (or misbehaves).
                  WatchOutbound(*p, conn);
                  if (!p->writing && !p->queue.empty()) WriteBatch(*p);
                });
    });
  }

  void WatchOutbound(Peer& peer, const std::shared_ptr<Conn>& conn) {
    std::shared_ptr<Peer> p = peer.shared_from_this();
    conn->socket.async_read_some(asio::buffer(conn->in.header),
                                 [this, p, conn](const asio::error_code&, size_t) {
                                   PeerFailed(*p, conn);
                                 });
  }

  // Writes the queued messages, as many as fit in write_batch_bytes_max
  // (at least one) and write_batch_messages_max, in one buffer. A node that
  // received a chunk of many messages answers them in one handler, so the
  // writes must drain whole chunks per loop turn or the queue would grow.
  void WriteBatch(Peer& peer) {
    peer.writing = true;
    peer.batch.clear();
    peer.batch_messages = 0;
    peer.batch_payload_bytes = 0;
    while (!peer.queue.empty() && peer.batch_messages < options_.write_batch_messages_max) {
      const std::string& m = peer.queue.front();
      if (peer.batch_messages > 0 &&
          peer.batch.size() + internal::kFrameHeaderBytes + m.size() > options_.write_batch_bytes_max) {
        break;
      }
      FrameHeader header = internal::EncodeFrameHeader(FrameType::kData, m.size());
      peer.batch.append(header.data(), header.size());
      peer.batch.append(m);
      peer.batch_messages++;
      peer.batch_payload_bytes += m.size();
      peer.queue.pop_front();
    }
    std::shared_ptr<Peer> p = peer.shared_from_this();
    std::shared_ptr<Conn> conn = peer.conn;
    asio::async_write(conn->socket, asio::buffer(peer.batch),
                      [this, p, conn](const asio::error_code& e, size_t n) {
                        if (p->conn != conn) return;  // a failure already reset the peer
                        p->writing = false;
                        if (e) {
                          PeerFailed(*p, conn);
                          return;
                        }
                        metrics_.messages_sent += p->batch_messages;
                        metrics_.bytes_sent += n;
                        p->queue_bytes -= p->batch_payload_bytes;
                        p->batch_messages = 0;
                        p->batch_payload_bytes = 0;
                        // Keep a big batch's buffer from lingering.
                        if (p->batch.capacity() > 2 * options_.write_batch_bytes_max) {
                          std::string().swap(p->batch);
                        }
                        if (!p->queue.empty()) WriteBatch(*p);
                      });
  }

  // The connection `conn` to `peer` failed (or the dial did). Drops what was
  // queued and redials after a backoff. Stale calls (from an older
  // connection) are ignored.
  void PeerFailed(Peer& peer, const std::shared_ptr<Conn>& conn) {
    if (peer.conn != conn) return;
    if (!peer.ready) metrics_.connects_failed++;
    Disconnect(peer);
    if (stopping_ || peer.removed) return;
    ScheduleRedial(peer);
  }

  // Closes the peer's connection and drops (counting them) the messages
  // queued for it.
  void Disconnect(Peer& peer) {
    peer.conn->Close();
    peer.conn.reset();
    peer.ready = false;
    peer.writing = false;
    metrics_.dropped_disconnected += peer.queue.size() + peer.batch_messages;
    peer.queue.clear();
    peer.batch.clear();
    peer.batch_messages = 0;
    peer.batch_payload_bytes = 0;
    peer.queue_bytes = 0;
  }

  void RemovePeer(NodeId id) {
    auto it = peers_.find(id);
    if (it == peers_.end()) return;
    Peer& peer = *it->second;
    peer.removed = true;
    if (peer.conn) Disconnect(peer);
    peer.redial_timer.cancel();
    // Handlers still pending hold the peer; they see it removed (or its
    // connection gone) and stop.
    peers_.erase(it);
  }

  // Dials `peer` again after its current backoff, which then doubles.
  // Re-arming replaces a redial already pending.
  void ScheduleRedial(Peer& peer) {
    peer.redial_timer.expires_after(ToChrono(peer.backoff));
    peer.backoff = std::min(peer.backoff * 2, options_.reconnect_backoff_max);
    std::shared_ptr<Peer> p = peer.shared_from_this();
    peer.redial_timer.async_wait([this, p](const asio::error_code& e) {
      if (e || p->removed) return;
      Dial(*p);
    });
  }

  absl::Status AddPeer(NodeId id, const Endpoint& endpoint) {
    if (id == kNoNode) return absl::InvalidArgumentError("peer with node id 0");
    if (id == options_.self) return absl::OkStatus();
    if (auto it = peers_.find(id); it != peers_.end()) {
      Peer& peer = *it->second;
      if (peer.endpoint.host == endpoint.host && peer.endpoint.port == endpoint.port) {
        return absl::OkStatus();
      }
      // The peer moved (restarted elsewhere): what was queued for the old
      // address is dropped like on any failed connection, and the new one
      // is dialled after the shortest backoff.
      peer.endpoint = endpoint;
      peer.backoff = options_.reconnect_backoff_min;
      if (peer.conn) {
        PeerFailed(peer, peer.conn);
      } else if (!stopping_) {
        ScheduleRedial(peer);
      }
      return absl::OkStatus();
    }
    if (peers_.size() >= options_.peers_max) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "node ", options_.self, " already knows peers_max=", options_.peers_max, " peers"));
    }
    auto peer = std::make_shared<Peer>(io_);
    peer->id = id;
    peer->endpoint = endpoint;
    peer->backoff = options_.reconnect_backoff_min;
    Peer& added = *peer;
    peers_.emplace(id, std::move(peer));
    Dial(added);
    return absl::OkStatus();
  }

  // ---------------------------------------------------------------- inbound

  void Accept() {
    acceptor_.async_accept([this](const asio::error_code& e, tcp::socket socket) {
      if (e == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (!e) {
        if (inbound_.size() >= options_.inbound_connections_max) {
          metrics_.inbound_refused_limit++;
          asio::error_code ignored;
          socket.close(ignored);
        } else {
          metrics_.inbound_accepted++;
          auto conn = std::make_shared<Conn>(io_);
          conn->socket = std::move(socket);
          inbound_.insert(conn);
          StartInbound(conn);
        }
      }
      Accept();
    });
  }

  void CloseInbound(const std::shared_ptr<Conn>& conn) {
    conn->Close();
    inbound_.erase(conn);
  }

  void StartInbound(const std::shared_ptr<Conn>& conn) {
    asio::error_code ignored;
    conn->socket.set_option(tcp::no_delay(true), ignored);
    conn->timer.expires_after(ToChrono(options_.handshake_timeout));
    conn->timer.async_wait([this, conn](const asio::error_code& e) {
      if (e) return;
      metrics_.handshakes_failed++;
      CloseInbound(conn);
    });
    conn->my_nonce = internal::RandomNonce();
    internal::Challenge c{options_.cluster_name, options_.self, conn->my_nonce};
    conn->out = internal::EncodeFrame(FrameType::kChallenge, internal::EncodeChallenge(c));
    asio::async_write(conn->socket, asio::buffer(conn->out),
                      [this, conn](const asio::error_code& e, size_t) {
                        if (e) {
                          CloseInbound(conn);
                          return;
                        }
                        ReadFrame(conn->socket, conn->in, internal::kHandshakeFrameBytesMax,
                                  [this, conn](absl::Status s, internal::ParsedHeader h) {
                                    OnHello(conn, std::move(s), h);
                                  });
                      });
  }

  void OnHello(const std::shared_ptr<Conn>& conn, absl::Status s, internal::ParsedHeader h) {
    if (conn->closed) return;
    if (s.ok() && h.type != FrameType::kHello) {
      s = absl::InvalidArgumentError("expected a hello frame");
    }
    absl::StatusOr<internal::Hello> hello =
        s.ok() ? internal::DecodeHello(conn->in.payload) : absl::StatusOr<internal::Hello>(s);
    if (hello.ok()) {
      std::string expected =
          internal::HandshakeMac(options_.cluster_secret, 'C', options_.cluster_name,
                                 options_.self, hello->node, conn->my_nonce, hello->nonce);
      // Any node id proven by the secret is accepted, known or not: a node
      // joining the cluster dials its seed before anyone knows its address.
      if (hello->cluster != options_.cluster_name || hello->node == kNoNode ||
          hello->node == options_.self || !internal::MacEqual(expected, hello->mac)) {
        hello = absl::PermissionDeniedError("hello: wrong cluster, bad node id or bad mac");
      }
    }
    if (!hello.ok()) {
      if (absl::IsInvalidArgument(hello.status())) metrics_.frames_malformed++;
      metrics_.handshakes_failed++;
      CloseInbound(conn);
      return;
    }
    conn->peer = hello->node;
    conn->out = internal::EncodeFrame(
        FrameType::kWelcome,
        internal::HandshakeMac(options_.cluster_secret, 'S', options_.cluster_name, options_.self,
                               hello->node, conn->my_nonce, hello->nonce));
    asio::async_write(conn->socket, asio::buffer(conn->out),
                      [this, conn](const asio::error_code& e, size_t) {
                        if (e) {
                          CloseInbound(conn);
                          return;
                        }
                        conn->timer.cancel();
                        ReadData(conn);
                      });
  }

  // Data frames are read in chunks of whatever the socket has, and every
  // complete frame in the buffer is delivered before the next read: one
  // syscall for many messages under load, instead of two per message. The
  // buffer holds at most one partial frame (<= frame_bytes_max) plus a chunk.
  void ReadData(const std::shared_ptr<Conn>& conn) {
    std::string& buf = conn->data;
    if (conn->data_begin > 0) {  // keep the partial frame at the front
      buf.erase(0, conn->data_begin);
      conn->data_end -= conn->data_begin;
      conn->data_begin = 0;
    }
    if (buf.size() < conn->data_end + kReadChunkBytes) buf.resize(conn->data_end + kReadChunkBytes);
    conn->socket.async_read_some(
        asio::buffer(buf.data() + conn->data_end, buf.size() - conn->data_end),
        [this, conn](const asio::error_code& e, size_t n) {
          if (conn->closed) return;
          if (e) {
            CloseInbound(conn);
            return;
          }
          conn->data_end += n;
          bool open = true;
          RunHandler([&] { open = DeliverFrames(conn); });
          if (!open) return;
          if (conn->data_begin == conn->data_end) {
            conn->data_begin = conn->data_end = 0;
            // Keep a big frame's buffer from lingering on an idle connection.
            if (conn->data.size() > 4 * kReadChunkBytes) std::string().swap(conn->data);
          }
          ReadData(conn);
        });
  }

  // The frame starting at `begin` in conn.data, as far as it has arrived.
  struct FrameAt {
    enum State { kComplete, kPartial, kMalformed } state;
    std::string_view payload;  // when complete
    size_t bytes = 0;          // header included, when complete
  };
  FrameAt NextFrame(const Conn& conn, size_t begin) const {
    if (conn.data_end - begin < internal::kFrameHeaderBytes) return {FrameAt::kPartial, {}, 0};
    FrameHeader header;
    std::copy_n(conn.data.data() + begin, header.size(), header.data());
    absl::StatusOr<internal::ParsedHeader> h =
        internal::ParseFrameHeader(header, options_.frame_bytes_max);
    if (!h.ok() || h->type != FrameType::kData) return {FrameAt::kMalformed, {}, 0};
    const size_t frame_bytes = internal::kFrameHeaderBytes + h->payload_bytes;
    if (conn.data_end - begin < frame_bytes) return {FrameAt::kPartial, {}, 0};
    return {FrameAt::kComplete,
            std::string_view(conn.data.data() + begin + internal::kFrameHeaderBytes,
                             h->payload_bytes),
            frame_bytes};
  }

  // Shows the lookahead handler the next complete frames in conn->data (at
  // most kLookaheadFramesMax, up to the first that is malformed) when there
  // are two or more. Returns how many it found.
  size_t Lookahead(const Conn& conn) {
    if (!lookahead_handler_) return 0;
    lookahead_.clear();
    for (size_t begin = conn.data_begin; lookahead_.size() < kLookaheadFramesMax;) {
      FrameAt frame = NextFrame(conn, begin);
      if (frame.state != FrameAt::kComplete) break;
      lookahead_.push_back(frame.payload);
      begin += frame.bytes;
    }
    if (lookahead_.size() >= 2) {
      metrics_.messages_looked_ahead += lookahead_.size();
      LookaheadHandler handler = lookahead_handler_;  // a copy, as in DeliverFrames
      handler(conn.peer, lookahead_);
    }
    return lookahead_.size();
  }

  // Hands every complete frame in conn->data to the receive handler. False
  // when the connection was closed (a malformed frame).
  bool DeliverFrames(const std::shared_ptr<Conn>& conn) {
    size_t looked_ahead = 0;  // frames the last lookahead showed, not yet delivered
    for (;;) {
      FrameAt frame = NextFrame(*conn, conn->data_begin);
      if (frame.state == FrameAt::kPartial) break;
      if (frame.state == FrameAt::kMalformed) {
        metrics_.frames_malformed++;
        CloseInbound(conn);
        return false;
      }
      if (looked_ahead == 0) looked_ahead = std::max<size_t>(Lookahead(*conn), 1);
      --looked_ahead;
      const std::string_view payload = frame.payload;
      conn->data_begin += frame.bytes;
      metrics_.messages_received++;
      metrics_.bytes_received += frame.bytes;
      if (handler_) {
        // A copy: the handler may replace itself (a node being destroyed)
        // while it runs. It only reads `payload`, which stays valid: nothing
        // reads into this buffer until the loop below is done.
        ReceiveHandler handler = handler_;
        handler(conn->peer, payload);
      } else {
        metrics_.dropped_no_handler++;
      }
      if (conn->closed) return false;
    }
    return true;
  }

  TcpRuntime* owner_;
  const TcpRuntimeOptions& options_;
  asio::io_context io_;  // first: destroyed last, after everything using it
  tcp::acceptor acceptor_;
  std::mt19937_64 rng_;
  // Pending timers: callbacks by id, and the min-heap of their deadlines
  // (with entries of cancelled ones until they surface).
  absl::flat_hash_map<TimerId, absl::AnyInvocable<void()>> timer_callbacks_;
  std::vector<Deadline> deadlines_;
  asio::steady_timer wakeup_;  // armed for deadlines_.front() when wakeup_armed_
  Clock::time_point wakeup_at_;
  bool wakeup_armed_ = false;
  TimerId timer_counter_ = 0;
  std::vector<TimerId> deferred_;  // Defer's calls, in order (see Defer)
  int handler_depth_ = 0;          // > 0 while node code runs under RunHandler
  bool drain_posted_ = false;
  std::map<NodeId, std::shared_ptr<Peer>> peers_;
  std::set<std::shared_ptr<Conn>> inbound_;
  ReceiveHandler handler_;
  LookaheadHandler lookahead_handler_;
  std::vector<std::string_view> lookahead_;  // Lookahead's frames, views into one Conn's data
  TcpTransportMetrics metrics_;
  bool stopping_ = false;
};

TcpRuntime::TcpRuntime(TcpRuntimeOptions options) : options_(std::move(options)) {}

TcpRuntime::~TcpRuntime() { impl_.reset(); }

absl::StatusOr<std::unique_ptr<TcpRuntime>> TcpRuntime::Create(TcpRuntimeOptions options) {
  if (options.self == kNoNode) return absl::InvalidArgumentError("tcp runtime: self id is 0");
  if (options.cluster_secret.empty()) {
    return absl::InvalidArgumentError("tcp runtime: cluster_secret is empty");
  }
  if (options.cluster_name.size() > internal::kClusterNameBytesMax) {
    return absl::InvalidArgumentError("tcp runtime: cluster_name too long");
  }
  if (options.frame_bytes_max == 0 || options.frame_bytes_max > (size_t{1} << 31)) {
    return absl::InvalidArgumentError("tcp runtime: frame_bytes_max must be in [1, 2^31]");
  }
  if (options.peer_queue_messages_max == 0 || options.write_batch_messages_max == 0 ||
      options.write_batch_bytes_max == 0) {
    return absl::InvalidArgumentError("tcp runtime: queue limits must be positive");
  }
  std::unique_ptr<TcpRuntime> runtime(new TcpRuntime(std::move(options)));
  try {
    runtime->impl_ = std::make_unique<Impl>(runtime.get(), runtime->options_);
    absl::Status s = runtime->impl_->Init();
    if (!s.ok()) return s;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("tcp runtime: ", e.what()));
  }
  return runtime;
}

absl::Status TcpRuntime::Run() {
  try {
    impl_->stopping_ = false;
    impl_->io_.restart();
    auto guard = asio::make_work_guard(impl_->io_);
    impl_->io_.run();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("tcp runtime event loop: ", e.what()));
  }
  return absl::OkStatus();
}

void TcpRuntime::Stop() { impl_->io_.stop(); }

void TcpRuntime::Post(absl::AnyInvocable<void()> fn) {
  asio::post(impl_->io_, [impl = impl_.get(), fn = std::move(fn)]() mutable {
    impl->RunHandler([&] { fn(); });
  });
}

Executor TcpRuntime::executor() {
  return [this](absl::AnyInvocable<void()> fn) { Post(std::move(fn)); };
}

asio::io_context& TcpRuntime::io_context() { return impl_->io_; }

uint16_t TcpRuntime::peer_port() const {
  asio::error_code ec;
  tcp::endpoint ep = impl_->acceptor_.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

absl::Duration TcpRuntime::Elapsed() {
  // The clock the timers run on, from its own epoch.
  return absl::FromChrono(Impl::Clock::now().time_since_epoch());
}

TimerId TcpRuntime::Schedule(absl::Duration delay, absl::AnyInvocable<void()> callback) {
  return impl_->Schedule(delay, std::move(callback));
}

void TcpRuntime::Cancel(TimerId timer) { impl_->Cancel(timer); }

absl::BitGenRef TcpRuntime::Rng() { return absl::BitGenRef(impl_->rng_); }

absl::Status TcpRuntime::Send(NodeId to, std::string message) {
  return impl_->Send(to, std::move(message));
}

TimerId TcpRuntime::Defer(absl::AnyInvocable<void()> callback) {
  return impl_->Defer(std::move(callback));
}

void TcpRuntime::SetReceiveHandler(ReceiveHandler handler) { impl_->handler_ = std::move(handler); }

void TcpRuntime::SetLookaheadHandler(LookaheadHandler handler) {
  impl_->lookahead_handler_ = std::move(handler);
}

const TcpTransportMetrics& TcpRuntime::metrics() const { return impl_->metrics_; }

absl::Status TcpRuntime::SetPeer(NodeId id, const Endpoint& endpoint) {
  return impl_->AddPeer(id, endpoint);
}

void TcpRuntime::RemovePeer(NodeId id) { impl_->RemovePeer(id); }

size_t TcpRuntime::peer_count() const { return impl_->peers_.size(); }

std::optional<Endpoint> TcpRuntime::PeerAddress(NodeId peer) const {
  auto it = impl_->peers_.find(peer);
  if (it == impl_->peers_.end()) return std::nullopt;
  return it->second->endpoint;
}

bool TcpRuntime::PeerConnected(NodeId peer) const {
  auto it = impl_->peers_.find(peer);
  return it != impl_->peers_.end() && it->second->ready;
}

size_t TcpRuntime::PeerQueueMessages(NodeId peer) const {
  auto it = impl_->peers_.find(peer);
  return it == impl_->peers_.end() ? 0 : it->second->queue.size();
}

}  // namespace dynamo

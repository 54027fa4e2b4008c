// TcpRuntime in one process: two runtimes on their own loop threads over
// loopback, the handshake's refusal of a wrong secret, bounded queues, and
// BlockingNode driving a node on a TCP runtime from another thread.
#include "dynamo/tcp/tcp_runtime.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "dynamo/blocking.h"
#include "dynamo/membership.h"
#include "dynamo/memory_engine.h"
#include "dynamo/node.h"
#include "dynamo/ring.h"
#include "tcp/tcp_membership.h"

namespace dynamo {
namespace {

// A runtime running its loop on a thread for the test's lifetime.
class LoopThread {
 public:
  explicit LoopThread(TcpRuntime* rt) : rt_(rt), thread_([rt] { (void)rt->Run(); }) {}
  ~LoopThread() {
    rt_->Stop();
    thread_.join();
  }
  // Runs `fn` on the loop and waits for its result.
  template <typename F>
  auto Call(F fn) -> decltype(fn()) {
    std::promise<decltype(fn())> p;
    auto f = p.get_future();
    rt_->Post([&] { p.set_value(fn()); });
    REQUIRE(f.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
    return f.get();
  }

 private:
  TcpRuntime* rt_;
  std::thread thread_;
};

// Values recorded on a loop thread and read on the test's.
class Recorder {
 public:
  void Add(int v) {
    std::lock_guard<std::mutex> l(mu_);
    values_.push_back(v);
  }
  std::vector<int> values() {
    std::lock_guard<std::mutex> l(mu_);
    return values_;
  }

 private:
  std::mutex mu_;
  std::vector<int> values_;
};

template <typename Pred>
bool WaitUntil(Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

TcpRuntimeOptions Options(NodeId self, std::string secret) {
  TcpRuntimeOptions o;
  o.self = self;
  o.cluster_secret = std::move(secret);
  o.listen.port = 0;
  return o;
}

// Two runtimes that know each other's addresses. Both bind port 0 (a port
// released and bound again can be taken by another process in between), B
// learns A's port from its options and A learns B's with SetPeer before
// either loop runs.
struct Pair {
  std::unique_ptr<TcpRuntime> a, b;
};

Pair MakePair(std::string secret_a, std::string secret_b) {
  auto a = TcpRuntime::Create(Options(1, std::move(secret_a)));
  REQUIRE(a.ok());
  TcpRuntimeOptions ob = Options(2, std::move(secret_b));
  ob.peers[1] = Endpoint{"127.0.0.1", (*a)->peer_port()};
  auto b = TcpRuntime::Create(ob);
  REQUIRE(b.ok());
  REQUIRE((*a)->SetPeer(2, Endpoint{"127.0.0.1", (*b)->peer_port()}).ok());
  return Pair{std::move(*a), std::move(*b)};
}

TEST_CASE("two TCP runtimes exchange messages in order, both ways") {
  Pair p = MakePair("s", "s");
  std::mutex mu;
  std::vector<std::pair<NodeId, std::string>> got_a, got_b;
  p.a->SetReceiveHandler([&](NodeId from, std::string_view m) {
    std::lock_guard<std::mutex> l(mu);
    got_a.emplace_back(from, std::string(m));
  });
  p.b->SetReceiveHandler([&](NodeId from, std::string_view m) {
    std::lock_guard<std::mutex> l(mu);
    got_b.emplace_back(from, std::string(m));
  });
  LoopThread la(p.a.get()), lb(p.b.get());
  // A failed dial drops what was queued (by design), so wait for both
  // connections: the first dial may have raced the peer's bind.
  REQUIRE(WaitUntil([&] {
    return la.Call([&] { return p.a->PeerConnected(2); }) &&
           lb.Call([&] { return p.b->PeerConnected(1); });
  }));
  la.Call([&] {
    for (int i = 0; i < 500; ++i) REQUIRE(p.a->Send(2, "m" + std::to_string(i)).ok());
    REQUIRE(p.a->Send(2, std::string(200000, 'x')).ok());  // a large one
    REQUIRE(absl::IsNotFound(p.a->Send(9, "who")));
    REQUIRE(absl::IsInvalidArgument(p.a->Send(2, std::string(p.a->message_bytes_max() + 1, 'x'))));
    return 0;
  });
  lb.Call([&] { return p.b->Send(1, "reply").ok(); });
  REQUIRE(WaitUntil([&] {
    std::lock_guard<std::mutex> l(mu);
    return got_b.size() == 501 && got_a.size() == 1;
  }));
  std::lock_guard<std::mutex> l(mu);
  for (int i = 0; i < 500; ++i) {
    REQUIRE(got_b[i].first == 1);
    REQUIRE(got_b[i].second == "m" + std::to_string(i));
  }
  REQUIRE(got_b[500].second.size() == 200000);
  REQUIRE(got_a[0] == std::make_pair(NodeId{2}, std::string("reply")));
}

TEST_CASE("the lookahead handler is shown each run of frames before they are delivered") {
  Pair p = MakePair("s", "s");
  std::mutex mu;
  std::vector<std::string> delivered;
  std::vector<std::vector<std::string>> shown;  // each lookahead's messages
  std::vector<size_t> shown_at;                 // how many were delivered then
  bool shown_from_a = true;
  p.b->SetReceiveHandler([&](NodeId, std::string_view m) {
    std::lock_guard<std::mutex> l(mu);
    delivered.emplace_back(m);
  });
  p.b->SetLookaheadHandler([&](NodeId from, std::span<const std::string_view> messages) {
    std::lock_guard<std::mutex> l(mu);
    shown_from_a = shown_from_a && from == 1;
    shown.emplace_back(messages.begin(), messages.end());
    shown_at.push_back(delivered.size());
  });
  LoopThread la(p.a.get()), lb(p.b.get());
  REQUIRE(WaitUntil([&] { return la.Call([&] { return p.a->PeerConnected(2); }); }));
  constexpr int kMessages = 2000;
  la.Call([&] {  // one loop turn: the frames leave as one buffer
    for (int i = 0; i < kMessages; ++i) REQUIRE(p.a->Send(2, "m" + std::to_string(i)).ok());
    return 0;
  });
  REQUIRE(WaitUntil([&] {
    std::lock_guard<std::mutex> l(mu);
    return delivered.size() == kMessages;
  }));
  std::lock_guard<std::mutex> l(mu);
  for (int i = 0; i < kMessages; ++i) REQUIRE(delivered[i] == "m" + std::to_string(i));
  CHECK(shown_from_a);
  // Each lookahead shows the next 2..32 messages to be delivered, and the
  // next lookahead comes only once they all were.
  REQUIRE_FALSE(shown.empty());
  size_t covered_until = 0, covered = 0;
  for (size_t k = 0; k < shown.size(); ++k) {
    INFO("lookahead " << k << " at " << shown_at[k]);
    CHECK(shown[k].size() >= 2);
    CHECK(shown[k].size() <= 32);
    CHECK(shown_at[k] >= covered_until);
    for (size_t j = 0; j < shown[k].size(); ++j) {
      CHECK(shown[k][j] == "m" + std::to_string(shown_at[k] + j));
    }
    covered_until = shown_at[k] + shown[k].size();
    covered += shown[k].size();
  }
  // Loopback hands the one buffer over in a few reads, so runs are long:
  // all but the frames cut at the reads' edges are shown.
  CHECK(covered >= kMessages / 2);
  CHECK(lb.Call([&] { return p.b->metrics().messages_looked_ahead; }) == covered);
}

TEST_CASE("timers run in order on the loop and cancelled timers never run") {
  auto rt = TcpRuntime::Create(Options(1, "s"));
  REQUIRE(rt.ok());
  std::mutex mu;
  std::vector<int> fired;
  LoopThread loop(rt->get());
  loop.Call([&] {
    (*rt)->Schedule(absl::Milliseconds(30), [&] { std::lock_guard<std::mutex> l(mu); fired.push_back(3); });
    (*rt)->Schedule(absl::Milliseconds(10), [&] { std::lock_guard<std::mutex> l(mu); fired.push_back(2); });
    (*rt)->Schedule(absl::ZeroDuration(), [&] { std::lock_guard<std::mutex> l(mu); fired.push_back(1); });
    TimerId t = (*rt)->Schedule(absl::Milliseconds(5), [&] { std::lock_guard<std::mutex> l(mu); fired.push_back(99); });
    (*rt)->Cancel(t);
    (*rt)->Cancel(t);  // twice: a no-op
    // A sentinel well after the cancelled timer's time: once it ran, the
    // cancelled one would have run too.
    (*rt)->Schedule(absl::Milliseconds(60), [&] { std::lock_guard<std::mutex> l(mu); fired.push_back(4); });
    return 0;
  });
  REQUIRE(WaitUntil([&] { std::lock_guard<std::mutex> l(mu); return fired.size() >= 4; }));
  std::lock_guard<std::mutex> l(mu);
  REQUIRE(fired == std::vector<int>{1, 2, 3, 4});
}

TEST_CASE("Elapsed advances with the timers' clock and never goes back") {
  auto rt = TcpRuntime::Create(Options(1, "s"));
  REQUIRE(rt.ok());
  std::mutex mu;
  absl::Duration armed_at, fired_at;
  bool fired = false;
  LoopThread loop(rt->get());
  loop.Call([&] {
    armed_at = (*rt)->Elapsed();
    (*rt)->Schedule(absl::Milliseconds(20), [&] {
      std::lock_guard<std::mutex> l(mu);
      fired_at = (*rt)->Elapsed();
      fired = true;
    });
    return 0;
  });
  REQUIRE(WaitUntil([&] {
    std::lock_guard<std::mutex> l(mu);
    return fired;
  }));
  {
    std::lock_guard<std::mutex> l(mu);
    CHECK(fired_at - armed_at >= absl::Milliseconds(20));
  }
  int went_back = loop.Call([&] {
    int count = 0;
    absl::Duration previous = (*rt)->Elapsed();
    for (int i = 0; i < 1000; ++i) {
      absl::Duration next = (*rt)->Elapsed();
      if (next < previous) ++count;
      previous = next;
    }
    return count;
  });
  CHECK(went_back == 0);
}

// The runtime keeps every timer in one deadline heap behind a single asio
// timer: a request's timeout is armed and then cancelled almost always.
TEST_CASE("timers: an earlier deadline after later ones wakes the loop early, mass cancels") {
  auto rt = TcpRuntime::Create(Options(1, "s"));
  REQUIRE(rt.ok());
  Recorder fired;
  LoopThread loop(rt->get());
  loop.Call([&] {
    // Armed first: the single asio timer waits for these...
    (*rt)->Schedule(absl::Seconds(30), [&] { fired.Add(-1); });
    (*rt)->Schedule(absl::InfiniteDuration(), [&] { fired.Add(-2); });
    // ...then thousands of request-like timers, nearly all cancelled (more
    // than the heap keeps before it drops cancelled entries).
    std::vector<TimerId> ids;
    for (int i = 0; i < 5000; ++i) {
      ids.push_back((*rt)->Schedule(absl::Milliseconds(5 + i / 100), [&, i] { fired.Add(i); }));
    }
    for (int i = 0; i < 5000; ++i) {
      if (i % 1000 != 999) (*rt)->Cancel(ids[i]);
    }
    // A callback that schedules another timer, which runs after it.
    (*rt)->Schedule(absl::Milliseconds(70), [&] {
      fired.Add(10000);
      (*rt)->Schedule(absl::ZeroDuration(), [&] { fired.Add(10001); });
    });
    return 0;
  });
  // Well before the 30 s timer: the earlier deadlines re-armed the wakeup.
  REQUIRE(WaitUntil([&] { return fired.values().size() >= 7; }));
  REQUIRE(fired.values() == std::vector<int>{999, 1999, 2999, 3999, 4999, 10000, 10001});
}

TEST_CASE("a runtime with the wrong secret is refused both ways") {
  Pair p = MakePair("right", "wrong");
  std::atomic<int> received{0};
  p.a->SetReceiveHandler([&](NodeId, std::string_view) { received++; });
  p.b->SetReceiveHandler([&](NodeId, std::string_view) { received++; });
  LoopThread la(p.a.get()), lb(p.b.get());
  REQUIRE(WaitUntil([&] {
    return la.Call([&] { return p.a->metrics().handshakes_failed; }) > 0 &&
           lb.Call([&] { return p.b->metrics().handshakes_failed; }) > 0;
  }));
  la.Call([&] { return p.a->Send(2, "hello?").ok(); });
  lb.Call([&] { return p.b->Send(1, "let me in").ok(); });
  // Wait for the fate of both messages: dropped when the next dial fails its
  // handshake. Nothing may have been delivered.
  REQUIRE(WaitUntil([&] {
    return la.Call([&] { return p.a->metrics().dropped_disconnected; }) > 0 &&
           lb.Call([&] { return p.b->metrics().dropped_disconnected; }) > 0;
  }));
  REQUIRE(received == 0);
  REQUIRE_FALSE(la.Call([&] { return p.a->PeerConnected(2); }));
  REQUIRE_FALSE(lb.Call([&] { return p.b->PeerConnected(1); }));
}

TEST_CASE("the outgoing queue to an unreachable peer is bounded") {
  TcpRuntimeOptions o = Options(1, "s");
  o.peers[2] = Endpoint{"127.0.0.1", 1};  // nothing listens on port 1
  o.peer_queue_messages_max = 8;
  auto rt = TcpRuntime::Create(o);
  REQUIRE(rt.ok());
  LoopThread loop(rt->get());
  size_t refused = loop.Call([&] {
    size_t n = 0;
    for (int i = 0; i < 100; ++i) n += absl::IsResourceExhausted((*rt)->Send(2, "x")) ? 1 : 0;
    return n;
  });
  REQUIRE(refused >= 92);
  REQUIRE(loop.Call([&] { return (*rt)->PeerQueueMessages(2); }) <= 8);
}

TEST_CASE("Create rejects bad options") {
  REQUIRE(absl::IsInvalidArgument(TcpRuntime::Create(Options(1, "")).status()));
  REQUIRE(absl::IsInvalidArgument(TcpRuntime::Create(Options(0, "s")).status()));
  TcpRuntimeOptions o = Options(1, "s");
  o.listen.host = "not-an-ip";
  REQUIRE_FALSE(TcpRuntime::Create(o).ok());
  REQUIRE(Endpoint::Parse("127.0.0.1:80")->port == 80);
  REQUIRE(Endpoint::Parse("[::1]:80")->host == "::1");
  REQUIRE_FALSE(Endpoint::Parse("nohost").ok());
  REQUIRE_FALSE(Endpoint::Parse("h:99999").ok());
}

TEST_CASE("BlockingNode drives a node on a TCP runtime from another thread") {
  auto rt = TcpRuntime::Create(Options(1, "s"));
  REQUIRE(rt.ok());
  MemoryEngine storage;
  Ring ring{RingOptions()};
  RingMember m;
  m.id = 1;
  REQUIRE(ring.AddNode(m).ok());
  NodeOptions options;
  options.buckets[0].n = options.buckets[0].r = options.buckets[0].w = 1;
  // Created before the loop runs: no other thread touches the runtime yet.
  auto node = Node::Create(options, rt->get(), &storage, ring);
  REQUIRE(node.ok());
  {
    LoopThread loop(rt->get());
    BlockingNode blocking(node->get(), (*rt)->executor(), absl::Seconds(5));
    REQUIRE(blocking.Put("default", "k", Context(), "v1").ok());
    absl::StatusOr<GetResult> r = blocking.Get("default", "k");
    REQUIRE(r.ok());
    REQUIRE(r->values == std::vector<std::string>{"v1"});
    REQUIRE(blocking.Put("default", "k", r->context, "v2").ok());
    r = blocking.Get("default", "k");
    REQUIRE(r->values == std::vector<std::string>{"v2"});
    REQUIRE(blocking.Delete("default", "k", r->context).ok());
    REQUIRE_FALSE(blocking.Get("default", "k")->found());
    REQUIRE_FALSE(blocking.Put("no-such-bucket", "k", Context(), "v").ok());
    uint64_t puts = 0;
    REQUIRE(blocking.RunOnLoop([&](Node& n) { puts = n.metrics().puts_ok; }).ok());
    REQUIRE(puts == 3);  // two puts and a delete
  }
  node->reset();  // the loop has stopped: safe on this thread
}

TEST_CASE("Defer runs after the handler that made it, never inline, unless cancelled") {
  auto rt = TcpRuntime::Create(Options(1, "s"));
  REQUIRE(rt.ok());
  Recorder ran;
  LoopThread loop(rt->get());
  loop.Call([&] {
    CHECK((*rt)->Defer([&] { ran.Add(2); }) != kNoTimer);
    TimerId cancelled = (*rt)->Defer([&] { ran.Add(99); });
    (*rt)->Cancel(cancelled);
    ran.Add(1);  // before either deferred call: they never run inline
    return 0;
  });
  // Posted after the first call returned, so after what it deferred.
  loop.Call([&] {
    ran.Add(3);
    return 0;
  });
  CHECK(ran.values() == std::vector<int>{1, 2, 3});
}

TEST_CASE("a replica answers the puts and gets of one turn in one acks message") {
  // Two nodes, N=W=2: node 1 coordinates 40 puts, then 40 gets, each batch
  // in one turn of its loop; they reach node 2 together, and its answers
  // (all "done": put stored, get found the coordinator's versions) go back
  // gathered, not one message each.
  Pair p = MakePair("s", "s");
  Ring ring{RingOptions()};
  for (NodeId id : {1, 2}) {
    RingMember m;
    m.id = id;
    REQUIRE(ring.AddNode(m).ok());
  }
  NodeOptions options;
  options.buckets[0].n = options.buckets[0].w = 2;
  options.buckets[0].r = 1;
  MemoryEngine storage_a, storage_b;
  auto node_a = Node::Create(options, p.a.get(), &storage_a, ring);
  auto node_b = Node::Create(options, p.b.get(), &storage_b, ring);
  REQUIRE(node_a.ok());
  REQUIRE(node_b.ok());
  constexpr int kKeys = 40;
  {
    LoopThread la(p.a.get()), lb(p.b.get());
    REQUIRE(WaitUntil([&] {
      return la.Call([&] { return p.a->PeerConnected(2); }) &&
             lb.Call([&] { return p.b->PeerConnected(1); });
    }));
    std::atomic<int> puts_ok{0}, gets_ok{0};
    la.Call([&] {
      for (int i = 0; i < kKeys; ++i) {
        (*node_a)->Put("default", "k" + std::to_string(i), Context(), "v",
                       [&](absl::Status s) { puts_ok += s.ok(); });
      }
      return 0;
    });
    REQUIRE(WaitUntil([&] { return puts_ok == kKeys; }));
    la.Call([&] {
      for (int i = 0; i < kKeys; ++i) {
        (*node_a)->Get("default", "k" + std::to_string(i),
                       [&](absl::StatusOr<GetResult> r) { gets_ok += r.ok() && r->found(); });
      }
      return 0;
    });
    REQUIRE(WaitUntil([&] {
      return gets_ok == kKeys &&
             lb.Call([&] { return (*node_b)->metrics().replica_acks == 2 * kKeys; });
    }));
    NodeMetrics b = lb.Call([&] { return (*node_b)->metrics(); });
    CHECK(b.replica_puts == kKeys);
    CHECK(b.replica_gets_same_as_known == kKeys);
    INFO("ack messages " << b.replica_ack_messages);
    CHECK(b.replica_ack_messages >= 2);  // puts and gets were answered in separate turns
    CHECK(b.replica_ack_messages < kKeys);
  }
  node_a->reset();  // the loops have stopped: safe on this thread
  node_b->reset();
}

TEST_CASE("BlockingNode gives up after wait_max when the loop never runs the call") {
  // An executor that drops the work: the caller must not hang.
  std::vector<absl::AnyInvocable<void()>> parked;
  BlockingNode blocking(nullptr, [&](absl::AnyInvocable<void()> fn) { parked.push_back(std::move(fn)); },
                        absl::Milliseconds(50));
  REQUIRE(absl::IsDeadlineExceeded(blocking.Get("default", "k").status()));
  REQUIRE(absl::IsDeadlineExceeded(blocking.Put("default", "k", Context(), "v")));
}

}  // namespace
}  // namespace dynamo

namespace dynamo {
namespace {

TEST_CASE("a runtime learns a peer that dialled it and adds peers with SetPeer") {
  // A knows nobody; B knows A. A accepts B (it proves the secret), and can
  // answer once SetPeer gives it B's address (what the server does with the
  // addresses gossiped in the membership view).
  auto a = TcpRuntime::Create(Options(1, "s"));
  REQUIRE(a.ok());
  TcpRuntimeOptions ob = Options(2, "s");
  ob.peers[1] = Endpoint{"127.0.0.1", (*a)->peer_port()};
  auto b = TcpRuntime::Create(ob);
  REQUIRE(b.ok());
  std::mutex mu;
  std::vector<std::pair<NodeId, std::string>> got_a, got_b;
  (*a)->SetReceiveHandler([&](NodeId from, std::string_view m) {
    std::lock_guard<std::mutex> l(mu);
    got_a.emplace_back(from, std::string(m));
  });
  (*b)->SetReceiveHandler([&](NodeId from, std::string_view m) {
    std::lock_guard<std::mutex> l(mu);
    got_b.emplace_back(from, std::string(m));
  });
  LoopThread la(a->get()), lb(b->get());
  REQUIRE(WaitUntil([&] { return lb.Call([&] { return (*b)->PeerConnected(1); }); }));
  REQUIRE(lb.Call([&] { return (*b)->Send(1, "hello from 2").ok(); }));
  REQUIRE(WaitUntil([&] {
    std::lock_guard<std::mutex> l(mu);
    return got_a.size() == 1;
  }));
  REQUIRE(la.Call([&] { return absl::IsNotFound((*a)->Send(2, "unknown yet")); }));
  REQUIRE(la.Call([&] { return !(*a)->PeerAddress(2).has_value(); }));
  REQUIRE(la.Call([&] {
    return (*a)->SetPeer(2, Endpoint{"127.0.0.1", (*b)->peer_port()}).ok() &&
           (*a)->SetPeer(1, Endpoint{"127.0.0.1", 1}).ok() &&  // self: ignored
           absl::IsInvalidArgument((*a)->SetPeer(0, Endpoint{"127.0.0.1", 1}));
  }));
  REQUIRE(la.Call([&] { return (*a)->PeerAddress(2)->port == (*b)->peer_port(); }));
  REQUIRE(la.Call([&] { return !(*a)->PeerAddress(1).has_value(); }));
  // Queued while the new connection is dialled: it may be dropped if the
  // first dial fails, so send once connected.
  REQUIRE(WaitUntil([&] { return la.Call([&] { return (*a)->PeerConnected(2); }); }));
  REQUIRE(la.Call([&] { return (*a)->Send(2, "hello from 1").ok(); }));
  REQUIRE(WaitUntil([&] {
    std::lock_guard<std::mutex> l(mu);
    return got_b.size() == 1;
  }));
  std::lock_guard<std::mutex> l(mu);
  REQUIRE(got_a[0] == std::make_pair(NodeId{2}, std::string("hello from 2")));
  REQUIRE(got_b[0] == std::make_pair(NodeId{1}, std::string("hello from 1")));
}

TEST_CASE("SetPeer is bounded by peers_max") {
  TcpRuntimeOptions o = Options(1, "s");
  o.peers_max = 2;
  auto rt = TcpRuntime::Create(o);
  REQUIRE(rt.ok());
  // The loop never runs: dials stay pending, which is all this needs.
  REQUIRE((*rt)->SetPeer(2, Endpoint{"127.0.0.1", 9}).ok());
  REQUIRE((*rt)->SetPeer(3, Endpoint{"127.0.0.1", 9}).ok());
  REQUIRE((*rt)->SetPeer(3, Endpoint{"127.0.0.1", 10}).ok());  // a move, not a new peer
  REQUIRE((*rt)->PeerAddress(3)->port == 10);
  REQUIRE(absl::IsResourceExhausted((*rt)->SetPeer(4, Endpoint{"127.0.0.1", 9})));
  REQUIRE(!(*rt)->PeerAddress(4).has_value());
  // A removed peer's place is free again (its dial is still pending).
  (*rt)->RemovePeer(2);
  (*rt)->RemovePeer(99);  // unknown: ignored
  REQUIRE((*rt)->peer_count() == 1);
  REQUIRE(!(*rt)->PeerAddress(2).has_value());
  REQUIRE((*rt)->SetPeer(4, Endpoint{"127.0.0.1", 9}).ok());
  REQUIRE((*rt)->peer_count() == 2);
}

TEST_CASE("member addresses: announced members are dialled, removed ones forgotten") {
  TcpRuntimeOptions o = Options(1, "s");
  o.peers_max = 2;
  auto rt = TcpRuntime::Create(o);
  REQUIRE(rt.ok());
  // Known before: 3 (about to be removed) and 5 (a seed, not a member yet).
  REQUIRE((*rt)->SetPeer(3, Endpoint{"127.0.0.1", 9}).ok());
  REQUIRE((*rt)->SetPeer(5, Endpoint{"127.0.0.1", 9}).ok());
  Membership view;
  auto member = [](NodeId id, MemberStatus status, std::string address) {
    MemberEntry e;
    e.id = id;
    e.status = status;
    e.address = std::move(address);
    e.version = 1;
    return e;
  };
  view.Merge(member(1, MemberStatus::kUp, "127.0.0.1:7001"));  // self
  view.Merge(member(2, MemberStatus::kUp, "127.0.0.1:7002"));
  view.Merge(member(3, MemberStatus::kRemoved, "127.0.0.1:7003"));
  view.Merge(member(4, MemberStatus::kJoining, ""));  // no address announced yet
  // The table is full (peers_max = 2) until 3 goes: removals come first.
  REQUIRE(internal::ApplyMemberAddresses(view, **rt).ok());
  REQUIRE((*rt)->PeerAddress(2)->port == 7002);
  REQUIRE(!(*rt)->PeerAddress(3).has_value());
  REQUIRE(!(*rt)->PeerAddress(4).has_value());
  REQUIRE((*rt)->PeerAddress(5).has_value());
  REQUIRE((*rt)->peer_count() == 2);
  view.Merge(member(4, MemberStatus::kUp, "127.0.0.1:7004"));
  REQUIRE(absl::IsResourceExhausted(internal::ApplyMemberAddresses(view, **rt)));
}

TEST_CASE("a removed peer is not redialled") {
  TcpRuntimeOptions o = Options(1, "s");
  o.reconnect_backoff_min = absl::Milliseconds(2);
  o.reconnect_backoff_max = absl::Milliseconds(10);
  auto rt = TcpRuntime::Create(o);
  REQUIRE(rt.ok());
  LoopThread loop(rt->get());
  // Port 1 on loopback refuses at once: the peer is redialled after each
  // failure, and the queue of the failed dial is dropped and counted.
  REQUIRE(loop.Call([&] {
    return (*rt)->SetPeer(2, Endpoint{"127.0.0.1", 1}).ok() && (*rt)->Send(2, "lost").ok();
  }));
  REQUIRE(
      WaitUntil([&] { return loop.Call([&] { return (*rt)->metrics().connects_failed >= 3; }); }));
  uint64_t failed = loop.Call([&] {
    (*rt)->RemovePeer(2);
    return (*rt)->metrics().connects_failed;
  });
  REQUIRE(loop.Call([&] { return absl::IsNotFound((*rt)->Send(2, "after")); }));
  // A timer of twenty times the longest backoff on the same loop: once it
  // has run, so would a redial have, and its refused dial been counted.
  std::atomic<bool> later{false};
  loop.Call([&] { return (*rt)->Schedule(absl::Milliseconds(200), [&] { later = true; }); });
  REQUIRE(WaitUntil([&] { return later.load(); }));
  REQUIRE(loop.Call([&] { return (*rt)->metrics().connects_failed; }) == failed);
  REQUIRE(loop.Call([&] { return (*rt)->metrics().dropped_disconnected; }) >= 1);
}

TEST_CASE("a peer removed while connected can be added again") {
  Pair p = MakePair("s", "s");
  std::mutex mu;
  std::vector<std::string> got_a, got_b;
  p.a->SetReceiveHandler([&](NodeId, std::string_view m) {
    std::lock_guard<std::mutex> l(mu);
    got_a.emplace_back(m);
  });
  p.b->SetReceiveHandler([&](NodeId, std::string_view m) {
    std::lock_guard<std::mutex> l(mu);
    got_b.emplace_back(m);
  });
  LoopThread la(p.a.get()), lb(p.b.get());
  REQUIRE(WaitUntil([&] {
    return la.Call([&] { return p.a->PeerConnected(2); }) &&
           lb.Call([&] { return p.b->PeerConnected(1); });
  }));
  // Removed with messages queued behind the connection: they are dropped
  // and counted, never delivered to a half-forgotten peer.
  uint64_t dropped = la.Call([&] {
    uint64_t before = p.a->metrics().dropped_disconnected;
    for (int i = 0; i < 50; ++i) REQUIRE(p.a->Send(2, "queued").ok());
    p.a->RemovePeer(2);
    return p.a->metrics().dropped_disconnected - before;
  });
  REQUIRE(dropped == 50);
  REQUIRE(la.Call([&] { return !p.a->PeerConnected(2) && p.a->peer_count() == 0; }));
  REQUIRE(la.Call([&] { return absl::IsNotFound(p.a->Send(2, "gone")); }));
  // B still reaches A: removal is of A's outbound side only.
  REQUIRE(lb.Call([&] { return p.b->Send(1, "from b").ok(); }));
  REQUIRE(WaitUntil([&] {
    std::lock_guard<std::mutex> l(mu);
    return got_a.size() == 1;
  }));
  REQUIRE(la.Call([&] { return p.a->SetPeer(2, Endpoint{"127.0.0.1", p.b->peer_port()}).ok(); }));
  REQUIRE(WaitUntil([&] { return la.Call([&] { return p.a->PeerConnected(2); }); }));
  REQUIRE(la.Call([&] { return p.a->Send(2, "again").ok(); }));
  REQUIRE(WaitUntil([&] {
    std::lock_guard<std::mutex> l(mu);
    return got_b.size() == 1;
  }));
  std::lock_guard<std::mutex> l(mu);
  REQUIRE(got_b[0] == "again");
  REQUIRE(got_a[0] == "from b");
}

}  // namespace
}  // namespace dynamo

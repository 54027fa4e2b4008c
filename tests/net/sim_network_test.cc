// Tests for SimNetwork: a small ping/ack protocol with retries, written over
// the wire codec, runs under loss, duplication, reordering, partitions and
// crashes; plus exact counters in simple scenarios, clocks, bounds, latency
// distributions, determinism digests and the Chrome trace export.
#include "dynamo/sim/sim_network.h"

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "catch2/catch.hpp"
#include "core/codec.h"

namespace dynamo::sim {
namespace {

using internal::Decoder;
using internal::Encoder;

constexpr uint8_t kPing = 1;
constexpr uint8_t kAck = 2;

std::string EncodeMsg(uint8_t type, uint64_t seq, std::string_view body = "") {
  std::string out;
  Encoder enc(&out);
  enc.PutU8(type);
  enc.PutVarint(seq);
  enc.PutBytes(body);
  return out;
}

bool DecodeMsg(std::string_view in, uint8_t* type, uint64_t* seq) {
  Decoder dec(in);
  std::string_view body;
  return dec.GetU8(type).ok() && dec.GetVarint(seq).ok() &&
         dec.GetBytes(&body, 1024, "body").ok() && dec.ExpectEnd("msg").ok();
}

// Sends `count` pings to `peer`, resending every un-acked one each
// `retry` until all are acked.
class Pinger {
 public:
  Pinger(Runtime& rt, NodeId peer, int count, absl::Duration retry = absl::Milliseconds(20))
      : rt_(rt), peer_(peer), count_(count), retry_(retry) {
    rt_.transport().SetReceiveHandler(
        [this](NodeId from, std::string_view m) { OnMessage(from, m); });
  }
  ~Pinger() {
    if (timer_ != kNoTimer) rt_.Cancel(timer_);
  }
  void Start() {
    for (int i = 0; i < count_; ++i) SendPing(i);
    Arm();
  }
  bool done() const { return static_cast<int>(acked_.size()) == count_; }
  size_t acked() const { return acked_.size(); }
  int sends() const { return sends_; }

 private:
  void SendPing(uint64_t seq) {
    ++sends_;
    (void)rt_.transport().Send(peer_, EncodeMsg(kPing, seq, "hello"));
  }
  void Arm() {
    timer_ = rt_.Schedule(retry_, [this] {
      timer_ = kNoTimer;
      if (done()) return;
      for (int i = 0; i < count_; ++i) {
        if (!acked_.contains(i)) SendPing(i);
      }
      Arm();
    });
  }
  void OnMessage(NodeId from, std::string_view m) {
    uint8_t type;
    uint64_t seq;
    REQUIRE(DecodeMsg(m, &type, &seq));
    REQUIRE(type == kAck);
    REQUIRE(from == peer_);
    acked_.insert(seq);
  }
  Runtime& rt_;
  NodeId peer_;
  int count_;
  absl::Duration retry_;
  std::set<uint64_t> acked_;
  TimerId timer_ = kNoTimer;
  int sends_ = 0;
};

// Acks every ping.
class Ponger {
 public:
  explicit Ponger(Runtime& rt) : rt_(rt) {
    rt_.transport().SetReceiveHandler([this](NodeId from, std::string_view m) {
      uint8_t type;
      uint64_t seq;
      REQUIRE(DecodeMsg(m, &type, &seq));
      REQUIRE(type == kPing);
      ++pings_;
      (void)rt_.transport().Send(from, EncodeMsg(kAck, seq));
    });
  }
  int pings() const { return pings_; }

 private:
  Runtime& rt_;
  int pings_ = 0;
};

NetworkOptions ConstantLatency(absl::Duration d) {
  NetworkOptions o;
  o.latency_distribution = LatencyDistribution::kConstant;
  o.latency_min = d;
  o.latency_mean = d;
  return o;
}

void CheckConservation(const SimNetwork& net) {
  for (const LinkEntry& e : net.links()) {
    const LinkStats& s = e.stats;
    INFO("link " << e.from << "->" << e.to);
    CHECK(s.sent + s.duplicated ==
          s.delivered + s.dropped_loss + s.dropped_partition + s.dropped_down + s.in_flight);
  }
}

TEST_CASE("SimNetwork delivers with exact counters and times", "[net]") {
  SimNetwork net(1, ConstantLatency(absl::Milliseconds(1)));
  Runtime& a = net.AddNode(1);
  Runtime& b = net.AddNode(2);
  REQUIRE(a.self() == 1);
  REQUIRE(a.Now() == SimNetwork::Epoch());
  std::vector<std::pair<absl::Time, std::string>> got;
  b.transport().SetReceiveHandler([&](NodeId from, std::string_view m) {
    CHECK(from == 1);
    got.emplace_back(b.Now(), std::string(m));
  });
  REQUIRE(a.transport().Send(2, "0123456789").ok());
  REQUIRE(a.transport().Send(2, "abc").ok());
  REQUIRE(net.pending_events() == 2);
  net.RunFor(absl::Milliseconds(5));
  REQUIRE(got.size() == 2);
  CHECK(got[0].first == SimNetwork::Epoch() + absl::Milliseconds(1));
  CHECK(got[0].second == "0123456789");
  CHECK(got[1].second == "abc");
  CHECK(net.Now() == SimNetwork::Epoch() + absl::Milliseconds(5));

  NodeStats sa = net.node_stats(1), sb = net.node_stats(2);
  CHECK(sa.messages_sent == 2);
  CHECK(sa.bytes_sent == 13);
  CHECK(sa.messages_dropped == 0);
  CHECK(sb.messages_received == 2);
  CHECK(sb.bytes_received == 13);
  LinkStats l = net.link_stats(1, 2);
  CHECK(l.sent == 2);
  CHECK(l.delivered == 2);
  CHECK(l.bytes_delivered == 13);
  CHECK(l.in_flight == 0);
  CHECK(l.in_flight_max == 2);
  CHECK(net.link_stats(2, 1).sent == 0);
  REQUIRE(net.links().size() == 1);
  CHECK(net.links()[0].from == 1);
  CheckConservation(net);
}

TEST_CASE("SimNetwork certain loss and certain duplication count exactly", "[net]") {
  NetworkOptions o = ConstantLatency(absl::Milliseconds(1));
  o.loss_probability = 1.0;
  SimNetwork net(3, o);
  Runtime& a = net.AddNode(1);
  Runtime& b = net.AddNode(2);
  int got = 0;
  b.transport().SetReceiveHandler([&](NodeId, std::string_view) { ++got; });
  for (int i = 0; i < 10; ++i) REQUIRE(a.transport().Send(2, "lost").ok());
  CHECK(net.pending_events() == 0);
  o.loss_probability = 0.0;
  o.duplicate_probability = 1.0;
  net.SetOptions(o);
  for (int i = 0; i < 10; ++i) REQUIRE(a.transport().Send(2, "twice").ok());
  net.RunFor(absl::Milliseconds(5));
  CHECK(got == 20);
  LinkStats l = net.link_stats(1, 2);
  CHECK(l.sent == 20);
  CHECK(l.dropped_loss == 10);
  CHECK(l.duplicated == 10);
  CHECK(l.delivered == 20);
  CHECK(l.bytes_sent == 10 * 4 + 10 * 5);
  CHECK(l.bytes_delivered == 20 * 5);
  CHECK(net.node_stats(1).messages_dropped == 10);
  CheckConservation(net);
}

TEST_CASE("SimNetwork lists nodes in AddNode order and links sorted by id", "[net]") {
  SimNetwork net(4);
  Runtime& n5 = net.AddNode(5);
  Runtime& n3 = net.AddNode(3);
  Runtime& n9 = net.AddNode(9);
  CHECK(net.nodes() == std::vector<NodeId>{5, 3, 9});
  REQUIRE(n9.transport().Send(3, "a").ok());
  REQUIRE(n3.transport().Send(5, "b").ok());
  REQUIRE(n5.transport().Send(3, "c").ok());
  std::vector<std::pair<NodeId, NodeId>> order;
  for (const LinkEntry& e : net.links()) order.emplace_back(e.from, e.to);
  CHECK(order == std::vector<std::pair<NodeId, NodeId>>{{3, 5}, {5, 3}, {9, 3}});
}

TEST_CASE("SimNetwork Send errors: size, unknown node", "[net]") {
  NetworkOptions o;
  o.message_bytes_max = 100;
  SimNetwork net(1, o);
  Runtime& a = net.AddNode(1);
  net.AddNode(2);
  CHECK(a.transport().message_bytes_max() == 100);
  CHECK(a.transport().Send(2, std::string(100, 'x')).ok());
  CHECK(a.transport().Send(2, std::string(101, 'x')).code() == absl::StatusCode::kInvalidArgument);
  CHECK(a.transport().Send(7, "x").code() == absl::StatusCode::kNotFound);
  CHECK(net.node_stats(1).messages_sent == 1);
}

TEST_CASE("SimNetwork ping/ack completes under loss, duplication and reordering", "[net]") {
  NetworkOptions o;
  o.latency_distribution = LatencyDistribution::kExponential;
  o.loss_probability = 0.2;
  o.duplicate_probability = 0.1;
  o.reorder_probability = 0.2;
  SimNetwork net(42, o);
  Pinger pinger(net.AddNode(1), 2, 200);
  Ponger ponger(net.AddNode(2));
  pinger.Start();
  REQUIRE(net.RunUntil([&] { return pinger.done(); }, absl::Seconds(30)));
  CHECK(ponger.pings() >= 200);
  LinkStats l = net.link_stats(1, 2);
  CHECK(l.dropped_loss > 0);
  CHECK(l.duplicated > 0);
  CHECK(net.node_stats(1).messages_dropped > 0);
  CheckConservation(net);
  // Drain and check again with nothing in flight.
  net.RunFor(absl::Seconds(1));
  for (const LinkEntry& e : net.links()) CHECK(e.stats.in_flight == 0);
  CheckConservation(net);
}

TEST_CASE("SimNetwork reordering overtakes, FIFO links do not", "[net]") {
  for (bool reorder : {false, true}) {
    NetworkOptions o;
    o.latency_distribution = LatencyDistribution::kUniform;
    o.reorder_probability = reorder ? 0.3 : 0.0;
    SimNetwork net(5, o);
    Runtime& a = net.AddNode(1);
    Runtime& b = net.AddNode(2);
    std::vector<uint64_t> order;
    b.transport().SetReceiveHandler([&](NodeId, std::string_view m) {
      uint8_t t;
      uint64_t seq;
      REQUIRE(DecodeMsg(m, &t, &seq));
      order.push_back(seq);
    });
    for (uint64_t i = 0; i < 100; ++i) REQUIRE(a.transport().Send(2, EncodeMsg(kPing, i)).ok());
    net.RunFor(absl::Seconds(1));
    REQUIRE(order.size() == 100);
    CHECK(std::is_sorted(order.begin(), order.end()) == !reorder);
  }
}

TEST_CASE("SimNetwork partitions block and heal", "[net]") {
  SimNetwork net(7);
  Pinger pinger(net.AddNode(1), 2, 10);
  Ponger ponger(net.AddNode(2));
  net.AddNode(3);
  net.Partition({{1}, {2, 3}});
  CHECK_FALSE(net.CanTalk(1, 2));
  CHECK(net.CanTalk(2, 3));
  pinger.Start();
  net.RunFor(absl::Seconds(1));
  CHECK(ponger.pings() == 0);
  CHECK(pinger.acked() == 0);
  CHECK(net.link_stats(1, 2).dropped_partition > 0);
  CHECK(net.link_stats(1, 2).delivered == 0);
  net.HealAll();
  REQUIRE(net.RunUntil([&] { return pinger.done(); }, absl::Seconds(1)));
  CheckConservation(net);
}

TEST_CASE("SimNetwork partition drops messages already in flight", "[net]") {
  SimNetwork net(7, ConstantLatency(absl::Milliseconds(10)));
  Runtime& a = net.AddNode(1);
  net.AddNode(2);
  REQUIRE(a.transport().Send(2, "x").ok());
  net.RunFor(absl::Milliseconds(5));
  net.Isolate(2);
  net.RunFor(absl::Milliseconds(10));
  CHECK(net.link_stats(1, 2).dropped_partition == 1);
  CHECK(net.node_stats(2).messages_received == 0);
}

TEST_CASE("SimNetwork one-way partition: pings arrive, acks do not", "[net]") {
  SimNetwork net(8);
  Pinger pinger(net.AddNode(1), 2, 5);
  Ponger ponger(net.AddNode(2));
  net.BlockLink(2, 1);
  CHECK(net.CanTalk(1, 2));
  CHECK_FALSE(net.CanTalk(2, 1));
  pinger.Start();
  net.RunFor(absl::Milliseconds(500));
  CHECK(ponger.pings() >= 5);
  CHECK(pinger.acked() == 0);
  CHECK(net.link_stats(2, 1).dropped_partition == static_cast<uint64_t>(ponger.pings()));
  net.UnblockLink(2, 1);
  REQUIRE(net.RunUntil([&] { return pinger.done(); }, absl::Seconds(1)));
}

TEST_CASE("SimNetwork isolate cuts a node off until HealAll", "[net]") {
  SimNetwork net(9);
  Pinger pinger(net.AddNode(1), 2, 3);
  Ponger ponger(net.AddNode(2));
  net.Isolate(1);
  pinger.Start();
  net.RunFor(absl::Milliseconds(200));
  CHECK(ponger.pings() == 0);
  net.HealAll();
  REQUIRE(net.RunUntil([&] { return pinger.done(); }, absl::Seconds(1)));
}

TEST_CASE("SimNetwork crash discards timers and in-flight messages, restart works", "[net]") {
  SimNetwork net(10, ConstantLatency(absl::Milliseconds(10)));
  Runtime& a = net.AddNode(1);
  Runtime& b = net.AddNode(2);
  int b_received = 0;
  b.transport().SetReceiveHandler([&](NodeId, std::string_view) { ++b_received; });
  auto token = std::make_shared<int>(0);
  bool b_timer_ran = false;
  b.Schedule(absl::Milliseconds(5), [token, &b_timer_ran] { b_timer_ran = true; });
  CHECK(token.use_count() == 2);
  REQUIRE(a.transport().Send(2, "one").ok());
  REQUIRE(a.transport().Send(2, "two").ok());
  REQUIRE(net.pending_events() == 3);

  net.Crash(2);
  CHECK_FALSE(net.IsUp(2));
  CHECK(token.use_count() == 1);  // the timer's callback was destroyed
  CHECK(net.pending_events() == 0);
  CHECK(net.link_stats(1, 2).dropped_down == 2);
  CHECK(net.node_stats(1).messages_dropped == 2);
  CHECK(b.transport().Send(1, "x").code() == absl::StatusCode::kUnavailable);
  bool ran_while_down = false;
  CHECK(b.Schedule(absl::Milliseconds(1), [&] { ran_while_down = true; }) != kNoTimer);
  // A message sent to a down node is accepted and lost on arrival.
  REQUIRE(a.transport().Send(2, "three").ok());
  net.RunFor(absl::Milliseconds(50));
  CHECK_FALSE(b_timer_ran);
  CHECK_FALSE(ran_while_down);
  CHECK(b_received == 0);  // the handler was cleared too
  CHECK(net.link_stats(1, 2).dropped_down == 3);
  CHECK(net.node_stats(2).timers_fired == 0);

  net.Restart(2);
  CHECK(net.IsUp(2));
  Ponger ponger(b);  // a new node object on the same Runtime&
  Pinger pinger(a, 2, 4);
  pinger.Start();
  REQUIRE(net.RunUntil([&] { return pinger.done(); }, absl::Seconds(1)));
  CHECK(ponger.pings() == 4);
  CheckConservation(net);
}

TEST_CASE("SimNetwork handler may replace itself or crash its node while running", "[net]") {
  SimNetwork net(11, ConstantLatency(absl::Milliseconds(1)));
  Runtime& a = net.AddNode(1);
  Runtime& b = net.AddNode(2);
  int second = 0;
  std::string big_capture(1000, 'c');  // forces the handler onto the heap
  b.transport().SetReceiveHandler([&, big_capture](NodeId, std::string_view) {
    b.transport().SetReceiveHandler([&](NodeId, std::string_view) { ++second; });
    CHECK(big_capture.size() == 1000);  // still alive after being replaced
  });
  REQUIRE(a.transport().Send(2, "x").ok());
  REQUIRE(a.transport().Send(2, "y").ok());
  net.RunFor(absl::Milliseconds(5));
  CHECK(second == 1);

  b.transport().SetReceiveHandler([&, big_capture](NodeId, std::string_view) {
    net.Crash(2);
    CHECK(big_capture.size() == 1000);
  });
  REQUIRE(a.transport().Send(2, "z").ok());
  net.RunFor(absl::Milliseconds(5));
  CHECK_FALSE(net.IsUp(2));
}

TEST_CASE("SimNetwork timers: order, cancel, zero delay never inline", "[net]") {
  SimNetwork net(12);
  Runtime& a = net.AddNode(1);
  std::vector<int> ran;
  a.Schedule(absl::Milliseconds(2), [&] { ran.push_back(2); });
  TimerId cancelled = a.Schedule(absl::Milliseconds(1), [&] { ran.push_back(-1); });
  a.Schedule(absl::Milliseconds(1), [&] { ran.push_back(1); });
  a.Schedule(absl::ZeroDuration(), [&] {
    ran.push_back(0);
    a.Schedule(-absl::Seconds(1), [&] { ran.push_back(10); });
    CHECK(ran.back() == 0);  // not run inline
  });
  a.Cancel(cancelled);
  a.Cancel(cancelled);  // twice: no-op
  a.Cancel(kNoTimer);
  a.Cancel(0xdeadbeef12345ULL);  // never issued: no-op
  CHECK(net.pending_events() == 3);
  net.RunFor(absl::Seconds(1));
  CHECK(ran == std::vector<int>{0, 10, 1, 2});
  CHECK(net.node_stats(1).timers_fired == 4);
  CHECK_FALSE(net.Step());
}

TEST_CASE("SimNetwork Defer runs after the event that made it, before any other", "[net]") {
  SimNetwork net(13, ConstantLatency(absl::Milliseconds(1)));
  Runtime& a = net.AddNode(1);
  Runtime& b = net.AddNode(2);
  std::vector<std::string> ran;
  b.transport().SetReceiveHandler([&](NodeId, std::string_view m) {
    ran.emplace_back(m);
    if (m != "first") return;
    b.Defer([&] {
      ran.emplace_back("deferred");
      CHECK(b.Elapsed() == absl::Milliseconds(1));  // the same virtual time
      b.Defer([&] { ran.emplace_back("deferred by deferred"); });
    });
    TimerId cancelled = b.Defer([&] { ran.emplace_back("cancelled"); });
    CHECK(cancelled != kNoTimer);
    b.Cancel(cancelled);
    b.Cancel(cancelled);  // twice: a no-op
    CHECK(ran.back() == "first");  // never inline
  });
  // Both arrive at 1 ms; the second still waits for the first's deferred calls.
  REQUIRE(a.transport().Send(2, "first").ok());
  REQUIRE(a.transport().Send(2, "second").ok());
  net.RunFor(absl::Milliseconds(5));
  CHECK(ran == std::vector<std::string>{"first", "deferred", "deferred by deferred", "second"});

  // Made between events (by the embedder): due now, first in the next step.
  bool outside = false;
  a.Schedule(absl::Milliseconds(1), [] {});
  a.Defer([&] { outside = true; });
  CHECK(net.pending_events() == 2);
  REQUIRE(net.Step());
  CHECK(outside);
  CHECK(net.Now() == SimNetwork::Epoch() + absl::Milliseconds(5));  // time did not move for it

  // A crash drops a node's deferred calls (destroying them); a down node's are refused.
  auto token = std::make_shared<int>(0);
  bool ran_after_crash = false;
  b.Defer([token, &ran_after_crash] { ran_after_crash = true; });
  CHECK(token.use_count() == 2);
  net.Crash(2);
  CHECK(token.use_count() == 1);
  b.Defer([&] { ran_after_crash = true; });
  net.RunFor(absl::Milliseconds(5));
  CHECK_FALSE(ran_after_crash);
}

TEST_CASE("SimNetwork many cancelled timers leave no events behind", "[net]") {
  SimNetwork net(13);
  Runtime& a = net.AddNode(1);
  std::vector<TimerId> ids;
  for (int i = 0; i < 5000; ++i) {
    ids.push_back(a.Schedule(absl::Seconds(1 + i), [] { FAIL("cancelled timer ran"); }));
  }
  std::set<TimerId> unique(ids.begin(), ids.end());
  CHECK(unique.size() == ids.size());
  for (TimerId id : ids) a.Cancel(id);
  CHECK(net.pending_events() == 0);
  CHECK_FALSE(net.Step());
  int fired = 0;
  a.Schedule(absl::Seconds(1), [&] { ++fired; });
  net.RunFor(absl::Seconds(2));
  CHECK(fired == 1);
}

// Cancels remove a record from the middle of the event heap; what is left
// must still come out in (time, scheduling order), whatever was removed.
TEST_CASE("SimNetwork timers fire in (time, order) under random cancels", "[net]") {
  SimNetwork net(14);
  Runtime& a = net.AddNode(1);
  std::mt19937_64 rng(99);
  struct Armed {
    int64_t due_ms;
    int order;
    TimerId id;
    bool cancelled = false;
  };
  std::vector<Armed> armed;
  std::vector<int> fired;
  int order = 0;
  // Schedules one timer whose callback may cancel others and schedule more,
  // so removals happen both from outside and from inside the event loop.
  std::function<void(int64_t)> arm = [&](int64_t now_ms) {
    const int64_t delay_ms = static_cast<int64_t>(rng() % 50);  // many ties
    const int me = order++;
    armed.push_back(Armed{now_ms + delay_ms, me, kNoTimer});
    armed.back().id = a.Schedule(absl::Milliseconds(delay_ms), [&, me, delay_ms, now_ms] {
      fired.push_back(me);
      const int64_t t = now_ms + delay_ms;
      if (order < 3000) {
        arm(t);
        if (rng() % 2 == 0) arm(t);
      }
      const size_t victim = rng() % armed.size();
      if (!armed[victim].cancelled) {
        a.Cancel(armed[victim].id);
        // Cancelling one that already ran is a no-op; one pending never runs.
        if (std::find(fired.begin(), fired.end(), armed[victim].order) == fired.end()) {
          armed[victim].cancelled = true;
        }
      }
    });
  };
  for (int i = 0; i < 200; ++i) arm(0);
  for (int i = 0; i < 200; i += 3) {
    a.Cancel(armed[i].id);
    armed[i].cancelled = true;
  }
  net.RunFor(absl::Hours(1));
  std::vector<Armed> expected;
  for (const Armed& t : armed) {
    if (!t.cancelled) expected.push_back(t);
  }
  std::stable_sort(expected.begin(), expected.end(),
                   [](const Armed& x, const Armed& y) { return x.due_ms < y.due_ms; });
  std::vector<int> want;
  for (const Armed& t : expected) want.push_back(t.order);
  CHECK(fired.size() > 1000);
  CHECK(fired == want);
  CHECK(net.pending_events() == 0);
}

TEST_CASE("SimNetwork external events and RunUntil limits", "[net]") {
  SimNetwork net(14);
  bool flag = false;
  net.Schedule(absl::Seconds(3), [&] { flag = true; });
  CHECK_FALSE(net.RunUntil([&] { return flag; }, absl::Seconds(2)));
  CHECK(net.Now() == SimNetwork::Epoch() + absl::Seconds(2));
  CHECK(net.RunUntil([&] { return flag; }, absl::Seconds(2)));
  CHECK(net.Now() == SimNetwork::Epoch() + absl::Seconds(3));
}

TEST_CASE("SimNetwork clock skew and drift show in Now()", "[net]") {
  SimNetwork net(15);
  Runtime& a = net.AddNode(1);
  Runtime& b = net.AddNode(2);
  net.SetClockSkew(2, absl::Seconds(5), 0);
  CHECK(b.Now() - a.Now() == absl::Seconds(5));
  CHECK(a.Now() == net.Now());
  net.SetClockSkew(2, -absl::Milliseconds(3), 1000);  // 1000 ppm fast
  net.RunFor(absl::Seconds(10));
  CHECK(b.Now() - a.Now() == -absl::Milliseconds(3) + absl::Milliseconds(10));
  // Timers run on virtual time whatever the clock says.
  absl::Time fired;
  b.Schedule(absl::Seconds(1), [&] { fired = net.Now(); });
  net.RunFor(absl::Seconds(2));
  CHECK(fired == SimNetwork::Epoch() + absl::Seconds(11));
}

TEST_CASE("SimNetwork Stall moves one node's clocks on, not virtual time", "[net]") {
  SimNetwork net(16);
  Runtime& a = net.AddNode(1);
  Runtime& b = net.AddNode(2);
  const absl::Duration before = b.Elapsed();
  net.Stall(2, absl::Milliseconds(80));
  CHECK(b.Elapsed() - before == absl::Milliseconds(80));
  CHECK(b.Now() - a.Now() == absl::Milliseconds(80));
  CHECK(a.Elapsed() == before);
  CHECK(net.Now() == SimNetwork::Epoch());
  // For good, and timers still run on virtual time.
  absl::Time fired;
  b.Schedule(absl::Seconds(1), [&] { fired = net.Now(); });
  net.RunFor(absl::Seconds(2));
  CHECK(fired == SimNetwork::Epoch() + absl::Seconds(1));
  CHECK(b.Elapsed() - a.Elapsed() == absl::Milliseconds(80));
}

TEST_CASE("SimNetwork path capacity and event bound refuse and count", "[net]") {
  NetworkOptions o = ConstantLatency(absl::Milliseconds(1));
  o.path_messages_in_flight_max = 3;
  SimNetwork net(16, o);
  Runtime& a = net.AddNode(1);
  net.AddNode(2);
  net.AddNode(3);
  for (int i = 0; i < 3; ++i) CHECK(a.transport().Send(2, "m").ok());
  CHECK(a.transport().Send(2, "m").code() == absl::StatusCode::kResourceExhausted);
  CHECK(a.transport().Send(2, "m").code() == absl::StatusCode::kResourceExhausted);
  CHECK(a.transport().Send(3, "m").ok());  // another path is unaffected
  LinkStats l = net.link_stats(1, 2);
  CHECK(l.sent == 3);
  CHECK(l.dropped_capacity == 2);
  CHECK(l.in_flight_max == 3);
  CHECK(net.node_stats(1).messages_dropped == 2);
  net.RunFor(absl::Milliseconds(2));
  CHECK(a.transport().Send(2, "m").ok());  // room again

  o.events_pending_max = 2;
  net.SetOptions(o);
  CHECK(a.transport().Send(3, "m").ok());  // 2 pending now
  CHECK(a.transport().Send(3, "m").code() == absl::StatusCode::kResourceExhausted);
  CHECK(net.link_stats(1, 3).dropped_overload == 1);
  // Timers are never refused.
  bool ran = false;
  a.Schedule(absl::Milliseconds(1), [&] { ran = true; });
  net.RunFor(absl::Milliseconds(5));
  CHECK(ran);
  CheckConservation(net);
}

TEST_CASE("SimNetwork latency distributions have the configured mean", "[net]") {
  const absl::Duration mean = absl::Milliseconds(1);
  const absl::Duration min = absl::Microseconds(200);
  for (auto dist : {LatencyDistribution::kConstant, LatencyDistribution::kUniform,
                    LatencyDistribution::kExponential, LatencyDistribution::kLogNormal}) {
    NetworkOptions o;
    o.latency_distribution = dist;
    o.latency_min = min;
    o.latency_mean = mean;
    o.links_fifo = false;
    o.path_messages_in_flight_max = 1 << 20;
    SimNetwork net(17, o);
    Runtime& a = net.AddNode(1);
    Runtime& b = net.AddNode(2);
    double sum_ms = 0, lo_ms = 1e9, hi_ms = 0;
    int n = 0;
    b.transport().SetReceiveHandler([&](NodeId, std::string_view m) {
      uint8_t t;
      uint64_t sent_ns;
      REQUIRE(DecodeMsg(m, &t, &sent_ns));
      const double ms = absl::ToDoubleMilliseconds(b.Now() - SimNetwork::Epoch()) - sent_ns / 1e6;
      sum_ms += ms;
      lo_ms = std::min(lo_ms, ms);
      hi_ms = std::max(hi_ms, ms);
      ++n;
    });
    constexpr int kCount = 20000;
    for (int i = 0; i < kCount; ++i) {
      const uint64_t now_ns = absl::ToInt64Nanoseconds(a.Now() - SimNetwork::Epoch());
      REQUIRE(a.transport().Send(2, EncodeMsg(kPing, now_ns)).ok());
      net.RunFor(absl::Microseconds(50));
    }
    net.RunFor(absl::Seconds(2));
    REQUIRE(n == kCount);
    INFO("distribution " << static_cast<int>(dist) << " mean " << sum_ms / n << " min " << lo_ms
                         << " max " << hi_ms);
    CHECK(sum_ms / n == Approx(1.0).epsilon(0.03));
    CHECK(lo_ms >= 0.2 - 1e-9);
    if (dist == LatencyDistribution::kConstant) CHECK(hi_ms == Approx(1.0));
    if (dist == LatencyDistribution::kUniform) CHECK(hi_ms <= 1.8 + 1e-9);
    if (dist == LatencyDistribution::kExponential) CHECK(hi_ms > 3.0);  // a tail exists
  }
}

// A busy scenario: 5 nodes ping each other with faults on; returns the digest.
uint64_t RunScenario(uint64_t seed, const std::vector<NodeId>& add_order) {
  NetworkOptions o;
  o.latency_distribution = LatencyDistribution::kLogNormal;
  o.loss_probability = 0.1;
  o.duplicate_probability = 0.05;
  o.reorder_probability = 0.1;
  SimNetwork net(seed, o);
  std::map<NodeId, Runtime*> rts;
  for (NodeId id : add_order) rts[id] = &net.AddNode(id);
  std::vector<std::unique_ptr<Pinger>> pingers;
  std::map<NodeId, std::unique_ptr<Ponger>> pongers;
  // Odd ids ping the next even id; node behaviour also draws from its Rng.
  for (auto& [id, rt] : rts) {
    if (id % 2 == 1 && rts.contains(id + 1)) {
      pingers.push_back(std::make_unique<Pinger>(*rt, id + 1, 20 + rt->Rng()() % 10));
    } else {
      pongers[id] = std::make_unique<Ponger>(*rt);
    }
  }
  for (auto& p : pingers) p->Start();
  // A fault schedule: a partition, and node 4 crashing and restarting with a
  // new node object, as the Simulation owner does it.
  net.Schedule(absl::Milliseconds(2), [&] { net.Partition({{1, 3, 5}, {2, 4, 6}}); });
  net.Schedule(absl::Milliseconds(10), [&] {
    net.Crash(4);
    pongers[4].reset();
  });
  net.Schedule(absl::Milliseconds(40), [&] {
    net.Restart(4);
    pongers[4] = std::make_unique<Ponger>(*rts[4]);
  });
  net.Schedule(absl::Milliseconds(60), [&] { net.HealAll(); });
  net.RunUntil(
      [&] {
        return std::all_of(pingers.begin(), pingers.end(), [](auto& p) { return p->done(); });
      },
      absl::Seconds(10));
  CHECK(net.Now() > SimNetwork::Epoch() + absl::Milliseconds(60));  // the faults mattered
  CHECK(net.link_stats(1, 2).dropped_partition + net.link_stats(3, 4).dropped_down > 0);
  for (auto& p : pingers) CHECK(p->done());
  return net.TraceDigest();
}

TEST_CASE("SimNetwork same seed gives the same digest, another seed does not", "[net]") {
  const std::vector<NodeId> ids = {1, 2, 3, 4, 5, 6};
  const uint64_t d1 = RunScenario(99, ids);
  CHECK(d1 == RunScenario(99, ids));
  CHECK(d1 != RunScenario(100, ids));
}

TEST_CASE("SimNetwork digest does not depend on hash-container order", "[net]") {
  // Two hash sets filled in different orders (and with different sizes, so
  // their internal layouts differ); the nodes are added in sorted order.
  absl::flat_hash_set<NodeId> forward, backward;
  for (NodeId id = 1; id <= 6; ++id) forward.insert(id);
  for (NodeId id = 1000; id >= 1; --id) backward.insert(id);
  for (NodeId id = 7; id <= 1000; ++id) backward.erase(id);
  auto sorted = [](const absl::flat_hash_set<NodeId>& s) {
    std::vector<NodeId> v(s.begin(), s.end());
    std::sort(v.begin(), v.end());
    return v;
  };
  absl::flat_hash_map<NodeId, uint64_t> digests;
  digests[1] = RunScenario(77, sorted(forward));
  digests[2] = RunScenario(77, sorted(backward));
  CHECK(digests[1] == digests[2]);
}

TEST_CASE("SimNetwork per-node random streams do not depend on other nodes", "[net]") {
  SimNetwork one(5);
  Runtime& x = one.AddNode(3);
  SimNetwork two(5);
  two.AddNode(1);
  two.AddNode(2);
  Runtime& y = two.AddNode(3);
  absl::BitGenRef rx = x.Rng(), ry = y.Rng();
  for (int i = 0; i < 10; ++i) CHECK(rx() == ry());
  SimNetwork other_seed(6);
  Runtime& z = other_seed.AddNode(3);
  CHECK(x.Rng()() != z.Rng()());
}

TEST_CASE("SimNetwork Chrome trace is bounded, balanced JSON with flows", "[net]") {
  NetworkOptions o;
  o.trace_events_max = 50;
  o.loss_probability = 0.1;
  SimNetwork net(18, o);
  Pinger pinger(net.AddNode(1), 2, 40);
  Ponger ponger(net.AddNode(2));
  pinger.Start();
  REQUIRE(net.RunUntil([&] { return pinger.done(); }, absl::Seconds(10)));
  CHECK(net.trace_events_recorded() == 50);
  std::ostringstream out;
  REQUIRE(net.WriteChromeTrace(out).ok());
  const std::string json = out.str();
  int depth = 0;
  bool in_string = false, balanced = true;
  for (char c : json) {
    if (c == '"') in_string = !in_string;
    if (in_string) continue;
    if (c == '{' || c == '[') ++depth;
    if (c == '}' || c == ']') --depth;
    if (depth < 0) balanced = false;
  }
  CHECK(balanced);
  CHECK(depth == 0);
  CHECK_FALSE(in_string);
  CHECK(json.find("\"traceEvents\"") != std::string::npos);
  CHECK(json.find("\"name\":\"node 1\"") != std::string::npos);
  CHECK(json.find("\"ph\":\"s\"") != std::string::npos);
  CHECK(json.find("\"ph\":\"f\"") != std::string::npos);
  CHECK(json.find("\"name\":\"recv\"") != std::string::npos);
  CHECK(json.find(",\n]") == std::string::npos);  // no trailing comma
}

}  // namespace
}  // namespace dynamo::sim

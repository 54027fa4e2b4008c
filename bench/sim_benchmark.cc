// Benchmarks for SimNetwork: how many simulated messages one core delivers
// per wall-clock second when every message goes through the wire codec (the
// sender encodes, the receiver decodes), and how much memory an idle
// simulated node costs. Run with
//   sim_benchmark --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// and read the medians.
#include <malloc.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "benchmark/benchmark.h"
#include "core/codec.h"
#include "dynamo/sim/sim_network.h"

namespace dynamo::sim {
namespace {

using internal::Decoder;
using internal::Encoder;

// A node that forwards every message it receives to the next node in a ring,
// decoding and re-encoding it: a hop counter, a key and a small value.
class Relay {
 public:
  Relay(Runtime& rt, NodeId next) : rt_(rt), next_(next) {
    rt_.transport().SetReceiveHandler([this](NodeId, std::string_view m) { OnMessage(m); });
  }
  void Send(uint64_t hops, std::string_view key, std::string_view value) {
    std::string out;
    out.reserve(32);
    Encoder enc(&out);
    enc.PutU8(1);
    enc.PutVarint(hops);
    enc.PutBytes(key);
    enc.PutBytes(value);
    (void)rt_.transport().Send(next_, std::move(out));
  }

 private:
  void OnMessage(std::string_view m) {
    Decoder dec(m);
    uint8_t type;
    uint64_t hops;
    std::string_view key, value;
    if (!dec.GetU8(&type).ok() || !dec.GetVarint(&hops).ok() ||
        !dec.GetBytes(&key, 64, "key").ok() || !dec.GetBytes(&value, 64, "value").ok() ||
        !dec.ExpectEnd("relay").ok()) {
      std::abort();
    }
    Send(hops + 1, key, value);
  }
  Runtime& rt_;
  NodeId next_;
};

// state.range(0): nodes; state.range(1): messages circulating per node.
void BM_SimMessagesWithCodec(benchmark::State& state) {
  const int nodes = static_cast<int>(state.range(0));
  const int per_node = static_cast<int>(state.range(1));
  NetworkOptions o;
  o.latency_distribution = LatencyDistribution::kUniform;
  SimNetwork net(1, o);
  std::vector<std::unique_ptr<Relay>> relays;
  for (int i = 1; i <= nodes; ++i) {
    relays.push_back(std::make_unique<Relay>(net.AddNode(i), i % nodes + 1));
  }
  for (auto& r : relays) {
    for (int k = 0; k < per_node; ++k) r->Send(0, "key:0001", "small-value!");
  }
  for (auto _ : state) {
    net.Step();
  }
  uint64_t delivered = 0;
  for (int i = 1; i <= nodes; ++i) delivered += net.node_stats(i).messages_received;
  state.SetItemsProcessed(static_cast<int64_t>(delivered));
  state.counters["delivered"] = static_cast<double>(delivered);
}
BENCHMARK(BM_SimMessagesWithCodec)->Args({16, 8})->Args({256, 4});

// The same with loss, duplication and reordering on; lost messages are
// replaced by each node's periodic timer so traffic does not die out.
void BM_SimMessagesWithFaults(benchmark::State& state) {
  const int nodes = 64;
  NetworkOptions o;
  o.latency_distribution = LatencyDistribution::kLogNormal;
  o.loss_probability = 0.01;
  o.duplicate_probability = 0.01;
  o.reorder_probability = 0.05;
  SimNetwork net(2, o);
  std::vector<std::unique_ptr<Relay>> relays;
  std::vector<Runtime*> runtimes;
  for (int i = 1; i <= nodes; ++i) {
    runtimes.push_back(&net.AddNode(i));
    relays.push_back(std::make_unique<Relay>(*runtimes.back(), i % nodes + 1));
  }
  // Each node injects a new message every 2 ms of virtual time while the
  // population is below its starting size, so the load stays steady.
  struct Refill {
    SimNetwork* net;
    Runtime* rt;
    Relay* relay;
    void operator()() {
      if (net->pending_events() < 5 * 64) relay->Send(0, "key:0002", "refill");
      rt->Schedule(absl::Milliseconds(2), Refill{net, rt, relay});
    }
  };
  for (int i = 0; i < nodes; ++i) {
    for (int k = 0; k < 4; ++k) relays[i]->Send(0, "key:0001", "small-value!");
    runtimes[i]->Schedule(absl::Milliseconds(2), Refill{&net, runtimes[i], relays[i].get()});
  }
  for (auto _ : state) {
    net.Step();
  }
  uint64_t delivered = 0;
  for (int i = 1; i <= nodes; ++i) delivered += net.node_stats(i).messages_received;
  state.SetItemsProcessed(static_cast<int64_t>(delivered));
  state.counters["delivered"] = static_cast<double>(delivered);
}
BENCHMARK(BM_SimMessagesWithFaults);

// Bytes of heap one idle node costs: registered, a receive handler set, one
// heartbeat timer pending. Measured as the malloc arena's growth over many
// nodes (the network's shared vectors grow too and are included).
void BM_IdleNodeMemory(benchmark::State& state) {
  const int nodes = static_cast<int>(state.range(0));
  double per_node = 0;
  for (auto _ : state) {
    const size_t before = mallinfo2().uordblks;
    auto net = std::make_unique<SimNetwork>(3);
    for (int i = 1; i <= nodes; ++i) {
      Runtime& rt = net->AddNode(i);
      rt.transport().SetReceiveHandler([](NodeId, std::string_view) {});
      rt.Schedule(absl::Seconds(1), [] {});
    }
    const size_t after = mallinfo2().uordblks;
    per_node = static_cast<double>(after - before) / nodes;
    benchmark::DoNotOptimize(net.get());
  }
  state.counters["bytes_per_idle_node"] = per_node;
}
BENCHMARK(BM_IdleNodeMemory)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace dynamo::sim

BENCHMARK_MAIN();

// Simulated cluster throughput and latency (paper sections 4.5, 6.1, 6.4).
//
// A closed loop of 64 outstanding requests (half gets, half puts carrying
// the context of the key's last read) runs against a 5-node simulated
// cluster. Throughput is simulated operations per wall-clock second on one
// core; latency is measured in simulated time (network latency exponential,
// mean 1 ms) and reported as p50/p99/p99.9 counters in milliseconds. The
// `digest` counter folds the runs' SimNetwork::TraceDigest() into 32 bits (a
// double holds no more exactly): a change meant to make the simulator faster
// without changing what it simulates must leave it as it was.
//
// Arguments: quorum (0: (3,2,2), 1: (3,1,3), 2: (1,1,1)), key distribution
// (0: uniform, 1: zipfian s=0.99), coordination (0: server-driven through a
// random node, 1: client-driven through the partition-aware client).
//
// BM_ClusterStart is what a run costs before any workload: creating a
// cluster of `nodes` (16 partitions per node, strategy 3) and keeping it
// idle for 10 simulated seconds (gossip, failure detection, anti-entropy).
// Counters: create_ms, wall milliseconds to create it, and idle_speedup,
// simulated seconds per wall second while idle.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <vector>

#include "dynamo/sim/simulation.h"

namespace dynamo::sim {
namespace {

constexpr size_t kKeys = 10000;
constexpr size_t kOutstanding = 64;
constexpr size_t kOpsPerRun = 40000;

class KeyChooser {
 public:
  KeyChooser(bool zipfian, uint64_t seed) : rng_(seed), zipfian_(zipfian) {
    if (!zipfian) return;
    cdf_.resize(kKeys);
    double sum = 0;
    for (size_t i = 0; i < kKeys; ++i) cdf_[i] = (sum += 1.0 / std::pow(double(i + 1), 0.99));
    for (double& c : cdf_) c /= sum;
  }
  size_t Next() {
    if (!zipfian_) return rng_() % kKeys;
    double u = std::uniform_real_distribution<double>(0, 1)(rng_);
    return std::min<size_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin(),
                            kKeys - 1);
  }
  std::mt19937_64& rng() { return rng_; }

 private:
  std::mt19937_64 rng_;
  bool zipfian_;
  std::vector<double> cdf_;
};

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * v.size()));
  std::nth_element(v.begin(), v.begin() + i, v.end());
  return v[i];
}

void BM_Cluster(benchmark::State& state) {
  const BucketOptions quorums[] = {
      {"default", 3, 2, 2}, {"default", 3, 1, 3}, {"default", 1, 1, 1}};
  bool zipfian = state.range(1) == 1;
  bool client_driven = state.range(2) == 1;
  std::vector<double> latencies_ms;
  size_t failures = 0;
  uint64_t run = 0;
  uint32_t digest = 0;
  for (auto _ : state) {
    state.PauseTiming();
    SimulationOptions o;
    o.seed = 42 + run++;
    o.nodes = 5;
    o.ring.partitions = 256;
    o.node.buckets = {quorums[state.range(0)]};
    o.network.latency_distribution = LatencyDistribution::kExponential;
    o.network.latency_min = absl::Microseconds(100);
    o.network.latency_mean = absl::Milliseconds(1);
    auto sim = *Simulation::Create(o);
    Client* client = nullptr;
    if (client_driven) {
      ClientOptions co;
      co.seeds = {1};
      co.requests = o.node;
      client = *sim->AddClient(1000, co);
      sim->RunFor(absl::Seconds(1));
    }
    KeyChooser keys(zipfian, o.seed);
    std::vector<std::string> names(kKeys);
    for (size_t i = 0; i < kKeys; ++i) names[i] = "key" + std::to_string(i);
    std::vector<Context> contexts(kKeys);
    size_t issued = 0, completed = 0;
    latencies_ms.reserve(latencies_ms.size() + kOpsPerRun);
    std::function<void()> issue = [&] {
      if (issued >= kOpsPerRun) return;
      ++issued;
      size_t k = keys.Next();
      absl::Time start = sim->network().Now();
      auto finish = [&, start](bool ok) {
        ++completed;
        if (!ok) ++failures;
        latencies_ms.push_back(absl::ToDoubleMilliseconds(sim->network().Now() - start));
        issue();
      };
      NodeId via = 1 + keys.rng()() % 5;
      bool is_get = keys.rng()() % 2 == 0;
      if (is_get) {
        auto done = [&, k, finish](absl::StatusOr<GetResult> r) {
          if (r.ok()) contexts[k] = r->context;
          finish(r.ok());
        };
        if (client)
          client->Get("default", names[k], done);
        else
          sim->node(via)->Get("default", names[k], done);
      } else {
        auto done = [finish](absl::Status s) { finish(s.ok()); };
        std::string value(100, 'v');
        if (client)
          client->Put("default", names[k], contexts[k], std::move(value), done);
        else
          sim->node(via)->Put("default", names[k], contexts[k], std::move(value), done);
      }
    };
    state.ResumeTiming();
    for (size_t i = 0; i < kOutstanding; ++i) issue();
    sim->network().RunUntil([&] { return completed >= kOpsPerRun; }, absl::Hours(1));
    state.PauseTiming();
    const uint64_t run_digest = sim->network().TraceDigest();
    digest ^= static_cast<uint32_t>(run_digest ^ (run_digest >> 32));
    sim.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kOpsPerRun));
  state.counters["p50_ms"] = Percentile(latencies_ms, 0.50);
  state.counters["p99_ms"] = Percentile(latencies_ms, 0.99);
  state.counters["p999_ms"] = Percentile(latencies_ms, 0.999);
  state.counters["failed"] = static_cast<double>(failures);
  state.counters["digest"] = static_cast<double>(digest);
}

void BM_ClusterStart(benchmark::State& state) {
  const size_t nodes = static_cast<size_t>(state.range(0));
  constexpr absl::Duration kIdle = absl::Seconds(10);
  using Clock = std::chrono::steady_clock;
  double create_s = 0, idle_s = 0;
  for (auto _ : state) {
    SimulationOptions o;
    o.seed = 42;
    o.nodes = nodes;
    o.ring.partitions = 16 * nodes;
    const Clock::time_point start = Clock::now();
    auto sim = *Simulation::Create(o);
    const Clock::time_point created = Clock::now();
    sim->RunFor(kIdle);
    const Clock::time_point idled = Clock::now();
    create_s += std::chrono::duration<double>(created - start).count();
    idle_s += std::chrono::duration<double>(idled - created).count();
    state.PauseTiming();
    sim.reset();
    state.ResumeTiming();
  }
  const double runs = static_cast<double>(state.iterations());
  state.counters["create_ms"] = 1e3 * create_s / runs;
  state.counters["idle_speedup"] = absl::ToDoubleSeconds(kIdle) * runs / idle_s;
}

BENCHMARK(BM_ClusterStart)
    ->ArgName("nodes")
    ->Arg(25)
    ->Arg(100)
    ->Arg(200)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

BENCHMARK(BM_Cluster)
    ->ArgNames({"quorum", "zipf", "client"})
    ->ArgsProduct({{0, 1, 2}, {0, 1}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

}  // namespace
}  // namespace dynamo::sim

BENCHMARK_MAIN();

// Anti-entropy costs (paper 4.7): bytes and Merkle rounds to repair k of n
// keys between two replicas, and the time to rebuild trees over n keys.
//
//   BM_Repair/<n>/<k>: two simulated nodes (N = 2, 64 partitions, default
//   tree shape 16^2 leaves per partition) whose disks hold n identical keys
//   except k (half missing on one side, half concurrent versions). Counters:
//   bytes_sent (all anti-entropy messages, both nodes, until the k keys
//   agree), full_bytes (one message carrying all n keys), bytes_pct, rounds
//   (Merkle hash requests), keys_sent, sim_s (simulated seconds).
//   BM_RebuildTrees/<n>: scan a MemoryEngine of n keys in 1000-key pages and
//   fold every key into the tree of its partition (what a node does at start).
#include <benchmark/benchmark.h>

#include <string>

#include "dynamo/coordinator.h"
#include "dynamo/memory_engine.h"
#include "dynamo/merkle_tree.h"
#include "dynamo/ring.h"
#include "dynamo/sim/simulation.h"
#include "node/messages.h"

namespace dynamo {
namespace {

Version MakeVersion(ActorId actor, uint64_t counter, std::string value) {
  Version v;
  v.dot = Dot{actor, counter, static_cast<int64_t>(counter) * 1000};
  v.value = std::move(value);
  return v;
}

std::string Key(int64_t i) { return Coordinator::StorageKey("default", "key" + std::to_string(i)); }

void BM_Repair(benchmark::State& state) {
  const int64_t n = state.range(0), k = state.range(1);
  for (auto _ : state) {
    state.PauseTiming();
    sim::SimulationOptions o;
    o.seed = 42;
    o.nodes = 2;
    o.ring.partitions = 64;
    o.node.buckets[0].n = 2;
    o.node.buckets[0].r = o.node.buckets[0].w = 1;
    o.node.anti_entropy_interval = absl::Seconds(5);
    o.node.merkle_rebuild_batch_keys = 10000;
    o.node.tombstone_reaping_enabled = false;
    o.node.background_ops_per_second_max = 100000;
    auto sim = sim::Simulation::Create(o).value();
    (void)sim->Crash(1, false);
    (void)sim->Crash(2, false);
    const int64_t stride = n / k;
    uint64_t full_bytes = 0;
    const size_t empty_bytes = internal::EncodeMessage(internal::KeyExchange{}).size();
    for (int64_t i = 0; i < n; ++i) {
      const std::string key = Key(i);
      const SiblingSet set = {MakeVersion(0x1111, 1 + i % 1000, "value-" + std::to_string(i))};
      (void)sim->disk(1).Put(key, set, WriteOptions());
      const bool differs = i % stride == 0 && i / stride < k;
      if (!differs) {
        (void)sim->disk(2).Put(key, set, WriteOptions());
      } else if ((i / stride) % 2 == 1) {
        (void)sim->disk(2).Put(key, {MakeVersion(0x2222, 1, "other")}, WriteOptions());
      }
      internal::KeyExchange one;
      one.entries.emplace_back(key, set);
      full_bytes += internal::EncodeMessage(one).size() - empty_bytes;  // the entry's bytes
    }
    (void)sim->Restart(1);
    (void)sim->Restart(2);
    const absl::Time start = sim->network().Now();
    state.ResumeTiming();
    bool agreed = sim->network().RunUntil(
        [&] {
          for (int64_t j = 0; j < k; ++j) {
            const std::string key = Key(j * stride);
            if (sim->disk(1).Get(key).value() != sim->disk(2).Get(key).value()) return false;
          }
          return true;
        },
        absl::Seconds(120));
    state.PauseTiming();
    if (!agreed) state.SkipWithError("replicas did not converge within 120 s simulated");
    uint64_t bytes = 0, rounds = 0, keys = 0;
    for (NodeId id : {1, 2}) {
      bytes += sim->node(id)->metrics().anti_entropy_bytes_sent;
      rounds += sim->node(id)->metrics().anti_entropy_rounds;
      keys += sim->node(id)->metrics().anti_entropy_keys_sent;
    }
    state.counters["bytes_sent"] = static_cast<double>(bytes);
    state.counters["full_bytes"] = static_cast<double>(full_bytes);
    state.counters["bytes_pct"] = 100.0 * static_cast<double>(bytes) / full_bytes;
    state.counters["rounds"] = static_cast<double>(rounds);
    state.counters["keys_sent"] = static_cast<double>(keys);
    state.counters["sim_s"] = absl::ToDoubleSeconds(sim->network().Now() - start);
    sim.reset();
    state.ResumeTiming();
  }
}
BENCHMARK(BM_Repair)
    ->Args({100'000, 1})->Args({100'000, 10})->Args({100'000, 1000})
    ->Args({1'000'000, 1})->Args({1'000'000, 10})->Args({1'000'000, 1000})
    ->Iterations(1)->Unit(benchmark::kMillisecond);

void BM_RebuildTrees(benchmark::State& state) {
  const int64_t n = state.range(0);
  MemoryEngine disk;
  for (int64_t i = 0; i < n; ++i) {
    (void)disk.Put(Key(i), {MakeVersion(0x1111, 1 + i % 1000, "value-" + std::to_string(i))},
                   WriteOptions());
  }
  RingOptions ro;
  ro.partitions = 64;
  Ring ring(ro);
  (void)ring.AddNode(RingMember{1, "", 1.0, {}});
  const std::vector<TokenRange> ranges = ring.Ranges();
  for (auto _ : state) {
    size_t keys = 0;
    for (const TokenRange& range : ranges) {
      MerkleTree tree = MerkleTree::Create(range, MerkleOptions{16, 2}).value();
      std::string cursor;
      ScanLimits limits;
      limits.entries_max = 1000;
      do {
        ScanResult page = disk.Scan(range, cursor, limits).value();
        for (const KeyEntry& e : page.entries) {
          (void)tree.Update(KeyToken(e.key), 0, MerkleTree::KeyHash(e.key, e.siblings));
        }
        keys += page.entries.size();
        cursor = page.resume_cursor;
      } while (!cursor.empty());
      benchmark::DoNotOptimize(tree.Root());
    }
    state.counters["keys"] = static_cast<double>(keys);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_RebuildTrees)->Arg(1'000'000)->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace dynamo

BENCHMARK_MAIN();

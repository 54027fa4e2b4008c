// Preference-list lookups (paper 4.3) for the two configurations that bound
// the ring's cost: strategy 3 with Q = 4096 partitions, and strategy 1 with
// 1000 nodes of 256 tokens each (256,000 ring positions). Targets: <= 30 ns
// and <= 250 ns per lookup of N = 3 replicas.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "dynamo/ring.h"

namespace dynamo {
namespace {

Ring MakeRing(PartitionStrategy strategy, size_t nodes, size_t tokens, size_t partitions) {
  RingOptions o;
  o.strategy = strategy;
  o.tokens_per_node = tokens;
  o.partitions = partitions;
  o.seed = 1;
  std::vector<RingMember> members(nodes);
  for (size_t i = 0; i < nodes; ++i) members[i].id = i + 1;
  auto ring = Ring::FromMembers(o, std::move(members));
  if (!ring.ok()) std::abort();
  return *std::move(ring);
}

std::vector<Token> RandomTokens(size_t count) {
  std::mt19937_64 rng(42);
  std::vector<Token> tokens(count);
  for (Token& t : tokens) {
    const uint64_t high = rng();  // sequenced: argument order is unspecified
    t = absl::MakeUint128(high, rng());
  }
  return tokens;
}

void RunLookups(benchmark::State& state, const Ring& ring, size_t fallbacks) {
  const std::vector<Token> tokens = RandomTokens(1 << 16);
  std::vector<NodeId> out;
  ring.PreferenceList(tokens[0], 3, fallbacks, &out);  // builds the lookup table
  size_t i = 0;
  for (auto _ : state) {
    ring.PreferenceList(tokens[i++ & (tokens.size() - 1)], 3, fallbacks, &out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PreferenceListStrategy3Q4096(benchmark::State& state) {
  Ring ring = MakeRing(PartitionStrategy::kEqualPartitions, 30, 1, 4096);
  RunLookups(state, ring, state.range(0));
}
BENCHMARK(BM_PreferenceListStrategy3Q4096)->Arg(0)->Arg(2);

void BM_PreferenceListStrategy1Nodes1000T256(benchmark::State& state) {
  Ring ring = MakeRing(PartitionStrategy::kRandomTokens, 1000, 256, 1);
  RunLookups(state, ring, state.range(0));
}
BENCHMARK(BM_PreferenceListStrategy1Nodes1000T256)->Arg(0)->Arg(2);

void BM_PreferenceListStrategy2Nodes100(benchmark::State& state) {
  Ring ring = MakeRing(PartitionStrategy::kRandomTokensEqualPartitions, 100, 256, 4096);
  RunLookups(state, ring, 0);
}
BENCHMARK(BM_PreferenceListStrategy2Nodes100);

// The whole path from a key: XXH3-128 of a 16-byte key, then the lookup.
void BM_PreferenceListFromKeyStrategy3(benchmark::State& state) {
  Ring ring = MakeRing(PartitionStrategy::kEqualPartitions, 30, 1, 4096);
  std::vector<std::string> keys;
  for (int i = 0; i < 4096; ++i) keys.push_back("user:" + std::to_string(1000000000 + i));
  std::vector<NodeId> out;
  size_t i = 0;
  for (auto _ : state) {
    ring.PreferenceList(KeyToken(keys[i++ & 4095]), 3, 0, &out);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_PreferenceListFromKeyStrategy3);

// Cost of a membership change (the lookup table is rebuilt lazily on the
// first lookup after it).
void BM_JoinAndFirstLookupStrategy3Q4096(benchmark::State& state) {
  Ring base = MakeRing(PartitionStrategy::kEqualPartitions, 30, 1, 4096);
  std::vector<NodeId> out;
  for (auto _ : state) {
    Ring ring = base;
    RingMember m;
    m.id = 1000;
    if (!ring.AddNode(m).ok()) std::abort();
    ring.PreferenceList(Token(1), 3, 0, &out);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_JoinAndFirstLookupStrategy3Q4096)->Unit(benchmark::kMicrosecond);

// What a node pays on every membership change of a small cluster: its
// routing ring built from scratch, members added one by one (a dynamo-server
// trio with the default Q = 1024).
void BM_BuildRingThreeNodesQ1024(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(MakeRing(PartitionStrategy::kEqualPartitions, 3, 1, 1024));
  }
}
BENCHMARK(BM_BuildRingThreeNodesQ1024)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace dynamo

BENCHMARK_MAIN();

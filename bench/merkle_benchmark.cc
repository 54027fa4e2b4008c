// MerkleTree costs (paper 4.7): an incremental update, building a tree over
// 1M keys, and a diff of two 1M-key trees that differ in 10 keys, reporting
// how small a fraction of the leaves and hashes the diff touches.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "dynamo/merkle_tree.h"

namespace dynamo {
namespace {

struct Key {
  Token token;
  uint64_t hash;
};

std::vector<Key> MakeKeys(size_t count) {
  std::mt19937_64 rng(7);
  std::vector<Key> keys(count);
  for (Key& k : keys) {
    std::string name = "key-" + std::to_string(rng());
    k.token = KeyToken(name);
    k.hash = MerkleTree::KeyHash(name, "v1");
  }
  return keys;
}

MerkleTree NewTree() {
  auto tree = MerkleTree::Create(TokenRange{});
  if (!tree.ok()) std::abort();
  return *std::move(tree);
}

void BM_MerkleUpdate(benchmark::State& state) {
  const std::vector<Key> keys = MakeKeys(1 << 16);
  MerkleTree tree = NewTree();
  size_t i = 0;
  for (auto _ : state) {
    const Key& k = keys[i++ & (keys.size() - 1)];
    benchmark::DoNotOptimize(tree.Update(k.token, 0, k.hash));
  }
  benchmark::DoNotOptimize(tree.Root());
}
BENCHMARK(BM_MerkleUpdate);

void BM_MerkleBuild1MKeys(benchmark::State& state) {
  const std::vector<Key> keys = MakeKeys(1000000);
  for (auto _ : state) {
    MerkleTree tree = NewTree();
    for (const Key& k : keys) benchmark::DoNotOptimize(tree.Update(k.token, 0, k.hash));
    benchmark::DoNotOptimize(tree.Root());
  }
  state.SetItemsProcessed(state.iterations() * keys.size());
}
BENCHMARK(BM_MerkleBuild1MKeys)->Unit(benchmark::kMillisecond);

void BM_MerkleDiff1MKeys10Differences(benchmark::State& state) {
  const std::vector<Key> keys = MakeKeys(1000000);
  MerkleTree local = NewTree();
  for (const Key& k : keys) (void)local.Update(k.token, 0, k.hash);
  MerkleTree remote = local;
  for (size_t i = 0; i < 10; ++i) {
    const Key& k = keys[i * 99991];
    // A new version: an independent hash. (A fixed XOR delta would cancel in
    // pairs, which is why keys must be hashed with KeyHash.)
    (void)remote.Update(k.token, k.hash, MerkleTree::KeyHash("changed", std::to_string(i)));
  }
  std::vector<uint64_t> reply;
  size_t leaves_compared = 0, hashes = 0, rounds = 0, differing = 0;
  for (auto _ : state) {
    MerkleDiff diff(&local);
    while (!diff.done()) {
      (void)remote.AnswerRequest(diff.request(), &reply);
      (void)diff.AcceptReply(reply);
    }
    leaves_compared = diff.leaves_compared();
    hashes = diff.hashes_exchanged();
    rounds = diff.rounds();
    differing = diff.differing_leaves().size();
  }
  uint64_t total_nodes = 0;
  for (int level = 0; level <= local.options().depth; ++level) total_nodes += local.NodesAt(level);
  state.counters["leaves_touched_fraction"] =
      static_cast<double>(leaves_compared) / static_cast<double>(local.leaf_count());
  state.counters["hashes_exchanged_fraction"] =
      static_cast<double>(hashes) / static_cast<double>(total_nodes);
  state.counters["hashes_exchanged"] = static_cast<double>(hashes);
  state.counters["rounds"] = static_cast<double>(rounds);
  state.counters["differing_leaves"] = static_cast<double>(differing);
}
BENCHMARK(BM_MerkleDiff1MKeys10Differences)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace dynamo

BENCHMARK_MAIN();

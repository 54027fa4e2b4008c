// What node-wide dot counters (lib/node/dot_counter.h, issue #5) cost a put:
// DotCounter::Next with its lease renewed every `lease` counters, each
// renewal a durable identity write. On LmdbEngine (kSync: every identity
// write is fsynced, whatever the mode) the renewal is an fsync, so the
// amortized cost per counter falls with the lease; MemoryEngine shows the
// counter's own cost. Compare the rows of one run (the machine is shared):
//   dot_counter_benchmark --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true --benchmark_format=json
// Time per iteration is the amortized cost of one counter.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "dynamo/lmdb_engine.h"
#include "dynamo/memory_engine.h"
#include "node/dot_counter.h"

namespace dynamo {
namespace {

NodeIdentity Identity() {
  NodeIdentity id;
  id.node = 1;
  id.epoch = 1;
  id.actor = 0x5eed;
  return id;
}

void RunCounter(benchmark::State& state, StorageEngine* storage) {
  auto counter = internal::DotCounter::Start(storage, Identity(), state.range(0));
  if (!counter.ok()) {
    state.SkipWithError(std::string(counter.status().message()).c_str());
    return;
  }
  uint64_t key_counter = 0;
  for (auto _ : state) {
    absl::StatusOr<uint64_t> next = (*counter)->Next(key_counter);
    if (!next.ok()) {
      state.SkipWithError(std::string(next.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(*next);
  }
  state.counters["lease_writes"] =
      static_cast<double>(state.iterations()) / static_cast<double>(state.range(0));
}

void BM_DotCounterMemory(benchmark::State& state) {
  MemoryEngine engine;
  RunCounter(state, &engine);
}

void BM_DotCounterLmdbSync(benchmark::State& state) {
  char pattern[] = "/tmp/dynamo_dot_counter_bench_XXXXXX";
  const char* dir = mkdtemp(pattern);
  if (dir == nullptr) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  {
    LmdbOptions options;
    options.path = dir;
    options.durability = LmdbOptions::Durability::kSync;
    auto engine = LmdbEngine::Open(options);
    if (!engine.ok()) {
      state.SkipWithError(std::string(engine.status().message()).c_str());
    } else {
      RunCounter(state, engine->get());
    }
  }
  std::filesystem::remove_all(dir);
}

BENCHMARK(BM_DotCounterMemory)->Arg(1)->Arg(10000);
BENCHMARK(BM_DotCounterLmdbSync)->Arg(1)->Arg(100)->Arg(10000);

}  // namespace
}  // namespace dynamo

BENCHMARK_MAIN();

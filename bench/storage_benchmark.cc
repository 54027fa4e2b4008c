// LmdbEngine against raw LMDB doing the same work (paper section 5:
// pluggable storage engines; section 6.1: write buffering).
//
// "The same work": the same environment flags, the same key layout (16-byte
// big-endian XXH3-128 token + key bytes, computed per operation on both
// sides), values of the same size, one write transaction per put, and a get
// that copies the value out. The engine does on top what a replica must: it
// reads the stored sibling set inside the put's transaction, merges the
// incoming version into it, and encodes / decodes the sibling set.
//
// Both stores are preloaded with the same number of keys (1M for 100 B
// values, 100k for 4 KiB by default; DYNAMO_BENCH_KEYS_SMALL /
// DYNAMO_BENCH_KEYS_LARGE override) in large transactions, then puts insert
// fresh keys and gets read random preloaded keys (fixed seed).
//
// Besides Google Benchmark's timings, each run samples every operation's
// latency and reports p50/p99/p99.9 in microseconds as counters; at the end a
// table prints engine/raw ratios of the median times over repetitions and
// the gain of write buffering over synced puts. Run e.g.
//   storage_benchmark --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <lmdb.h>
#include <stdlib.h>

#include <algorithm>
#include <benchmark/benchmark.h>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/codec.h"
#include "dynamo/lmdb_engine.h"
#include "storage/storage_util.h"

namespace dynamo {
namespace {

using Durability = LmdbOptions::Durability;

constexpr size_t kMapBytes = size_t{64} << 30;  // virtual; the file grows with the data
constexpr size_t kPreloadBatchKeys = 20000;
constexpr int kSyncedIterations = 300;  // fsync-bound runs: fixed count

size_t EnvSize(const char* name, size_t fallback) {
  const char* v = getenv(name);
  return v != nullptr ? static_cast<size_t>(std::strtoull(v, nullptr, 10)) : fallback;
}

size_t PreloadKeys(size_t value_bytes) {
  return value_bytes <= 1024 ? EnvSize("DYNAMO_BENCH_KEYS_SMALL", 1000000)
                             : EnvSize("DYNAMO_BENCH_KEYS_LARGE", 100000);
}

std::string KeyName(uint64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "user%012llu", static_cast<unsigned long long>(i));
  return buf;
}

void Die(const char* what, int rc) {
  std::fprintf(stderr, "storage_benchmark: %s: %s\n", what, mdb_strerror(rc));
  std::abort();
}

Version MakeValueVersion(uint64_t counter, size_t value_bytes) {
  Version v;
  v.dot = Dot{1, counter, 1};
  v.context.Observe(2, 7, 1);
  v.value.assign(value_bytes, 'v');
  return v;
}

// Latency samples of one run, reported as percentile counters.
class Latencies {
 public:
  explicit Latencies(benchmark::State& state) : state_(state) { samples_.reserve(1 << 16); }
  template <typename Fn>
  void Time(Fn&& fn) {
    auto start = std::chrono::steady_clock::now();
    fn();
    samples_.push_back(std::chrono::duration<double, std::micro>(
                           std::chrono::steady_clock::now() - start)
                           .count());
  }
  ~Latencies() {
    if (samples_.empty()) return;
    std::sort(samples_.begin(), samples_.end());
    auto at = [&](double q) {
      size_t i = std::min(samples_.size() - 1, static_cast<size_t>(q * samples_.size()));
      return samples_[i];
    };
    state_.counters["p50_us"] = at(0.50);
    state_.counters["p99_us"] = at(0.99);
    state_.counters["p999_us"] = at(0.999);
  }

 private:
  benchmark::State& state_;
  std::vector<double> samples_;
};

// A raw LMDB environment with one named database, laid out like the engine's.
class RawStore {
 public:
  RawStore(const std::string& path, Durability durability) {
    std::filesystem::create_directories(path);
    int rc = mdb_env_create(&env_);
    if (rc) Die("env create", rc);
    mdb_env_set_maxdbs(env_, 4);
    mdb_env_set_mapsize(env_, kMapBytes);
    unsigned flags = MDB_NOTLS | (durability == Durability::kNoSync ? MDB_NOSYNC : 0);
    if ((rc = mdb_env_open(env_, path.c_str(), flags, 0644))) Die("env open", rc);
    MDB_txn* txn;
    if ((rc = mdb_txn_begin(env_, nullptr, 0, &txn))) Die("txn", rc);
    if ((rc = mdb_dbi_open(txn, "data", MDB_CREATE, &dbi_))) Die("dbi", rc);
    if ((rc = mdb_txn_commit(txn))) Die("commit", rc);
  }
  ~RawStore() {
    if (read_txn_) mdb_txn_abort(read_txn_);
    mdb_env_close(env_);
  }
  void Put(std::string_view key, std::string_view value) {
    std::string k = internal::DataKey(key);
    MDB_val mk{k.size(), k.data()}, mv{value.size(), const_cast<char*>(value.data())};
    MDB_txn* txn;
    int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    if (rc) Die("txn", rc);
    if ((rc = mdb_put(txn, dbi_, &mk, &mv, 0))) Die("put", rc);
    if ((rc = mdb_txn_commit(txn))) Die("commit", rc);
  }
  std::string Get(std::string_view key) {
    std::string k = internal::DataKey(key);
    int rc = read_txn_ ? mdb_txn_renew(read_txn_)
                       : mdb_txn_begin(env_, nullptr, MDB_RDONLY, &read_txn_);
    if (rc) Die("read txn", rc);
    MDB_val mk{k.size(), k.data()}, mv;
    rc = mdb_get(read_txn_, dbi_, &mk, &mv);
    std::string out = rc == 0 ? std::string(static_cast<char*>(mv.mv_data), mv.mv_size) : "";
    mdb_txn_reset(read_txn_);
    return out;
  }
  MDB_env* env() const { return env_; }
  MDB_dbi dbi() const { return dbi_; }

 private:
  MDB_env* env_ = nullptr;
  MDB_txn* read_txn_ = nullptr;
  MDB_dbi dbi_ = 0;
};

// Inserts keys [0, n) into `dbi` of `env` in large transactions; `value_of`
// gives the stored bytes.
template <typename ValueOf>
void BulkLoad(MDB_env* env, MDB_dbi dbi, size_t n, ValueOf value_of) {
  for (size_t base = 0; base < n; base += kPreloadBatchKeys) {
    MDB_txn* txn;
    int rc = mdb_txn_begin(env, nullptr, 0, &txn);
    if (rc) Die("bulk txn", rc);
    for (size_t i = base; i < std::min(n, base + kPreloadBatchKeys); ++i) {
      std::string k = internal::DataKey(KeyName(i));
      std::string v = value_of(i);
      MDB_val mk{k.size(), k.data()}, mv{v.size(), v.data()};
      if ((rc = mdb_put(txn, dbi, &mk, &mv, 0))) Die("bulk put", rc);
    }
    if ((rc = mdb_txn_commit(txn))) Die("bulk commit", rc);
  }
}

std::string BenchRoot() {
  static const std::string root = [] {
    char pattern[] = "/tmp/dynamo_storage_bench_XXXXXX";
    const char* made = mkdtemp(pattern);
    if (made == nullptr) std::abort();
    return std::string(made);
  }();
  return root;
}

// One engine store and one raw store per (value size, durability), preloaded
// once and shared by the benchmarks that use them.
struct Stores {
  std::unique_ptr<LmdbEngine> engine;
  std::unique_ptr<RawStore> raw;
  uint64_t next_engine_key = 0;
  uint64_t next_raw_key = 0;
  size_t preloaded = 0;
};

Stores& GetStores(size_t value_bytes, Durability durability) {
  static std::map<std::pair<size_t, int>, std::unique_ptr<Stores>> all;
  auto& slot = all[{value_bytes, static_cast<int>(durability)}];
  if (slot) return *slot;
  slot = std::make_unique<Stores>();
  // Synced runs do a few hundred fsync-bound puts; a small preload suffices.
  size_t n = durability == Durability::kNoSync ? PreloadKeys(value_bytes) : 10000;
  std::string dir = BenchRoot() + "/" + std::to_string(value_bytes) + "_" +
                    std::to_string(static_cast<int>(durability));
  LmdbOptions options;
  options.path = dir + "/engine";
  options.durability = durability;
  options.map_bytes_initial = kMapBytes;
  options.map_bytes_max = kMapBytes;
  {
    // Create the engine's layout, then bulk-load its data database raw.
    std::filesystem::create_directories(dir);
    auto created = LmdbEngine::Open(options);
    if (!created.ok()) {
      std::fprintf(stderr, "%s\n", created.status().ToString().c_str());
      std::abort();
    }
  }
  {
    RawStore loader(options.path, Durability::kNoSync);
    BulkLoad(loader.env(), loader.dbi(), n, [&](size_t i) {
      return internal::EncodeSiblingSet({MakeValueVersion(i + 1, value_bytes)});
    });
    mdb_env_sync(loader.env(), 1);
  }
  auto engine = LmdbEngine::Open(options);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    std::abort();
  }
  slot->engine = std::move(engine).value();
  slot->raw = std::make_unique<RawStore>(dir + "/raw", durability);
  std::string value(value_bytes, 'v');
  BulkLoad(slot->raw->env(), slot->raw->dbi(), n, [&](size_t) { return value; });
  mdb_env_sync(slot->raw->env(), 1);
  slot->preloaded = n;
  slot->next_engine_key = slot->next_raw_key = n;
  return *slot;
}

void EnginePut(benchmark::State& state, size_t value_bytes, Durability durability) {
  Stores& s = GetStores(value_bytes, durability);
  SiblingSet incoming = {MakeValueVersion(1, value_bytes)};
  Latencies latencies(state);
  for (auto _ : state) {
    std::string key = KeyName(s.next_engine_key++);
    incoming[0].dot.counter = s.next_engine_key;
    latencies.Time([&] {
      auto put = s.engine->Put(key, incoming, WriteOptions());
      if (!put.ok()) std::abort();
      benchmark::DoNotOptimize(put);
    });
  }
  state.SetItemsProcessed(state.iterations());
}

void RawPut(benchmark::State& state, size_t value_bytes, Durability durability) {
  Stores& s = GetStores(value_bytes, durability);
  std::string value(value_bytes, 'v');
  Latencies latencies(state);
  for (auto _ : state) {
    std::string key = KeyName(s.next_raw_key++);
    latencies.Time([&] { s.raw->Put(key, value); });
  }
  state.SetItemsProcessed(state.iterations());
}

void EngineGet(benchmark::State& state, size_t value_bytes) {
  Stores& s = GetStores(value_bytes, Durability::kNoSync);
  std::mt19937_64 rng(42);
  Latencies latencies(state);
  for (auto _ : state) {
    std::string key = KeyName(rng() % s.preloaded);
    latencies.Time([&] {
      auto got = s.engine->Get(key);
      if (!got.ok() || got->size() != 1) std::abort();
      benchmark::DoNotOptimize(got);
    });
  }
  state.SetItemsProcessed(state.iterations());
}

void RawGet(benchmark::State& state, size_t value_bytes) {
  Stores& s = GetStores(value_bytes, Durability::kNoSync);
  std::mt19937_64 rng(42);
  Latencies latencies(state);
  for (auto _ : state) {
    std::string key = KeyName(rng() % s.preloaded);
    latencies.Time([&] {
      std::string got = s.raw->Get(key);
      if (got.size() != value_bytes) std::abort();
      benchmark::DoNotOptimize(got);
    });
  }
  state.SetItemsProcessed(state.iterations());
}

// Prints the usual console output, then ratios of median (or, without
// repetitions, single-run) real times.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      std::string name = run.run_name.function_name;
      if (run.run_type == Run::RT_Aggregate) {
        if (run.aggregate_name == "median") median_[name] = run.GetAdjustedRealTime();
      } else {
        single_[name] = run.GetAdjustedRealTime();
      }
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    auto time_of = [&](const std::string& name) -> double {
      if (auto it = median_.find(name); it != median_.end()) return it->second;
      if (auto it = single_.find(name); it != single_.end()) return it->second;
      return -1;
    };
    std::printf("\n%-44s %10s %10s %8s %8s\n", "comparison", "a (us)", "b (us)", "a/b", "target");
    auto row = [&](const std::string& a, const std::string& b, const char* target) {
      double ta = time_of(a), tb = time_of(b);
      if (ta <= 0 || tb <= 0) return;
      std::printf("%-44s %10.3f %10.3f %8.3f %8s\n", (a + " vs raw").c_str(), ta / 1000,
                  tb / 1000, ta / tb, target);
    };
    for (const char* size : {"100B", "4KiB"}) {
      row(std::string("put/engine/nosync/") + size, std::string("put/raw/nosync/") + size,
          "<=1.3");
      row(std::string("put/engine/sync/") + size, std::string("put/raw/sync/") + size, "<=1.3");
      row(std::string("get/engine/") + size, std::string("get/raw/") + size, "<=1.2");
    }
    std::printf("\n%-44s %10s %10s %8s\n", "write buffering", "sync (us)", "buf (us)", "speedup");
    for (const char* size : {"100B", "4KiB"}) {
      double sync = time_of(std::string("put/engine/sync/") + size);
      double buffered = time_of(std::string("put/engine/buffered/") + size);
      if (sync > 0 && buffered > 0) {
        std::printf("%-44s %10.3f %10.3f %8.1fx\n", (std::string("put ") + size).c_str(),
                    sync / 1000, buffered / 1000, sync / buffered);
      }
    }
  }

 private:
  std::map<std::string, double> median_, single_;
};

void RegisterAll() {
  for (size_t bytes : {size_t{100}, size_t{4096}}) {
    const std::string size = bytes == 100 ? "100B" : "4KiB";
    benchmark::RegisterBenchmark(("put/engine/nosync/" + size).c_str(), EnginePut, bytes,
                                 Durability::kNoSync);
    benchmark::RegisterBenchmark(("put/raw/nosync/" + size).c_str(), RawPut, bytes,
                                 Durability::kNoSync);
    benchmark::RegisterBenchmark(("get/engine/" + size).c_str(), EngineGet, bytes);
    benchmark::RegisterBenchmark(("get/raw/" + size).c_str(), RawGet, bytes);
    benchmark::RegisterBenchmark(("put/engine/sync/" + size).c_str(), EnginePut, bytes,
                                 Durability::kSync)
        ->Iterations(kSyncedIterations);
    benchmark::RegisterBenchmark(("put/raw/sync/" + size).c_str(), RawPut, bytes,
                                 Durability::kSync)
        ->Iterations(kSyncedIterations);
    // Buffered puts: 1,000-object buffer, each flush one synced transaction;
    // iterations a multiple of the buffer so flush costs are included evenly.
    benchmark::RegisterBenchmark(("put/engine/buffered/" + size).c_str(), EnginePut, bytes,
                                 Durability::kBuffered)
        ->Iterations(20000);
  }
}

}  // namespace
}  // namespace dynamo

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  dynamo::RegisterAll();
  dynamo::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  std::error_code ignored;
  std::filesystem::remove_all(dynamo::BenchRoot(), ignored);
  return 0;
}

// LmdbEngine against raw LMDB doing the same work (paper section 5:
// pluggable storage engines; section 6.1: write buffering).
//
// "The same work": the same environment flags, the same key layout (16-byte
// big-endian XXH3-128 token + key bytes, computed per operation on both
// sides into a stack buffer with internal::DataKeyBuffer), values of the
// same size, one write transaction per put, a reset read transaction renewed
// per get, and a get that copies the value out. The engine does on top what
// a replica must: it reads the stored sibling set inside the put's
// transaction, merges the incoming version into it, and encodes / decodes
// the sibling set (the stored record carries the version's dot and context,
// about 13 bytes more than the bare value).
//
// Both stores are preloaded with the same number of keys (1M for 100 B
// values, 100k for 4 KiB by default; DYNAMO_BENCH_KEYS_SMALL /
// DYNAMO_BENCH_KEYS_LARGE override) in large transactions, then puts insert
// fresh keys and gets read random preloaded keys (fixed seed).
//
// Two kinds of comparison. The separate benchmarks (put/engine/..., get/raw/...)
// time each side on its own; on a shared, loaded machine their ratio moves
// with whatever else runs during each. The paired ones (paired/get/...,
// paired/put/...) alternate blocks of 256 engine operations and 256 raw ones
// in the same loop, so both sides see the same load with caches as warm as
// in separate runs; they report each side's p50/p99/p99.9 and the
// engine/raw ratios of the medians and the means. Every run samples each operation's latency and
// reports percentiles in microseconds as counters; at the end a table prints
// the ratios (medians over repetitions) and the gain of write buffering over
// synced puts. Run e.g.
//   storage_benchmark --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <lmdb.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
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

constexpr size_t kPreloadBatchKeys = 20000;
constexpr int kSyncedIterations = 300;  // fsync-bound runs: fixed count

size_t EnvSize(const char* name, size_t fallback) {
  const char* v = getenv(name);
  return v != nullptr ? static_cast<size_t>(std::strtoull(v, nullptr, 10)) : fallback;
}

// Virtual: the files grow only with the data. DYNAMO_BENCH_MAP_BYTES lowers
// it for valgrind, which cannot map 64 GiB.
size_t MapBytes() { return EnvSize("DYNAMO_BENCH_MAP_BYTES", size_t{64} << 30); }

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

// Latency samples of one run.
class Latencies {
 public:
  Latencies() { samples_.reserve(1 << 16); }
  template <typename Fn>
  void Time(Fn&& fn) {
    auto start = std::chrono::steady_clock::now();
    fn();
    samples_.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  // REQUIRES: at least one sample. Sorts the samples.
  double Percentile(double q) {
    std::sort(samples_.begin(), samples_.end());
    return samples_[std::min(samples_.size() - 1, static_cast<size_t>(q * samples_.size()))];
  }
  double Mean() const {
    double sum = 0;
    for (double s : samples_) sum += s;
    return sum / static_cast<double>(samples_.size());
  }
  // Sets <prefix>p50_us, <prefix>p99_us and <prefix>p999_us.
  void Report(benchmark::State& state, const std::string& prefix) {
    if (samples_.empty()) return;
    state.counters[prefix + "p50_us"] = Percentile(0.50);
    state.counters[prefix + "p99_us"] = Percentile(0.99);
    state.counters[prefix + "p999_us"] = Percentile(0.999);
  }

 private:
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
    mdb_env_set_mapsize(env_, MapBytes());
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
    const internal::DataKeyBuffer k(key);
    MDB_val mk{k.view().size(), const_cast<char*>(k.view().data())};
    MDB_val mv{value.size(), const_cast<char*>(value.data())};
    MDB_txn* txn;
    int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    if (rc) Die("txn", rc);
    if ((rc = mdb_put(txn, dbi_, &mk, &mv, 0))) Die("put", rc);
    if ((rc = mdb_txn_commit(txn))) Die("commit", rc);
  }
  std::string Get(std::string_view key) {
    const internal::DataKeyBuffer k(key);
    int rc =
        read_txn_ ? mdb_txn_renew(read_txn_) : mdb_txn_begin(env_, nullptr, MDB_RDONLY, &read_txn_);
    if (rc) Die("read txn", rc);
    MDB_val mk{k.view().size(), const_cast<char*>(k.view().data())}, mv;
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
  std::string engine_file, raw_file;  // the two data.mdb files
  bool page_cache_warm = false;
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
  options.map_bytes_initial = MapBytes();
  options.map_bytes_max = MapBytes();
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
  slot->engine_file = options.path + "/data.mdb";
  slot->raw_file = dir + "/raw/data.mdb";
  slot->next_engine_key = slot->next_raw_key = n;
  return *slot;
}

// Reads both data files once, in alternating 1 MiB chunks, so that the page
// cache holds as much of one as of the other when the gets start. Without
// it, at 1M keys of 4 KiB (16 GB of files on a 24 GB machine shared with
// others) whichever file the kernel had evicted more of paid for it in
// major faults. Only the page cache is warmed: each store's own memory map
// still takes its first-touch (minor) faults, on the same keys in the same
// order. Both sides keep the kernel's default read-ahead (no MDB_NORDAHEAD).
void WarmPageCache(Stores& s) {
  if (s.page_cache_warm) return;
  std::ifstream engine_file(s.engine_file, std::ios::binary);
  std::ifstream raw_file(s.raw_file, std::ios::binary);
  std::vector<char> chunk(size_t{1} << 20);
  while (engine_file || raw_file) {
    if (engine_file) engine_file.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    if (raw_file) raw_file.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  }
  s.page_cache_warm = true;
}

// The kNoSync stores the get benchmarks read, with a warm page cache.
Stores& GetReadStores(size_t value_bytes) {
  Stores& s = GetStores(value_bytes, Durability::kNoSync);
  WarmPageCache(s);
  return s;
}

// One operation of each kind on each side.
void EnginePutOne(Stores& s, const std::string& key, const SiblingSet& incoming) {
  auto put = s.engine->Put(key, incoming, WriteOptions());
  if (!put.ok()) std::abort();
  benchmark::DoNotOptimize(put);
}

void RawPutOne(Stores& s, const std::string& key, std::string_view value) {
  s.raw->Put(key, value);
}

void EngineGetOne(Stores& s, const std::string& key) {
  auto got = s.engine->Get(key);
  if (!got.ok() || got->size() != 1) std::abort();
  benchmark::DoNotOptimize(got);
}

void RawGetOne(Stores& s, const std::string& key, size_t value_bytes) {
  std::string got = s.raw->Get(key);
  if (got.size() != value_bytes) std::abort();
  benchmark::DoNotOptimize(got);
}

void EnginePut(benchmark::State& state, size_t value_bytes, Durability durability) {
  Stores& s = GetStores(value_bytes, durability);
  SiblingSet incoming = {MakeValueVersion(1, value_bytes)};
  Latencies latencies;
  for (auto _ : state) {
    std::string key = KeyName(s.next_engine_key++);
    incoming[0].dot.counter = s.next_engine_key;
    latencies.Time([&] { EnginePutOne(s, key, incoming); });
  }
  latencies.Report(state, "");
  state.SetItemsProcessed(state.iterations());
}

void RawPut(benchmark::State& state, size_t value_bytes, Durability durability) {
  Stores& s = GetStores(value_bytes, durability);
  std::string value(value_bytes, 'v');
  Latencies latencies;
  for (auto _ : state) {
    std::string key = KeyName(s.next_raw_key++);
    latencies.Time([&] { RawPutOne(s, key, value); });
  }
  latencies.Report(state, "");
  state.SetItemsProcessed(state.iterations());
}

void EngineGet(benchmark::State& state, size_t value_bytes) {
  Stores& s = GetReadStores(value_bytes);
  std::mt19937_64 rng(42);
  Latencies latencies;
  for (auto _ : state) {
    std::string key = KeyName(rng() % s.preloaded);
    latencies.Time([&] { EngineGetOne(s, key); });
  }
  latencies.Report(state, "");
  state.SetItemsProcessed(state.iterations());
}

void RawGet(benchmark::State& state, size_t value_bytes) {
  Stores& s = GetReadStores(value_bytes);
  std::mt19937_64 rng(42);
  Latencies latencies;
  for (auto _ : state) {
    std::string key = KeyName(rng() % s.preloaded);
    latencies.Time([&] { RawGetOne(s, key, value_bytes); });
  }
  latencies.Report(state, "");
  state.SetItemsProcessed(state.iterations());
}

// The write buffer as dynamo-server runs it (--durability buffered-all): a
// buffer of up to 100,000 keys, flushed every 10,000 operations here (the
// server flushes every 100 ms, ~10k SETs at its pipelined rate), over a
// working set of 10,000 keys (redis-benchmark -r 10000) that are also on
// disk. Each operation is what a coordinator's put does to the engine on
// that path (SupersedingWriter, below). The flushes are timed as part of
// the operations that trigger them. There is no raw LMDB side: this
// measures the engine against its own earlier builds (run the old and the
// new binary alternately).
constexpr size_t kServerBufferObjects = 100000;
constexpr size_t kServerKeys = 10000;
constexpr int64_t kServerFlushOps = 10000;

LmdbEngine& ServerBufferedEngine(size_t value_bytes) {
  static std::map<size_t, std::unique_ptr<LmdbEngine>> all;
  auto& slot = all[value_bytes];
  if (slot) return *slot;
  LmdbOptions options;
  options.path = BenchRoot() + "/server_buffered_" + std::to_string(value_bytes);
  options.durability = Durability::kBuffered;
  options.write_buffer_objects_max = kServerBufferObjects;
  options.map_bytes_initial = MapBytes();
  options.map_bytes_max = MapBytes();
  auto engine = LmdbEngine::Open(options);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    std::abort();
  }
  slot = std::move(engine).value();
  for (size_t i = 0; i < kServerKeys; ++i) {
    if (!slot->Put(KeyName(i), {MakeValueVersion(1, value_bytes)}, WriteOptions()).ok()) {
      std::abort();
    }
  }
  if (!slot->Flush().ok()) std::abort();
  return *slot;
}

// One write as a coordinator's put makes it on that path: an Update whose
// prepare reads the stored set (the counter and context of the new
// version) and whose reader checks that the new version superseded it;
// every kServerFlushOps writes a flush. Dot counters come from one counter
// kept above every counter stored, as a node's DotCounter is, so a version
// never falls behind the one it is meant to replace (the engines are shared
// by the benchmarks, and a context observes counters of other keys too).
class SupersedingWriter {
 public:
  explicit SupersedingWriter(LmdbEngine& engine) : engine_(engine) {}
  void Write(std::string_view key, SiblingSet& incoming) {
    bool superseded = false;
    absl::Status put = engine_.Update(
        key, incoming, WriteOptions(),
        [&](const SiblingSet& stored) {
          uint64_t stored_counter = 0;
          for (const Version& v : stored) stored_counter = std::max(stored_counter, v.dot.counter);
          counter_ = std::max(counter_, stored_counter) + 1;
          incoming[0].dot.counter = counter_;
          incoming[0].context.Observe(1, stored_counter, 1);
          return absl::OkStatus();
        },
        [&](const SiblingSet& stored) {
          superseded = stored.size() == 1 && stored[0].dot == incoming[0].dot;
        });
    if (!put.ok() || !superseded) std::abort();
    if (++ops_ % kServerFlushOps == 0 && !engine_.Flush().ok()) std::abort();
  }

 private:
  LmdbEngine& engine_;
  uint64_t counter_ = 0;
  int64_t ops_ = 0;
};

void BufferedUpdate(benchmark::State& state, size_t value_bytes) {
  SupersedingWriter writer(ServerBufferedEngine(value_bytes));
  std::mt19937_64 rng(42);
  SiblingSet incoming = {MakeValueVersion(1, value_bytes)};
  Latencies latencies;
  for (auto _ : state) {
    const std::string key = KeyName(rng() % kServerKeys);
    latencies.Time([&] { writer.Write(key, incoming); });
  }
  latencies.Report(state, "");
  state.SetItemsProcessed(state.iterations());
}

// Alternates blocks of `block_ops` iterations of `engine_step` and of
// `raw_step` (see the top of the file): blocks keep each side's caches as
// warm as in a run of its own, and alternating them every few hundred
// microseconds gives both sides the same machine load. A step prepares its
// operation and times it with the Latencies it is given. Reports both sides'
// percentiles and the engine/raw ratios ratio_p50 and ratio_mean.
template <typename EngineStep, typename RawStep>
void RunPaired(benchmark::State& state, int64_t block_ops, EngineStep&& engine_step,
               RawStep&& raw_step, const std::string& engine_name = "engine",
               const std::string& raw_name = "raw") {
  Latencies engine, raw;
  int64_t i = 0;
  for (auto _ : state) {
    if ((i++ / block_ops) % 2 == 0) {
      engine_step(engine);
    } else {
      raw_step(raw);
    }
  }
  state.counters["ratio_mean"] = engine.Mean() / raw.Mean();
  state.counters["ratio_p50"] = engine.Percentile(0.5) / raw.Percentile(0.5);
  engine.Report(state, engine_name + "_");
  raw.Report(state, raw_name + "_");
  state.SetItemsProcessed(state.iterations());
}

constexpr int64_t kPairedBlockOps = 256;

// The replica writes of one network read come as a batch (up to 32, the
// transport's lookahead) whose keys the node names to the engine before it
// serves the first (StorageEngine::Prefetch), so that their lookups' cache
// misses overlap. Paired, on the server-like buffered engine above: blocks
// of batches served after a Prefetch ("prefetched") alternate with blocks
// served without ("plain"); an iteration is one batch of writes as
// BufferedUpdate makes them. Before each batch, untimed, the loop writes a
// buffer larger than the core's L2 cache, as a busy server's other work
// does between two reads (the coordinator's, the network stack's, other
// processes'): with its entries cached from the batch before, a batch has
// no misses to overlap. ratio_p50 below 1 is the prefetch's gain per
// batch.
constexpr size_t kBatchKeys = 32;
constexpr size_t kBatchEvictBytes = size_t{4} << 20;

void PairedBufferedBatch(benchmark::State& state, size_t value_bytes) {
  LmdbEngine& engine = ServerBufferedEngine(value_bytes);
  std::mt19937_64 rng(7);
  SiblingSet incoming = {MakeValueVersion(1, value_bytes)};
  std::vector<std::string> keys(kBatchKeys);
  std::vector<std::string_view> views(kBatchKeys);
  SupersedingWriter writer(engine);
  std::vector<char> evict(kBatchEvictBytes);
  auto serve = [&](Latencies& latencies, bool prefetch) {
    for (size_t i = 0; i < evict.size(); i += 64) ++evict[i];
    benchmark::DoNotOptimize(evict.data());
    for (size_t i = 0; i < kBatchKeys; ++i) {
      keys[i] = KeyName(rng() % kServerKeys);
      views[i] = keys[i];
    }
    latencies.Time([&] {
      if (prefetch) engine.Prefetch(views);
      for (std::string_view key : views) writer.Write(key, incoming);
    });
  };
  RunPaired(
      state, kPairedBlockOps / static_cast<int64_t>(kBatchKeys),
      [&](Latencies& latencies) { serve(latencies, /*prefetch=*/true); },
      [&](Latencies& latencies) { serve(latencies, /*prefetch=*/false); }, "prefetched", "plain");
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kBatchKeys));
}

void PairedPut(benchmark::State& state, size_t value_bytes, Durability durability) {
  Stores& s = GetStores(value_bytes, durability);
  SiblingSet incoming = {MakeValueVersion(1, value_bytes)};
  std::string value(value_bytes, 'v');
  // Synced puts are fsync-bound and few: alternate every operation.
  RunPaired(
      state, durability == Durability::kSync ? 1 : kPairedBlockOps,
      [&](Latencies& latencies) {
        std::string key = KeyName(s.next_engine_key++);
        incoming[0].dot.counter = s.next_engine_key;
        latencies.Time([&] { EnginePutOne(s, key, incoming); });
      },
      [&](Latencies& latencies) {
        std::string key = KeyName(s.next_raw_key++);
        latencies.Time([&] { RawPutOne(s, key, value); });
      });
}

void PairedGet(benchmark::State& state, size_t value_bytes) {
  Stores& s = GetReadStores(value_bytes);
  // Both sides read the same sequence of keys.
  std::mt19937_64 engine_rng(42), raw_rng(42);
  RunPaired(
      state, kPairedBlockOps,
      [&](Latencies& latencies) {
        std::string key = KeyName(engine_rng() % s.preloaded);
        latencies.Time([&] { EngineGetOne(s, key); });
      },
      [&](Latencies& latencies) {
        std::string key = KeyName(raw_rng() % s.preloaded);
        latencies.Time([&] { RawGetOne(s, key, value_bytes); });
      });
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
      const bool median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
      if (run.run_type == Run::RT_Aggregate && !median) continue;
      (median ? median_ : single_)[name] = run.GetAdjustedRealTime();
      if (name.rfind("paired/", 0) == 0) {
        for (const auto& [counter, value] : run.counters) {
          (median ? paired_median_ : paired_single_)[name][counter] = value.value;
        }
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
      std::printf("%-44s %10.3f %10.3f %8.3f %8s\n", (a + " vs raw").c_str(), ta / 1000, tb / 1000,
                  ta / tb, target);
    };
    for (const char* size : {"100B", "4KiB"}) {
      row(std::string("put/engine/nosync/") + size, std::string("put/raw/nosync/") + size, "<=1.3");
      row(std::string("put/engine/sync/") + size, std::string("put/raw/sync/") + size, "<=1.3");
      row(std::string("get/engine/") + size, std::string("get/raw/") + size, "<=1.2");
    }
    std::printf(
        "\npaired: engine and raw in alternating blocks of one loop (medians over repetitions)\n");
    std::printf("%-26s %9s %9s %9s %9s %9s %9s %8s %8s %7s\n", "benchmark", "eng p50", "raw p50",
                "eng p99", "raw p99", "eng p999", "raw p999", "p50 a/b", "mean a/b", "target");
    std::map<std::string, std::map<std::string, double>> paired = paired_single_;
    for (const auto& [name, counters] : paired_median_) paired[name] = counters;
    for (const auto& [name, c] : paired) {
      auto at = [&](const char* counter) {
        auto it = c.find(counter);
        return it != c.end() ? it->second : -1.0;
      };
      std::printf("%-26s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %8.3f %8.3f %7s\n", name.c_str(),
                  at("engine_p50_us"), at("raw_p50_us"), at("engine_p99_us"), at("raw_p99_us"),
                  at("engine_p999_us"), at("raw_p999_us"), at("ratio_p50"), at("ratio_mean"),
                  name.find("/get/") != std::string::npos ? "<=1.2" : "<=1.3");
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
  // Paired benchmarks' counters, of the median aggregate (preferred) or of
  // the last single run.
  std::map<std::string, std::map<std::string, double>> paired_median_, paired_single_;
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
    benchmark::RegisterBenchmark(("paired/put/nosync/" + size).c_str(), PairedPut, bytes,
                                 Durability::kNoSync);
    benchmark::RegisterBenchmark(("paired/get/" + size).c_str(), PairedGet, bytes);
    benchmark::RegisterBenchmark(("put/engine/sync/" + size).c_str(), EnginePut, bytes,
                                 Durability::kSync)
        ->Iterations(kSyncedIterations);
    benchmark::RegisterBenchmark(("put/raw/sync/" + size).c_str(), RawPut, bytes, Durability::kSync)
        ->Iterations(kSyncedIterations);
    benchmark::RegisterBenchmark(("paired/put/sync/" + size).c_str(), PairedPut, bytes,
                                 Durability::kSync)
        ->Iterations(kSyncedIterations);
    // Buffered puts: 1,000-object buffer, each flush one synced transaction;
    // iterations a multiple of the buffer so flush costs are included evenly.
    benchmark::RegisterBenchmark(("put/engine/buffered/" + size).c_str(), EnginePut, bytes,
                                 Durability::kBuffered)
        ->Iterations(20000);
    // A whole number of flush periods.
    benchmark::RegisterBenchmark(("buffered/update/" + size).c_str(), BufferedUpdate, bytes)
        ->Iterations(20 * kServerFlushOps);
    benchmark::RegisterBenchmark(("buffered/batch/" + size).c_str(), PairedBufferedBatch, bytes)
        ->Iterations(20 * kServerFlushOps / kBatchKeys);
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

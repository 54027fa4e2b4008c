// Core hot paths: vector-clock comparison and merge (paper 4.4) on the
// typical 3-entry clock of an N = 3 cluster, and a codec round trip of one
// 100-byte version. Targets: Compare <= 25 ns, Merge <= 60 ns, round trip
// <= 150 ns.
#include <benchmark/benchmark.h>

#include <string>

#include "core/codec.h"
#include "dynamo/vector_clock.h"
#include "dynamo/version.h"

namespace dynamo {
namespace {

VectorClock Clock(uint64_t a, uint64_t b, uint64_t c) {
  VectorClock clock;
  clock.Observe(101, a, 1000);
  clock.Observe(202, b, 2000);
  clock.Observe(303, c, 3000);
  return clock;
}

void BM_VectorClockCompare3(benchmark::State& state) {
  VectorClock x = Clock(5, 7, 9), y = Clock(5, 8, 9), z = Clock(6, 7, 8);
  for (auto _ : state) {
    benchmark::DoNotOptimize(x.Compare(y));
    benchmark::DoNotOptimize(x.Compare(z));
  }
  state.SetItemsProcessed(state.iterations() * 2);  // two compares per iteration
}
BENCHMARK(BM_VectorClockCompare3);

void BM_VectorClockMerge3(benchmark::State& state) {
  const VectorClock x = Clock(5, 7, 9), y = Clock(6, 6, 10);
  for (auto _ : state) {
    VectorClock m = x;
    m.Merge(y);
    benchmark::DoNotOptimize(m);
  }
}
BENCHMARK(BM_VectorClockMerge3);

void BM_CodecVersionRoundTrip100B(benchmark::State& state) {
  Version v;
  v.dot = Dot{.actor = 202, .counter = 8, .timestamp_us = 1700000000000000};
  v.context = Clock(5, 7, 9);
  v.value = std::string(100, 'v');
  std::string buf;
  Version out;
  for (auto _ : state) {
    buf.clear();
    internal::Encoder enc(&buf);
    enc.PutVersion(v);
    internal::Decoder dec(buf);
    benchmark::DoNotOptimize(dec.GetVersion(&out));
    benchmark::DoNotOptimize(out.value.data());
  }
  if (!(out == v)) state.SkipWithError("round trip changed the version");
}
BENCHMARK(BM_CodecVersionRoundTrip100B);

}  // namespace
}  // namespace dynamo

BENCHMARK_MAIN();

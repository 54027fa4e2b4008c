// sim_soak: runs randomized simulation scenarios (dynamo/sim/scenario.h),
// one seed after another, for as long as asked, and prints every failing
// seed with the command that replays it.
//
//   sim_soak --seconds=600            random seeds for ten minutes
//   sim_soak --seeds=1000 --start=1   seeds 1..1000
//   sim_soak --seed=42                replay one seed, printing its report
//
// Each seed picks its own workload (odd seeds: the add-only set, even: the
// register), its fault mix (swarm testing: FaultPlan::Swarm) and, for every
// eighth seed, a fault-free run with the read-latest check. With --check-
// determinism every seed is run twice and the trace digests compared. At the
// end it prints how long the replicas took to converge after the faults
// stopped (median, p99, max), the figure ScenarioOptions::convergence_bound
// is set from.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "dynamo/sim/scenario.h"

namespace {

using dynamo::sim::RunScenario;
using dynamo::sim::ScenarioOptions;
using dynamo::sim::ScenarioResult;

ScenarioOptions OptionsForSeed(uint64_t seed) { return dynamo::sim::SoakOptions(seed); }

bool Flag(const char* arg, const char* name, std::string* value) {
  size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  *value = arg + n + 1;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 0;
  uint64_t seeds = 0, start = 0, replay = 0;
  bool have_start = false, have_replay = false, determinism = false;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    if (Flag(argv[i], "--seconds", &v)) {
      seconds = std::strtod(v.c_str(), nullptr);
    } else if (Flag(argv[i], "--seeds", &v)) {
      seeds = std::strtoull(v.c_str(), nullptr, 10);
    } else if (Flag(argv[i], "--start", &v)) {
      start = std::strtoull(v.c_str(), nullptr, 10);
      have_start = true;
    } else if (Flag(argv[i], "--seed", &v)) {
      replay = std::strtoull(v.c_str(), nullptr, 10);
      have_replay = true;
    } else if (std::strcmp(argv[i], "--check-determinism") == 0) {
      determinism = true;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--seconds=S] [--seeds=N] [--start=SEED] [--check-determinism]\n"
                   "       %s --seed=SEED   (replay one seed verbosely)\n",
                   argv[0], argv[0]);
      return 2;
    }
  }
  if (have_replay) {
    ScenarioResult r = RunScenario(OptionsForSeed(replay));
    std::printf("%s", r.ToString().c_str());
    if (r.ok && determinism) {
      ScenarioResult again = RunScenario(OptionsForSeed(replay));
      if (again.trace_digest != r.trace_digest || again.history_digest != r.history_digest) {
        std::printf("NONDETERMINISTIC: digests differ between two runs\n");
        return 1;
      }
    }
    return r.ok ? 0 : 1;
  }
  if (seconds <= 0 && seeds == 0) seconds = 60;
  if (!have_start) {
    // A soak run explores new seeds each time; the start is printed so the
    // whole run can be repeated.
    start = static_cast<uint64_t>(
                std::chrono::system_clock::now().time_since_epoch().count()) % 1'000'000'000 + 1;
  }
  std::printf("sim_soak: start seed %llu\n", static_cast<unsigned long long>(start));
  auto begin = std::chrono::steady_clock::now();
  uint64_t ran = 0, failed = 0;
  std::vector<uint64_t> failures;
  // Simulated time from the end of the faults until the replicas converged,
  // per seed: the figure the convergence bound is set from.
  std::vector<std::pair<double, uint64_t>> converged_s;
  for (uint64_t seed = start;; ++seed) {
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    if (seeds > 0 && ran >= seeds) break;
    if (seconds > 0 && elapsed >= seconds) break;
    ScenarioResult r = RunScenario(OptionsForSeed(seed));
    bool ok = r.ok;
    if (ok && determinism) {
      ScenarioResult again = RunScenario(OptionsForSeed(seed));
      if (again.trace_digest != r.trace_digest || again.history_digest != r.history_digest) {
        ok = false;
        std::printf("seed %llu: NONDETERMINISTIC\n", static_cast<unsigned long long>(seed));
      }
    }
    ++ran;
    converged_s.emplace_back(absl::ToDoubleSeconds(r.quiesce_time), seed);
    if (!ok) {
      ++failed;
      failures.push_back(seed);
      std::string text = r.ToString();
      // The summary lines only; the replay prints everything.
      std::printf("FAILED seed %llu: %s\n  replay: ./examples/sim_soak --seed=%llu\n",
                  static_cast<unsigned long long>(seed),
                  text.substr(0, text.find("  fault log:")).c_str(),
                  static_cast<unsigned long long>(seed));
      std::fflush(stdout);
    }
  }
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  std::printf("sim_soak: %llu seeds in %.1f s, %llu failed\n", static_cast<unsigned long long>(ran),
              elapsed, static_cast<unsigned long long>(failed));
  if (!converged_s.empty()) {
    std::sort(converged_s.begin(), converged_s.end());
    auto at = [&](double q) {
      return converged_s[std::min(converged_s.size() - 1,
                                  static_cast<size_t>(q * converged_s.size()))].first;
    };
    std::printf("sim_soak: converged after the faults stopped in median %.2f s, p99 %.2f s, "
                "max %.2f s (seed %llu) of simulated time\n",
                at(0.5), at(0.99), converged_s.back().first,
                static_cast<unsigned long long>(converged_s.back().second));
  }
  for (uint64_t seed : failures) {
    std::printf("  ./examples/sim_soak --seed=%llu\n", static_cast<unsigned long long>(seed));
  }
  return failed == 0 ? 0 : 1;
}

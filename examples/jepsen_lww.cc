// jepsen_lww: the Jepsen result for Riak (Kingsbury, "Call me maybe: Riak",
// 2013) in simulation. An add-only set workload (every write reads the key,
// unions the siblings' elements, adds one fresh element and writes with the
// read's context) runs against two buckets under the same faults, network
// partitions and clock skew:
//   - a last-write-wins bucket (ConflictPolicy::kLastWriteWins, Riak's
//     allow_mult=false): concurrent writes are resolved by the coordinators'
//     skewed wall clocks, so acknowledged adds disappear;
//   - a sibling-keeping bucket with union merge: none may disappear.
// For every seed both runs see the same fault schedule and the same client
// decisions up to the first divergent read.
//
//   jepsen_lww [--seeds=10] [--start=1] [--skew-ms=1000] [--seconds=8]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "dynamo/sim/scenario.h"

namespace {

using namespace dynamo::sim;

bool Flag(const char* arg, const char* name, std::string* value) {
  size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  *value = arg + n + 1;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seeds = 10, start = 1;
  double skew_ms = 1000, seconds = 8;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    if (Flag(argv[i], "--seeds", &v)) {
      seeds = std::strtoull(v.c_str(), nullptr, 10);
    } else if (Flag(argv[i], "--start", &v)) {
      start = std::strtoull(v.c_str(), nullptr, 10);
    } else if (Flag(argv[i], "--skew-ms", &v)) {
      skew_ms = std::strtod(v.c_str(), nullptr);
    } else if (Flag(argv[i], "--seconds", &v)) {
      seconds = std::strtod(v.c_str(), nullptr);
    } else {
      std::fprintf(stderr, "usage: %s [--seeds=N] [--start=S] [--skew-ms=M] [--seconds=T]\n",
                   argv[0]);
      return 2;
    }
  }
  std::printf("set workload, 5 nodes, (N,R,W)=(3,2,2), 4 clients, 2 keys, %.0f s of partitions "
              "and clock skew up to %.0f ms\n\n",
              seconds, skew_ms);
  std::printf("%6s | %-34s | %-34s\n", "seed", "last-write-wins: acked / lost (%)",
              "siblings + union: acked / lost");
  uint64_t lww_acked = 0, lww_lost = 0, sib_acked = 0, sib_lost = 0, lww_seeds_losing = 0;
  bool sib_all_ok = true;
  for (uint64_t seed = start; seed < start + seeds; ++seed) {
    ScenarioOptions o;
    o.seed = seed;
    o.swarm = false;
    o.faults.partitions = true;
    o.faults.clock_skew_max = absl::Milliseconds(skew_ms);
    o.fault_duration = absl::Seconds(seconds);
    o.workload.kind = WorkloadKind::kSet;
    o.workload.keys = 2;
    o.workload.clients = 4;
    o.keep_history_dump = false;
    uint64_t acked[2] = {}, lost[2] = {};
    bool ok[2] = {};
    for (int policy = 0; policy < 2; ++policy) {
      o.bucket.policy = policy == 0 ? dynamo::ConflictPolicy::kLastWriteWins
                                    : dynamo::ConflictPolicy::kKeepSiblings;
      ScenarioResult r = RunScenario(o);
      const CheckReport* set = r.Find("set-full");
      if (set != nullptr) {
        acked[policy] = set->counters.at("acknowledged");
        lost[policy] = set->counters.at("lost");
      }
      ok[policy] = r.ok;
      if (policy == 1 && !r.ok) std::printf("%s", r.ToString().c_str());
    }
    std::printf("%6llu | %8llu / %6llu (%5.1f%%)          | %8llu / %6llu %s\n",
                static_cast<unsigned long long>(seed), static_cast<unsigned long long>(acked[0]),
                static_cast<unsigned long long>(lost[0]),
                acked[0] ? 100.0 * lost[0] / acked[0] : 0.0,
                static_cast<unsigned long long>(acked[1]),
                static_cast<unsigned long long>(lost[1]), ok[1] ? "(all checks OK)" : "(FAILED)");
    lww_acked += acked[0];
    lww_lost += lost[0];
    sib_acked += acked[1];
    sib_lost += lost[1];
    if (lost[0] > 0) ++lww_seeds_losing;
    sib_all_ok = sib_all_ok && ok[1];
  }
  std::printf("\ntotal  | %8llu / %6llu (%5.1f%%), %llu of %llu seeds lost writes | %8llu / %6llu\n",
              static_cast<unsigned long long>(lww_acked), static_cast<unsigned long long>(lww_lost),
              lww_acked ? 100.0 * lww_lost / lww_acked : 0.0,
              static_cast<unsigned long long>(lww_seeds_losing),
              static_cast<unsigned long long>(seeds), static_cast<unsigned long long>(sib_acked),
              static_cast<unsigned long long>(sib_lost));
  return sib_all_ok && sib_lost == 0 ? 0 : 1;
}

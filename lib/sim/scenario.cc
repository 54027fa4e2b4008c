#include "dynamo/sim/scenario.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace dynamo::sim {
namespace {

double Uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }
double Uniform(std::mt19937_64& rng, double lo, double hi) { return lo + (hi - lo) * Uniform01(rng); }
bool Coin(std::mt19937_64& rng) { return (rng() >> 63) != 0; }

}  // namespace

FaultPlan FaultPlan::All() {
  FaultPlan p;
  p.loss_probability = 0.05;
  p.duplicate_probability = 0.05;
  p.reorder_probability = 0.2;
  p.spike_latency_mean = absl::Milliseconds(150);
  p.partitions = true;
  p.one_way_partitions = true;
  p.crashes = true;
  p.wipes_max = 1;
  p.nodes_down_max = 2;
  p.clock_skew_max = absl::Seconds(2);
  p.membership_changes = true;
  return p;
}

FaultPlan FaultPlan::Swarm(uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x5741524d5357524dull);  // "SWARM"
  FaultPlan p;
  if (Coin(rng)) p.loss_probability = Uniform(rng, 0.01, 0.2);
  if (Coin(rng)) p.duplicate_probability = Uniform(rng, 0.01, 0.2);
  if (Coin(rng)) p.reorder_probability = Uniform(rng, 0.05, 0.5);
  if (Coin(rng)) p.spike_latency_mean = absl::Milliseconds(Uniform(rng, 20, 400));
  p.partitions = Coin(rng);
  p.one_way_partitions = Coin(rng);
  p.crashes = Coin(rng);
  if (p.crashes && Coin(rng)) p.wipes_max = 1;
  p.nodes_down_max = 1 + rng() % 2;
  if (Coin(rng)) p.clock_skew_max = absl::Milliseconds(Uniform(rng, 10, 5000));
  p.event_interval_mean = absl::Milliseconds(Uniform(rng, 100, 1000));
  // Drawn last, so the draws above (and the CI seeds' plans) stay as they were.
  p.membership_changes = Coin(rng);
  return p;
}

bool FaultPlan::any() const {
  return loss_probability > 0 || duplicate_probability > 0 || reorder_probability > 0 ||
         spike_latency_mean > absl::ZeroDuration() || partitions || one_way_partitions ||
         crashes || clock_skew_max > absl::ZeroDuration() || membership_changes;
}

std::string FaultPlan::ToString() const {
  if (!any()) return "no faults";
  std::vector<std::string> parts;
  if (loss_probability > 0) parts.push_back(absl::StrFormat("loss=%.3f", loss_probability));
  if (duplicate_probability > 0) parts.push_back(absl::StrFormat("dup=%.3f", duplicate_probability));
  if (reorder_probability > 0) parts.push_back(absl::StrFormat("reorder=%.3f", reorder_probability));
  if (spike_latency_mean > absl::ZeroDuration()) {
    parts.push_back(absl::StrCat("spikes=", absl::FormatDuration(spike_latency_mean)));
  }
  if (partitions) parts.push_back("partitions");
  if (one_way_partitions) parts.push_back("one-way");
  if (crashes) parts.push_back(absl::StrCat("crashes(down<=", nodes_down_max, ",wipes<=", wipes_max, ")"));
  if (clock_skew_max > absl::ZeroDuration()) {
    parts.push_back(absl::StrCat("skew<=", absl::FormatDuration(clock_skew_max)));
  }
  if (membership_changes) {
    parts.push_back(absl::StrCat("membership(members ", members_min, "..", members_max,
                                 ",joins<=", joins_max, ")"));
  }
  parts.push_back(absl::StrCat("every~", absl::FormatDuration(event_interval_mean)));
  return absl::StrJoin(parts, " ");
}

FaultSchedule::FaultSchedule(Simulation* sim, FaultPlan plan, uint64_t seed,
                             absl::AnyInvocable<void(NodeId)> on_wipe)
    : sim_(sim),
      plan_(plan),
      rng_(seed),
      on_wipe_(std::move(on_wipe)),
      base_(sim->network().options()),
      members_(sim->node_ids()) {}

FaultSchedule::~FaultSchedule() { *alive_ = false; }

void FaultSchedule::Start() {
  running_ = true;
  if (plan_.any()) Tick();
}

void FaultSchedule::Tick() {
  // Exponential gaps (our own formula, so every platform draws the same).
  double u = std::max(Uniform01(rng_), 1e-12);
  absl::Duration gap = absl::Nanoseconds(static_cast<int64_t>(
      -std::log(u) * absl::ToDoubleNanoseconds(plan_.event_interval_mean)));
  std::shared_ptr<bool> alive = alive_;
  sim_->network().Schedule(gap, [this, alive] {
    if (!*alive || !running_) return;
    Event();
    Tick();
  });
}

void FaultSchedule::Note(std::string what) {
  ++events_;
  log_.push_back(absl::StrCat(absl::FormatTime("%H:%M:%E3S", sim_->network().Now(), absl::UTCTimeZone()),
                              " ", what));
}

void FaultSchedule::Event() {
  enum Kind { kWeather, kPartition, kOneWay, kCrash, kSkew, kMembership };
  std::vector<Kind> kinds;
  if (plan_.loss_probability > 0 || plan_.duplicate_probability > 0 ||
      plan_.reorder_probability > 0 || plan_.spike_latency_mean > absl::ZeroDuration()) {
    kinds.push_back(kWeather);
  }
  if (plan_.partitions) kinds.push_back(kPartition);
  if (plan_.one_way_partitions) kinds.push_back(kOneWay);
  if (plan_.crashes) kinds.push_back(kCrash);
  if (plan_.clock_skew_max > absl::ZeroDuration()) kinds.push_back(kSkew);
  if (plan_.membership_changes) kinds.push_back(kMembership);
  if (kinds.empty()) return;
  const std::vector<NodeId>& nodes = sim_->node_ids();
  SimNetwork& net = sim_->network();
  switch (kinds[rng_() % kinds.size()]) {
    case kWeather: {
      if (Coin(rng_)) {
        net.SetOptions(base_);
        Note("weather: calm");
        break;
      }
      NetworkOptions o = base_;
      // Each enabled kind joins this episode with probability 1/2, so
      // episodes differ; strength up to the plan's.
      if (Coin(rng_)) o.loss_probability = plan_.loss_probability;
      if (Coin(rng_)) o.duplicate_probability = plan_.duplicate_probability;
      if (Coin(rng_)) o.reorder_probability = plan_.reorder_probability;
      if (plan_.spike_latency_mean > absl::ZeroDuration() && Coin(rng_)) {
        o.latency_mean = plan_.spike_latency_mean;
        o.latency_max = std::max(o.latency_max, 4 * plan_.spike_latency_mean);
      }
      net.SetOptions(o);
      Note(absl::StrFormat("weather: loss=%.3f dup=%.3f reorder=%.3f latency_mean=%s",
                           o.loss_probability, o.duplicate_probability, o.reorder_probability,
                           absl::FormatDuration(o.latency_mean)));
      break;
    }
    case kPartition: {
      if (Coin(rng_)) {
        net.HealAll();
        Note("heal all");
        break;
      }
      std::vector<NodeId> shuffled = nodes;
      for (size_t i = shuffled.size(); i > 1; --i) std::swap(shuffled[i - 1], shuffled[rng_() % i]);
      size_t k = 1 + rng_() % (shuffled.size() - 1);
      std::vector<NodeId> group(shuffled.begin(), shuffled.begin() + k);
      std::sort(group.begin(), group.end());
      net.Partition({group});
      Note(absl::StrCat("partition {", absl::StrJoin(group, ","), "} | rest"));
      break;
    }
    case kOneWay: {
      if (Coin(rng_)) {
        net.HealAll();
        Note("heal all");
        break;
      }
      NodeId from = nodes[rng_() % nodes.size()];
      NodeId to = nodes[rng_() % nodes.size()];
      if (from == to) break;
      net.BlockLink(from, to);
      Note(absl::StrCat("block ", from, " -> ", to));
      break;
    }
    case kCrash: {
      bool crash = down_.empty() || (down_.size() < plan_.nodes_down_max && Coin(rng_));
      if (crash) {
        std::vector<NodeId> up;
        for (NodeId id : nodes) {
          if (sim_->node(id) != nullptr) up.push_back(id);
        }
        if (up.empty()) break;
        NodeId victim = up[rng_() % up.size()];
        bool wipe = wipes_ < plan_.wipes_max && rng_() % 3 == 0;
        if (!sim_->Crash(victim, wipe).ok()) break;
        down_.push_back(victim);
        if (wipe) {
          ++wipes_;
          if (on_wipe_) on_wipe_(victim);
        }
        Note(absl::StrCat("crash ", victim, wipe ? " (disk wiped)" : ""));
      } else {
        size_t i = rng_() % down_.size();
        NodeId id = down_[i];
        down_.erase(down_.begin() + i);
        if (sim_->Restart(id).ok()) Note(absl::StrCat("restart ", id));
      }
      break;
    }
    case kSkew: {
      NodeId id = nodes[rng_() % nodes.size()];
      double max_ms = absl::ToDoubleMilliseconds(plan_.clock_skew_max);
      absl::Duration offset = absl::Milliseconds(Uniform(rng_, -max_ms, max_ms));
      double drift = Uniform(rng_, -200, 200);
      net.SetClockSkew(id, offset, drift);
      Note(absl::StrFormat("skew node %d by %s, drift %.0f ppm", id, absl::FormatDuration(offset),
                           drift));
      break;
    }
    case kMembership:
      MembershipEvent();
      break;
  }
}

std::vector<NodeId> FaultSchedule::UpMembers() {
  std::vector<NodeId> up;
  for (NodeId id : sim_->node_ids()) {
    Node* node = sim_->node(id);
    if (node == nullptr) continue;
    const MemberEntry* mine = node->membership().Find(id);
    if (mine != nullptr && mine->status == MemberStatus::kUp) up.push_back(id);
  }
  return up;
}

void FaultSchedule::MembershipEvent() {
  std::vector<NodeId> up = UpMembers();
  if (up.empty()) return;
  enum Change { kJoin, kLeave, kRemove };
  std::vector<Change> possible;
  if (members_.size() < plan_.members_max && joins_ < plan_.joins_max) possible.push_back(kJoin);
  if (members_.size() > plan_.members_min) {
    possible.push_back(kLeave);
    possible.push_back(kRemove);
  }
  if (possible.empty()) return;
  switch (possible[rng_() % possible.size()]) {
    case kJoin: {
      const std::vector<NodeId>& ids = sim_->node_ids();
      NodeId id = *std::max_element(ids.begin(), ids.end()) + 1;
      absl::StatusOr<Node*> added = sim_->AddNode(id);
      if (!added.ok()) {
        Note(absl::StrCat("add node ", id, " failed: ", added.status().ToString()));
        break;
      }
      ++joins_;
      members_.push_back(id);  // the largest id: members_ stays sorted
      Note(absl::StrCat("node ", id, " joins"));
      JoinUntilMember(id);
      break;
    }
    case kLeave: {
      std::vector<NodeId> candidates;
      for (NodeId id : up) {
        if (std::binary_search(members_.begin(), members_.end(), id)) candidates.push_back(id);
      }
      if (candidates.empty()) break;
      NodeId id = candidates[rng_() % candidates.size()];
      absl::Status left = sim_->node(id)->Leave();
      if (!left.ok()) {
        Note(absl::StrCat("node ", id, " cannot leave: ", left.ToString()));
        break;
      }
      members_.erase(std::find(members_.begin(), members_.end(), id));
      ++departures_;
      Note(absl::StrCat("node ", id, " leaves"));
      break;
    }
    case kRemove: {
      NodeId target = members_[rng_() % members_.size()];
      NodeId admin = up[rng_() % up.size()];
      if (admin == target) break;
      absl::Status removed = sim_->node(admin)->Remove(target);
      if (!removed.ok()) {
        Note(absl::StrCat("node ", admin, " cannot remove ", target, ": ", removed.ToString()));
        break;
      }
      members_.erase(std::find(members_.begin(), members_.end(), target));
      ++departures_;
      Note(absl::StrCat("node ", admin, " removes ", target,
                        sim_->node(target) == nullptr ? " (crashed)" : ""));
      break;
    }
  }
}

void FaultSchedule::JoinUntilMember(NodeId id) {
  // Removed again before it ever joined: the operator stops asking.
  if (!std::binary_search(members_.begin(), members_.end(), id)) return;
  if (Node* node = sim_->node(id); node != nullptr) {
    const MemberEntry* mine = node->membership().Find(id);
    if (mine != nullptr && mine->status != MemberStatus::kRemoved) return;
    std::vector<NodeId> up = UpMembers();
    if (!up.empty()) node->Join(up[rng_() % up.size()], [](absl::Status) {});
  }
  std::shared_ptr<bool> alive = alive_;
  sim_->network().Schedule(absl::Seconds(2), [this, alive, id] {
    if (*alive) JoinUntilMember(id);
  });
}

absl::Status FaultSchedule::StopAndHeal() {
  running_ = false;
  SimNetwork& net = sim_->network();
  net.HealAll();
  net.SetOptions(base_);
  absl::Status first;
  for (NodeId id : down_) {
    absl::Status s = sim_->Restart(id);
    if (!s.ok() && first.ok()) first = s;
  }
  down_.clear();
  Note("stop: heal all, calm weather, restart every crashed node");
  return first;
}

const CheckReport* ScenarioResult::Find(const std::string& name) const {
  for (const CheckReport& r : reports) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

std::string ScenarioResult::ToString() const {
  std::string out = absl::StrCat("seed ", seed, ": ", ok ? "OK" : "FAILED", "\n  faults: ",
                                 plan.ToString(), "\n  history: ", history_summary,
                                 "\n  converged ", absl::FormatDuration(quiesce_time),
                                 " after the faults stopped",
                                 (joins + departures > 0
                                      ? absl::StrCat("\n  membership: ", joins, " joined, ",
                                                     departures, " left or removed")
                                      : std::string()),
                                 absl::StrFormat("\n  trace digest %016x", trace_digest), "\n");
  if (!setup_error.empty()) absl::StrAppend(&out, "  error: ", setup_error, "\n");
  for (const CheckReport& r : reports) absl::StrAppend(&out, "  ", r.ToString(), "\n");
  if (!ok) {
    absl::StrAppend(&out, "  fault log:\n");
    for (const std::string& line : fault_log) absl::StrAppend(&out, "    ", line, "\n");
    if (!history_dump.empty()) absl::StrAppend(&out, "  history:\n", history_dump);
  }
  return out;
}

ScenarioOptions SoakOptions(uint64_t seed) {
  ScenarioOptions o;
  o.seed = seed;
  o.workload.kind = seed % 2 == 1 ? WorkloadKind::kSet : WorkloadKind::kRegister;
  o.workload.keys = 4 + seed % 13;
  o.workload.clients = 2 + seed % 4;
  o.workload.distribution =
      (seed / 2) % 2 == 0 ? KeyDistribution::kUniform : KeyDistribution::kZipfian;
  if (seed % 8 == 0) {
    o.swarm = false;
    o.faults = FaultPlan::None();
    o.check_read_latest = true;
  }
  return o;
}

ScenarioResult RunScenario(const ScenarioOptions& options) {
  ScenarioResult result;
  result.seed = options.seed;
  result.plan = options.swarm ? FaultPlan::Swarm(options.seed) : options.faults;
  // Keys keep N replicas, and stay readable with a node down.
  result.plan.members_min = std::max(result.plan.members_min, options.bucket.n + 1);

  SimulationOptions so;
  so.seed = options.seed;
  so.nodes = options.nodes;
  so.ring.partitions = 64;
  so.node.buckets = {options.bucket};
  so.network.latency_distribution = LatencyDistribution::kExponential;
  absl::StatusOr<std::unique_ptr<Simulation>> created = Simulation::Create(so);
  if (!created.ok()) {
    result.ok = false;
    result.setup_error = created.status().ToString();
    return result;
  }
  Simulation& sim = **created;
  History history;
  WorkloadOptions wo = options.workload;
  wo.bucket = options.bucket.name;
  absl::StatusOr<std::unique_ptr<Workload>> workload =
      Workload::Create(&sim, &history, wo, options.seed ^ 0x574f524b4c4f4144ull);
  if (!workload.ok()) {
    result.ok = false;
    result.setup_error = workload.status().ToString();
    return result;
  }
  ReplicaMonitor monitor(&sim, options.bucket.name, (*workload)->keys());
  FaultSchedule faults(&sim, result.plan, options.seed ^ 0x4641554c54534348ull,
                       [&monitor](NodeId id) { monitor.OnWipe(id); });

  sim.RunFor(options.warmup);
  monitor.SampleEvery(options.sample_interval);
  (*workload)->Start();
  faults.Start();
  sim.RunFor(options.fault_duration);

  absl::Status healed = faults.StopAndHeal();
  (*workload)->Stop();
  absl::Time stopped = sim.network().Now();
  sim.network().RunUntil([&] { return (*workload)->Idle(); }, absl::Seconds(60));
  // Hinted handoff, ownership transfer and anti-entropy must bring the
  // replicas together with no requests running (the final reads come after,
  // so read repair plays no part).
  CheckReport convergence = AwaitConvergence(sim, options.bucket.name, (*workload)->keys(),
                                             options.bucket.n, options.convergence_bound);
  result.quiesce_time = sim.network().Now() - stopped;
  absl::Status final_reads = (*workload)->FinalReads();
  monitor.Sample();
  monitor.Stop();

  if (!healed.ok()) result.setup_error = absl::StrCat("restart failed: ", healed.ToString());
  if (!final_reads.ok()) result.setup_error = final_reads.ToString();

  if (wo.kind == WorkloadKind::kSet) {
    result.reports.push_back(CheckSetFull(history));
  } else {
    result.reports.push_back(CheckRegister(history));
  }
  result.reports.push_back(CheckReadAntichain(history));
  result.reports.push_back(monitor.report());
  result.reports.push_back(std::move(convergence));
  result.reports.push_back(CheckMerkleTrees(sim));
  if (options.check_read_latest) result.reports.push_back(CheckReadLatest(history));

  result.ok = result.setup_error.empty();
  for (const CheckReport& r : result.reports) result.ok = result.ok && r.ok;
  result.trace_digest = sim.network().TraceDigest();
  result.history_digest = history.Digest();
  result.history_summary = history.Summary();
  if (options.keep_history_dump) result.history_dump = history.Dump(400);
  result.fault_log = faults.log();
  result.joins = faults.joins();
  result.departures = faults.departures();
  return result;
}

}  // namespace dynamo::sim

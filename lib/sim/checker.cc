#include "dynamo/sim/checker.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "dynamo/coordinator.h"

namespace dynamo::sim {
namespace {

using DotKey = std::pair<ActorId, uint64_t>;

DotKey KeyOf(const Dot& d) { return {d.actor, d.counter}; }

bool Covers(const VectorClock& clock, const Dot& dot) {
  return clock.CounterOf(dot.actor) >= dot.counter;
}

// Per key, the operations in history (invocation) order.
std::map<std::string, std::vector<const Operation*>> ByKey(const History& history) {
  std::map<std::string, std::vector<const Operation*>> out;
  for (const Operation& op : history.ops()) out[op.key].push_back(&op);
  return out;
}

const Operation* FinalRead(const std::vector<const Operation*>& ops) {
  const Operation* last = nullptr;
  for (const Operation* op : ops) {
    if (op->final_read && op->outcome == OpOutcome::kOk) last = op;
  }
  return last;
}

}  // namespace

void CheckReport::Fail(std::string violation) {
  ok = false;
  ++violations_total;
  if (violations.size() < violations_max) violations.push_back(std::move(violation));
}

std::string CheckReport::ToString() const {
  std::vector<std::string> counts;
  for (const auto& [k, v] : counters) counts.push_back(absl::StrCat(k, "=", v));
  std::string out = absl::StrCat(name, ": ", ok ? "OK" : "FAILED", " (", absl::StrJoin(counts, " "),
                                 ")");
  for (const std::string& v : violations) absl::StrAppend(&out, "\n  ", v);
  if (violations_total > violations.size()) {
    absl::StrAppend(&out, "\n  ... ", violations_total - violations.size(), " more");
  }
  return out;
}

std::set<std::string> ParseElements(const std::string& value) {
  std::set<std::string> out;
  for (absl::string_view e : absl::StrSplit(value, ',', absl::SkipEmpty())) out.insert(std::string(e));
  return out;
}

std::string JoinElements(const std::set<std::string>& elements) {
  return absl::StrJoin(elements, ",");
}

CheckReport CheckSetFull(const History& history) {
  CheckReport r;
  r.name = "set-full";
  uint64_t lost = 0, stale = 0, never_written = 0, acked = 0, indeterminate_present = 0;
  for (const auto& [key, ops] : ByKey(history)) {
    const Operation* final_read = FinalRead(ops);
    if (final_read == nullptr) {
      r.Fail(absl::StrCat("key ", key, ": no successful final read"));
      continue;
    }
    std::set<std::string> final_elements;
    for (const std::string& v : final_read->values) {
      std::set<std::string> e = ParseElements(v);
      final_elements.insert(e.begin(), e.end());
    }
    std::set<std::string> attempted;
    for (const Operation* op : ops) {
      if (op->type != OpType::kPut) continue;
      attempted.insert(op->element);
      if (op->outcome != OpOutcome::kOk) {
        if (final_elements.contains(op->element)) ++indeterminate_present;
        continue;
      }
      ++acked;
      if (!final_elements.contains(op->element)) {
        ++lost;
        r.Fail(absl::StrCat("lost: element ", op->element, " of key ", key,
                            " acknowledged by ", history.Format(op->index),
                            " is missing from the final read ", history.Format(final_read->index)));
      }
      // Stale: a later successful read that did not see the element yet.
      for (const Operation* read : ops) {
        if (read->type != OpType::kGet || read->outcome != OpOutcome::kOk || read->final_read ||
            read->invoke_time <= op->complete_time) {
          continue;
        }
        bool seen = false;
        for (const std::string& v : read->values) seen = seen || ParseElements(v).contains(op->element);
        if (!seen) {
          ++stale;
          break;
        }
      }
    }
    for (const std::string& e : final_elements) {
      if (!attempted.contains(e)) {
        ++never_written;
        r.Fail(absl::StrCat("never written: element ", e, " of key ", key, " in final read ",
                            history.Format(final_read->index)));
      }
    }
  }
  r.counters = {{"acknowledged", acked},
                {"lost", lost},
                {"stale", stale},
                {"never_written", never_written},
                {"indeterminate_present", indeterminate_present}};
  return r;
}

CheckReport CheckRegister(const History& history) {
  CheckReport r;
  r.name = "register";
  uint64_t acked = 0, survived = 0, overwritten = 0, lost = 0, dot_unknown = 0;
  for (const auto& [key, ops] : ByKey(history)) {
    const Operation* final_read = FinalRead(ops);
    if (final_read == nullptr) {
      r.Fail(absl::StrCat("key ", key, ": no successful final read"));
      continue;
    }
    // Which puts' versions demonstrably exist (acknowledged, or seen stored
    // or read), with their dots.
    std::map<std::string, Dot> seen_dot;  // value -> dot
    for (const Operation* op : ops) {
      if (op->type == OpType::kGet && op->outcome == OpOutcome::kOk) {
        for (const Version& v : op->versions) {
          if (!v.tombstone) seen_dot.emplace(v.value, v.dot);
        }
      }
      if (op->type == OpType::kPut && op->dot.has_value()) seen_dot.emplace(op->value, *op->dot);
    }
    std::vector<const Operation*> existing;
    std::set<std::string> written;
    for (const Operation* op : ops) {
      if (op->type != OpType::kPut) continue;
      written.insert(op->value);
      if (op->outcome == OpOutcome::kOk || seen_dot.contains(op->value)) existing.push_back(op);
    }
    auto covered_by = [&](const Operation& p, const Dot& dot) -> const Operation* {
      for (const Operation* q : existing) {
        if (q != &p && Covers(q->context.clock, dot)) return q;
      }
      return nullptr;
    };
    std::set<DotKey> final_dots;
    std::set<std::string> final_values(final_read->values.begin(), final_read->values.end());
    for (const Version& v : final_read->versions) final_dots.insert(KeyOf(v.dot));

    for (const Operation* p : ops) {
      if (p->type != OpType::kPut || p->outcome != OpOutcome::kOk) continue;
      ++acked;
      auto it = seen_dot.find(p->value);
      if (it == seen_dot.end()) {
        ++dot_unknown;
        if (final_values.contains(p->value)) {
          ++survived;
        } else {
          ++lost;
          r.Fail(absl::StrCat("lost: acknowledged ", history.Format(p->index),
                              " was never seen stored and is not in the final read ",
                              history.Format(final_read->index)));
        }
        continue;
      }
      const Dot& dot = it->second;
      if (final_dots.contains(KeyOf(dot))) {
        ++survived;
      } else if (covered_by(*p, dot) != nullptr) {
        ++overwritten;
      } else {
        ++lost;
        r.Fail(absl::StrCat("lost: acknowledged ", history.Format(p->index),
                            " (dot ", DotString(dot), ") is not in the final read ",
                            history.Format(final_read->index),
                            " and no put's context covers it"));
      }
    }
    // The final state holds nothing knowingly overwritten by an
    // acknowledged put, and nothing never written.
    for (const Version& v : final_read->versions) {
      if (v.tombstone) continue;
      if (!written.contains(v.value)) {
        r.Fail(absl::StrCat("never written: value \"", v.value, "\" of key ", key,
                            " in the final read ", history.Format(final_read->index)));
        continue;
      }
      for (const Operation* q : ops) {
        if (q->type == OpType::kPut && q->outcome == OpOutcome::kOk && q->value != v.value &&
            Covers(q->context.clock, v.dot)) {
          r.Fail(absl::StrCat("dominated value came back: \"", v.value, "\" (dot ",
                              DotString(v.dot), ") is in the final read ",
                              history.Format(final_read->index), " though ",
                              history.Format(q->index), " overwrote it"));
          break;
        }
      }
    }
  }
  r.counters = {{"acknowledged", acked},
                {"survived", survived},
                {"overwritten", overwritten},
                {"lost", lost},
                {"dot_unknown", dot_unknown}};
  return r;
}

CheckReport CheckReadAntichain(const History& history) {
  CheckReport r;
  r.name = "read-antichain";
  uint64_t reads = 0, max_siblings = 0;
  for (const Operation& op : history.ops()) {
    if (op.type != OpType::kGet || op.outcome != OpOutcome::kOk) continue;
    ++reads;
    max_siblings = std::max<uint64_t>(max_siblings, op.versions.size());
    for (size_t i = 0; i < op.versions.size(); ++i) {
      for (size_t j = 0; j < op.versions.size(); ++j) {
        if (i != j && op.versions[i].Descends(op.versions[j])) {
          r.Fail(absl::StrCat("not an antichain: sibling ", DotString(op.versions[i].dot),
                              " descends from sibling ", DotString(op.versions[j].dot), " in ",
                              history.Format(op.index)));
        }
      }
    }
  }
  r.counters = {{"reads", reads}, {"siblings_max", max_siblings}};
  return r;
}

CheckReport CheckReadLatest(const History& history) {
  CheckReport r;
  r.name = "read-latest";
  uint64_t checked = 0, skipped = 0;
  for (const auto& [key, ops] : ByKey(history)) {
    for (const Operation* g : ops) {
      if (g->type != OpType::kGet || g->outcome != OpOutcome::kOk) continue;
      // Every put of the key that began before the read must have completed
      // successfully before it began; otherwise "latest" is not defined.
      bool clean = true;
      std::vector<const Operation*> before;
      for (const Operation* p : ops) {
        if (p->type != OpType::kPut) continue;
        bool overlaps = p->invoke_time <= g->complete_time &&
                        (p->outcome == OpOutcome::kPending || p->complete_time >= g->invoke_time);
        if (p->invoke_time > g->complete_time) continue;
        if (overlaps || p->outcome != OpOutcome::kOk || !p->dot.has_value()) {
          clean = false;
          break;
        }
        before.push_back(p);
      }
      if (!clean) {
        ++skipped;
        continue;
      }
      ++checked;
      // The expected siblings: the puts no other earlier put overwrote.
      std::set<std::string> expected;
      for (const Operation* p : before) {
        bool overwritten = false;
        for (const Operation* q : before) {
          if (q != p && Covers(q->context.clock, *p->dot)) overwritten = true;
        }
        if (!overwritten) expected.insert(p->value);
      }
      std::set<std::string> got(g->values.begin(), g->values.end());
      if (got != expected) {
        r.Fail(absl::StrCat("stale read: ", history.Format(g->index), " returned {",
                            absl::StrJoin(got, ","), "} but the acknowledged latest is {",
                            absl::StrJoin(expected, ","), "}"));
      }
    }
  }
  r.counters = {{"reads_checked", checked}, {"reads_skipped", skipped}};
  return r;
}

ReplicaMonitor::ReplicaMonitor(Simulation* sim, std::string bucket, std::vector<std::string> keys)
    : sim_(sim), bucket_(std::move(bucket)), keys_(std::move(keys)) {
  report_.name = "replica-causality";
  report_.counters = {{"samples", 0}, {"versions_dropped", 0}, {"keys_handed_off", 0}};
  for (const BucketOptions& b : sim_->options().node.buckets) n_ = std::max(n_, b.n);
  for (const std::string& key : keys_) key_of_[Coordinator::StorageKey(bucket_, key)] = key;
  sim_->SetEraseObserver([this](NodeId id, std::string_view skey, const SiblingSet& stored) {
    OnErase(id, skey, stored);
  });
}

ReplicaMonitor::~ReplicaMonitor() {
  *alive_ = false;
  sim_->SetEraseObserver(nullptr);
}

void ReplicaMonitor::OnWipe(NodeId node) {
  for (const std::string& key : keys_) state_.erase({node, key});
  wiped_at_[node] = sim_->network().Now();
}

void ReplicaMonitor::OnErase(NodeId id, std::string_view skey, const SiblingSet& stored) {
  auto key = key_of_.find(std::string(skey));
  if (key == key_of_.end()) return;
  erased_since_sample_.insert({id, key->second});
  erased_at_[key->second][id] = sim_->network().Now();
  std::string where = absl::StrCat("node ", id, " key ", key->second, " at ",
                                    absl::FormatTime(sim_->network().Now()), ": ");
  // Node::OnPushAck erases a key only when, on the node's current view, it
  // owns the key on neither its routing nor its pending ring and every owner
  // on both confirmed it stored the versions handed over.
  Node* node = sim_->node(id);
  if (node == nullptr) {
    report_.Fail(absl::StrCat(where, "a crashed node erased the key"));
    return;
  }
  std::vector<NodeId> owners;
  for (const Ring* ring : {&node->ring(), &node->pending_ring()}) {
    if (ring->size() == 0) continue;
    for (NodeId o : ring->PreferenceList(skey, n_)) {
      if (std::find(owners.begin(), owners.end(), o) == owners.end()) owners.push_back(o);
    }
  }
  if (std::find(owners.begin(), owners.end(), id) != owners.end()) {
    report_.Fail(absl::StrCat(where, "the node erased the key though it owns it"));
    return;
  }
  ++report_.counters["keys_handed_off"];
  // Every owner confirmed it stored the versions within the last
  // transfer_timeout (older pushes are abandoned). Since then an owner can
  // only have lost them by a wipe or by erasing the key itself (views differ
  // while gossip spreads a change, so two nodes may each hand the key to
  // the other); otherwise it holds them or descendants. And some owner must
  // hold them.
  absl::Time now = sim_->network().Now();
  absl::Duration confirm_age_max = sim_->options().node.transfer_timeout;
  auto recent = [&](const std::map<NodeId, absl::Time>& times, NodeId owner) {
    auto it = times.find(owner);
    return it != times.end() && now - it->second <= confirm_age_max;
  };
  bool some_owner_holds = false;
  for (NodeId owner : owners) {
    absl::StatusOr<SiblingSet> held = sim_->disk(owner).Get(skey);
    VectorClock clock = held.ok() ? MergedClock(*held) : VectorClock();
    bool holds = std::all_of(stored.begin(), stored.end(),
                             [&](const Version& v) { return Covers(clock, v.dot); });
    some_owner_holds = some_owner_holds || holds;
    if (holds || recent(wiped_at_, owner) || recent(erased_at_[key->second], owner)) continue;
    report_.Fail(absl::StrCat(where, "erased the key though owner ", owner,
                              " holds neither all its versions nor descendants, and neither "
                              "erased the key nor lost its disk since it could have confirmed"));
  }
  if (!some_owner_holds) {
    report_.Fail(absl::StrCat(where, "erased the key though no owner holds its versions"));
  }
}

void ReplicaMonitor::Sample() {
  ++report_.counters["samples"];
  for (NodeId id : sim_->node_ids()) {
    for (const std::string& key : keys_) {
      absl::StatusOr<SiblingSet> stored = sim_->disk(id).Get(Coordinator::StorageKey(bucket_, key));
      if (!stored.ok()) {
        report_.Fail(absl::StrCat("node ", id, " key ", key, ": ", stored.status().ToString()));
        continue;
      }
      std::string where = absl::StrCat("node ", id, " key ", key, " at ",
                                        absl::FormatTime(sim_->network().Now()), ": ");
      for (size_t i = 0; i < stored->size(); ++i) {
        for (size_t j = 0; j < stored->size(); ++j) {
          if (i != j && (*stored)[i].Descends((*stored)[j])) {
            report_.Fail(absl::StrCat(where, "stored siblings not an antichain: ",
                                      DotString((*stored)[i].dot), " descends from ",
                                      DotString((*stored)[j].dot)));
          }
        }
      }
      ReplicaKey& st = state_[{id, key}];
      if (erased_since_sample_.contains({id, key})) {
        // Handed off (OnErase checked it): what the node stores next is a
        // new holding period. Its merge rules no longer see the versions
        // it dropped, so a stale copy pushed to it later (by a node whose
        // view still counts it an owner) is not a regression; owners that
        // hold the newer versions discard such a copy.
        st = ReplicaKey();
      }
      VectorClock clock = MergedClock(*stored);
      if (!clock.Descends(st.clock)) {
        report_.Fail(absl::StrCat(where, "clock went backwards from ", st.clock.DebugString(),
                                  " to ", clock.DebugString()));
      }
      std::set<DotKey> present;
      for (const Version& v : *stored) {
        present.insert(KeyOf(v.dot));
        if (st.dropped.contains(KeyOf(v.dot))) {
          report_.Fail(absl::StrCat(where, "version ", DotString(v.dot),
                                    " came back after it was dominated and dropped"));
        }
      }
      for (const DotKey& d : st.present) {
        if (present.contains(d)) continue;
        if (clock.CounterOf(d.first) < d.second) {
          report_.Fail(absl::StrCat(where, "version ", d.first, ":", d.second,
                                    " vanished without a version that descends from it"));
        }
        st.dropped.insert(d);
        ++report_.counters["versions_dropped"];
      }
      st.present = std::move(present);
      st.clock.Merge(clock);
    }
  }
  erased_since_sample_.clear();
}

void ReplicaMonitor::SampleEvery(absl::Duration interval) {
  sampling_ = true;
  Tick(interval);
}

void ReplicaMonitor::Tick(absl::Duration interval) {
  std::shared_ptr<bool> alive = alive_;
  sim_->network().Schedule(interval, [this, alive, interval] {
    if (!*alive || !sampling_) return;
    Sample();
    Tick(interval);
  });
}

CheckReport CheckConvergence(Simulation& sim, const std::string& bucket,
                             const std::vector<std::string>& keys, size_t n) {
  CheckReport r;
  r.name = "convergence";
  uint64_t hints = 0, keys_diverged = 0;
  for (NodeId id : sim.node_ids()) {
    absl::StatusOr<HintUsage> usage = sim.disk(id).GetHintUsage();
    if (usage.ok() && usage->count > 0) {
      hints += usage->count;
      r.Fail(absl::StrCat("node ", id, " still holds ", usage->count, " hints"));
    }
  }
  absl::StatusOr<Ring> ring = sim.SettledRing();
  if (!ring.ok()) r.Fail(absl::StrCat("the ring has not settled: ", ring.status().message()));
  auto describe = [](const SiblingSet& s) {
    std::vector<std::string> parts;
    for (const Version& v : s) parts.push_back(absl::StrCat(DotString(v.dot), "=\"", AbbreviateValue(v.value), "\""));
    return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
  };
  for (const std::string& key : keys) {
    if (!ring.ok()) break;
    std::string skey = Coordinator::StorageKey(bucket, key);
    std::vector<NodeId> owners = ring->PreferenceList(skey, n);
    std::optional<SiblingSet> first;
    NodeId first_owner = kNoNode;
    for (NodeId owner : owners) {
      absl::StatusOr<SiblingSet> stored = sim.disk(owner).Get(skey);
      if (!stored.ok()) {
        r.Fail(absl::StrCat("key ", key, " on node ", owner, ": ", stored.status().ToString()));
        continue;
      }
      if (!first.has_value()) {
        first = *stored;
        first_owner = owner;
      } else if (*stored != *first) {
        ++keys_diverged;
        r.Fail(absl::StrCat("key ", key, ": node ", first_owner, " stores ", describe(*first),
                            " but node ", owner, " stores ", describe(*stored)));
      }
    }
  }
  r.counters = {{"keys", keys.size()},
                {"hints_left", hints},
                {"keys_diverged", keys_diverged},
                {"members", ring.ok() ? ring->size() : 0}};
  return r;
}

CheckReport AwaitConvergence(Simulation& sim, const std::string& bucket,
                             const std::vector<std::string>& keys, size_t n,
                             absl::Duration bound, absl::Duration step) {
  absl::Time start = sim.network().Now();
  CheckReport r = CheckConvergence(sim, bucket, keys, n);
  while (!r.ok && sim.network().Now() - start < bound) {
    sim.RunFor(step);
    r = CheckConvergence(sim, bucket, keys, n);
  }
  absl::Duration waited = sim.network().Now() - start;
  r.counters["waited_ms"] = static_cast<uint64_t>(absl::ToInt64Milliseconds(waited));
  if (!r.ok) {
    // The bound goes first: it is what failed; the rest says where.
    r.violations.insert(r.violations.begin(),
                        absl::StrCat("not converged within the bound of ",
                                     absl::FormatDuration(bound),
                                     " of simulated time (no requests were running); at the "
                                     "bound:"));
    ++r.violations_total;
  }
  return r;
}

CheckReport CheckMerkleTrees(Simulation& sim) {
  CheckReport r;
  r.name = "merkle trees";
  uint64_t checked = 0;
  for (NodeId id : sim.node_ids()) {
    Node* node = sim.node(id);
    if (node == nullptr) continue;
    ++checked;
    const absl::Status status = node->VerifyMerkleTrees();
    if (!status.ok()) r.Fail(status.ToString());
  }
  r.counters["nodes_checked"] = checked;
  return r;
}

}  // namespace dynamo::sim

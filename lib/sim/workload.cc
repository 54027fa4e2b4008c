#include "dynamo/sim/workload.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "dynamo/coordinator.h"
#include "dynamo/sim/checker.h"

namespace dynamo::sim {

struct Workload::ClientState {
  uint32_t index = 0;
  Client* client = nullptr;  // owned by the simulation
  std::mt19937_64 rng;
  bool busy = false;
  size_t ops = 0;
  uint64_t next_tag = 0;
};

absl::StatusOr<std::unique_ptr<Workload>> Workload::Create(Simulation* sim, History* history,
                                                           WorkloadOptions options,
                                                           uint64_t seed) {
  if (options.keys == 0) return absl::InvalidArgumentError("workload: keys must be positive");
  if (options.clients == 0) return absl::InvalidArgumentError("workload: clients must be positive");
  if (!(options.read_fraction >= 0 && options.read_fraction <= 1)) {
    return absl::InvalidArgumentError("workload: read_fraction must be in [0, 1]");
  }
  std::unique_ptr<Workload> w(new Workload(sim, history, std::move(options), seed));
  for (size_t i = 0; i < w->options_.clients; ++i) {
    ClientOptions co;
    co.seeds = sim->node_ids();
    co.requests = sim->options().node;
    absl::StatusOr<Client*> client = sim->AddClient(w->options_.first_client_id + i, co);
    if (!client.ok()) return client.status();
    w->clients_[i]->client = *client;
  }
  return w;
}

Workload::Workload(Simulation* sim, History* history, WorkloadOptions options, uint64_t seed)
    : sim_(sim), history_(history), options_(std::move(options)) {
  for (size_t i = 0; i < options_.keys; ++i) keys_.push_back(absl::StrCat("k", i));
  if (options_.distribution == KeyDistribution::kZipfian) {
    double total = 0;
    for (size_t i = 0; i < options_.keys; ++i) {
      total += 1.0 / std::pow(static_cast<double>(i + 1), options_.zipf_theta);
      zipf_cdf_.push_back(total);
    }
    for (double& c : zipf_cdf_) c /= total;
  }
  for (size_t i = 0; i < options_.clients; ++i) {
    auto c = std::make_unique<ClientState>();
    c->index = static_cast<uint32_t>(i);
    // Distinct, fixed streams per client: the seed mixed with the index.
    c->rng.seed(seed ^ (0x9e3779b97f4a7c15ull * (i + 1)));
    clients_.push_back(std::move(c));
  }
}

Workload::~Workload() = default;

double Workload::Uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

size_t Workload::PickKey(ClientState& c) {
  if (zipf_cdf_.empty()) return c.rng() % keys_.size();
  double u = Uniform01(c.rng);
  auto it = std::lower_bound(zipf_cdf_.begin(), zipf_cdf_.end(), u);
  return std::min<size_t>(it - zipf_cdf_.begin(), keys_.size() - 1);
}

void Workload::Start() {
  running_ = true;
  for (size_t i = 0; i < clients_.size(); ++i) {
    clients_[i]->busy = true;
    ScheduleNext(i);
  }
}

void Workload::Stop() { running_ = false; }

bool Workload::Idle() const {
  for (const auto& c : clients_) {
    if (c->busy) return false;
  }
  return true;
}

void Workload::ScheduleNext(size_t client) {
  ClientState& c = *clients_[client];
  int64_t think_ns = absl::ToInt64Nanoseconds(options_.think_time_max);
  int64_t delay_ns = think_ns > 0 ? static_cast<int64_t>(c.rng() % (think_ns + 1)) : 0;
  // The network never drops external events, and the Workload outlives the
  // run by contract, so capturing `this` is safe.
  sim_->network().Schedule(absl::Nanoseconds(delay_ns), [this, client] { StartOp(client); });
}

void Workload::StartOp(size_t client) {
  ClientState& c = *clients_[client];
  if (!running_ || (options_.ops_per_client_max > 0 && c.ops >= options_.ops_per_client_max)) {
    c.busy = false;
    return;
  }
  ++c.ops;
  std::string key = keys_[PickKey(c)];
  bool read_only = Uniform01(c.rng) < options_.read_fraction;
  if (read_only) {
    IssueGet(client, key, [this, client](const absl::StatusOr<GetResult>&) { ScheduleNext(client); });
    return;
  }
  IssueGet(client, key, [this, client, key](const absl::StatusOr<GetResult>& read) {
    if (!read.ok()) {
      ScheduleNext(client);
      return;
    }
    ClientState& c = *clients_[client];
    std::string tag = absl::StrCat("c", c.index, ".", c.next_tag++);
    std::string value;
    if (options_.kind == WorkloadKind::kSet) {
      // Union every sibling's elements: the add-only set's merge function.
      std::set<std::string> elements;
      for (const std::string& v : read->values) {
        std::set<std::string> e = ParseElements(v);
        elements.insert(e.begin(), e.end());
      }
      elements.insert(tag);
      value = JoinElements(elements);
    } else {
      value = tag;
    }
    IssuePut(client, key, read->context, std::move(value),
             [this, client](const absl::Status&) { ScheduleNext(client); });
    if (options_.kind == WorkloadKind::kSet) history_->SetElement(history_->size() - 1, tag);
  });
}

void Workload::IssueGet(size_t client, const std::string& key,
                        absl::AnyInvocable<void(const absl::StatusOr<GetResult>&)> then) {
  ClientState& c = *clients_[client];
  size_t index = history_->Invoke(c.index, OpType::kGet, options_.bucket, key, "", Context(),
                                  sim_->network().Now());
  c.client->Get(options_.bucket, key,
                [this, index, then = std::move(then)](absl::StatusOr<GetResult> result) mutable {
                  history_->CompleteGet(index, sim_->network().Now(), result);
                  then(result);
                });
}

void Workload::IssuePut(size_t client, const std::string& key, const Context& context,
                        std::string value, absl::AnyInvocable<void(const absl::Status&)> then) {
  ClientState& c = *clients_[client];
  size_t index = history_->Invoke(c.index, OpType::kPut, options_.bucket, key, value, context,
                                  sim_->network().Now());
  c.client->Put(options_.bucket, key, context, std::move(value),
                [this, index, then = std::move(then)](absl::Status status) mutable {
                  history_->CompletePut(index, sim_->network().Now(), status);
                  if (status.ok()) ++puts_ok_;
                  RecordDot(index);
                  then(status);
                });
}

void Workload::RecordDot(size_t op_index) {
  // The put's version is on its coordinator's disk (and W-1 others) when the
  // acknowledgement arrives, unless a later put already replaced it, which
  // needs a read that saw it: then the checkers find it in that read. Reading
  // the disks directly runs no events, so it does not change the run.
  const Operation& op = history_->op(op_index);
  std::string skey = Coordinator::StorageKey(op.bucket, op.key);
  for (NodeId id : sim_->node_ids()) {
    absl::StatusOr<SiblingSet> stored = sim_->disk(id).Get(skey);
    if (!stored.ok()) continue;
    for (const Version& v : *stored) {
      if (!v.tombstone && v.value == op.value) {
        history_->SetPutDot(op_index, v.dot);
        return;
      }
    }
  }
  // Stand-ins keep the version as a hint.
  for (NodeId id : sim_->node_ids()) {
    std::string cursor;
    do {
      absl::StatusOr<HintScanResult> hints = sim_->disk(id).ScanHints(cursor, ScanLimits());
      if (!hints.ok()) break;
      for (const HintEntry& h : hints->entries) {
        if (h.key != skey) continue;
        for (const Version& v : h.siblings) {
          if (!v.tombstone && v.value == op.value) {
            history_->SetPutDot(op_index, v.dot);
            return;
          }
        }
      }
      cursor = hints->resume_cursor;
    } while (!cursor.empty());
  }
}

absl::Status Workload::FinalReads(size_t attempts_max) {
  sim_->network().RunUntil([this] { return Idle(); }, absl::Seconds(120));
  if (!Idle()) return absl::DeadlineExceededError("workload: clients still busy after 120 s");
  // The final reads go through the nodes (each key's first owner, then the
  // next one), not the partition-aware clients, whose rings may be stale
  // after membership changes.
  for (const std::string& key : keys_) {
    bool done = false;
    // The key's owners on the current ring first (membership may have
    // changed), then every other member in walk order.
    std::vector<NodeId> order;
    if (const Ring* ring = sim_->CurrentRing(); ring != nullptr) {
      order = ring->PreferenceList(Coordinator::StorageKey(options_.bucket, key), ring->size());
    }
    if (order.empty()) order = sim_->node_ids();
    for (size_t attempt = 0; attempt < attempts_max && !done; ++attempt) {
      Node* via = sim_->node(order[attempt % order.size()]);
      if (via == nullptr) continue;
      size_t index = history_->Invoke(0, OpType::kGet, options_.bucket, key, "", Context(),
                                      sim_->network().Now());
      std::optional<bool> ok;
      via->Get(options_.bucket, key, [this, index, &ok](absl::StatusOr<GetResult> r) {
        history_->CompleteGet(index, sim_->network().Now(), r);
        ok = r.ok();
      });
      sim_->network().RunUntil([&ok] { return ok.has_value(); }, absl::Seconds(60));
      if (ok.has_value() && *ok) {
        history_->MarkFinalRead(index);
        done = true;
      } else {
        sim_->RunFor(absl::Seconds(1));
      }
    }
    if (!done) {
      return absl::UnavailableError(absl::StrCat("workload: final read of ", key, " failed ",
                                                 attempts_max, " times"));
    }
  }
  return absl::OkStatus();
}

}  // namespace dynamo::sim

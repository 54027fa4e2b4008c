// Workload: simulated clients that drive a simulated cluster the way real
// applications do, recording every request in a History for the checkers.
//
// Each client is a partition-aware dynamo::Client (paper 6.4) on its own
// network endpoint, so client traffic crosses the faulty simulated network
// like any other. A client runs one operation at a time with a random think
// time in between. Writes carry contexts as a real client carries them: the
// client reads the key, then writes with the context that read returned.
//
//   kRegister: a write puts a fresh unique value ("c<client>.<n>") with the
//              preceding read's context. The register and causality checkers
//              use it.
//   kSet:      Jepsen's set-full, add-only: a write reads the key, takes the
//              union of every sibling's elements (values are comma-separated
//              sorted element lists), adds one fresh unique element and puts
//              the union with the read's context. Under sibling-keeping no
//              acknowledged element may ever be lost.
//
// Keys are "k0".."k<keys-1>", chosen uniformly or by a zipfian law. After
// Stop(), FinalReads() reads every key once through the cluster (these
// reads also repair stale replicas) and marks them final in the History.
//
// All randomness comes from the seed given to Create (std::mt19937_64 with
// explicit formulas, no std:: distributions), so a run replays exactly.
//
// Thread-safety: none; runs on the simulation's thread. Ownership: the
// Simulation and History are borrowed and must outlive the Workload.
#ifndef DYNAMO_SIM_WORKLOAD_H_
#define DYNAMO_SIM_WORKLOAD_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dynamo/client.h"
#include "dynamo/sim/history.h"
#include "dynamo/sim/simulation.h"

namespace dynamo::sim {

enum class WorkloadKind { kRegister, kSet };
enum class KeyDistribution { kUniform, kZipfian };

struct WorkloadOptions {
  WorkloadKind kind = WorkloadKind::kRegister;
  std::string bucket = "default";  // must be one of the cluster's buckets
  size_t keys = 8;
  KeyDistribution distribution = KeyDistribution::kUniform;
  double zipf_theta = 0.99;  // skew of the zipfian law (YCSB's default)
  // Fraction of operations that are plain reads; the rest are
  // read-then-write (two history entries: the get and the put).
  double read_fraction = 0.3;
  size_t clients = 3;
  NodeId first_client_id = 1000;  // network ids clients, first_client_id + i
  absl::Duration think_time_max = absl::Milliseconds(20);
  // Each client issues at most this many operations (0: until Stop()).
  size_t ops_per_client_max = 0;
};

class Workload {
 public:
  // Adds the clients to `sim` (their ids must be free). kInvalidArgument
  // for zero keys or clients, or a fraction outside [0, 1].
  static absl::StatusOr<std::unique_ptr<Workload>> Create(Simulation* sim, History* history,
                                                          WorkloadOptions options, uint64_t seed);
  ~Workload();
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;

  // Starts every client's loop (the first ops are scheduled; run the
  // simulation to make progress).
  void Start();
  // No new operations; those in flight still complete and are recorded.
  void Stop();
  // True when no client has an operation in flight.
  bool Idle() const;

  // After Stop(): runs until idle, then reads every key once through the
  // cluster (via the key's first owner node, one key at a time), marking the
  // reads final; they also repair stale replicas. A read that fails is
  // retried through the next node, up to `attempts_max` times.
  absl::Status FinalReads(size_t attempts_max = 5);

  const std::vector<std::string>& keys() const { return keys_; }
  const WorkloadOptions& options() const { return options_; }
  // Puts acknowledged / issued so far.
  size_t puts_ok() const { return puts_ok_; }

 private:
  struct ClientState;

  Workload(Simulation* sim, History* history, WorkloadOptions options, uint64_t seed);
  void ScheduleNext(size_t client);
  void StartOp(size_t client);
  void IssueGet(size_t client, const std::string& key,
                absl::AnyInvocable<void(const absl::StatusOr<GetResult>&)> then);
  void IssuePut(size_t client, const std::string& key, const Context& context,
                std::string value, absl::AnyInvocable<void(const absl::Status&)> then);
  void RecordDot(size_t op_index);
  size_t PickKey(ClientState& c);
  double Uniform01(std::mt19937_64& rng);

  Simulation* sim_;
  History* history_;
  WorkloadOptions options_;
  std::vector<std::string> keys_;
  std::vector<double> zipf_cdf_;
  std::vector<std::unique_ptr<ClientState>> clients_;
  bool running_ = false;
  size_t puts_ok_ = 0;
};

}  // namespace dynamo::sim

#endif  // DYNAMO_SIM_WORKLOAD_H_

// History: the record of every client operation in a simulated run, in the
// shape Jepsen records them: an invoke event when a client issues a request
// and a completion (ok, fail or timeout) when its callback runs, with the
// values and contexts that went in and came out, stamped with true simulated
// time. Checkers (checker.h) read a History after the run; a failing check
// prints the operations involved with Format().
//
// Outcomes follow Dynamo's error contract: kOk is acknowledged; kTimeout
// (kDeadlineExceeded) is indeterminate, the write may or may not have taken
// effect; kFail is every other error. A failed put may still have left a
// copy behind (a coordinator writes locally before it knows it will reach
// W), so checkers treat kFail and kTimeout puts alike as "may exist".
//
// Thread-safety: none; filled on the simulation's one thread.
#ifndef DYNAMO_SIM_HISTORY_H_
#define DYNAMO_SIM_HISTORY_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dynamo/context.h"
#include "dynamo/types.h"
#include "dynamo/version.h"

namespace dynamo::sim {

enum class OpType { kGet, kPut };
enum class OpOutcome { kPending, kOk, kFail, kTimeout };

struct Operation {
  size_t index = 0;       // position in the history
  uint32_t client = 0;    // workload client number (not its network id)
  OpType type = OpType::kGet;
  std::string bucket;
  std::string key;
  // Put: the value written (unique per put in the workloads of workload.h)
  // and the context handed in. Get: the context returned.
  std::string value;
  Context context;
  // Put of the set workload: the one element this put adds.
  std::string element;
  // Set by the workload for its last read of every key after the faults
  // stopped; the set checker takes the final state from these.
  bool final_read = false;

  absl::Time invoke_time;
  absl::Time complete_time;  // meaningful once outcome != kPending
  OpOutcome outcome = OpOutcome::kPending;
  std::string error;  // status message for kFail / kTimeout

  // Get: what it returned.
  std::vector<std::string> values;
  SiblingSet versions;

  // Put: the dot of the version it created, when the workload saw it stored
  // (it looks at the replicas' disks as the acknowledgement arrives).
  std::optional<Dot> dot;
};

class History {
 public:
  // Records an invocation and returns its index.
  size_t Invoke(uint32_t client, OpType type, std::string bucket, std::string key,
                std::string value, Context context, absl::Time now);
  void SetElement(size_t index, std::string element);
  // Record the completion of operation `index`. REQUIRES: it is pending.
  void CompleteGet(size_t index, absl::Time now, const absl::StatusOr<GetResult>& result);
  void CompletePut(size_t index, absl::Time now, const absl::Status& status);
  void SetPutDot(size_t index, const Dot& dot);
  void MarkFinalRead(size_t index);

  const std::vector<Operation>& ops() const { return ops_; }
  size_t size() const { return ops_.size(); }
  const Operation& op(size_t index) const { return ops_.at(index); }

  // Counts by type and outcome, e.g. "puts 120 ok/3 fail/4 timeout, gets ...".
  std::string Summary() const;
  // One line per operation: index, client, times (ms since the epoch of the
  // simulation), type, key, value(s), outcome, dot or siblings.
  std::string Format(size_t index) const;
  // The last `lines_max` operations, one per line, for a failure report.
  std::string Dump(size_t lines_max = 200) const;
  // A hash of everything recorded; with SimNetwork::TraceDigest the
  // determinism check compares two runs of one seed.
  uint64_t Digest() const;

 private:
  std::vector<Operation> ops_;
};

// "actor:counter" of a dot, for reports.
std::string DotString(const Dot& dot);
// A value cut to its first 40 bytes and its length, so reports stay readable.
std::string AbbreviateValue(const std::string& value);

}  // namespace dynamo::sim

#endif  // DYNAMO_SIM_HISTORY_H_

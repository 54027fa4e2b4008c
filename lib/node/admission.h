// AdmissionController: the background-work budget of paper section 6.5.
//
// Dynamo runs its background tasks (hinted handoff, anti-entropy, ownership
// transfer) in slices that must ask an admission controller for permission,
// and the controller gives less when the foreground is suffering: it watches
// the latency of foreground storage reads over a sliding window (the paper:
// the last 60 s) and shrinks the budget while their p99 is above a threshold
// (e.g. 50 ms), growing it back once the p99 recovers.
//
// Here the budget is a number of background *operations* (a hint sent, an
// anti-entropy message sent, a batch of keys scanned) per refill period. A
// task asks with TryAcquire and gets at most what is left in the period.
// Evaluation is multiplicative decrease (halve while over the threshold),
// additive increase (a tenth of the maximum per period while under it).
//
// The latency source is injected: the owner (the node's storage wrapper, or
// a test) calls RecordSample with each measured foreground read latency, so
// the controller can be tested with synthetic samples and works the same on
// virtual and real time. Nothing here reads a clock; `now` is passed in, on
// the node's monotonic clock (Runtime::Elapsed()).
//
// Thread-safety: used on the owning node's thread only.
#ifndef DYNAMO_NODE_ADMISSION_H_
#define DYNAMO_NODE_ADMISSION_H_

#include <cstddef>
#include <cstdint>
#include <deque>

#include "absl/time/time.h"
#include "dynamo/options.h"

namespace dynamo::internal {

struct AdmissionOptions {
  absl::Duration window = absl::Seconds(60);               // paper 6.5
  absl::Duration latency_threshold = absl::Milliseconds(50);  // p99 above this shrinks
  absl::Duration refill_period = absl::Seconds(1);          // budget granted per period
  uint64_t ops_per_period_max = 1000;                       // the budget when healthy
  uint64_t ops_per_period_min = 10;                         // never starve background work
  size_t samples_max = 8192;  // bound on samples kept in the window (oldest dropped)
};

// The node's admission options: refill period 1 s, so the budget is in
// operations per second.
AdmissionOptions AdmissionOptionsFor(const NodeOptions& options);

class AdmissionController {
 public:
  explicit AdmissionController(AdmissionOptions options);

  // One foreground storage read took `latency`, finishing at `now`.
  void RecordSample(absl::Duration now, absl::Duration latency);

  // Grants up to `wanted` operations from the current period's allowance.
  // Advances periods (and re-evaluates the budget) as `now` moves on.
  uint64_t TryAcquire(absl::Duration now, uint64_t wanted);

  // Re-evaluates the budget if a refill period has passed since the last
  // evaluation. TryAcquire calls it; a periodic timer may too, so that the
  // budget recovers (and shows in metrics) even when no task asks.
  void Tick(absl::Duration now);

  uint64_t budget() const { return budget_; }  // operations per period
  uint64_t available() const { return available_; }
  // The p99 of the samples in the window at the last evaluation.
  absl::Duration last_p99() const { return last_p99_; }
  size_t samples() const { return samples_.size(); }
  const AdmissionOptions& options() const { return options_; }

 private:
  struct Sample {
    absl::Duration at;
    absl::Duration latency;
  };
  void Evaluate(absl::Duration now);

  AdmissionOptions options_;
  std::deque<Sample> samples_;
  uint64_t budget_;
  uint64_t available_;
  absl::Duration period_start_ = -absl::InfiniteDuration();
  absl::Duration last_p99_ = absl::ZeroDuration();
};

}  // namespace dynamo::internal

#endif  // DYNAMO_NODE_ADMISSION_H_

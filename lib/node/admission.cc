#include "node/admission.h"

#include <algorithm>
#include <vector>

namespace dynamo::internal {

AdmissionOptions AdmissionOptionsFor(const NodeOptions& options) {
  AdmissionOptions a;
  a.window = options.admission_window;
  a.latency_threshold = options.admission_read_p99_threshold;
  a.refill_period = absl::Seconds(1);
  a.ops_per_period_max = options.background_ops_per_second_max;
  a.ops_per_period_min = options.background_ops_per_second_min;
  return a;
}

AdmissionController::AdmissionController(AdmissionOptions options) : options_(options) {
  if (options_.ops_per_period_min == 0) options_.ops_per_period_min = 1;
  if (options_.ops_per_period_max < options_.ops_per_period_min) {
    options_.ops_per_period_max = options_.ops_per_period_min;
  }
  if (options_.samples_max == 0) options_.samples_max = 1;
  if (options_.refill_period <= absl::ZeroDuration()) options_.refill_period = absl::Seconds(1);
  budget_ = options_.ops_per_period_max;
  available_ = budget_;
}

void AdmissionController::RecordSample(absl::Duration now, absl::Duration latency) {
  if (samples_.size() >= options_.samples_max) samples_.pop_front();
  samples_.push_back(Sample{now, latency});
}

void AdmissionController::Tick(absl::Duration now) {
  if (period_start_ == -absl::InfiniteDuration()) {
    period_start_ = now;
    return;
  }
  if (now - period_start_ < options_.refill_period) return;
  Evaluate(now);
  period_start_ = now;
  available_ = budget_;
}

uint64_t AdmissionController::TryAcquire(absl::Duration now, uint64_t wanted) {
  Tick(now);
  const uint64_t granted = std::min(wanted, available_);
  available_ -= granted;
  return granted;
}

void AdmissionController::Evaluate(absl::Duration now) {
  while (!samples_.empty() && now - samples_.front().at > options_.window) samples_.pop_front();
  if (samples_.empty()) {
    last_p99_ = absl::ZeroDuration();
  } else {
    std::vector<absl::Duration> latencies;
    latencies.reserve(samples_.size());
    for (const Sample& s : samples_) latencies.push_back(s.latency);
    // The nearest-rank p99: the smallest latency at or above 99% of samples.
    const size_t rank = (latencies.size() * 99 + 99) / 100;  // ceil(0.99 * count)
    const size_t k = rank == 0 ? 0 : rank - 1;
    std::nth_element(latencies.begin(), latencies.begin() + k, latencies.end());
    last_p99_ = latencies[k];
  }
  if (last_p99_ > options_.latency_threshold) {
    budget_ = std::max(options_.ops_per_period_min, budget_ / 2);
  } else {
    const uint64_t step = std::max<uint64_t>(1, options_.ops_per_period_max / 10);
    budget_ = std::min(options_.ops_per_period_max, budget_ + step);
  }
}

}  // namespace dynamo::internal

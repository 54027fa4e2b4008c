// Admission control of background work (paper 6.5): AdmissionController on
// synthetic samples, and a node whose storage reads are slow.
#include "node/admission.h"

#include <catch2/catch.hpp>

#include "dynamo/memory_engine.h"
#include "dynamo/node.h"
#include "dynamo/sim/sim_network.h"
#include "node/anti_entropy.h"
#include "node/messages.h"

namespace dynamo::internal {
namespace {

const absl::Duration kT0 = absl::Seconds(1000);  // on the monotonic clock

AdmissionOptions SmallOptions() {
  AdmissionOptions o;
  o.window = absl::Seconds(60);
  o.latency_threshold = absl::Milliseconds(50);
  o.refill_period = absl::Seconds(1);
  o.ops_per_period_max = 100;
  o.ops_per_period_min = 5;
  return o;
}

TEST_CASE("Admission: the budget is granted per period and never overdrawn") {
  AdmissionController ac(SmallOptions());
  CHECK(ac.budget() == 100);
  CHECK(ac.TryAcquire(kT0, 60) == 60);
  CHECK(ac.TryAcquire(kT0, 60) == 40);
  CHECK(ac.TryAcquire(kT0 + absl::Milliseconds(999), 1) == 0);
  CHECK(ac.TryAcquire(kT0 + absl::Seconds(1), 30) == 30);  // a new period
}

TEST_CASE("Admission: p99 above the threshold halves the budget down to the minimum, recovery "
          "grows it back by a tenth per period") {
  AdmissionController ac(SmallOptions());
  absl::Duration now = kT0;
  ac.Tick(now);
  // 2% slow reads: the p99 is slow.
  for (int i = 0; i < 1000; ++i) {
    ac.RecordSample(now, i % 50 == 0 ? absl::Milliseconds(80) : absl::Milliseconds(1));
  }
  std::vector<uint64_t> budgets;
  for (int s = 1; s <= 6; ++s) {
    ac.Tick(now + absl::Seconds(s));
    budgets.push_back(ac.budget());
  }
  CHECK(budgets == std::vector<uint64_t>{50, 25, 12, 6, 5, 5});
  CHECK(ac.last_p99() == absl::Milliseconds(80));
  // Only 0.5% slow reads: the p99 is fast even with the old samples.
  AdmissionController healthy(SmallOptions());
  for (int i = 0; i < 1000; ++i) {
    healthy.RecordSample(now, i % 200 == 0 ? absl::Milliseconds(80) : absl::Milliseconds(1));
  }
  healthy.Tick(now);
  healthy.Tick(now + absl::Seconds(1));
  CHECK(healthy.budget() == 100);
  CHECK(healthy.last_p99() == absl::Milliseconds(1));
  // The slow samples leave the 60 s window: the budget grows back.
  now += absl::Seconds(6);
  ac.Tick(now + absl::Seconds(61));
  CHECK(ac.last_p99() == absl::ZeroDuration());
  CHECK(ac.budget() == 15);
  for (int s = 62; s < 80; ++s) ac.Tick(now + absl::Seconds(s));
  CHECK(ac.budget() == 100);
}

TEST_CASE("Admission: the sample buffer is bounded") {
  AdmissionOptions o = SmallOptions();
  o.samples_max = 10;
  AdmissionController ac(o);
  for (int i = 0; i < 100; ++i) ac.RecordSample(kT0, absl::Milliseconds(1));
  CHECK(ac.samples() == 10);
}

// Makes every read take `delay` on the node's own clocks, as a slow disk
// would (sim::SimNetwork::Stall during the call).
class SlowReads : public StorageEngineWrapper {
 public:
  SlowReads(StorageEngine* target, sim::SimNetwork* net, NodeId id)
      : StorageEngineWrapper(target), net_(net), id_(id) {}
  absl::StatusOr<SiblingSet> Get(std::string_view key) override {
    net_->Stall(id_, delay);
    return StorageEngineWrapper::Get(key);
  }
  absl::Duration delay = absl::ZeroDuration();

 private:
  sim::SimNetwork* net_;
  NodeId id_;
};

TEST_CASE("Admission: slow foreground reads shrink a node's background budget, it recovers") {
  sim::SimNetwork net(7);
  Runtime& runtime = net.AddNode(1);
  MemoryEngine disk;
  SlowReads slow(&disk, &net, 1);
  RingOptions ro;
  ro.partitions = 8;
  Ring ring(ro);
  REQUIRE(ring.AddNode(RingMember{1, "", 1.0, {}}).ok());
  NodeOptions no;
  no.buckets[0].n = no.buckets[0].r = no.buckets[0].w = 1;
  no.anti_entropy_interval = absl::Seconds(1);
  no.admission_window = absl::Seconds(10);
  no.background_ops_per_second_max = 200;
  no.background_ops_per_second_min = 4;
  auto node = Node::Create(no, &runtime, &slow, ring);
  REQUIRE(node.ok());
  auto read_for = [&](absl::Duration d) {
    for (absl::Duration t; t < d; t += absl::Milliseconds(100)) {
      (*node)->Get("default", "k", [](absl::StatusOr<GetResult>) {});
      net.RunFor(absl::Milliseconds(100));
    }
  };
  read_for(absl::Seconds(3));
  CHECK((*node)->metrics().background_budget == 200);
  slow.delay = absl::Milliseconds(80);
  read_for(absl::Seconds(10));
  CHECK((*node)->metrics().background_budget == 4);
  CHECK((*node)->metrics().background_read_p99_us >= 80000);
  slow.delay = absl::ZeroDuration();
  read_for(absl::Seconds(25));  // the slow samples leave the window, then +20 per second
  CHECK((*node)->metrics().background_budget == 200);
}

}  // namespace
}  // namespace dynamo::internal

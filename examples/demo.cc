// The demo: vector clocks reconciling the paper's example (section 4.4).
// Replaced by a simulated cluster once the Node lands.
#include <cstdio>

#include "dynamo/version.h"

int main() {
  using namespace dynamo;
  constexpr ActorId kSx = 1, kSy = 2, kSz = 3;
  Version d1 = NewVersion({}, {}, kSx, 1, "D1", false, 10);
  Version d2 = NewVersion({d1}, d1.Clock(), kSx, 2, "D2", false, 10);
  Version d3 = NewVersion({d2}, d2.Clock(), kSy, 3, "D3", false, 10);
  Version d4 = NewVersion({d2}, d2.Clock(), kSz, 4, "D4", false, 10);
  SiblingSet s = Reconcile({d1, d2, d3, d4});
  std::printf("after D1..D4: %zu siblings\n", s.size());
  for (const Version& v : s) std::printf("  %s %s\n", v.value.c_str(), v.Clock().DebugString().c_str());
  Version d5 = NewVersion(s, MergedClock(s), kSx, 5, "D5", false, 10);
  MergeVersion(s, d5);
  std::printf("after D5: %zu sibling: %s %s\n", s.size(), s[0].value.c_str(),
              s[0].Clock().DebugString().c_str());
  return 0;
}

// The context of paper section 4.1: what a get hands back with the values
// and a later put hands in, so the new version descends from everything the
// caller read. Opaque to applications: they pass it back unchanged (Encode /
// Decode let them store it between requests). It also names the replica
// that answered the read fastest, which then coordinates the next write of
// the key (paper section 6.4).
#ifndef DYNAMO_CONTEXT_H_
#define DYNAMO_CONTEXT_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "dynamo/types.h"
#include "dynamo/vector_clock.h"
#include "dynamo/version.h"

namespace dynamo {

struct Context {
  VectorClock clock;             // merge of the clocks of every sibling read
  NodeId coordinator = kNoNode;  // preferred coordinator for the next put
  // A blind write (Redis's SET): the put also supersedes every version the
  // coordinating replica holds when it writes, without a read first.
  // Versions still on their way to that replica stay siblings of the new
  // one. Last-write-wins buckets always behave this way.
  bool supersede_coordinator_copy = false;

  std::string Encode() const;
  // kInvalidArgument if `bytes` is not an encoded context.
  static absl::StatusOr<Context> Decode(std::string_view bytes);
};

// What a get returns.
struct GetResult {
  // The values of the live siblings, in a deterministic order. Empty when
  // the key was never written or is deleted. Under last-write-wins at most
  // one value.
  std::vector<std::string> values;
  // Every causally unrelated version, tombstones included, for callers that
  // want clocks and timestamps.
  SiblingSet versions;
  Context context;
  size_t replicas_answered = 0;

  bool found() const { return !values.empty(); }
};

}  // namespace dynamo

#endif  // DYNAMO_CONTEXT_H_

// Runtime: the one seam through which a node meets the outside world: its
// clock, its timers, its random numbers and its Transport. A node never reads
// a real clock, sleeps, starts a thread or draws unseeded randomness; it asks
// its Runtime. That is what lets the same node code run hundreds of times in
// one thread on virtual time, reproducibly from a seed (SimNetwork), and as a
// real process over TCP on the wall clock.
//
// Thread-safety: every method is called from the node's own event-loop
// thread, and every timer callback runs on it, one at a time.
#ifndef DYNAMO_RUNTIME_H_
#define DYNAMO_RUNTIME_H_

#include <cstdint>

#include "absl/functional/any_invocable.h"
#include "absl/random/bit_gen_ref.h"
#include "absl/time/time.h"
#include "dynamo/transport.h"
#include "dynamo/types.h"

namespace dynamo {

using TimerId = uint64_t;
inline constexpr TimerId kNoTimer = 0;

class Runtime {
 public:
  virtual ~Runtime() = default;

  // The id of the node this runtime serves.
  virtual NodeId self() const = 0;

  // This node's wall clock. In simulation it may be skewed or drift relative
  // to other nodes; node code must not assume clocks agree.
  virtual absl::Time Now() = 0;

  // Time elapsed since a fixed point of the runtime's choosing, on the clock
  // its timers run on: unlike Now() it never goes back and is never skewed
  // or stepped, so it is what intervals and deadlines are measured with.
  // Not comparable across nodes.
  virtual absl::Duration Elapsed() = 0;

  // Runs `callback` on the node's thread once `delay` has passed (a
  // non-positive delay runs it on the next turn of the loop, never inline).
  // Returns an id for Cancel(), never kNoTimer.
  virtual TimerId Schedule(absl::Duration delay, absl::AnyInvocable<void()> callback) = 0;

  // Runs `callback` on the node's thread once the event being handled (a
  // message, a timer, a client call) is done, never inline: SimNetwork
  // right after the current event, at the same virtual time and before any
  // other event; TcpRuntime when its handler that made the call returns
  // (for a call made elsewhere on its loop, soon after). For work
  // that gathers what one turn of the loop produced, such as a replica's
  // acknowledgements to one coordinator. Returns an id for Cancel(), never
  // kNoTimer.
  virtual TimerId Defer(absl::AnyInvocable<void()> callback) = 0;

  // Cancels a pending timer or deferred call. Cancelling one that already
  // ran or was cancelled is a no-op.
  virtual void Cancel(TimerId timer) = 0;

  // This node's random source, seeded by whoever built the runtime.
  virtual absl::BitGenRef Rng() = 0;

  virtual Transport& transport() = 0;
};

}  // namespace dynamo

#endif  // DYNAMO_RUNTIME_H_

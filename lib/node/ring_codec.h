// Wire form of a Ring (options and members with their tokens), so a node can
// hand its view of the ring to a partition-aware client (paper 6.4) and,
// later, to gossip.
#ifndef DYNAMO_NODE_RING_CODEC_H_
#define DYNAMO_NODE_RING_CODEC_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "dynamo/ring.h"

namespace dynamo {

std::string EncodeRing(const Ring& ring);
// kInvalidArgument for malformed bytes or a ring that does not validate.
absl::StatusOr<Ring> DecodeRing(std::string_view bytes);

}  // namespace dynamo

#endif  // DYNAMO_NODE_RING_CODEC_H_

#include "node/ring_codec.h"

#include <bit>
#include <cmath>

#include "core/codec.h"
#include "core/status_macros.h"

namespace dynamo {

namespace {
constexpr uint8_t kRingFormat = 1;
constexpr size_t kMembersMax = 1 << 14;
constexpr size_t kTokensPerMemberMax = 1 << 16;
constexpr size_t kZoneBytesMax = 256;
}  // namespace

std::string EncodeRing(const Ring& ring) {
  std::string out;
  internal::Encoder e(&out);
  e.PutU8(kRingFormat);
  const RingOptions& o = ring.options();
  e.PutVarint(static_cast<uint64_t>(o.strategy));
  e.PutVarint(o.tokens_per_node);
  e.PutVarint(o.partitions);
  e.PutFixed64(o.seed);
  e.PutVarint(ring.members().size());
  for (const RingMember& m : ring.members()) {
    e.PutVarint(m.id);
    e.PutBytes(m.zone);
    e.PutFixed64(std::bit_cast<uint64_t>(m.weight));
    e.PutVarint(m.tokens.size());
    for (Token t : m.tokens) e.PutToken(t);
  }
  return out;
}

absl::StatusOr<Ring> DecodeRing(std::string_view bytes) {
  internal::Decoder d(bytes);
  uint8_t format = 0;
  DYNAMO_RETURN_IF_ERROR(d.GetU8(&format));
  if (format != kRingFormat) return absl::InvalidArgumentError("ring: unknown format version");
  RingOptions o;
  uint64_t strategy, tokens_per_node, partitions;
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&strategy));
  if (strategy < 1 || strategy > 3) return absl::InvalidArgumentError("ring: unknown strategy");
  o.strategy = static_cast<PartitionStrategy>(strategy);
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&tokens_per_node));
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&partitions));
  if (tokens_per_node > kTokensPerMemberMax || partitions > (1u << 24)) {
    return absl::InvalidArgumentError("ring: tokens per node or partitions out of range");
  }
  o.tokens_per_node = tokens_per_node;
  o.partitions = partitions;
  DYNAMO_RETURN_IF_ERROR(d.GetFixed64(&o.seed));
  uint64_t count;
  DYNAMO_RETURN_IF_ERROR(d.GetCount(&count, kMembersMax, 12, "ring member"));
  std::vector<RingMember> members(count);
  for (RingMember& m : members) {
    DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.id));
    DYNAMO_RETURN_IF_ERROR(d.GetString(&m.zone, kZoneBytesMax, "zone"));
    uint64_t weight_bits;
    DYNAMO_RETURN_IF_ERROR(d.GetFixed64(&weight_bits));
    m.weight = std::bit_cast<double>(weight_bits);
    if (!std::isfinite(m.weight)) return absl::InvalidArgumentError("ring: weight is not finite");
    uint64_t tokens;
    DYNAMO_RETURN_IF_ERROR(d.GetCount(&tokens, kTokensPerMemberMax, 16, "token"));
    m.tokens.resize(tokens);
    for (Token& t : m.tokens) DYNAMO_RETURN_IF_ERROR(d.GetToken(&t));
  }
  DYNAMO_RETURN_IF_ERROR(d.ExpectEnd("ring"));
  return Ring::FromMembers(o, std::move(members));
}

}  // namespace dynamo

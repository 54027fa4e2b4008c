#include "dynamo/context.h"

#include "core/codec.h"
#include "core/status_macros.h"

namespace dynamo {

namespace {
// Format 2 adds a flags byte; a context without flags is still written as
// format 1, which every version reads.
constexpr uint8_t kContextFormat = 1;
constexpr uint8_t kContextFormatWithFlags = 2;
constexpr uint8_t kSupersedeCoordinatorCopy = 1;
}  // namespace

std::string Context::Encode() const {
  std::string out;
  internal::Encoder e(&out);
  e.PutU8(supersede_coordinator_copy ? kContextFormatWithFlags : kContextFormat);
  e.PutClock(clock);
  e.PutVarint(coordinator);
  if (supersede_coordinator_copy) e.PutU8(kSupersedeCoordinatorCopy);
  return out;
}

absl::StatusOr<Context> Context::Decode(std::string_view bytes) {
  internal::Decoder d(bytes);
  uint8_t format = 0;
  DYNAMO_RETURN_IF_ERROR(d.GetU8(&format));
  if (format != kContextFormat && format != kContextFormatWithFlags) {
    return absl::InvalidArgumentError("context: unknown format (not produced by libdynamo?)");
  }
  Context c;
  DYNAMO_RETURN_IF_ERROR(d.GetClock(&c.clock));
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&c.coordinator));
  if (format == kContextFormatWithFlags) {
    uint8_t flags = 0;
    DYNAMO_RETURN_IF_ERROR(d.GetU8(&flags));
    if ((flags & ~kSupersedeCoordinatorCopy) != 0) {
      return absl::InvalidArgumentError("context: unknown flags (from a newer libdynamo?)");
    }
    c.supersede_coordinator_copy = (flags & kSupersedeCoordinatorCopy) != 0;
  }
  DYNAMO_RETURN_IF_ERROR(d.ExpectEnd("context"));
  return c;
}

}  // namespace dynamo

#include "dynamo/context.h"

#include "core/codec.h"
#include "core/status_macros.h"

namespace dynamo {

namespace {
constexpr uint8_t kContextFormat = 1;
}

std::string Context::Encode() const {
  std::string out;
  internal::Encoder e(&out);
  e.PutU8(kContextFormat);
  e.PutClock(clock);
  e.PutVarint(coordinator);
  return out;
}

absl::StatusOr<Context> Context::Decode(std::string_view bytes) {
  internal::Decoder d(bytes);
  uint8_t format = 0;
  DYNAMO_RETURN_IF_ERROR(d.GetU8(&format));
  if (format != kContextFormat) {
    return absl::InvalidArgumentError("context: unknown format (not produced by libdynamo?)");
  }
  Context c;
  DYNAMO_RETURN_IF_ERROR(d.GetClock(&c.clock));
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&c.coordinator));
  DYNAMO_RETURN_IF_ERROR(d.ExpectEnd("context"));
  return c;
}

}  // namespace dynamo

// libFuzzer target for the wire codec's decoding of untrusted bytes
// (lib/core/codec.h): DecodeSiblingSet and Decoder::GetClock / GetVersion.
// Nothing may crash, leak, overflow or read out of bounds, whatever the
// input; and whatever decodes must re-encode to bytes that decode to the
// same value (the codec's round-trip property).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/codec.h"

namespace {

using dynamo::SiblingSet;
using dynamo::Version;
using dynamo::VectorClock;
using dynamo::internal::Decoder;
using dynamo::internal::Encoder;

void Check(bool ok) {
  if (!ok) std::abort();
}

void FuzzSiblingSet(std::string_view in) {
  auto decoded = dynamo::internal::DecodeSiblingSet(in);
  if (!decoded.ok()) {
    Check(!decoded.status().message().empty());  // every error names the problem
    return;
  }
  std::string again = dynamo::internal::EncodeSiblingSet(*decoded);
  auto redecoded = dynamo::internal::DecodeSiblingSet(again);
  Check(redecoded.ok());
  Check(*redecoded == *decoded);
}

void FuzzClockAndVersion(std::string_view in) {
  // Small limits make the limit checks reachable with small inputs.
  dynamo::internal::CodecLimits limits;
  limits.clock_entries_max = 8;
  limits.value_bytes_max = 256;
  Decoder dec(in, limits);
  VectorClock clock;
  if (dec.GetClock(&clock).ok()) {
    std::string bytes;
    Encoder(&bytes).PutClock(clock);
    Decoder again(bytes, limits);
    VectorClock clock2;
    Check(again.GetClock(&clock2).ok() && again.ExpectEnd("clock").ok());
    Check(clock2 == clock && clock2.entries() == clock.entries());
  }
  Version version;
  if (dec.GetVersion(&version).ok()) {
    std::string bytes;
    Encoder(&bytes).PutVersion(version);
    Decoder again(bytes, limits);
    Version version2;
    Check(again.GetVersion(&version2).ok() && again.ExpectEnd("version").ok());
    Check(version2 == version);
  }
  (void)dec.ExpectEnd("fuzz input");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the entry point, so one corpus covers both.
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    FuzzSiblingSet(in);
  } else {
    FuzzClockAndVersion(in);
  }
  return 0;
}

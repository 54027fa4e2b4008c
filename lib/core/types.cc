#include "dynamo/types.h"

#include "absl/strings/str_format.h"
#include "xxhash.h"

namespace dynamo {

Token KeyToken(std::string_view key) {
  XXH128_hash_t h = XXH3_128bits(key.data(), key.size());
  return absl::MakeUint128(h.high64, h.low64);
}

std::string TokenToBytes(Token token) {
  std::string out(16, '\0');
  uint64_t hi = absl::Uint128High64(token), lo = absl::Uint128Low64(token);
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>(hi >> (56 - 8 * i));
    out[8 + i] = static_cast<char>(lo >> (56 - 8 * i));
  }
  return out;
}

Token TokenFromBytes(std::string_view b) {
  uint64_t hi = 0, lo = 0;
  for (int i = 0; i < 8; ++i) {
    hi = (hi << 8) | static_cast<uint8_t>(b[i]);
    lo = (lo << 8) | static_cast<uint8_t>(b[8 + i]);
  }
  return absl::MakeUint128(hi, lo);
}

std::string TokenToString(Token token) {
  return absl::StrFormat("%016x%016x", absl::Uint128High64(token), absl::Uint128Low64(token));
}

}  // namespace dynamo

// Basic identifiers shared by every layer of libdynamo: node ids, vector-clock
// actor ids, and the 128-bit ring position of a key (paper section 4.2; the
// paper used MD5, libdynamo uses XXH3-128, which spreads keys as evenly and is
// an order of magnitude faster). Everything here is a plain value type.
#ifndef DYNAMO_TYPES_H_
#define DYNAMO_TYPES_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/numeric/int128.h"

namespace dynamo {

// A physical node of the cluster. Ids are chosen by the operator (or the
// simulation) and never reused for a different machine.
using NodeId = uint64_t;
inline constexpr NodeId kNoNode = 0;

// The writer named in vector-clock entries. A node draws a fresh actor id
// whenever it starts without its previous data (wiped disk, new machine), so
// counters of a lost incarnation are never reused (Riak's "kv679" loss).
using ActorId = uint64_t;

// A position on the ring, [0, 2^128).
using Token = absl::uint128;

// The ring position of a key: XXH3-128 of its bytes.
Token KeyToken(std::string_view key);

// Big-endian 16-byte form of a token, so that byte order equals token order
// (storage engines key their data by it to scan token ranges).
std::string TokenToBytes(Token token);
Token TokenFromBytes(std::string_view bytes16);

// A half-open arc of the ring (begin, end]: the token `end` belongs to the
// range, as a key belongs to the first virtual node at or after it. When
// begin == end the range is the whole ring.
struct TokenRange {
  Token begin = 0;
  Token end = 0;

  bool Contains(Token t) const {
    if (begin == end) return true;
    if (begin < end) return t > begin && t <= end;
    return t > begin || t <= end;  // wraps past zero
  }
  friend bool operator==(const TokenRange&, const TokenRange&) = default;
};

std::string TokenToString(Token token);

}  // namespace dynamo

#endif  // DYNAMO_TYPES_H_

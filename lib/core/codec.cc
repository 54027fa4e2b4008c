#include "core/codec.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace dynamo::internal {

namespace {
// 2: actors and timestamps as fixed 64-bit little-endian (random actor ids
// and microsecond timestamps take 8-10 bytes as varints, and decode slower).
constexpr uint8_t kSiblingSetFormat = 2;
constexpr size_t kMaxVarintBytes = 10;

// A few fields built on the stack and appended to the output at once: each
// std::string append costs a capacity check and a memcpy call (~35
// instructions) whatever its size, and a version's dot and clock entries
// are three small fields each (the codec is on every message's path).
//
// The count lives in a local while bytes are stored: a char store may alias
// any object, so a loop storing bytes_[n_++] reloads and stores n_ for each
// byte (half of a dot's encoding went there).
class Staged {
 public:
  void Fixed64(uint64_t v) {
    if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
    std::memcpy(bytes_ + n_, &v, sizeof v);  // little-endian on the wire
    n_ += sizeof v;
  }
  void Varint(uint64_t v) {
    size_t n = n_;
    while (v >= 0x80) {
      bytes_[n++] = static_cast<char>(v | 0x80);
      v >>= 7;
    }
    bytes_[n++] = static_cast<char>(v);
    n_ = n;
  }
  void AppendTo(std::string* out) const { out->append(bytes_, n_); }

 private:
  // A dot or a clock entry: two fixed 64-bit fields and a varint.
  char bytes_[16 + kMaxVarintBytes];
  size_t n_ = 0;
};
}  // namespace

void Encoder::PutLongVarint(uint64_t v) {
  Staged staged;
  staged.Varint(v);
  staged.AppendTo(out_);
}

void Encoder::PutSignedVarint(int64_t v) {
  PutVarint((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63));
}

void Encoder::PutFixed64(uint64_t v) {
  Staged staged;
  staged.Fixed64(v);
  staged.AppendTo(out_);
}

void Encoder::PutBytes(std::string_view bytes) {
  PutVarint(bytes.size());
  out_->append(bytes.data(), bytes.size());
}

void Encoder::PutToken(Token t) { out_->append(TokenToBytes(t)); }

void Encoder::PutClock(const VectorClock& clock) {
  PutVarint(clock.size());
  for (const ClockEntry& e : clock.entries()) {
    Staged staged;
    staged.Fixed64(e.actor);
    staged.Varint(e.counter);
    staged.Fixed64(static_cast<uint64_t>(e.timestamp_us));
    staged.AppendTo(out_);
  }
}

void Encoder::PutDot(const Dot& dot) {
  Staged staged;
  staged.Fixed64(dot.actor);
  staged.Varint(dot.counter);
  staged.Fixed64(static_cast<uint64_t>(dot.timestamp_us));
  staged.AppendTo(out_);
}

void Encoder::PutVersion(const Version& v) {
  PutDot(v.dot);
  PutClock(v.context);
  PutBool(v.tombstone);
  PutBytes(v.value);
}

void Encoder::PutSiblings(const SiblingSet& siblings) {
  PutVarint(siblings.size());
  for (const Version& v : siblings) PutVersion(v);
}

absl::Status Decoder::Short(const char* what) const {
  return absl::InvalidArgumentError(absl::StrCat("truncated input: ", what, " needs more than the ",
                                                 remaining(), " bytes left at offset ", pos_));
}

absl::Status Decoder::GetLongVarint(uint64_t* v) {
  // Two and three bytes (request ids, dot counters) without the loop's
  // per-byte bounds and overflow checks; anything else, including every
  // malformed case, takes the loop, which names the error.
  if (remaining() >= 3) {
    const auto* p = reinterpret_cast<const uint8_t*>(in_.data() + pos_);
    if ((p[0] & 0x80) != 0) {
      if (p[1] != 0 && (p[1] & 0x80) == 0) {
        *v = (p[0] & 0x7fu) | (static_cast<uint64_t>(p[1]) << 7);
        pos_ += 2;
        return absl::OkStatus();
      }
      if ((p[1] & 0x80) != 0 && p[2] != 0 && (p[2] & 0x80) == 0) {
        *v = (p[0] & 0x7fu) | (static_cast<uint64_t>(p[1] & 0x7f) << 7) |
             (static_cast<uint64_t>(p[2]) << 14);
        pos_ += 3;
        return absl::OkStatus();
      }
    }
  }
  uint64_t result = 0;
  for (size_t i = 0; i < kMaxVarintBytes; ++i) {
    if (pos_ >= in_.size()) return Short("varint");
    uint8_t byte = static_cast<uint8_t>(in_[pos_++]);
    if (i == kMaxVarintBytes - 1 && byte > 1) {
      return absl::InvalidArgumentError(absl::StrCat("varint overflows 64 bits at offset ", pos_));
    }
    result |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) {
      // One encoding per number: a padded varint ("0x80 0x00" for 0) is
      // rejected so that decoding then encoding gives back the same bytes.
      if (byte == 0 && i > 0) {
        return absl::InvalidArgumentError(absl::StrCat("overlong varint at offset ", pos_));
      }
      *v = result;
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("varint longer than 10 bytes at offset ", pos_));
}

absl::Status Decoder::GetSignedVarint(int64_t* v) {
  uint64_t u;
  DYNAMO_RETURN_IF_ERROR(GetVarint(&u));
  *v = static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1));
  return absl::OkStatus();
}

absl::Status Decoder::GetFixed64(uint64_t* v) {
  if (remaining() < 8) return Short("fixed64");
  // One load instead of a byte loop (~50 instructions, four times per
  // stored version): every read of a record decodes its dot and clock.
  uint64_t r;
  std::memcpy(&r, in_.data() + pos_, sizeof r);
  if constexpr (std::endian::native == std::endian::big) r = __builtin_bswap64(r);
  pos_ += 8;
  *v = r;
  return absl::OkStatus();
}

absl::Status Decoder::GetBytes(std::string_view* v, size_t max_len, const char* what) {
  uint64_t len;
  DYNAMO_RETURN_IF_ERROR(GetVarint(&len));
  if (len > max_len) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " of ", len, " bytes exceeds the maximum of ", max_len));
  }
  if (len > remaining()) return Short(what);
  *v = in_.substr(pos_, len);
  pos_ += len;
  return absl::OkStatus();
}

absl::Status Decoder::GetString(std::string* v, size_t max_len, const char* what) {
  std::string_view view;
  DYNAMO_RETURN_IF_ERROR(GetBytes(&view, max_len, what));
  // Built at its exact size, not assigned: assign() into the (empty)
  // string a decoder fills goes through the string's general growth path,
  // ~2x the instructions for a key or a 100-byte value.
  *v = std::string(view);
  return absl::OkStatus();
}

absl::Status Decoder::GetBool(bool* b) {
  uint8_t v = 0;
  DYNAMO_RETURN_IF_ERROR(GetU8(&v));
  if (v > 1) return absl::InvalidArgumentError(absl::StrCat("bool byte is ", v, ", not 0 or 1"));
  *b = v == 1;
  return absl::OkStatus();
}

absl::Status Decoder::GetToken(Token* t) {
  if (remaining() < 16) return Short("token");
  *t = TokenFromBytes(in_.substr(pos_, 16));
  pos_ += 16;
  return absl::OkStatus();
}

absl::Status Decoder::GetCount(uint64_t* n, size_t max, size_t min_item_bytes, const char* what) {
  DYNAMO_RETURN_IF_ERROR(GetVarint(n));
  if (*n > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " count ", *n, " exceeds the maximum of ", max));
  }
  if (*n * std::max<size_t>(min_item_bytes, 1) > remaining()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " count ", *n, " cannot fit in the ", remaining(), " bytes left"));
  }
  return absl::OkStatus();
}

absl::Status Decoder::GetClock(VectorClock* clock) {
  uint64_t n;
  DYNAMO_RETURN_IF_ERROR(GetCount(&n, limits_.clock_entries_max, 17, "vector clock entry"));
  VectorClock result;
  ActorId previous = 0;
  for (uint64_t i = 0; i < n; ++i) {
    ClockEntry e;
    uint64_t timestamp;
    DYNAMO_RETURN_IF_ERROR(GetFixed64(&e.actor));
    DYNAMO_RETURN_IF_ERROR(GetVarint(&e.counter));
    DYNAMO_RETURN_IF_ERROR(GetFixed64(&timestamp));
    e.timestamp_us = static_cast<int64_t>(timestamp);
    // The in-memory form is sorted with positive counters; a clock that is
    // not is rejected rather than silently normalized.
    if ((i > 0 && e.actor <= previous) || e.counter == 0) {
      return absl::InvalidArgumentError(
          "vector clock entries are not sorted by actor with positive counters");
    }
    previous = e.actor;
    result.Observe(e.actor, e.counter, e.timestamp_us);
  }
  *clock = std::move(result);
  return absl::OkStatus();
}

absl::Status Decoder::GetDot(Dot* dot) {
  uint64_t timestamp;
  DYNAMO_RETURN_IF_ERROR(GetFixed64(&dot->actor));
  DYNAMO_RETURN_IF_ERROR(GetVarint(&dot->counter));
  DYNAMO_RETURN_IF_ERROR(GetFixed64(&timestamp));
  dot->timestamp_us = static_cast<int64_t>(timestamp);
  if (dot->counter == 0) return absl::InvalidArgumentError("version dot has counter 0");
  return absl::OkStatus();
}

absl::Status Decoder::GetVersion(Version* v) {
  DYNAMO_RETURN_IF_ERROR(GetDot(&v->dot));
  DYNAMO_RETURN_IF_ERROR(GetClock(&v->context));
  DYNAMO_RETURN_IF_ERROR(GetBool(&v->tombstone));
  DYNAMO_RETURN_IF_ERROR(GetString(&v->value, limits_.value_bytes_max, "value"));
  if (v->tombstone && !v->value.empty()) {
    return absl::InvalidArgumentError("tombstone version carries a value");
  }
  return absl::OkStatus();
}

absl::Status Decoder::GetSiblings(SiblingSet* siblings) {
  uint64_t n;
  DYNAMO_RETURN_IF_ERROR(GetCount(&n, limits_.siblings_max, 20, "sibling"));
  SiblingSet result;
  result.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    // Decoded in place: no temporary Version to move and destroy per sibling.
    DYNAMO_RETURN_IF_ERROR(GetVersion(&result.emplace_back()));
  }
  *siblings = std::move(result);
  return absl::OkStatus();
}

absl::Status Decoder::ExpectEnd(const char* what) const {
  if (remaining() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(remaining(), " unexpected trailing bytes after ", what));
  }
  return absl::OkStatus();
}

std::string EncodeSiblingSet(const SiblingSet& siblings) {
  std::string out;
  EncodeSiblingSetInto(siblings, &out);
  return out;
}

void EncodeSiblingSetInto(const SiblingSet& siblings, std::string* out) {
  out->clear();
  AppendSiblingSet(siblings, out);
}

void AppendSiblingSet(const SiblingSet& siblings, std::string* out) {
  Encoder enc(out);
  enc.PutU8(kSiblingSetFormat);
  enc.PutSiblings(siblings);
}

absl::StatusOr<SiblingSet> DecodeSiblingSet(std::string_view bytes, const CodecLimits& limits) {
  Decoder dec(bytes, limits);
  uint8_t format = 0;
  DYNAMO_RETURN_IF_ERROR(dec.GetU8(&format));
  if (format != kSiblingSetFormat) {
    return absl::InvalidArgumentError(absl::StrCat("unknown sibling-set format version ", format));
  }
  SiblingSet siblings;
  DYNAMO_RETURN_IF_ERROR(dec.GetSiblings(&siblings));
  DYNAMO_RETURN_IF_ERROR(dec.ExpectEnd("sibling set"));
  return siblings;
}

}  // namespace dynamo::internal

// The wire codec: the one binary encoding for everything that crosses a node
// boundary (network messages, stored sibling sets, hints, membership). Varints
// for counts and counters, fixed 64-bit little-endian for vector-clock actors
// and timestamps (random ids and microsecond clocks would take 8-10 varint
// bytes each), length-prefixed bytes for strings.
//
// Decoding treats its input as untrusted: every read is bounds-checked, every
// length and count is checked against a declared maximum *before* anything is
// allocated, and every failure is an absl::Status naming what was wrong
// (kInvalidArgument for malformed input). Nothing here aborts on bad bytes.
#ifndef DYNAMO_CORE_CODEC_H_
#define DYNAMO_CORE_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dynamo/types.h"
#include "dynamo/vector_clock.h"
#include "dynamo/version.h"

namespace dynamo::internal {

// Upper bounds a decoder enforces. They bound what one message may make the
// receiver allocate.
struct CodecLimits {
  size_t key_bytes_max = 64 * 1024;
  size_t value_bytes_max = 1 << 20;  // the default maximum object size, 1 MiB
  size_t clock_entries_max = 64;
  // Above StorageLimits::replicated_siblings_max's default: replicas may
  // hold, and so send, that many.
  size_t siblings_max = 512;
  size_t list_items_max = 1 << 16;  // any other repeated field
};

// Appends encodings to a caller-owned string.
class Encoder {
 public:
  explicit Encoder(std::string* out) : out_(out) {}
  void PutU8(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  // Small numbers (counts, lengths, counters) take the inline one-byte path:
  // the codec runs on every simulated message.
  void PutVarint(uint64_t v) {
    if (v < 0x80) {
      out_->push_back(static_cast<char>(v));
    } else {
      PutLongVarint(v);
    }
  }
  void PutSignedVarint(int64_t v);  // zigzag
  void PutFixed64(uint64_t v);
  void PutBytes(std::string_view bytes);  // varint length + bytes
  void PutBool(bool b) { PutU8(b ? 1 : 0); }
  void PutToken(Token t);  // 16 bytes, big-endian
  void PutClock(const VectorClock& clock);
  void PutDot(const Dot& dot);
  void PutVersion(const Version& version);
  void PutSiblings(const SiblingSet& siblings);
  std::string* out() { return out_; }

 private:
  void PutLongVarint(uint64_t v);
  std::string* out_;
};

// Reads from a borrowed buffer. Each getter returns an error and leaves the
// output unspecified if the input is short or violates a limit.
class Decoder {
 public:
  explicit Decoder(std::string_view in, const CodecLimits& limits = CodecLimits())
      : in_(in), limits_(limits) {}

  absl::Status GetU8(uint8_t* v) {
    if (pos_ >= in_.size()) return Short("byte");
    *v = static_cast<uint8_t>(in_[pos_++]);
    return absl::OkStatus();
  }
  absl::Status GetVarint(uint64_t* v) {
    // Inline fast path: a one-byte varint (small counts, lengths, counters).
    if (pos_ < in_.size() && (static_cast<uint8_t>(in_[pos_]) & 0x80) == 0) {
      *v = static_cast<uint8_t>(in_[pos_++]);
      return absl::OkStatus();
    }
    return GetLongVarint(v);
  }
  absl::Status GetSignedVarint(int64_t* v);
  absl::Status GetFixed64(uint64_t* v);
  // `what` names the field in error messages; `max_len` bounds its length.
  absl::Status GetBytes(std::string_view* v, size_t max_len, const char* what);
  absl::Status GetString(std::string* v, size_t max_len, const char* what);
  absl::Status GetBool(bool* b);
  absl::Status GetToken(Token* t);
  // A count of repeated items, checked against `max` and against the bytes
  // left (each item takes at least `min_item_bytes`).
  absl::Status GetCount(uint64_t* n, size_t max, size_t min_item_bytes, const char* what);
  absl::Status GetClock(VectorClock* clock);
  absl::Status GetDot(Dot* dot);  // kInvalidArgument for counter 0
  absl::Status GetVersion(Version* version);
  absl::Status GetSiblings(SiblingSet* siblings);

  // OK only when every byte was consumed; trailing garbage is an error.
  absl::Status ExpectEnd(const char* what) const;

  size_t remaining() const { return in_.size() - pos_; }
  const CodecLimits& limits() const { return limits_; }

 private:
  absl::Status Short(const char* what) const;
  absl::Status GetLongVarint(uint64_t* v);
  std::string_view in_;
  size_t pos_ = 0;
  CodecLimits limits_;
};

// Stored form of a sibling set: one format-version byte, then the siblings.
std::string EncodeSiblingSet(const SiblingSet& siblings);
// The same into `out`, replacing its contents: a caller encoding many sets
// reuses one string's capacity instead of growing a new one each time.
void EncodeSiblingSetInto(const SiblingSet& siblings, std::string* out);
// The same appended to `out`: a flush encodes many sets into one buffer.
void AppendSiblingSet(const SiblingSet& siblings, std::string* out);
absl::StatusOr<SiblingSet> DecodeSiblingSet(std::string_view bytes,
                                            const CodecLimits& limits = CodecLimits());

}  // namespace dynamo::internal

#endif  // DYNAMO_CORE_CODEC_H_

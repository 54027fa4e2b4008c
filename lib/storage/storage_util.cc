#include "storage/storage_util.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace dynamo::internal {

namespace {
// Format 1: node, epoch, actor. Format 2 appends the counter lease end; a
// format 1 record decodes with lease end 0.
constexpr uint8_t kIdentityFormatWithoutLease = 1;
constexpr uint8_t kIdentityFormat = 2;
// The codec's own clock bound: a context longer than this would be stored
// but could never be decoded again, so puts are refused up front.
constexpr size_t kClockEntriesMax = CodecLimits().clock_entries_max;
}  // namespace

std::string PrintableKey(std::string_view key) {
  std::string out;
  for (char c : key.substr(0, 64)) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(c);
    } else {
      out += absl::StrCat("\\x", absl::Hex(static_cast<uint8_t>(c), absl::kZeroPad2));
    }
  }
  if (key.size() > 64) out += "...";
  return out;
}

namespace {
// Writes DataKey(key) to out[0, kTokenBytes + key.size()).
void WriteDataKey(std::string_view key, char* out) {
  const Token token = KeyToken(key);
  // Big-endian, high half first; two word stores rather than a byte loop
  // (every write computes its key's data key).
  uint64_t halves[2] = {absl::Uint128High64(token), absl::Uint128Low64(token)};
  if constexpr (std::endian::native == std::endian::little) {
    halves[0] = __builtin_bswap64(halves[0]);
    halves[1] = __builtin_bswap64(halves[1]);
  }
  std::memcpy(out, halves, kTokenBytes);
  std::copy(key.begin(), key.end(), out + kTokenBytes);
}
}  // namespace

void AppendDataKey(std::string_view key, std::string* out) {
  const size_t at = out->size();
  out->resize(at + kTokenBytes + key.size());
  WriteDataKey(key, out->data() + at);
}

std::string DataKey(std::string_view key) {
  std::string out;
  AppendDataKey(key, &out);
  return out;
}

DataKeyBuffer::DataKeyBuffer(std::string_view key) {
  char* out = inline_;
  if (key.size() > kInlineKeyBytes) {
    heap_.resize(kTokenBytes + key.size());
    out = heap_.data();
  }
  WriteDataKey(key, out);
  view_ = std::string_view(out, kTokenBytes + key.size());
}

std::string HintKey(NodeId owner, std::string_view key) {
  std::string out(kOwnerBytes, '\0');
  for (size_t i = 0; i < kOwnerBytes; ++i) out[i] = static_cast<char>(owner >> (56 - 8 * i));
  out += DataKey(key);
  return out;
}

NodeId OwnerOfHintKey(std::string_view hint_key) {
  NodeId owner = 0;
  for (size_t i = 0; i < kOwnerBytes; ++i) owner = (owner << 8) | static_cast<uint8_t>(hint_key[i]);
  return owner;
}

CodecLimits CodecLimitsFor(const StorageLimits& limits) {
  CodecLimits codec;
  codec.value_bytes_max = std::max(codec.value_bytes_max, limits.value_bytes_max);
  codec.siblings_max = std::max(codec.siblings_max, SiblingsMaxFor(limits, /*replicated=*/true));
  return codec;
}

absl::Status ValidateKey(std::string_view key, const StorageLimits& limits) {
  if (key.size() > limits.key_bytes_max) {
    return absl::InvalidArgumentError(absl::StrCat("key of ", key.size(),
                                                   " bytes exceeds key_bytes_max ",
                                                   limits.key_bytes_max, ": ", PrintableKey(key)));
  }
  return absl::OkStatus();
}

absl::Status ValidateSiblings(std::string_view key, const SiblingSet& siblings,
                              const StorageLimits& limits) {
  DYNAMO_RETURN_IF_ERROR(ValidateKey(key, limits));
  for (const Version& v : siblings) {
    if (v.value.size() > limits.value_bytes_max) {
      return absl::InvalidArgumentError(
          absl::StrCat("value of ", v.value.size(), " bytes exceeds value_bytes_max ",
                       limits.value_bytes_max, " for key ", PrintableKey(key)));
    }
    if (v.context.size() > kClockEntriesMax) {
      return absl::InvalidArgumentError(
          absl::StrCat("version context of ", v.context.size(), " entries exceeds ",
                       kClockEntriesMax, " for key ", PrintableKey(key)));
    }
  }
  return absl::OkStatus();
}

size_t SiblingsMaxFor(const StorageLimits& limits, bool replicated) {
  return replicated ? std::max(limits.siblings_max, limits.replicated_siblings_max)
                    : limits.siblings_max;
}

absl::StatusOr<bool> MergeWithinLimit(std::string_view key, SiblingSet& stored,
                                      const SiblingSet& incoming, const StorageLimits& limits,
                                      bool replicated) {
  const size_t siblings_max = SiblingsMaxFor(limits, replicated);
  // A merge never grows the set by more than `incoming`, so when that stays
  // within the limit there is nothing to roll back and no copy is needed.
  if (stored.size() + incoming.size() <= siblings_max) {
    return MergeSiblings(stored, incoming);
  }
  SiblingSet merged = stored;
  bool changed = MergeSiblings(merged, incoming);
  if (merged.size() > siblings_max) {
    return absl::FailedPreconditionError(
        absl::StrCat("put would keep ", merged.size(), " siblings, over ",
                     replicated ? "replicated_siblings_max " : "siblings_max ", siblings_max,
                     ", for key ", PrintableKey(key)));
  }
  if (changed) stored = std::move(merged);
  return changed;
}

bool RemoveReapedTombstones(SiblingSet& stored, const SiblingSet& tombstones) {
  size_t erased = std::erase_if(stored, [&](const Version& s) {
    if (!s.tombstone) return false;
    return std::any_of(tombstones.begin(), tombstones.end(),
                       [&](const Version& t) { return t.tombstone && t.dot == s.dot; });
  });
  return erased > 0;
}

bool RemoveDelivered(SiblingSet& stored, const SiblingSet& delivered) {
  size_t erased = std::erase_if(stored, [&](const Version& s) {
    return std::any_of(delivered.begin(), delivered.end(),
                       [&](const Version& d) { return d.Descends(s); });
  });
  return erased > 0;
}

uint64_t ApproxEntryBytes(std::string_view key, const SiblingSet& siblings) {
  // Roughly the encoded size: key with its token, and per version its dot,
  // flags, value and about 12 bytes per context entry.
  uint64_t bytes = kTokenBytes + key.size() + 2;
  for (const Version& v : siblings) bytes += 16 + v.value.size() + 12 * v.context.size();
  return bytes;
}

absl::StatusOr<std::vector<ScanSegment>> PlanScan(const TokenRange& range,
                                                  std::string_view cursor) {
  const Token kMax = absl::Uint128Max();
  const std::string kFirst(kTokenBytes, '\0');
  std::vector<ScanSegment> segments;
  if (range.begin == range.end) {
    segments.push_back({kFirst, false, TokenToBytes(kMax)});
  } else if (range.begin < range.end) {
    segments.push_back({TokenToBytes(range.begin + 1), false, TokenToBytes(range.end)});
  } else {  // wraps past zero: (begin, max] then [0, end]
    if (range.begin != kMax) {
      segments.push_back({TokenToBytes(range.begin + 1), false, TokenToBytes(kMax)});
    }
    segments.push_back({kFirst, false, TokenToBytes(range.end)});
  }
  if (cursor.empty()) return segments;

  if (cursor.size() < kTokenBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("scan cursor of ", cursor.size(), " bytes is not a resume cursor"));
  }
  Token token = TokenFromBytes(cursor);
  if (!range.Contains(token)) {
    return absl::InvalidArgumentError(absl::StrCat("scan cursor token ", TokenToString(token),
                                                   " lies outside the scanned range"));
  }
  std::string_view prefix = cursor.substr(0, kTokenBytes);
  for (size_t i = 0; i < segments.size(); ++i) {
    if (prefix >= std::string_view(segments[i].start).substr(0, kTokenBytes) &&
        prefix <= segments[i].last_token) {
      segments.erase(segments.begin(), segments.begin() + static_cast<ptrdiff_t>(i));
      segments[0].start.assign(cursor.data(), cursor.size());
      segments[0].start_exclusive = true;
      return segments;
    }
  }
  // Unreachable when Contains() agrees with the segments; fail loudly anyway.
  return absl::InternalError("scan cursor matched no segment of its range");
}

std::string EncodeIdentity(const NodeIdentity& identity) {
  std::string out;
  Encoder enc(&out);
  enc.PutU8(kIdentityFormat);
  enc.PutVarint(identity.node);
  enc.PutVarint(identity.epoch);
  enc.PutVarint(identity.actor);
  enc.PutVarint(identity.counter_lease_end);
  return out;
}

absl::StatusOr<NodeIdentity> DecodeIdentity(std::string_view bytes) {
  Decoder dec(bytes);
  uint8_t format = 0;
  DYNAMO_RETURN_IF_ERROR(dec.GetU8(&format));
  if (format != kIdentityFormat && format != kIdentityFormatWithoutLease) {
    return absl::InvalidArgumentError(absl::StrCat("unknown identity format version ", format));
  }
  NodeIdentity id;
  DYNAMO_RETURN_IF_ERROR(dec.GetVarint(&id.node));
  DYNAMO_RETURN_IF_ERROR(dec.GetVarint(&id.epoch));
  DYNAMO_RETURN_IF_ERROR(dec.GetVarint(&id.actor));
  if (format == kIdentityFormat) DYNAMO_RETURN_IF_ERROR(dec.GetVarint(&id.counter_lease_end));
  DYNAMO_RETURN_IF_ERROR(dec.ExpectEnd("identity"));
  return id;
}

}  // namespace dynamo::internal

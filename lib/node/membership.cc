#include "dynamo/membership.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <span>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "core/codec.h"
#include "core/status_macros.h"
#include "xxhash.h"

namespace dynamo {

namespace {
constexpr uint8_t kEntriesFormat = 1;
constexpr size_t kMembersMax = 1 << 14;
constexpr size_t kAddressBytesMax = 256;

void PutEntry(internal::Encoder& e, const MemberEntry& m) {
  e.PutVarint(m.id);
  e.PutBytes(m.address);
  e.PutBytes(m.zone);
  e.PutFixed64(std::bit_cast<uint64_t>(m.weight));
  e.PutU8(static_cast<uint8_t>(m.status));
  e.PutVarint(m.version);
  e.PutVarint(m.join_seq);
  e.PutVarint(m.remove_seq);
  e.PutVarint(m.epoch);
  e.PutVarint(m.actor);
}

std::string EntryBytes(const MemberEntry& m) {
  std::string out;
  internal::Encoder e(&out);
  PutEntry(e, m);
  return out;
}

void PutListHeader(internal::Encoder& e, size_t entries) {
  e.PutU8(kEntriesFormat);
  e.PutVarint(entries);
}

// A hash of the whole entry (its encoding as a one-entry list), so two views
// that differ in any field, even at the same version, are told apart.
uint64_t EntryDigest(std::string_view entry_bytes) {
  std::string list;
  list.reserve(2 + entry_bytes.size());
  internal::Encoder e(&list);
  PutListHeader(e, 1);
  list.append(entry_bytes);
  return XXH3_64bits(list.data(), list.size());
}

}  // namespace

const char* MemberStatusName(MemberStatus status) {
  switch (status) {
    case MemberStatus::kJoining: return "joining";
    case MemberStatus::kUp: return "up";
    case MemberStatus::kLeaving: return "leaving";
    case MemberStatus::kRemoved: return "removed";
  }
  return "unknown";
}

Membership Membership::FromRing(const Ring& ring) {
  Membership view;
  uint64_t seq = 0;
  for (const RingMember& m : ring.members()) {
    MemberEntry e;
    e.id = m.id;
    e.zone = m.zone;
    e.weight = m.weight;
    e.version = 1;
    e.join_seq = ++seq;
    view.Merge(e);
  }
  return view;
}

size_t Membership::IndexOf(NodeId id) const {
  return std::lower_bound(digest_.begin(), digest_.end(), id,
                          [](const auto& d, NodeId member) { return d.first < member; }) -
         digest_.begin();
}

bool Membership::Merge(const MemberEntry& entry) {
  const size_t index = IndexOf(entry.id);
  if (index == entries_.size() || entries_[index].id != entry.id) {
    std::string bytes = EntryBytes(entry);
    entries_.insert(entries_.begin() + index, entry);
    digest_.insert(digest_.begin() + index, {entry.id, EntryDigest(bytes)});
    entry_bytes_.insert(entry_bytes_.begin() + index, std::move(bytes));
    DropRingChanges();
    live_.reset();
    view_digest_.reset();
    return true;
  }
  MemberEntry& mine = entries_[index];
  if (entry.version < mine.version) return false;
  std::string bytes = EntryBytes(entry);
  // Same version, different content: two nodes changed the entry at once.
  // Any total order on content keeps the merge commutative; byte order of
  // the encoding is one every node computes alike.
  if (entry.version == mine.version && !(bytes > entry_bytes_[index])) return false;
  if (entry.status != mine.status || entry.join_seq != mine.join_seq ||
      entry.remove_seq != mine.remove_seq || entry.zone != mine.zone ||
      entry.weight != mine.weight) {
    DropRingChanges();
  }
  if (entry.status != mine.status) live_.reset();
  view_digest_.reset();
  mine = entry;
  digest_[index].second = EntryDigest(bytes);
  entry_bytes_[index] = std::move(bytes);
  return true;
}

bool Membership::MergeAll(const std::vector<MemberEntry>& entries) {
  bool changed = false;
  for (const MemberEntry& e : entries) changed |= Merge(e);
  return changed;
}

uint64_t Membership::ViewDigest() const {
  if (!view_digest_.has_value()) {
    // Hashed as fixed-width little-endian words, so nodes of any byte order
    // agree on it.
    std::string words;
    words.reserve(digest_.size() * 16);
    internal::Encoder e(&words);
    for (const auto& [id, hash] : digest_) {
      e.PutFixed64(id);
      e.PutFixed64(hash);
    }
    view_digest_ = XXH3_64bits(words.data(), words.size());
  }
  return *view_digest_;
}

const MemberEntry* Membership::Find(NodeId id) const {
  const size_t index = IndexOf(id);
  return index < entries_.size() && entries_[index].id == id ? &entries_[index] : nullptr;
}

const std::vector<NodeId>& Membership::Live() const {
  if (live_.has_value()) return *live_;
  std::vector<NodeId>& live = live_.emplace();
  for (const MemberEntry& e : entries_) {
    if (e.status != MemberStatus::kRemoved) live.push_back(e.id);
  }
  return live;
}

uint64_t Membership::NextSeq() const {
  uint64_t seq = 0;
  for (const MemberEntry& e : entries_) seq = std::max({seq, e.join_seq, e.remove_seq});
  return seq + 1;
}

const std::vector<RingChange>& Membership::RingChanges(bool pending) const {
  std::optional<std::vector<RingChange>>& cached = ring_changes_[pending ? 1 : 0];
  if (cached.has_value()) return *cached;
  struct Sequenced {
    uint64_t seq;
    RingChange change;
  };
  std::vector<Sequenced> events;
  const uint64_t after_all = NextSeq();
  for (const MemberEntry& e : entries_) {
    const NodeId id = e.id;
    bool in = true;
    switch (e.status) {
      case MemberStatus::kJoining: in = pending; break;
      case MemberStatus::kUp: break;
      case MemberStatus::kLeaving: break;
      case MemberStatus::kRemoved: break;
    }
    if (!in) continue;
    events.push_back({e.join_seq, RingChange{/*remove=*/false, id, e.zone, e.weight}});
    if (e.status == MemberStatus::kRemoved) {
      events.push_back({e.remove_seq, RingChange{/*remove=*/true, id, "", 0}});
    } else if (e.status == MemberStatus::kLeaving && pending) {
      events.push_back({after_all, RingChange{/*remove=*/true, id, "", 0}});
    }
  }
  // Replaying in (seq, join before removal, id) order is the same
  // computation on every node.
  std::sort(events.begin(), events.end(), [](const Sequenced& a, const Sequenced& b) {
    return std::tie(a.seq, a.change.remove, a.change.id) <
           std::tie(b.seq, b.change.remove, b.change.id);
  });
  std::vector<RingChange>& changes = cached.emplace();
  changes.reserve(events.size());
  for (Sequenced& e : events) changes.push_back(std::move(e.change));
  return changes;
}

namespace {

absl::Status ApplyRingChanges(Ring& ring, std::span<const RingChange> changes) {
  for (const RingChange& change : changes) {
    if (change.remove) {
      DYNAMO_RETURN_IF_ERROR(ring.RemoveNode(change.id));
    } else {
      RingMember m;
      m.id = change.id;
      m.zone = change.zone;
      m.weight = change.weight;
      DYNAMO_RETURN_IF_ERROR(ring.AddNode(std::move(m)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Ring> Membership::BuildRing(const RingOptions& options,
                                           const std::vector<RingChange>& changes) {
  Ring ring(options);
  DYNAMO_RETURN_IF_ERROR(ApplyRingChanges(ring, changes));
  return ring;
}

absl::StatusOr<Ring> Membership::BuildRing(const RingOptions& options,
                                           const std::vector<RingChange>& changes,
                                           const Ring& base) {
  const std::optional<std::vector<RingChange>>& built = base.history();
  if (!(base.options() == options) || !built.has_value() || built->size() > changes.size() ||
      !std::equal(built->begin(), built->end(), changes.begin())) {
    return BuildRing(options, changes);
  }
  Ring ring = base;
  DYNAMO_RETURN_IF_ERROR(ApplyRingChanges(ring, std::span(changes).subspan(built->size())));
  return ring;
}

std::string EncodeMemberEntries(const std::vector<MemberEntry>& entries) {
  std::string out;
  // About 40 bytes an entry with short strings; the encoder appends bytewise.
  out.reserve(8 + 48 * entries.size());
  internal::Encoder e(&out);
  PutListHeader(e, entries.size());
  for (const MemberEntry& m : entries) PutEntry(e, m);
  return out;
}

std::string EncodeMemberEntries(const Membership& view) {
  size_t bytes = 8;
  for (const std::string& entry : view.entry_bytes_) bytes += entry.size();
  std::string out;
  out.reserve(bytes);
  internal::Encoder e(&out);
  PutListHeader(e, view.entry_bytes_.size());
  for (const std::string& entry : view.entry_bytes_) out.append(entry);
  return out;
}

absl::StatusOr<std::vector<MemberEntry>> DecodeMemberEntries(std::string_view bytes) {
  internal::Decoder d(bytes);
  uint8_t format = 0;
  DYNAMO_RETURN_IF_ERROR(d.GetU8(&format));
  if (format != kEntriesFormat) {
    return absl::InvalidArgumentError(absl::StrCat("membership: unknown format ", format));
  }
  uint64_t n;
  DYNAMO_RETURN_IF_ERROR(d.GetCount(&n, kMembersMax, 14, "member entry"));
  std::vector<MemberEntry> out(n);
  for (MemberEntry& m : out) {
    DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.id));
    if (m.id == kNoNode) return absl::InvalidArgumentError("membership: node id 0");
    DYNAMO_RETURN_IF_ERROR(d.GetString(&m.address, kAddressBytesMax, "address"));
    DYNAMO_RETURN_IF_ERROR(d.GetString(&m.zone, kAddressBytesMax, "zone"));
    uint64_t weight_bits;
    DYNAMO_RETURN_IF_ERROR(d.GetFixed64(&weight_bits));
    m.weight = std::bit_cast<double>(weight_bits);
    if (!std::isfinite(m.weight) || m.weight <= 0) {
      return absl::InvalidArgumentError("membership: weight must be finite and positive");
    }
    uint8_t status = 0;
    DYNAMO_RETURN_IF_ERROR(d.GetU8(&status));
    if (status < 1 || status > 4) {
      return absl::InvalidArgumentError(absl::StrCat("membership: unknown status ", status));
    }
    m.status = static_cast<MemberStatus>(status);
    DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.version));
    DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.join_seq));
    DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.remove_seq));
    DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.epoch));
    DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.actor));
  }
  DYNAMO_RETURN_IF_ERROR(d.ExpectEnd("membership"));
  return out;
}

}  // namespace dynamo

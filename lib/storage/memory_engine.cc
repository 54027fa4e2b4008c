#include "dynamo/memory_engine.h"

#include <cstring>
#include <new>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "storage/storage_util.h"

namespace dynamo {

using internal::HintKey;

absl::StatusOr<std::unique_ptr<MemoryEngine>> MemoryEngine::Create(const StorageLimits& limits,
                                                                   uint64_t bytes_max) {
  return std::make_unique<MemoryEngine>(limits, bytes_max);
}

MemoryEngine::EntryPtr MemoryEngine::MakeEntry(std::string_view key, SiblingSet siblings) {
  void* memory = ::operator new(sizeof(Entry) + key.size());
  Entry* entry = new (memory) Entry{std::move(siblings), static_cast<uint32_t>(key.size())};
  std::memcpy(static_cast<void*>(entry + 1), key.data(), key.size());
  return EntryPtr(entry);
}

size_t MemoryEngine::EntryHash::operator()(std::string_view key) const {
  return internal::HashKey(key);
}

void MemoryEngine::EntryDeleter::operator()(Entry* entry) const {
  const size_t size = sizeof(Entry) + entry->key_size;
  entry->~Entry();
  ::operator delete(entry, size);
}

uint64_t MemoryEngine::CountedBytes(std::string_view key, const SiblingSet& siblings) const {
  return bytes_max_ == 0 ? 0 : internal::ApproxEntryBytes(key, siblings);
}

absl::Status MemoryEngine::CheckRoom(std::string_view key, uint64_t old_bytes,
                                     uint64_t new_bytes) const {
  if (bytes_max_ == 0 || new_bytes <= old_bytes || bytes() - old_bytes + new_bytes <= bytes_max_) {
    return absl::OkStatus();
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("memory engine full: writing key ", internal::PrintableKey(key), " would hold ",
                   bytes() - old_bytes + new_bytes, " bytes, over bytes_max ", bytes_max_));
}

absl::StatusOr<bool> MemoryEngine::MergeWithinBounds(std::string_view key, SiblingSet& stored,
                                                     const SiblingSet& incoming,
                                                     bool replicated) const {
  // A merge grows an entry by at most `incoming`: far from the bound (nearly
  // always) it merges in place, as without one.
  if (bytes_max_ == 0 ||
      bytes() + internal::ApproxEntryBytes(key, incoming) <= bytes_max_) {
    return internal::MergeWithinLimit(key, stored, incoming, limits_, replicated);
  }
  SiblingSet merged = stored;
  DYNAMO_ASSIGN_OR_RETURN(bool changed,
                          internal::MergeWithinLimit(key, merged, incoming, limits_, replicated));
  if (!changed) return false;
  const uint64_t old_bytes = stored.empty() ? 0 : internal::ApproxEntryBytes(key, stored);
  DYNAMO_RETURN_IF_ERROR(CheckRoom(key, old_bytes, internal::ApproxEntryBytes(key, merged)));
  stored = std::move(merged);
  return true;
}

absl::StatusOr<SiblingSet> MemoryEngine::Get(std::string_view key) {
  SiblingSet copy;
  DYNAMO_RETURN_IF_ERROR(Visit(key, [&](const SiblingSet& stored) { copy = stored; }));
  return copy;
}

// A lookup is a chain of three loads, each needing the one before: the
// control bytes and slots where the key's probe starts, the entry a slot
// names (the key comparison reads it), and the versions the entry points
// to; a write then copies its value over the first version's. One pass
// over the batch per link, so that each pass waits for nothing the one
// before has not had time to bring in: the first starts loading every
// key's probe; the second runs each probe without comparing
// (PrefetchProbe), starting to load the entries it names; the third finds
// each key and starts loading its first version; the fourth that
// version's value.
void MemoryEngine::Prefetch(std::span<const std::string_view> keys) {
  for (std::string_view key : keys) data_.prefetch(key);
  for (std::string_view key : keys) data_.find(PrefetchProbe{key});
  absl::InlinedVector<const SiblingSet*, 32> sets;
  for (std::string_view key : keys) {
    auto found = data_.find(key);
    if (found == data_.end()) continue;
    internal::PrefetchFirstVersion((*found)->siblings);
    sets.push_back(&(*found)->siblings);
  }
  for (const SiblingSet* siblings : sets) internal::PrefetchFirstValue(*siblings);
}

absl::Status MemoryEngine::Visit(std::string_view key,
                                 absl::FunctionRef<void(const SiblingSet&)> reader) {
  DYNAMO_RETURN_IF_ERROR(internal::ValidateKey(key, limits_));
  auto found = data_.find(key);
  if (found == data_.end()) {
    reader(SiblingSet());
  } else {
    reader((*found)->siblings);  // not through ?:, which would copy the set
  }
  return absl::OkStatus();
}

absl::StatusOr<SiblingSet> MemoryEngine::Put(std::string_view key, const SiblingSet& incoming,
                                             const WriteOptions& options) {
  return PutThroughVisit(key, incoming, options);
}

absl::Status MemoryEngine::Update(std::string_view key, const SiblingSet& incoming,
                                  const WriteOptions& options,
                                  absl::FunctionRef<absl::Status(const SiblingSet&)> prepare,
                                  absl::FunctionRef<void(const SiblingSet&)> reader) {
  DYNAMO_RETURN_IF_ERROR(internal::ValidateKey(key, limits_));
  auto found = data_.find(key);
  if (found != data_.end()) {
    SiblingSet& stored = (*found)->siblings;
    DYNAMO_RETURN_IF_ERROR(prepare(stored));
    DYNAMO_RETURN_IF_ERROR(internal::ValidateSiblings(key, incoming, limits_));
    const uint64_t old_bytes = CountedBytes(key, stored);
    // Merged in place: MergeWithinBounds leaves the set untouched on failure.
    DYNAMO_ASSIGN_OR_RETURN(bool changed,
                            MergeWithinBounds(key, stored, incoming, options.replicated));
    if (changed) data_bytes_ += CountedBytes(key, stored) - old_bytes;
    reader(stored);
    return absl::OkStatus();
  }
  SiblingSet stored;
  DYNAMO_RETURN_IF_ERROR(prepare(stored));
  DYNAMO_RETURN_IF_ERROR(internal::ValidateSiblings(key, incoming, limits_));
  DYNAMO_ASSIGN_OR_RETURN(bool changed,
                          MergeWithinBounds(key, stored, incoming, options.replicated));
  if (!changed || stored.empty()) {
    reader(stored);
    return absl::OkStatus();
  }
  data_bytes_ += CountedBytes(key, stored);
  const Entry& inserted = **data_.insert(MakeEntry(key, std::move(stored))).first;
  order_.insert(OrderedKey{KeyToken(key), inserted.key(), &inserted});
  reader(inserted.siblings);
  return absl::OkStatus();
}

absl::Status MemoryEngine::ReapTombstones(std::string_view key, const SiblingSet& tombstones) {
  DYNAMO_RETURN_IF_ERROR(internal::ValidateKey(key, limits_));
  auto found = data_.find(key);
  if (found == data_.end()) return absl::OkStatus();
  const uint64_t old_bytes = CountedBytes(key, (*found)->siblings);
  if (!internal::RemoveReapedTombstones((*found)->siblings, tombstones)) return absl::OkStatus();
  data_bytes_ -= old_bytes;
  if ((*found)->siblings.empty()) {
    EraseFound(found);
  } else {
    data_bytes_ += CountedBytes(key, (*found)->siblings);
  }
  return absl::OkStatus();
}

absl::Status MemoryEngine::Erase(std::string_view key) {
  DYNAMO_RETURN_IF_ERROR(internal::ValidateKey(key, limits_));
  auto found = data_.find(key);
  if (found == data_.end()) return absl::OkStatus();
  data_bytes_ -= CountedBytes(key, (*found)->siblings);
  EraseFound(found);
  return absl::OkStatus();
}

void MemoryEngine::EraseFound(EntrySet::iterator found) {
  const std::string_view key = (*found)->key();
  order_.erase(OrderedKey{KeyToken(key), key});
  data_.erase(found);
}

absl::StatusOr<ScanResult> MemoryEngine::Scan(const TokenRange& range, std::string_view cursor,
                                              const ScanLimits& limits) {
  DYNAMO_ASSIGN_OR_RETURN(std::vector<internal::ScanSegment> segments,
                          internal::PlanScan(range, cursor));
  internal::ScanCollector<KeyEntry> collector(limits);
  for (const internal::ScanSegment& segment : segments) {
    const std::string_view start_key = segment.start;
    const OrderedKey start{TokenFromBytes(start_key.substr(0, internal::kTokenBytes)),
                           internal::UserKeyOfDataKey(start_key)};
    const Token last = TokenFromBytes(segment.last_token);
    auto it = segment.start_exclusive ? order_.upper_bound(start) : order_.lower_bound(start);
    for (; it != order_.end() && it->token <= last; ++it) {
      const SiblingSet& siblings = it->entry->siblings;
      uint64_t bytes = internal::ApproxEntryBytes(it->key, siblings);
      if (!collector.HasRoom(bytes)) break;
      std::string stored_key = TokenToBytes(it->token);
      stored_key.append(it->key);
      collector.Add(stored_key, bytes, KeyEntry{std::string(it->key), siblings});
    }
    if (collector.full()) break;
  }
  ScanResult result;
  result.resume_cursor = collector.ResumeCursor();
  result.entries = collector.TakeEntries();
  return result;
}

absl::Status MemoryEngine::PutHint(NodeId owner, std::string_view key,
                                   const SiblingSet& siblings) {
  DYNAMO_RETURN_IF_ERROR(internal::ValidateSiblings(key, siblings, limits_));
  std::string hint_key = HintKey(owner, key);
  auto it = hints_.find(hint_key);
  SiblingSet stored = it == hints_.end() ? SiblingSet() : it->second;
  DYNAMO_ASSIGN_OR_RETURN(bool changed, internal::MergeWithinLimit(key, stored, siblings, limits_,
                                                                   /*replicated=*/false));
  if (!changed || stored.empty()) return absl::OkStatus();
  const uint64_t old_bytes = it == hints_.end() ? 0 : internal::ApproxEntryBytes(key, it->second);
  const uint64_t new_bytes = internal::ApproxEntryBytes(key, stored);
  DYNAMO_RETURN_IF_ERROR(CheckRoom(key, old_bytes, new_bytes));
  if (it == hints_.end()) {
    hint_usage_.count += 1;
    hints_.emplace(std::move(hint_key), std::move(stored));
  } else {
    it->second = std::move(stored);
  }
  hint_usage_.bytes += new_bytes - old_bytes;
  return absl::OkStatus();
}

absl::StatusOr<HintScanResult> MemoryEngine::ScanHints(std::string_view cursor,
                                                       const ScanLimits& limits) {
  internal::ScanCollector<HintEntry> collector(limits);
  auto it = cursor.empty() ? hints_.begin() : hints_.upper_bound(cursor);
  for (; it != hints_.end(); ++it) {
    std::string_view key = internal::UserKeyOfHintKey(it->first);
    uint64_t bytes = internal::ApproxEntryBytes(key, it->second);
    if (!collector.HasRoom(bytes)) break;
    collector.Add(it->first, bytes,
                  HintEntry{internal::OwnerOfHintKey(it->first), std::string(key), it->second});
  }
  HintScanResult result;
  result.resume_cursor = collector.ResumeCursor();
  result.entries = collector.TakeEntries();
  return result;
}

absl::Status MemoryEngine::DeleteHint(NodeId owner, std::string_view key,
                                      const SiblingSet& delivered) {
  DYNAMO_RETURN_IF_ERROR(internal::ValidateKey(key, limits_));
  auto it = hints_.find(HintKey(owner, key));
  if (it == hints_.end()) return absl::OkStatus();
  uint64_t old_bytes = internal::ApproxEntryBytes(key, it->second);
  if (!internal::RemoveDelivered(it->second, delivered)) return absl::OkStatus();
  hint_usage_.bytes -= old_bytes;
  if (it->second.empty()) {
    hint_usage_.count -= 1;
    hints_.erase(it);
  } else {
    hint_usage_.bytes += internal::ApproxEntryBytes(key, it->second);
  }
  return absl::OkStatus();
}

absl::StatusOr<HintUsage> MemoryEngine::GetHintUsage() { return hint_usage_; }

absl::Status MemoryEngine::PutMetadata(std::string_view name, std::string_view value) {
  DYNAMO_RETURN_IF_ERROR(internal::ValidateKey(name, limits_));
  if (value.size() > limits_.value_bytes_max) {
    return absl::InvalidArgumentError("metadata value exceeds value_bytes_max");
  }
  metadata_.insert_or_assign(std::string(name), std::string(value));
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> MemoryEngine::GetMetadata(std::string_view name) {
  auto it = metadata_.find(name);
  if (it == metadata_.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

absl::StatusOr<std::optional<NodeIdentity>> MemoryEngine::GetIdentity() { return identity_; }

absl::Status MemoryEngine::PutIdentity(const NodeIdentity& identity) {
  identity_ = identity;
  return absl::OkStatus();
}

}  // namespace dynamo

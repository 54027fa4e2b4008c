#include "dynamo/merkle_tree.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/codec.h"
#include "xxhash.h"

namespace dynamo {

namespace {

int BitWidth(absl::uint128 v) {
  uint64_t hi = absl::Uint128High64(v);
  return hi != 0 ? 64 + std::bit_width(hi) : std::bit_width(absl::Uint128Low64(v));
}

}  // namespace

MerkleTree::MerkleTree(TokenRange range, MerkleOptions options)
    : range_(range), options_(options) {}

absl::StatusOr<MerkleTree> MerkleTree::Create(TokenRange range, MerkleOptions options) {
  if (options.fanout < 2) {
    return absl::InvalidArgumentError(absl::StrCat("merkle fanout ", options.fanout, " < 2"));
  }
  if (options.depth < 1) {
    return absl::InvalidArgumentError(absl::StrCat("merkle depth ", options.depth, " < 1"));
  }
  MerkleTree tree(range, options);
  tree.offsets_.push_back(0);
  uint64_t width = 1;
  for (int level = 0; level <= options.depth; ++level) {
    tree.offsets_.push_back(static_cast<uint32_t>(tree.offsets_.back() + width));
    if (level == options.depth) break;
    if (width > kMerkleLeavesMax / options.fanout) {
      return absl::InvalidArgumentError(absl::StrCat("merkle tree of fanout ", options.fanout,
                                                     " and depth ", options.depth,
                                                     " has more than ", kMerkleLeavesMax,
                                                     " leaves"));
    }
    width *= options.fanout;
  }
  const uint64_t leaves = width;
  // size - 1 is exact even for the whole ring (begin == end, 2^128 tokens).
  const absl::uint128 size_minus_1 = range.end - range.begin - 1;
  if (size_minus_1 + 1 != 0 && size_minus_1 + 1 < leaves) {
    return absl::InvalidArgumentError(absl::StrCat("token range of ",
                                                   TokenToString(size_minus_1 + 1),
                                                   " tokens is smaller than the ", leaves,
                                                   " leaves of the tree"));
  }
  tree.shift_ = std::max(0, BitWidth(size_minus_1) - 63);
  tree.scaled_size_ = static_cast<uint64_t>(size_minus_1 >> tree.shift_) + 1;
  if (std::has_single_bit(options.fanout)) tree.fanout_shift_ = std::countr_zero(options.fanout);
  tree.nodes_.assign(tree.offsets_.back(), 0);
  return tree;
}

uint64_t MerkleTree::KeyHash(std::string_view key, std::string_view version_bytes) {
  const uint64_t h = XXH3_64bits_withSeed(version_bytes.data(), version_bytes.size(),
                                          XXH3_64bits(key.data(), key.size()));
  return h == 0 ? 1 : h;
}

namespace {
// A version's part of its key's hash: dot and tombstone flag, 25 bytes,
// little-endian whatever the host so that every replica hashes alike.
constexpr size_t kVersionHashBytes = 25;
void VersionHashBytes(const Version& v, unsigned char* out) {
  const uint64_t words[3] = {v.dot.actor, v.dot.counter, static_cast<uint64_t>(v.dot.timestamp_us)};
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(out, words, sizeof words);
  } else {
    for (int w = 0; w < 3; ++w) {
      for (int b = 0; b < 8; ++b) out[8 * w + b] = static_cast<unsigned char>(words[w] >> (8 * b));
    }
  }
  out[24] = v.tombstone ? 1 : 0;
}
}  // namespace

uint64_t MerkleTree::KeyHash(std::string_view key, const SiblingSet& siblings) {
  // One XXH3 call over the key and every version's bytes, laid out on the
  // stack when they fit (a key and a few versions: each write hashes its
  // key's set twice, before and after, on every replica, and each library
  // call costs ~80 instructions whatever its length); a longer input is
  // streamed. Both give the hash of the same byte string.
  unsigned char buffer[512];
  const size_t total = key.size() + kVersionHashBytes * siblings.size();
  uint64_t h;
  if (total <= sizeof buffer) {
    std::memcpy(buffer, key.data(), key.size());
    unsigned char* p = buffer + key.size();
    for (const Version& v : siblings) {
      VersionHashBytes(v, p);
      p += kVersionHashBytes;
    }
    h = XXH3_64bits(buffer, total);
  } else {
    // The state's layout is private to the shared library: allocated there.
    std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> state(XXH3_createState(),
                                                                          &XXH3_freeState);
    XXH3_64bits_reset(state.get());
    XXH3_64bits_update(state.get(), key.data(), key.size());
    for (const Version& v : siblings) {
      VersionHashBytes(v, buffer);
      XXH3_64bits_update(state.get(), buffer, kVersionHashBytes);
    }
    h = XXH3_64bits_digest(state.get());
  }
  return h == 0 ? 1 : h;
}

size_t MerkleTree::LeafOf(Token token) const {
  const uint64_t x = static_cast<uint64_t>((token - range_.begin - 1) >> shift_);
  const absl::uint128 product = absl::uint128(x) * leaf_count();
#if defined(__x86_64__)
  // Every replicated write finds its leaf twice (prefetch, update), and the
  // compiler divides 128 bits by a library call (~60 instructions). x86-64
  // divides 128 by 64 bits in one instruction, which faults only when the
  // quotient overflows 64 bits; it cannot: x < scaled_size_, so the
  // quotient is below leaf_count().
  uint64_t quotient, remainder;
  asm("divq %4"
      : "=a"(quotient), "=d"(remainder)
      : "a"(absl::Uint128Low64(product)), "d"(absl::Uint128High64(product)), "rm"(scaled_size_));
  return static_cast<size_t>(quotient);
#else
  return static_cast<size_t>(product / scaled_size_);
#endif
}

TokenRange MerkleTree::LeafRange(uint64_t leaf) const {
  const absl::uint128 leaves = leaf_count();
  const absl::uint128 size_minus_1 = range_.end - range_.begin - 1;
  // The scaled offsets x with floor(x * leaves / scaled_size_) == leaf are
  // [ceil(leaf * S / L), ceil((leaf + 1) * S / L)).
  auto first_x = [&](absl::uint128 i) { return (i * scaled_size_ + leaves - 1) / leaves; };
  const absl::uint128 lo = first_x(leaf) << shift_;
  absl::uint128 hi = (first_x(absl::uint128(leaf) + 1) << shift_) - 1;
  if (leaf + 1 == leaf_count() || hi > size_minus_1) hi = size_minus_1;
  return TokenRange{range_.begin + lo, range_.begin + hi + 1};
}

absl::Status MerkleTree::Update(Token token, uint64_t old_key_hash, uint64_t new_key_hash) {
  if (!range_.Contains(token)) {
    return absl::InvalidArgumentError(absl::StrCat("token ", TokenToString(token),
                                                   " is outside the tree's range (",
                                                   TokenToString(range_.begin), ", ",
                                                   TokenToString(range_.end), "]"));
  }
  key_count_ += (old_key_hash == 0 && new_key_hash != 0);
  key_count_ -= (old_key_hash != 0 && new_key_hash == 0);
  const uint64_t delta = old_key_hash ^ new_key_hash;
  if (delta == 0) return absl::OkStatus();
  uint64_t index = prefetched_ && token == prefetched_token_ ? prefetched_leaf_ : LeafOf(token);
  for (int level = options_.depth; level >= 0; --level) {
    nodes_[offsets_[level] + index] ^= delta;
    index = Parent(index);
  }
  return absl::OkStatus();
}

void MerkleTree::Prefetch(Token token) {
  if (!range_.Contains(token)) return;
  uint64_t index = LeafOf(token);
  prefetched_ = true;
  prefetched_token_ = token;
  prefetched_leaf_ = index;
  for (int level = options_.depth; level >= 0; --level) {
    __builtin_prefetch(&nodes_[offsets_[level] + index], /*rw=*/1);
    index = Parent(index);
  }
}

void MerkleTree::Clear() {
  std::fill(nodes_.begin(), nodes_.end(), 0);
  key_count_ = 0;
}

std::vector<uint64_t> MerkleTree::ChildHashes(int level, uint64_t index) const {
  const uint64_t first = offsets_[level + 1] + index * options_.fanout;
  return std::vector<uint64_t>(nodes_.begin() + first, nodes_.begin() + first + options_.fanout);
}

absl::Status MerkleTree::AnswerRequest(absl::Span<const MerkleNodeRef> request,
                                       std::vector<uint64_t>* hashes) const {
  hashes->clear();
  hashes->reserve(request.size());
  for (const MerkleNodeRef& ref : request) {
    if (ref.level < 0 || ref.level > options_.depth || ref.index >= NodesAt(ref.level)) {
      return absl::InvalidArgumentError(absl::StrCat("merkle node (level ", ref.level, ", index ",
                                                     ref.index, ") does not exist in a tree of depth ",
                                                     options_.depth, " and fanout ",
                                                     options_.fanout));
    }
    hashes->push_back(Hash(ref.level, ref.index));
  }
  return absl::OkStatus();
}

MerkleDiff::MerkleDiff(const MerkleTree* local, Options options)
    : local_(local), options_(options) {
  if (options_.request_nodes_max == 0) options_.request_nodes_max = 1;
  pending_.push_back(MerkleNodeRef{0, 0});
  FillRequest();
}

void MerkleDiff::FillRequest() {
  request_.clear();
  const size_t take = std::min(options_.request_nodes_max, pending_.size() - pending_head_);
  request_.assign(pending_.begin() + pending_head_, pending_.begin() + pending_head_ + take);
  pending_head_ += take;
  if (pending_head_ == pending_.size()) {
    pending_.clear();
    pending_head_ = 0;
  } else if (pending_head_ > pending_.size() / 2) {
    pending_.erase(pending_.begin(), pending_.begin() + pending_head_);
    pending_head_ = 0;
  }
  if (request_.empty()) std::sort(differing_leaves_.begin(), differing_leaves_.end());
}

absl::Status MerkleDiff::AcceptReply(absl::Span<const uint64_t> remote_hashes) {
  if (remote_hashes.size() != request_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("merkle reply has ", remote_hashes.size(),
                                                   " hashes for a request of ", request_.size(),
                                                   " nodes"));
  }
  ++rounds_;
  hashes_exchanged_ += remote_hashes.size();
  const int depth = local_->options().depth;
  const uint64_t fanout = local_->options().fanout;
  for (size_t i = 0; i < request_.size(); ++i) {
    const MerkleNodeRef& ref = request_[i];
    if (ref.level == depth) ++leaves_compared_;
    if (remote_hashes[i] == local_->Hash(ref.level, ref.index)) continue;
    if (ref.level == depth) {
      differing_leaves_.push_back(ref.index);
    } else {
      for (uint64_t c = 0; c < fanout; ++c) {
        pending_.push_back(MerkleNodeRef{ref.level + 1, ref.index * fanout + c});
      }
    }
  }
  FillRequest();
  return absl::OkStatus();
}

}  // namespace dynamo

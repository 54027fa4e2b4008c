// TokenIndex: finds, in a sorted array of ring tokens, the first token at or
// after a given one, in a bucket lookup and a step or two instead of a
// bisection. The ring uses it to map a key's token to its range (paper 4.2,
// strategy 1's random tokens), and anti-entropy to find the Merkle tree of
// the range a changed key falls in (4.7). Both run on every request, and a
// bisection over ~1000 tokens is ten dependent loads, most of them cache
// misses in a busy node; the index is one load into a table of about one
// bucket per token, then the tokens of that bucket.
//
// The index holds bucket positions only; the tokens stay with the caller,
// who passes the same array to Build and to FirstAtOrAfter.
#ifndef DYNAMO_RING_TOKEN_INDEX_H_
#define DYNAMO_RING_TOKEN_INDEX_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "dynamo/types.h"

namespace dynamo::internal {

class TokenIndex {
 public:
  // Indexes `sorted` (ascending; duplicates allowed).
  void Build(absl::Span<const Token> sorted);

  // The position of the first token of `sorted` at or after `t`, or
  // sorted.size() if none. REQUIRES: `sorted` is the array given to Build.
  size_t FirstAtOrAfter(absl::Span<const Token> sorted, Token t) const {
    if (bits_ == 0) return 0;  // built over no tokens
    const size_t k = Bucket(t);
    size_t i = first_[k];
    // Every token of later buckets is after `t`, so the scan stops there.
    const size_t end = first_[k + 1];
    while (i < end && sorted[i] < t) ++i;
    return i;
  }

  // For callers that look up a batch of tokens and want the cache misses of
  // the lookups to overlap: Prefetch starts loading the index entry that
  // FirstAtOrAfter reads first; ScanStart reads it and returns where the
  // scan of `sorted` starts (the answer, or a step or two before it).
  void Prefetch(Token t) const {
    if (bits_ != 0) __builtin_prefetch(&first_[Bucket(t)]);
  }
  size_t ScanStart(Token t) const { return bits_ == 0 ? 0 : first_[Bucket(t)]; }

 private:
  size_t Bucket(Token t) const { return static_cast<size_t>(t >> (128 - bits_)); }

  static constexpr int kBitsMax = 24;  // at most 2^24 buckets: 64 MiB of index
  int bits_ = 0;                 // buckets: 2^bits_, each 2^(128 - bits_) tokens wide
  std::vector<uint32_t> first_;  // first_[k]: first position in bucket k or later
};

}  // namespace dynamo::internal

#endif  // DYNAMO_RING_TOKEN_INDEX_H_

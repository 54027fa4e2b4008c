#include "ring/token_index.h"

#include <algorithm>
#include <bit>

namespace dynamo::internal {

void TokenIndex::Build(absl::Span<const Token> sorted) {
  first_.clear();
  bits_ = 0;
  if (sorted.empty()) return;
  // About two buckets per token: most buckets hold none or one.
  bits_ = std::clamp(static_cast<int>(std::bit_width(sorted.size())) + 1, 1, kBitsMax);
  const size_t buckets = size_t{1} << bits_;
  first_.resize(buckets + 1);
  size_t i = 0;
  for (size_t k = 0; k < buckets; ++k) {
    const Token bucket_start = absl::uint128(k) << (128 - bits_);
    while (i < sorted.size() && sorted[i] < bucket_start) ++i;
    first_[k] = static_cast<uint32_t>(i);
  }
  first_[buckets] = static_cast<uint32_t>(sorted.size());
}

}  // namespace dynamo::internal

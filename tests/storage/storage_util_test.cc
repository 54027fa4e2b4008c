// The storage layer's shared key layout (storage_util.h): the allocation-free
// DataKeyBuffer must produce exactly DataKey's bytes, which order keys by
// ring token.
#include <catch2/catch.hpp>
#include <string>

#include "core/codec.h"
#include "storage/storage_util.h"

namespace dynamo::internal {
namespace {

TEST_CASE("DataKeyBuffer matches DataKey, inline and on the heap", "[storage]") {
  for (size_t size : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, DataKeyBuffer::kInlineKeyBytes,
                      DataKeyBuffer::kInlineKeyBytes + 1, size_t{2000}}) {
    std::string key(size, '\0');
    for (size_t i = 0; i < size; ++i) key[i] = static_cast<char>(i * 7 + size);
    const DataKeyBuffer buffer(key);
    const std::string expected = TokenToBytes(KeyToken(key)) + key;
    CHECK(DataKey(key) == expected);
    CHECK(buffer.view() == expected);
    CHECK(UserKeyOfDataKey(buffer.view()) == key);
    CHECK(TokenFromBytes(buffer.view()) == KeyToken(key));
  }
}


TEST_CASE("Identity records round-trip with their counter lease, records without one read as lease 0",
          "[storage]") {
  NodeIdentity identity{7, 3, 0xfeedfacecafeULL, 123456789};
  absl::StatusOr<NodeIdentity> decoded = DecodeIdentity(EncodeIdentity(identity));
  REQUIRE(decoded.ok());
  CHECK(*decoded == identity);
  // Format 1, written before counter leases existed: node, epoch, actor.
  std::string format1;
  Encoder enc(&format1);
  enc.PutU8(1);
  enc.PutVarint(7);
  enc.PutVarint(3);
  enc.PutVarint(0xfeedfacecafeULL);
  decoded = DecodeIdentity(format1);
  REQUIRE(decoded.ok());
  CHECK(*decoded == NodeIdentity{7, 3, 0xfeedfacecafeULL, 0});
  // A format 1 record with trailing bytes, or an unknown format, is refused.
  CHECK(DecodeIdentity(format1 + "x").status().code() == absl::StatusCode::kInvalidArgument);
  std::string format9 = EncodeIdentity(identity);
  format9[0] = 9;
  CHECK(DecodeIdentity(format9).status().code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dynamo::internal

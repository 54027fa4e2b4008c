// The storage layer's shared key layout (storage_util.h): the allocation-free
// DataKeyBuffer must produce exactly DataKey's bytes, which order keys by
// ring token.
#include <catch2/catch.hpp>
#include <string>

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

}  // namespace
}  // namespace dynamo::internal

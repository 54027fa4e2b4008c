#include "core/codec.h"

#include <catch2/catch.hpp>
#include <random>

#include "absl/strings/match.h"
#include "dynamo/version.h"

namespace dynamo::internal {
namespace {

Version RandomVersion(std::mt19937_64& rng) {
  Version v;
  v.dot.actor = rng() >> (rng() % 64);
  v.dot.counter = 1 + (rng() >> (rng() % 64)) % (~0ull - 1);
  v.dot.timestamp_us = static_cast<int64_t>(rng());
  int entries = static_cast<int>(rng() % 12);
  for (int i = 0; i < entries; ++i)
    v.context.Observe(rng() % 1000, 1 + rng() % 100000, static_cast<int64_t>(rng()));
  v.tombstone = rng() % 5 == 0;
  if (!v.tombstone) {
    size_t len = rng() % 300;
    for (size_t i = 0; i < len; ++i) v.value.push_back(static_cast<char>(rng()));
  }
  return v;
}

TEST_CASE("Codec randomized round trip (seed 42)") {
  std::mt19937_64 rng(42);
  for (int iter = 0; iter < 2000; ++iter) {
    SiblingSet s;
    int n = static_cast<int>(rng() % 5);
    for (int i = 0; i < n; ++i) s.push_back(RandomVersion(rng));
    std::string bytes = EncodeSiblingSet(s);
    auto decoded = DecodeSiblingSet(bytes);
    INFO("iteration " << iter);
    REQUIRE(decoded.ok());
    CHECK(*decoded == s);
    for (size_t i = 0; i < s.size(); ++i) {
      CHECK(decoded->at(i).dot.timestamp_us == s[i].dot.timestamp_us);
      CHECK(decoded->at(i).context.entries() == s[i].context.entries());
    }
  }
}

TEST_CASE("Codec appends sibling sets back to back, each as EncodeSiblingSet writes it (seed 7)") {
  std::mt19937_64 rng(7);
  std::string all = "prefix";
  std::vector<std::string> one_by_one;
  for (int i = 0; i < 50; ++i) {
    SiblingSet s;
    for (int v = 0, n = static_cast<int>(rng() % 4); v < n; ++v) s.push_back(RandomVersion(rng));
    AppendSiblingSet(s, &all);
    one_by_one.push_back(EncodeSiblingSet(s));
    std::string scratch = "stale bytes";
    EncodeSiblingSetInto(s, &scratch);
    CHECK(scratch == one_by_one.back());
  }
  std::string expected = "prefix";
  for (const std::string& bytes : one_by_one) expected += bytes;
  CHECK(all == expected);
}

// Two- and three-byte varints decode on a shortcut when three bytes are
// left; it must agree with the general loop, at the end of the input too,
// and reject the same overlong encodings.
TEST_CASE("Codec short multi-byte varints agree at every position") {
  const uint64_t values[] = {128, 300, 16383, 16384, 100000, (1u << 21) - 1, 1u << 21};
  for (uint64_t v : values) {
    for (const char* tail : {"", "\x01", "\x01\x02\x03"}) {
      std::string buf;
      Encoder(&buf).PutVarint(v);
      buf += tail;
      Decoder dec(buf);
      uint64_t got = 0;
      REQUIRE(dec.GetVarint(&got).ok());
      CHECK(got == v);
      CHECK(dec.remaining() == std::string_view(tail).size());
    }
  }
  for (std::string overlong : {std::string("\x80\x00", 2), std::string("\xff\x80\x00", 3)}) {
    for (const char* tail : {"", "\x01\x02\x03"}) {
      const std::string input = overlong + tail;  // the Decoder only borrows it
      Decoder dec(input);
      uint64_t got = 0;
      absl::Status s = dec.GetVarint(&got);
      CHECK(s.code() == absl::StatusCode::kInvalidArgument);
      CHECK(absl::StrContains(s.message(), "overlong"));
    }
  }
}

TEST_CASE("Codec varints and signed varints at the extremes") {
  std::string buf;
  Encoder enc(&buf);
  const uint64_t values[] = {0, 1, 127, 128, 16383, 16384, ~0ull};
  const int64_t signed_values[] = {0, -1, 1, INT64_MIN, INT64_MAX};
  for (uint64_t v : values) enc.PutVarint(v);
  for (int64_t v : signed_values) enc.PutSignedVarint(v);
  enc.PutToken(absl::MakeUint128(0x0102030405060708ull, 0x090a0b0c0d0e0f10ull));
  Decoder dec(buf);
  for (uint64_t v : values) {
    uint64_t got;
    REQUIRE(dec.GetVarint(&got).ok());
    CHECK(got == v);
  }
  for (int64_t v : signed_values) {
    int64_t got;
    REQUIRE(dec.GetSignedVarint(&got).ok());
    CHECK(got == v);
  }
  Token t;
  REQUIRE(dec.GetToken(&t).ok());
  CHECK(t == absl::MakeUint128(0x0102030405060708ull, 0x090a0b0c0d0e0f10ull));
  CHECK(dec.ExpectEnd("test").ok());
}

TEST_CASE("Codec rejects every truncation of a valid encoding") {
  std::mt19937_64 rng(7);
  SiblingSet s = {RandomVersion(rng), RandomVersion(rng)};
  s[0].tombstone = false;
  s[0].value = "hello";
  std::string bytes = EncodeSiblingSet(s);
  for (size_t len = 0; len < bytes.size(); ++len) {
    auto r = DecodeSiblingSet(std::string_view(bytes).substr(0, len));
    INFO("length " << len);
    CHECK_FALSE(r.ok());
    CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
  }
  auto trailing = DecodeSiblingSet(bytes + "x");
  CHECK_FALSE(trailing.ok());
  CHECK(trailing.status().message().find("trailing") != std::string::npos);
}

TEST_CASE("Codec enforces declared maxima before allocating") {
  std::string buf;
  Encoder enc(&buf);
  enc.PutU8(2);               // format version
  enc.PutVarint(1ull << 40);  // absurd sibling count
  auto r = DecodeSiblingSet(buf);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("sibling count") != std::string::npos);

  Version big;
  big.dot = Dot{1, 1, 0};
  big.value.assign(2000, 'x');
  CodecLimits small;
  small.value_bytes_max = 1000;
  auto r2 = DecodeSiblingSet(EncodeSiblingSet({big}), small);
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.status().message().find("value of 2000 bytes exceeds the maximum of 1000") !=
        std::string::npos);

  std::string overflow(11, '\xff');
  Decoder dec(overflow);
  uint64_t v;
  CHECK_FALSE(dec.GetVarint(&v).ok());
}

TEST_CASE("Codec rejects unsorted clocks, zero counters and unknown formats") {
  std::string buf;
  Encoder enc(&buf);
  enc.PutVarint(2);
  enc.PutVarint(5);
  enc.PutVarint(1);
  enc.PutSignedVarint(0);
  enc.PutVarint(3);
  enc.PutVarint(1);
  enc.PutSignedVarint(0);
  Decoder dec(buf);
  VectorClock c;
  CHECK_FALSE(dec.GetClock(&c).ok());

  std::string bad_format = EncodeSiblingSet({});
  bad_format[0] = 9;
  auto r = DecodeSiblingSet(bad_format);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("format version 9") != std::string::npos);
}

TEST_CASE("Codec survives random garbage (seed 1234)") {
  std::mt19937_64 rng(1234);
  int accepted = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string junk(rng() % 64, '\0');
    for (char& ch : junk) ch = static_cast<char>(rng());
    if (!junk.empty() && rng() % 2) junk[0] = 1;  // often pass the format byte
    auto r = DecodeSiblingSet(junk);
    if (r.ok()) {
      ++accepted;
      // Whatever decodes must re-encode to the same bytes.
      CHECK(EncodeSiblingSet(*r) == junk);
    }
  }
  CHECK(accepted < 20000);
}

}  // namespace
}  // namespace dynamo::internal

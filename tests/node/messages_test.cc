#include "node/messages.h"

#include <catch2/catch.hpp>
#include <random>

#include "absl/strings/match.h"
#include "dynamo/context.h"

namespace dynamo::internal {
namespace {

TEST_CASE("Every message type round-trips through the codec") {
  Version v;
  v.dot = Dot{7, 3, 1234};
  v.context.Observe(5, 2, 99);
  v.value = "value";
  std::vector<Message> messages = {
      ReplicaPut{1, "b\0k", {v}, 9, true},
      ReplicaPut{1, "b\0k", {v}, 9, false, /*replicated=*/true},
      ReplicaPut{1, "b\0k", {v}, 9, true, /*replicated=*/true},
      ReplicaPutReply{2, 14, "unavailable"},
      ReplicaGet{3, "key", std::nullopt},
      ReplicaGet{3, "key", std::vector<Dot>{}},
      ReplicaGet{3, "key",
                 std::vector<Dot>{v.dot, Dot{.actor = 8, .counter = 300, .timestamp_us = -1}}},
      ReplicaGetReply{4, 0, "", {v}},
      ReplicaGetReply{4, 0, "", {}, /*same_as_known=*/true},
      ClientRequest{5, ClientOp::kDelete, "bucket", "key", "ctx", "", 1},
      ClientReply{6, 0, "", {v}, 3, 2},
      Ping{7},
      Pong{8},
      RingRequest{9},
      RingReply{10, "ring bytes"},
      GossipSummary{0x8877665544332211ULL},
      GossipDigest{{{1, 99}, {2, 7}}},
      GossipEntries{"entries", {3, 4}},
      JoinRequest{11, "entry"},
      JoinReply{12, 0, "", "entries"},
      TransferRequest{13, 5, absl::MakeUint128(1, 2), "cursor"},
      TransferBatch{14, 0, "", {{"key", {v}}}, "next"},
      ReplicaAcks{{15, 1ULL << 40, 16}, {}},
      ReplicaAcks{{}, {17}},
      ReplicaAcks{},
  };
  for (const Message& m : messages) {
    std::string bytes = EncodeMessage(m);
    auto decoded = DecodeMessage(bytes);
    INFO("type " << m.index());
    REQUIRE(decoded.ok());
    CHECK(decoded->index() == m.index());
    CHECK(EncodeMessage(*decoded) == bytes);
  }
}

TEST_CASE("A replica put's flags decode as sent, and unknown flags are rejected") {
  Version v;
  v.dot = Dot{7, 3, 1234};
  v.value = "value";
  for (bool durable : {false, true}) {
    for (bool replicated : {false, true}) {
      INFO("durable " << durable << " replicated " << replicated);
      auto decoded = DecodeMessage(EncodeMessage(ReplicaPut{1, "k", {v}, 0, durable, replicated}));
      REQUIRE(decoded.ok());
      const auto& put = std::get<ReplicaPut>(*decoded);
      CHECK(put.durable == durable);
      CHECK(put.replicated == replicated);
    }
  }
  // The flags are the message's last byte.
  std::string bytes = EncodeMessage(ReplicaPut{1, "k", {v}, 0, true, true});
  REQUIRE(static_cast<uint8_t>(bytes.back()) == 3);
  bytes.back() = 4;
  auto bad = DecodeMessage(bytes);
  REQUIRE_FALSE(bad.ok());
  CHECK(absl::StrContains(bad.status().message(), "unknown flags 4"));
}

TEST_CASE("A get names the coordinator's dots, a replica holding exactly those says so") {
  Version a;
  a.dot = Dot{.actor = 1, .counter = 2, .timestamp_us = 30};
  a.value = "a";
  Version b = a;
  b.dot = Dot{.actor = 4, .counter = 5, .timestamp_us = 60};
  const SiblingSet set = {a, b};
  const std::vector<Dot> dots = {a.dot, b.dot};
  CHECK(SameDots(set, dots));
  CHECK_FALSE(SameDots(set, std::vector<Dot>{a.dot}));      // one missing
  CHECK_FALSE(SameDots({a}, dots));                         // one more
  CHECK_FALSE(SameDots(set, std::vector<Dot>{b.dot, a.dot}));  // another order
  std::vector<Dot> retimed = dots;
  retimed[1].timestamp_us++;
  CHECK_FALSE(SameDots(set, retimed));  // Dot's == ignores the time; this does not
  CHECK(SameDots({}, {}));

  auto get = DecodeMessage(EncodeMessage(ReplicaGet{7, "k", dots}));
  REQUIRE(get.ok());
  const auto& decoded = std::get<ReplicaGet>(*get);
  REQUIRE(decoded.known.has_value());
  CHECK(SameDots(set, *decoded.known));
  CHECK_FALSE(std::get<ReplicaGet>(*DecodeMessage(EncodeMessage(ReplicaGet{7, "k", std::nullopt}))).known);

  // A counter of 0 names no write.
  auto zero = DecodeMessage(EncodeMessage(ReplicaGet{7, "k", std::vector<Dot>{Dot{.actor = 1}}}));
  REQUIRE_FALSE(zero.ok());
  CHECK(std::string(zero.status().message()).find("counter 0") != std::string::npos);
  // "Same as yours" with siblings or with an error is contradictory.
  for (const ReplicaGetReply& bad :
       {ReplicaGetReply{8, 0, "", {a}, true}, ReplicaGetReply{8, 14, "down", {}, true}}) {
    auto r = DecodeMessage(EncodeMessage(bad));
    REQUIRE_FALSE(r.ok());
    CHECK(std::string(r.status().message()).find("same-as-known") != std::string::npos);
  }
  // More known dots than a sibling set may hold is refused before reading them.
  std::vector<Dot> too_many(CodecLimits().siblings_max + 1, a.dot);
  auto big = DecodeMessage(EncodeMessage(ReplicaGet{7, "k", too_many}));
  REQUIRE_FALSE(big.ok());
  CHECK(std::string(big.status().message()).find("known dot") != std::string::npos);
}

TEST_CASE("Malformed frames give errors naming the problem") {
  std::string good = EncodeMessage(Ping{1});
  std::string bad_version = good;
  bad_version[0] = 99;
  auto r = DecodeMessage(bad_version);
  REQUIRE_FALSE(r.ok());
  CHECK(std::string(r.status().message()).find("protocol version 99") != std::string::npos);
  std::string bad_type = good;
  bad_type[1] = 77;
  r = DecodeMessage(bad_type);
  REQUIRE_FALSE(r.ok());
  CHECK(std::string(r.status().message()).find("message type 77") != std::string::npos);
  r = DecodeMessage(good + "junk");
  REQUIRE_FALSE(r.ok());
  CHECK(std::string(r.status().message()).find("trailing") != std::string::npos);
  CHECK_FALSE(DecodeMessage("").ok());
}

TEST_CASE("Gathered acks keep their request ids, a count the frame cannot hold is refused") {
  ReplicaAcks acks{{1, 300, 1ULL << 50}, {7, 8}};
  auto decoded = DecodeMessage(EncodeMessage(acks));
  REQUIRE(decoded.ok());
  const auto& back = std::get<ReplicaAcks>(*decoded);
  CHECK(back.puts == acks.puts);
  CHECK(back.gets_same_as_known == acks.gets_same_as_known);
  CHECK(back.size() == 5);
  // The replica's encoder, from its pending lists, says the same.
  const std::vector<uint64_t> puts(acks.puts.begin(), acks.puts.end());
  const std::vector<uint64_t> gets(acks.gets_same_as_known.begin(), acks.gets_same_as_known.end());
  CHECK(EncodeReplicaAcks(puts, gets) == EncodeMessage(acks));

  // Claims 5 put acks, carries 2 bytes of them.
  std::string lying = EncodeMessage(ReplicaAcks{});
  lying.resize(2);
  lying += std::string("\x05\x01\x02", 3);
  auto r = DecodeMessage(lying);
  REQUIRE_FALSE(r.ok());
  CHECK(std::string(r.status().message()).find("put ack count 5") != std::string::npos);
}

TEST_CASE("Random bytes never crash the decoder (seed 99)") {
  std::mt19937_64 rng(99);
  std::string seed_frame = EncodeMessage(ClientRequest{5, ClientOp::kPut, "b", "k", "", "v", 0});
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string bytes = seed_frame;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] = static_cast<char>(rng());
    if (rng() % 3 == 0) bytes.resize(rng() % bytes.size());
    auto r = DecodeMessage(bytes);
    if (r.ok()) {
      ++accepted;
      CHECK(EncodeMessage(*r) == bytes);  // accepted frames are canonical
    }
  }
  CHECK(accepted < 20000);
}

TEST_CASE("PeekReplicaKey reads a replica put's or get's key and nothing else") {
  Version v;
  v.dot = Dot{7, 3, 1234};
  v.value = "value";
  const std::string key("bucket\0key", 10);
  const std::string put = EncodeMessage(ReplicaPut{1ULL << 40, key, {v}, 9, true});
  const std::string get = EncodeMessage(ReplicaGet{3, key, std::vector<Dot>{v.dot}});
  CHECK(PeekReplicaKey(put) == std::optional<std::string_view>(key));
  CHECK(PeekReplicaKey(get) == std::optional<std::string_view>(key));
  CHECK(PeekReplicaKey(EncodeMessage(ReplicaPut{1, "", {v}, 0, false})) ==
        std::optional<std::string_view>(""));
  // Other messages, even those carrying a key.
  CHECK_FALSE(PeekReplicaKey(EncodeMessage(ClientRequest{5, ClientOp::kPut, "b", "k", "", "v", 0})));
  CHECK_FALSE(PeekReplicaKey(EncodeMessage(ReplicaPutReply{2, 0, ""})));
  CHECK_FALSE(PeekReplicaKey(EncodeMessage(Ping{7})));
  CHECK_FALSE(PeekReplicaKey(""));
  // Cut anywhere before the key's last byte: no key.
  const size_t key_end = put.find(key) + key.size();
  for (size_t n = 0; n < key_end; ++n) {
    INFO("cut at " << n);
    CHECK_FALSE(PeekReplicaKey(std::string_view(put).substr(0, n)));
  }
  CHECK(PeekReplicaKey(std::string_view(put).substr(0, key_end)) ==
        std::optional<std::string_view>(key));
  // Another protocol version, and a key longer than any key may be.
  std::string other_version = put;
  other_version[0] = static_cast<char>(other_version[0] + 1);
  CHECK_FALSE(PeekReplicaKey(other_version));
  const std::string huge(CodecLimits().key_bytes_max + 1, 'k');
  CHECK_FALSE(PeekReplicaKey(EncodeMessage(ReplicaGet{3, huge, std::nullopt})));
}

TEST_CASE("PeekReplicaKey agrees with DecodeMessage on mutated frames (seed 101)") {
  std::mt19937_64 rng(101);
  Version v;
  v.dot = Dot{7, 3, 1234};
  v.value = "value";
  const std::string seeds[] = {
      EncodeMessage(ReplicaPut{300, std::string("b\0key", 5), {v}, 0, false}),
      EncodeMessage(ReplicaGet{70000, "some key", std::vector<Dot>{v.dot}}),
      EncodeMessage(ReplicaPutReply{2, 0, ""}),
  };
  int keys_peeked = 0;
  for (int i = 0; i < 30000; ++i) {
    std::string bytes = seeds[rng() % 3];
    int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] = static_cast<char>(rng());
    if (rng() % 3 == 0) bytes.resize(rng() % bytes.size());
    const std::optional<std::string_view> peeked = PeekReplicaKey(bytes);
    if (peeked) {
      ++keys_peeked;
      // A view into the frame itself.
      REQUIRE(peeked->data() >= bytes.data());
      REQUIRE(peeked->data() + peeked->size() <= bytes.data() + bytes.size());
    }
    auto decoded = DecodeMessage(bytes);
    if (!decoded.ok()) continue;
    if (const auto* put = std::get_if<ReplicaPut>(&*decoded)) {
      REQUIRE(peeked == std::optional<std::string_view>(put->key));
    } else if (const auto* get = std::get_if<ReplicaGet>(&*decoded)) {
      REQUIRE(peeked == std::optional<std::string_view>(get->key));
    } else {
      REQUIRE_FALSE(peeked);
    }
  }
  CHECK(keys_peeked > 1000);
}

TEST_CASE("Context encodes and rejects foreign bytes") {
  Context c;
  c.clock.Observe(3, 4, 5);
  c.coordinator = 2;
  auto d = Context::Decode(c.Encode());
  REQUIRE(d.ok());
  CHECK(d->clock == c.clock);
  CHECK(d->coordinator == 2);
  CHECK(!d->supersede_coordinator_copy);
  CHECK(Context::Decode("not a context").status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("A blind write's context keeps its flag, unknown flags are refused") {
  Context c;
  c.clock.Observe(3, 4, 5);
  const std::string plain = c.Encode();
  c.supersede_coordinator_copy = true;
  const std::string blind = c.Encode();
  CHECK(blind != plain);
  CHECK(blind.substr(1, plain.size() - 1) == plain.substr(1));  // format 1 plus a flags byte
  auto d = Context::Decode(blind);
  REQUIRE(d.ok());
  CHECK(d->supersede_coordinator_copy);
  CHECK(d->clock == c.clock);
  std::string unknown_flag = blind;
  unknown_flag.back() = 2;
  CHECK(Context::Decode(unknown_flag).status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(Context::Decode(blind.substr(0, blind.size() - 1)).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dynamo::internal

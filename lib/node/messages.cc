#include "node/messages.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace dynamo::internal {

namespace {

// Every reply starts with the request it answers and an absl::StatusCode
// with its message.
void PutReplyHeader(Encoder& e, uint64_t request_id, int code, std::string_view error) {
  e.PutVarint(request_id);
  e.PutVarint(static_cast<uint64_t>(code));
  e.PutBytes(error);
}

template <typename T, size_t I = 0>
constexpr uint8_t WireType() {
  if constexpr (std::is_same_v<std::variant_alternative_t<I, Message>, T>) {
    return static_cast<uint8_t>(I);
  } else {
    return WireType<T, I + 1>();
  }
}

// The header every message starts with: protocol version and wire type.
Encoder StartMessage(std::string* out, uint8_t type) {
  // Messages that carry values usually hold one small sibling set, and a
  // replica get a key and the coordinator's dots: one allocation up front
  // saves the string's doubling steps (three for a get). The others fit the
  // string's inline buffer more often than not, so they reserve nothing.
  constexpr uint8_t kCarryValues[] = {WireType<ReplicaPut>(), WireType<ReplicaGetReply>(),
                                      WireType<ClientRequest>(), WireType<ClientReply>(),
                                      WireType<ReplicaGet>()};
  if (std::find(std::begin(kCarryValues), std::end(kCarryValues), type) !=
      std::end(kCarryValues)) {
    out->reserve(256);
  }
  Encoder e(out);
  e.PutU8(kProtocolVersion);
  e.PutU8(type);
  return e;
}

// The variant index is the wire type, so the order of Message's alternatives
// is part of the protocol: append new messages at the end.
struct EncodeVisitor {
  Encoder& e;
  void operator()(const ReplicaPut& m) {
    e.PutVarint(m.request_id);
    e.PutBytes(m.key);
    e.PutSiblings(m.versions);
    e.PutVarint(m.hint_owner);
    // One byte of flags; with only `durable` set it is the bool it was.
    e.PutU8(static_cast<uint8_t>(m.durable) | static_cast<uint8_t>(m.replicated) << 1);
  }
  void operator()(const ReplicaPutReply& m) {
    PutReplyHeader(e, m.request_id, m.code, m.error);
  }
  void operator()(const ReplicaGet& m) {
    e.PutVarint(m.request_id);
    e.PutBytes(m.key);
    e.PutBool(m.known.has_value());
    if (!m.known.has_value()) return;
    e.PutVarint(m.known->size());
    for (const Dot& dot : *m.known) e.PutDot(dot);
  }
  void operator()(const ReplicaGetReply& m) {
    PutReplyHeader(e, m.request_id, m.code, m.error);
    e.PutSiblings(m.siblings);
    e.PutBool(m.same_as_known);
  }
  void operator()(const ClientRequest& m) {
    e.PutVarint(m.request_id);
    e.PutU8(static_cast<uint8_t>(m.op));
    e.PutBytes(m.bucket);
    e.PutBytes(m.key);
    e.PutBytes(m.context);
    e.PutBytes(m.value);
    e.PutVarint(m.hops);
  }
  void operator()(const ClientReply& m) {
    PutReplyHeader(e, m.request_id, m.code, m.error);
    e.PutSiblings(m.siblings);
    e.PutVarint(m.fastest);
    e.PutVarint(m.replicas_answered);
  }
  void operator()(const Ping& m) { e.PutVarint(m.nonce); }
  void operator()(const Pong& m) { e.PutVarint(m.nonce); }
  void operator()(const RingRequest& m) { e.PutVarint(m.request_id); }
  void operator()(const RingReply& m) {
    e.PutVarint(m.request_id);
    e.PutBytes(m.ring);
  }
  void operator()(const GossipSummary& m) { e.PutFixed64(m.view_digest); }
  void operator()(const GossipDigest& m) {
    e.PutVarint(m.entry_hashes.size());
    for (const auto& [id, hash] : m.entry_hashes) {
      e.PutVarint(id);
      e.PutFixed64(hash);  // a hash is as wide as it gets: a varint would take 10 bytes
    }
  }
  void operator()(const GossipEntries& m) {
    e.PutBytes(m.entries);
    e.PutVarint(m.wanted.size());
    for (NodeId id : m.wanted) e.PutVarint(id);
  }
  void operator()(const JoinRequest& m) {
    e.PutVarint(m.request_id);
    e.PutBytes(m.entry);
  }
  void operator()(const JoinReply& m) {
    PutReplyHeader(e, m.request_id, m.code, m.error);
    e.PutBytes(m.entries);
  }
  void operator()(const TransferRequest& m) {
    e.PutVarint(m.request_id);
    e.PutToken(m.begin);
    e.PutToken(m.end);
    e.PutBytes(m.cursor);
  }
  void operator()(const TransferBatch& m) {
    PutReplyHeader(e, m.request_id, m.code, m.error);
    e.PutVarint(m.entries.size());
    for (const auto& [key, siblings] : m.entries) {
      e.PutBytes(key);
      e.PutSiblings(siblings);
    }
    e.PutBytes(m.next_cursor);
  }
  void operator()(const MerkleRequest& m) {
    e.PutVarint(m.request_id);
    e.PutVarint(m.n);
    e.PutToken(m.begin);
    e.PutToken(m.end);
    e.PutVarint(m.fanout);
    e.PutVarint(m.depth);
    e.PutVarint(m.nodes.size());
    for (const auto& [level, index] : m.nodes) {
      e.PutVarint(level);
      e.PutVarint(index);
    }
  }
  void operator()(const MerkleReply& m) {
    PutReplyHeader(e, m.request_id, m.code, m.error);
    e.PutVarint(m.hashes.size());
    for (uint64_t h : m.hashes) e.PutFixed64(h);
  }
  void PutEntries(const std::vector<std::pair<std::string, SiblingSet>>& entries) {
    e.PutVarint(entries.size());
    for (const auto& [key, siblings] : entries) {
      e.PutBytes(key);
      e.PutSiblings(siblings);
    }
  }
  void operator()(const KeyExchange& m) {
    e.PutVarint(m.request_id);
    e.PutVarint(m.n);
    e.PutToken(m.range_begin);
    e.PutToken(m.range_end);
    e.PutToken(m.begin);
    e.PutToken(m.end);
    PutEntries(m.entries);
  }
  void operator()(const KeyExchangeReply& m) {
    PutReplyHeader(e, m.request_id, m.code, m.error);
    PutEntries(m.entries);
  }
  void operator()(const TombstoneCheck& m) {
    e.PutVarint(m.request_id);
    e.PutBytes(m.key);
    e.PutSiblings(m.tombstones);
  }
  void operator()(const TombstoneCheckReply& m) {
    e.PutVarint(m.request_id);
    e.PutBool(m.holds);
  }
  void operator()(const TombstoneReap& m) {
    e.PutBytes(m.key);
    e.PutSiblings(m.tombstones);
  }
  void operator()(const ReplicaAcks& m) {
    PutIds(m.puts);
    PutIds(m.gets_same_as_known);
  }
  void PutIds(absl::Span<const uint64_t> ids) {
    e.PutVarint(ids.size());
    for (uint64_t id : ids) e.PutVarint(id);
  }
};

constexpr size_t kErrorBytesMax = 4096;
constexpr size_t kRingBytesMax = 16 << 20;

absl::Status GetCode(Decoder& d, int* code) {
  uint64_t v;
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&v));
  if (v > static_cast<uint64_t>(absl::StatusCode::kUnauthenticated)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown status code ", v));
  }
  *code = static_cast<int>(v);
  return absl::OkStatus();
}

absl::Status GetReplyHeader(Decoder& d, uint64_t* request_id, int* code, std::string* error) {
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(request_id));
  DYNAMO_RETURN_IF_ERROR(GetCode(d, code));
  return d.GetString(error, kErrorBytesMax, "error message");
}

absl::Status DecodeBody(Decoder& d, ReplicaPut& m) {
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.request_id));
  DYNAMO_RETURN_IF_ERROR(d.GetString(&m.key, d.limits().key_bytes_max, "key"));
  DYNAMO_RETURN_IF_ERROR(d.GetSiblings(&m.versions));
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.hint_owner));
  uint8_t flags = 0;
  DYNAMO_RETURN_IF_ERROR(d.GetU8(&flags));
  if (flags > 3)
    return absl::InvalidArgumentError(absl::StrCat("replica put: unknown flags ", flags));
  m.durable = (flags & 1) != 0;
  m.replicated = (flags & 2) != 0;
  return absl::OkStatus();
}
absl::Status DecodeBody(Decoder& d, ReplicaPutReply& m) {
  return GetReplyHeader(d, &m.request_id, &m.code, &m.error);
}
absl::Status DecodeBody(Decoder& d, ReplicaGet& m) {
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.request_id));
  DYNAMO_RETURN_IF_ERROR(d.GetString(&m.key, d.limits().key_bytes_max, "key"));
  bool has_known = false;
  DYNAMO_RETURN_IF_ERROR(d.GetBool(&has_known));
  if (!has_known) return absl::OkStatus();
  uint64_t n = 0;
  // A dot is at least 17 bytes: two fixed 64-bit fields and a varint.
  DYNAMO_RETURN_IF_ERROR(d.GetCount(&n, d.limits().siblings_max, 17, "known dot"));
  m.known.emplace(n);
  for (Dot& dot : *m.known) DYNAMO_RETURN_IF_ERROR(d.GetDot(&dot));
  return absl::OkStatus();
}
absl::Status DecodeBody(Decoder& d, ReplicaGetReply& m) {
  DYNAMO_RETURN_IF_ERROR(GetReplyHeader(d, &m.request_id, &m.code, &m.error));
  DYNAMO_RETURN_IF_ERROR(d.GetSiblings(&m.siblings));
  DYNAMO_RETURN_IF_ERROR(d.GetBool(&m.same_as_known));
  if (m.same_as_known && (m.code != 0 || !m.siblings.empty())) {
    return absl::InvalidArgumentError("a same-as-known get reply carries an error or siblings");
  }
  return absl::OkStatus();
}
absl::Status DecodeBody(Decoder& d, ClientRequest& m) {
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.request_id));
  uint8_t op = 0;
  DYNAMO_RETURN_IF_ERROR(d.GetU8(&op));
  if (op < 1 || op > 3) return absl::InvalidArgumentError(absl::StrCat("unknown client op ", op));
  m.op = static_cast<ClientOp>(op);
  DYNAMO_RETURN_IF_ERROR(d.GetString(&m.bucket, d.limits().key_bytes_max, "bucket"));
  DYNAMO_RETURN_IF_ERROR(d.GetString(&m.key, d.limits().key_bytes_max, "key"));
  DYNAMO_RETURN_IF_ERROR(d.GetString(&m.context, d.limits().key_bytes_max, "context"));
  DYNAMO_RETURN_IF_ERROR(d.GetString(&m.value, d.limits().value_bytes_max, "value"));
  uint64_t hops;
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&hops));
  m.hops = static_cast<uint32_t>(std::min<uint64_t>(hops, 1u << 30));
  return absl::OkStatus();
}
absl::Status DecodeBody(Decoder& d, ClientReply& m) {
  DYNAMO_RETURN_IF_ERROR(GetReplyHeader(d, &m.request_id, &m.code, &m.error));
  DYNAMO_RETURN_IF_ERROR(d.GetSiblings(&m.siblings));
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.fastest));
  uint64_t n;
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&n));
  m.replicas_answered = static_cast<uint32_t>(std::min<uint64_t>(n, 1u << 30));
  return absl::OkStatus();
}
absl::Status DecodeBody(Decoder& d, Ping& m) { return d.GetVarint(&m.nonce); }
absl::Status DecodeBody(Decoder& d, Pong& m) { return d.GetVarint(&m.nonce); }
absl::Status DecodeBody(Decoder& d, RingRequest& m) { return d.GetVarint(&m.request_id); }
absl::Status DecodeBody(Decoder& d, RingReply& m) {
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.request_id));
  return d.GetString(&m.ring, kRingBytesMax, "ring");
}

constexpr size_t kMembersMax = 1 << 14;
constexpr size_t kMembershipBytesMax = 16 << 20;
constexpr size_t kTransferEntriesMax = 1 << 14;
constexpr size_t kCursorBytesMax = 1024;

absl::Status DecodeBody(Decoder& d, GossipSummary& m) { return d.GetFixed64(&m.view_digest); }
absl::Status DecodeBody(Decoder& d, GossipDigest& m) {
  uint64_t n;
  DYNAMO_RETURN_IF_ERROR(d.GetCount(&n, kMembersMax, 9, "gossip digest entry"));
  m.entry_hashes.resize(n);
  for (auto& [id, hash] : m.entry_hashes) {
    DYNAMO_RETURN_IF_ERROR(d.GetVarint(&id));
    DYNAMO_RETURN_IF_ERROR(d.GetFixed64(&hash));
  }
  return absl::OkStatus();
}
absl::Status DecodeBody(Decoder& d, GossipEntries& m) {
  DYNAMO_RETURN_IF_ERROR(d.GetString(&m.entries, kMembershipBytesMax, "membership entries"));
  uint64_t n;
  DYNAMO_RETURN_IF_ERROR(d.GetCount(&n, kMembersMax, 1, "wanted member"));
  m.wanted.resize(n);
  for (NodeId& id : m.wanted) DYNAMO_RETURN_IF_ERROR(d.GetVarint(&id));
  return absl::OkStatus();
}
absl::Status DecodeBody(Decoder& d, JoinRequest& m) {
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.request_id));
  return d.GetString(&m.entry, kMembershipBytesMax, "member entry");
}
absl::Status DecodeBody(Decoder& d, JoinReply& m) {
  DYNAMO_RETURN_IF_ERROR(GetReplyHeader(d, &m.request_id, &m.code, &m.error));
  return d.GetString(&m.entries, kMembershipBytesMax, "membership entries");
}
absl::Status DecodeBody(Decoder& d, TransferRequest& m) {
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.request_id));
  DYNAMO_RETURN_IF_ERROR(d.GetToken(&m.begin));
  DYNAMO_RETURN_IF_ERROR(d.GetToken(&m.end));
  return d.GetString(&m.cursor, kCursorBytesMax, "transfer cursor");
}
absl::Status DecodeBody(Decoder& d, TransferBatch& m) {
  DYNAMO_RETURN_IF_ERROR(GetReplyHeader(d, &m.request_id, &m.code, &m.error));
  uint64_t n;
  DYNAMO_RETURN_IF_ERROR(d.GetCount(&n, kTransferEntriesMax, 2, "transfer entry"));
  m.entries.resize(n);
  for (auto& [key, siblings] : m.entries) {
    DYNAMO_RETURN_IF_ERROR(d.GetString(&key, d.limits().key_bytes_max, "key"));
    DYNAMO_RETURN_IF_ERROR(d.GetSiblings(&siblings));
  }
  return d.GetString(&m.next_cursor, kCursorBytesMax, "transfer cursor");
}

constexpr size_t kMerkleNodesMax = 1 << 16;
constexpr size_t kExchangeEntriesMax = 1 << 14;

absl::Status GetU32(Decoder& d, uint32_t* v, const char* what) {
  uint64_t x;
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&x));
  if (x > UINT32_MAX) return absl::InvalidArgumentError(absl::StrCat(what, " ", x, " too large"));
  *v = static_cast<uint32_t>(x);
  return absl::OkStatus();
}
absl::Status GetEntries(Decoder& d, std::vector<std::pair<std::string, SiblingSet>>* entries) {
  uint64_t n;
  DYNAMO_RETURN_IF_ERROR(d.GetCount(&n, kExchangeEntriesMax, 2, "exchanged key"));
  entries->resize(n);
  for (auto& [key, siblings] : *entries) {
    DYNAMO_RETURN_IF_ERROR(d.GetString(&key, d.limits().key_bytes_max, "key"));
    DYNAMO_RETURN_IF_ERROR(d.GetSiblings(&siblings));
  }
  return absl::OkStatus();
}
absl::Status DecodeBody(Decoder& d, MerkleRequest& m) {
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.request_id));
  DYNAMO_RETURN_IF_ERROR(GetU32(d, &m.n, "replica count"));
  DYNAMO_RETURN_IF_ERROR(d.GetToken(&m.begin));
  DYNAMO_RETURN_IF_ERROR(d.GetToken(&m.end));
  DYNAMO_RETURN_IF_ERROR(GetU32(d, &m.fanout, "merkle fanout"));
  DYNAMO_RETURN_IF_ERROR(GetU32(d, &m.depth, "merkle depth"));
  uint64_t n;
  DYNAMO_RETURN_IF_ERROR(d.GetCount(&n, kMerkleNodesMax, 2, "merkle node"));
  m.nodes.resize(n);
  for (auto& [level, index] : m.nodes) {
    DYNAMO_RETURN_IF_ERROR(GetU32(d, &level, "merkle level"));
    DYNAMO_RETURN_IF_ERROR(d.GetVarint(&index));
  }
  return absl::OkStatus();
}
absl::Status DecodeBody(Decoder& d, MerkleReply& m) {
  DYNAMO_RETURN_IF_ERROR(GetReplyHeader(d, &m.request_id, &m.code, &m.error));
  uint64_t n;
  DYNAMO_RETURN_IF_ERROR(d.GetCount(&n, kMerkleNodesMax, 8, "merkle hash"));
  m.hashes.resize(n);
  for (uint64_t& h : m.hashes) DYNAMO_RETURN_IF_ERROR(d.GetFixed64(&h));
  return absl::OkStatus();
}
absl::Status DecodeBody(Decoder& d, KeyExchange& m) {
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.request_id));
  DYNAMO_RETURN_IF_ERROR(GetU32(d, &m.n, "replica count"));
  DYNAMO_RETURN_IF_ERROR(d.GetToken(&m.range_begin));
  DYNAMO_RETURN_IF_ERROR(d.GetToken(&m.range_end));
  DYNAMO_RETURN_IF_ERROR(d.GetToken(&m.begin));
  DYNAMO_RETURN_IF_ERROR(d.GetToken(&m.end));
  return GetEntries(d, &m.entries);
}
absl::Status DecodeBody(Decoder& d, KeyExchangeReply& m) {
  DYNAMO_RETURN_IF_ERROR(GetReplyHeader(d, &m.request_id, &m.code, &m.error));
  return GetEntries(d, &m.entries);
}
absl::Status DecodeBody(Decoder& d, TombstoneCheck& m) {
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.request_id));
  DYNAMO_RETURN_IF_ERROR(d.GetString(&m.key, d.limits().key_bytes_max, "key"));
  return d.GetSiblings(&m.tombstones);
}
absl::Status DecodeBody(Decoder& d, TombstoneCheckReply& m) {
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&m.request_id));
  return d.GetBool(&m.holds);
}
absl::Status DecodeBody(Decoder& d, TombstoneReap& m) {
  DYNAMO_RETURN_IF_ERROR(d.GetString(&m.key, d.limits().key_bytes_max, "key"));
  return d.GetSiblings(&m.tombstones);
}

// Request ids: at least one byte each, so the count is bounded by the frame.
constexpr size_t kAcksMax = 1 << 16;

absl::Status GetIds(Decoder& d, ReplicaAcks::Ids* ids, const char* what) {
  uint64_t n;
  DYNAMO_RETURN_IF_ERROR(d.GetCount(&n, kAcksMax, 1, what));
  ids->resize(n);
  for (uint64_t& id : *ids) DYNAMO_RETURN_IF_ERROR(d.GetVarint(&id));
  return absl::OkStatus();
}
absl::Status DecodeBody(Decoder& d, ReplicaAcks& m) {
  DYNAMO_RETURN_IF_ERROR(GetIds(d, &m.puts, "put ack"));
  return GetIds(d, &m.gets_same_as_known, "get ack");
}

template <size_t I>
absl::StatusOr<Message> DecodeAlternative(Decoder& d, size_t type) {
  if constexpr (I < std::variant_size_v<Message>) {
    if (type == I) {
      std::variant_alternative_t<I, Message> m;
      DYNAMO_RETURN_IF_ERROR(DecodeBody(d, m));
      DYNAMO_RETURN_IF_ERROR(d.ExpectEnd("message"));
      return Message(std::move(m));
    }
    return DecodeAlternative<I + 1>(d, type);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown message type ", type));
  }
}

}  // namespace

template <typename T>
std::string EncodeMessage(const T& message) {
  std::string out;
  Encoder e = StartMessage(&out, WireType<T>());
  EncodeVisitor{e}(message);
  return out;
}

// Every alternative of Message, so that any of them can be encoded alone.
template std::string EncodeMessage(const ReplicaPut&);
template std::string EncodeMessage(const ReplicaPutReply&);
template std::string EncodeMessage(const ReplicaGet&);
template std::string EncodeMessage(const ReplicaGetReply&);
template std::string EncodeMessage(const ClientRequest&);
template std::string EncodeMessage(const ClientReply&);
template std::string EncodeMessage(const Ping&);
template std::string EncodeMessage(const Pong&);
template std::string EncodeMessage(const RingRequest&);
template std::string EncodeMessage(const RingReply&);
template std::string EncodeMessage(const GossipSummary&);
template std::string EncodeMessage(const GossipDigest&);
template std::string EncodeMessage(const GossipEntries&);
template std::string EncodeMessage(const JoinRequest&);
template std::string EncodeMessage(const JoinReply&);
template std::string EncodeMessage(const TransferRequest&);
template std::string EncodeMessage(const TransferBatch&);
template std::string EncodeMessage(const MerkleRequest&);
template std::string EncodeMessage(const MerkleReply&);
template std::string EncodeMessage(const KeyExchange&);
template std::string EncodeMessage(const KeyExchangeReply&);
template std::string EncodeMessage(const TombstoneCheck&);
template std::string EncodeMessage(const TombstoneCheckReply&);
template std::string EncodeMessage(const TombstoneReap&);
template std::string EncodeMessage(const ReplicaAcks&);
static_assert(std::variant_size_v<Message> == 25, "instantiate EncodeMessage for a new message");

std::string EncodeMessage(const Message& message) {
  return std::visit([](const auto& m) { return EncodeMessage(m); }, message);
}

std::string EncodeReplicaGetReply(uint64_t request_id, const SiblingSet& siblings) {
  std::string out;
  Encoder e = StartMessage(&out, WireType<ReplicaGetReply>());
  PutReplyHeader(e, request_id, 0, "");
  e.PutSiblings(siblings);
  e.PutBool(false);  // same_as_known
  return out;
}

std::string EncodeReplicaAcks(absl::Span<const uint64_t> puts,
                              absl::Span<const uint64_t> gets_same_as_known) {
  std::string out;
  Encoder e = StartMessage(&out, WireType<ReplicaAcks>());
  EncodeVisitor visitor{e};
  visitor.PutIds(puts);
  visitor.PutIds(gets_same_as_known);
  return out;
}

bool SameDots(const SiblingSet& siblings, absl::Span<const Dot> dots) {
  return std::equal(siblings.begin(), siblings.end(), dots.begin(), dots.end(),
                    [](const Version& v, const Dot& d) {
                      return v.dot == d && v.dot.timestamp_us == d.timestamp_us;
                    });
}

void PingUnreachable(const FailureDetector& detector, Transport& transport,
                     uint64_t* request_id_counter) {
  for (NodeId peer : detector.Unreachable()) {
    // A local send error is as good as a lost ping: the next probe retries.
    (void)transport.Send(peer, EncodeMessage(Ping{++*request_id_counter}));
  }
}

absl::StatusOr<Message> DecodeMessage(std::string_view bytes, const CodecLimits& limits) {
  Decoder d(bytes, limits);
  uint8_t version = 0, type = 0;
  DYNAMO_RETURN_IF_ERROR(d.GetU8(&version));
  if (version != kProtocolVersion) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported protocol version ", version,
                                                   " (this node speaks ", kProtocolVersion, ")"));
  }
  DYNAMO_RETURN_IF_ERROR(d.GetU8(&type));
  return DecodeAlternative<0>(d, type);
}

std::optional<std::string_view> PeekReplicaKey(std::string_view bytes) {
  Decoder d(bytes);
  uint8_t version = 0, type = 0;
  uint64_t request_id = 0;
  std::string_view key;
  if (!d.GetU8(&version).ok() || version != kProtocolVersion || !d.GetU8(&type).ok() ||
      (type != WireType<ReplicaPut>() && type != WireType<ReplicaGet>()) ||
      !d.GetVarint(&request_id).ok() ||  // both start with the request, then the key
      !d.GetBytes(&key, d.limits().key_bytes_max, "key").ok()) {
    return std::nullopt;
  }
  return key;
}

}  // namespace dynamo::internal

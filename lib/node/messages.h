// The messages nodes (and partition-aware clients) exchange, and their wire
// encoding through the core codec. Every message is one frame:
//   u8 protocol version | u8 message type | fields...
// Decoding is strict (unknown version or type, trailing bytes and oversize
// fields are errors) because the bytes come from the network.
#ifndef DYNAMO_NODE_MESSAGES_H_
#define DYNAMO_NODE_MESSAGES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/codec.h"
#include "dynamo/failure_detector.h"
#include "dynamo/transport.h"
#include "dynamo/types.h"
#include "dynamo/version.h"

namespace dynamo::internal {

// 2: fixed-width actors and timestamps; 3: gets name the coordinator's dots;
// 4: replica acks gathered per turn (ReplicaAcks); 5: gossip rounds send a
// summary of the view (GossipSummary), digests carry fixed-width hashes
inline constexpr uint8_t kProtocolVersion = 5;

// Coordinator -> replica: merge these versions into the key. With a
// hint_owner other than the receiver, keep them as a hint for that node
// (sloppy quorum, paper 4.6).
struct ReplicaPut {
  uint64_t request_id = 0;
  std::string key;  // storage key: bucket and user key
  SiblingSet versions;
  NodeId hint_owner = kNoNode;
  bool durable = false;
  // Versions another replica holds already (read repair, hint delivery,
  // handoff), not a client's write: see WriteOptions::replicated.
  bool replicated = false;
};

// Replica -> coordinator. code is an absl::StatusCode.
struct ReplicaPutReply {
  uint64_t request_id = 0;
  int code = 0;
  std::string error;
};

struct ReplicaGet {
  uint64_t request_id = 0;
  std::string key;
  // The dots of the coordinator's own copy, in stored order, when it read
  // one: a replica holding exactly these versions answers same_as_known
  // instead of sending them back (a dot names one write, value and context
  // included).
  std::optional<std::vector<Dot>> known;
};

struct ReplicaGetReply {
  uint64_t request_id = 0;
  int code = 0;
  std::string error;
  SiblingSet siblings;
  // The replica holds exactly the versions the request named as known;
  // siblings is then empty.
  bool same_as_known = false;
};

// Replica -> coordinator: the answers that say only "done", gathered over
// one turn of the replica's event loop (Runtime::Defer) into one message per
// coordinator: replica puts that succeeded, and gets that found exactly the
// versions the coordinator named as known. Under pipelined load a replica
// answers dozens of requests per turn, and a reply of its own cost an
// encoding, a frame, a decoding and a dispatch each, more than the answer
// itself. Errors, and gets that return versions, still go one by one.
struct ReplicaAcks {
  // Inline for the simulator's usual one answer per message (no allocation).
  using Ids = absl::InlinedVector<uint64_t, 2>;
  Ids puts;                // each as a ReplicaPutReply with code 0
  Ids gets_same_as_known;  // each as a same_as_known ReplicaGetReply
  size_t size() const { return puts.size() + gets_same_as_known.size(); }
};

// True if `siblings` are exactly the versions `dots` name, in that order
// (timestamps included), as ReplicaGet::known asks.
bool SameDots(const SiblingSet& siblings, absl::Span<const Dot> dots);

enum class ClientOp : uint8_t { kGet = 1, kPut = 2, kDelete = 3 };

// A get/put/delete sent to a node to coordinate: by a partition-aware client,
// or forwarded by a node that is not in the key's preference list.
struct ClientRequest {
  uint64_t request_id = 0;
  ClientOp op = ClientOp::kGet;
  std::string bucket;
  std::string key;
  std::string context;  // Context::Encode(), may be empty
  std::string value;
  uint32_t hops = 0;  // times forwarded so far
};

struct ClientReply {
  uint64_t request_id = 0;
  int code = 0;
  std::string error;
  SiblingSet siblings;  // for a get
  NodeId fastest = kNoNode;
  uint32_t replicas_answered = 0;
};

struct Ping {
  uint64_t nonce = 0;
};
struct Pong {
  uint64_t nonce = 0;
};

// A client asks any node for its view of the ring (paper 6.4: clients
// refresh membership periodically).
struct RingRequest {
  uint64_t request_id = 0;
};
struct RingReply {
  uint64_t request_id = 0;
  std::string ring;  // EncodeRing()
};

// Membership gossip (paper 4.8), push-pull. A round sends a summary: one
// hash of the whole view. A peer whose view hashes the same is done; one
// whose view differs answers with its digest, a hash of every member entry
// it knows; the receiver of a digest answers with the entries that differ
// and names those it wants back; those are sent last. Only what differs
// crosses the network, and views that agree exchange one small message.
struct GossipSummary {
  uint64_t view_digest = 0;  // Membership::ViewDigest()
};
struct GossipDigest {
  std::vector<std::pair<NodeId, uint64_t>> entry_hashes;  // member id -> hash of its entry
};
struct GossipEntries {
  std::string entries;          // EncodeMemberEntries()
  std::vector<NodeId> wanted;   // entries the receiver should send back
};

// An explicit join (paper 4.8: "an administrator uses a command line tool
// or a browser to connect to a Dynamo node and issue a membership change").
struct JoinRequest {
  uint64_t request_id = 0;
  std::string entry;  // the joiner's EncodeMemberEntries() of one entry
};
struct JoinReply {
  uint64_t request_id = 0;
  int code = 0;
  std::string error;
  std::string entries;  // the whole membership, for the joiner to start from
};

// Ownership transfer (paper 4.9): a node that gains a token range pulls it
// from a current owner in bounded, resumable batches.
struct TransferRequest {
  uint64_t request_id = 0;
  Token begin = 0;
  Token end = 0;
  std::string cursor;  // empty: from the start of the range
};
struct TransferBatch {
  uint64_t request_id = 0;
  int code = 0;
  std::string error;
  std::vector<std::pair<std::string, SiblingSet>> entries;
  std::string next_cursor;  // empty: the range is exhausted
};

// Anti-entropy (paper 4.7, lib/node/anti_entropy.h). The initiator of an
// exchange names the Merkle tree by (n, range) and its shape, asks for the
// hashes of a batch of nodes, descends where they differ, then trades the
// keys of the differing leaves, one token sub-range per KeyExchange.
struct MerkleRequest {
  uint64_t request_id = 0;
  uint32_t n = 0;  // the replica count whose tree is meant
  Token begin = 0, end = 0;
  uint32_t fanout = 0;
  uint32_t depth = 0;
  std::vector<std::pair<uint32_t, uint64_t>> nodes;  // (level, index)
};
struct MerkleReply {
  uint64_t request_id = 0;
  int code = 0;
  std::string error;
  std::vector<uint64_t> hashes;  // in request order
};
// The initiator's keys (with their sibling sets) in the sub-range
// (begin, end] of the tree (n, range_begin, range_end); the peer merges them
// and answers with every key of the sub-range whose set differs from what
// the initiator sent.
struct KeyExchange {
  uint64_t request_id = 0;
  uint32_t n = 0;
  Token range_begin = 0, range_end = 0;
  Token begin = 0, end = 0;
  std::vector<std::pair<std::string, SiblingSet>> entries;
};
struct KeyExchangeReply {
  uint64_t request_id = 0;
  int code = 0;
  std::string error;
  std::vector<std::pair<std::string, SiblingSet>> entries;
};
// Tombstone reaping: does the receiver hold these tombstones (or versions
// descending from all of them)? Then: reap them if the key holds exactly
// these tombstones.
struct TombstoneCheck {
  uint64_t request_id = 0;
  std::string key;
  SiblingSet tombstones;
};
struct TombstoneCheckReply {
  uint64_t request_id = 0;
  bool holds = false;
};
struct TombstoneReap {
  std::string key;
  SiblingSet tombstones;
};

using Message =
    std::variant<ReplicaPut, ReplicaPutReply, ReplicaGet, ReplicaGetReply, ClientRequest,
                 ClientReply, Ping, Pong, RingRequest, RingReply, GossipDigest, GossipEntries,
                 JoinRequest, JoinReply, TransferRequest, TransferBatch, MerkleRequest, MerkleReply,
                 KeyExchange, KeyExchangeReply, TombstoneCheck, TombstoneCheckReply, TombstoneReap,
                 ReplicaAcks, GossipSummary>;

std::string EncodeMessage(const Message& message);
// Encodes one alternative of Message as it is: building a Message from it
// first would copy its strings and sibling sets, on every message sent.
template <typename T>
std::string EncodeMessage(const T& message);
// A successful ReplicaGetReply, encoded straight from the replica's stored
// set (StorageEngine::Visit) without copying it into a message first.
std::string EncodeReplicaGetReply(uint64_t request_id, const SiblingSet& siblings);
// A ReplicaAcks, encoded from the replica's pending lists as they are.
std::string EncodeReplicaAcks(absl::Span<const uint64_t> puts,
                              absl::Span<const uint64_t> gets_same_as_known);

// Pings every peer `detector` marks unreachable, so an answer (any message)
// marks it reachable again. Nodes and clients both probe this way.
void PingUnreachable(const FailureDetector& detector, Transport& transport,
                     uint64_t* request_id_counter);
absl::StatusOr<Message> DecodeMessage(std::string_view bytes,
                                      const CodecLimits& limits = CodecLimits());
// The storage key a ReplicaPut or ReplicaGet names, read without decoding
// the rest: a hint for prefetching (Node's transport lookahead), which
// DecodeMessage still checks in full when the message is handled. nullopt
// for every other message and for bytes that do not parse that far.
std::optional<std::string_view> PeekReplicaKey(std::string_view bytes);

}  // namespace dynamo::internal

#endif  // DYNAMO_NODE_MESSAGES_H_

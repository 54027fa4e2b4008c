// AntiEntropy: replica synchronization with Merkle trees (paper 4.7) and the
// safe reaping of tombstones, for one node.
//
// Trees. The node keeps one MerkleTree per (n, elementary ring range) it
// replicates, for every distinct replica count n among its buckets: a key of
// a bucket with N = n goes into the tree of (n, the range holding its token),
// so that two replicas of a range agree on which keys a tree covers even
// when buckets have different N. Trees follow every local write through
// ObservedStorage (below), which wraps the node's engine: it reads the key's
// stored set before the write (for the old KeyHash) and the result after
// it; the change reaches the tree in a batch, before anything reads it
// (OnKeyChanged). On start and for every range whose replica set changed,
// the tree is rebuilt by scanning storage in bounded batches on a timer (a
// range holding no key has the empty tree and needs no scan); a
// range is not exchanged until its tree is built. Writes during a rebuild
// update the tree only for keys at or before the scan position (the scan
// sees the rest).
// A range with a single replica (N = 1) keeps no hashes: no one to compare.
//
// Exchange. Every `anti_entropy_interval` each built range is compared with
// one other replica (rotating through them, skipping the unreachable): the
// initiator runs a MerkleDiff over MerkleRequest/MerkleReply messages, then
// walks the differing leaves' token ranges in bounded sub-ranges
// (KeyExchange): it sends its keys with their sibling sets, the peer merges
// them with StorageEngine::Put (the syntactic reconciliation rules) and
// answers with every key of the sub-range whose merged set differs from what
// it was sent, which the initiator merges in turn. Merging is idempotent and
// keeps concurrent versions, so duplicated, lost or reordered messages can
// only make an exchange incomplete, never lose a version; an incomplete
// exchange is finished by a later one.
//
// Tombstones. A sweep over the ranges this node is the first replica of
// finds keys whose sibling set is only tombstones older than
// `tombstone_reap_grace`. It asks every other replica whether it holds them
// (or versions descending from all of them); if all n say yes, it tells each
// to reap them and reaps locally, each replica only if its set is still
// exactly those tombstones. A replica that does not answer blocks reaping.
//
// Admission. Starting an exchange, a rebuild batch or a sweep batch takes
// one operation from the node's AdmissionController; messages of an exchange
// already running take what is left but do not wait.
//
// Thread-safety: the owning node's thread only.
#ifndef DYNAMO_NODE_ANTI_ENTROPY_H_
#define DYNAMO_NODE_ANTI_ENTROPY_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "dynamo/failure_detector.h"
#include "dynamo/merkle_tree.h"
#include "dynamo/metrics.h"
#include "dynamo/options.h"
#include "dynamo/ring.h"
#include "dynamo/runtime.h"
#include "dynamo/storage_engine.h"
#include "node/admission.h"
#include "node/messages.h"
#include "ring/token_index.h"

namespace dynamo::internal {

// The messages AntiEntropy::Handle takes (Node::OnMessage routes them).
template <typename T>
inline constexpr bool kIsAntiEntropyMessage =
    std::is_same_v<T, MerkleRequest> || std::is_same_v<T, MerkleReply> ||
    std::is_same_v<T, KeyExchange> || std::is_same_v<T, KeyExchangeReply> ||
    std::is_same_v<T, TombstoneCheck> || std::is_same_v<T, TombstoneCheckReply> ||
    std::is_same_v<T, TombstoneReap>;

struct AntiEntropyEnv {
  Runtime* runtime = nullptr;
  StorageEngine* storage = nullptr;  // the raw engine: scans and reads
  StorageEngine* writer = nullptr;   // the ObservedStorage: merges and reaps
  const Ring* ring = nullptr;
  FailureDetector* failure_detector = nullptr;
  const NodeOptions* options = nullptr;
  NodeMetrics* metrics = nullptr;
  AdmissionController* admission = nullptr;
  uint64_t* request_id_counter = nullptr;
};

class AntiEntropy {
 public:
  explicit AntiEntropy(AntiEntropyEnv env);
  ~AntiEntropy();  // cancels its timers
  AntiEntropy(const AntiEntropy&) = delete;
  AntiEntropy& operator=(const AntiEntropy&) = delete;

  // Creates the trees for the current ring and starts the timers.
  void Start();
  // Keeps the trees of ranges whose replica set is unchanged, drops the
  // others (aborting their exchanges) and rebuilds trees for new ranges.
  void OnRingChanged(const Ring& ring);

  // From ObservedStorage. A write of a key whose bucket keeps trees
  // (TrackedReplicas > 0) reports the key's hash before and after it. The
  // change is folded into its tree later, in a batch: finding a key's tree
  // and its nodes is a chain of cache misses (13% of a 3-node cluster's
  // time under pipelined SETs when taken one write at a time, 8% in
  // batches), and a batch overlaps them (see ApplyPendingChanges). Every
  // reader of a tree applies the batch first, so what a tree says is what
  // it would say had each change been applied at once. While a tree is
  // being rebuilt, changes apply at once: whether a write counts depends on
  // the scan's position at that moment.
  uint32_t TrackedReplicas(std::string_view key) const;
  void OnKeyChanged(uint32_t n, std::string_view key, uint64_t old_hash, uint64_t new_hash);
  // Whether the key's tree of replica count n exists and keeps hashes.
  bool Tracks(uint32_t n, std::string_view key) const;

  // Messages (routed by Node::OnMessage).
  void Handle(NodeId from, const MerkleRequest& m);
  void Handle(NodeId from, const MerkleReply& m);
  void Handle(NodeId from, const KeyExchange& m);
  void Handle(NodeId from, const KeyExchangeReply& m);
  void Handle(NodeId from, const TombstoneCheck& m);
  void Handle(NodeId from, const TombstoneCheckReply& m);
  void Handle(NodeId from, const TombstoneReap& m);

  // Introspection for tests and operators.
  size_t tree_count() const { return trees_.size(); }
  size_t trees_built() const { return trees_built_; }
  size_t exchanges_in_flight() const { return sessions_.size(); }
  // Checks every built tree against a fresh one made from a scan of
  // storage: kInternal naming the first range whose root differs (a write
  // that reached storage but not its tree, or the reverse), or the scan's
  // error. Reads all of storage in one call (Node::VerifyMerkleTrees).
  absl::Status VerifyTrees();

  // The replica count of a storage key's bucket; 0 for an unknown bucket.
  uint32_t ReplicasOf(std::string_view storage_key) const;

 private:
  using TreeKey = std::pair<uint32_t, Token>;  // (n, range end)
 public:
  // The tree first: a write touches three cache lines of the state (the
  // tree's two hot ones, see MerkleTree's layout, then the one holding its
  // prefetched leaf and `built`), nothing else.
  struct alignas(64) RangeState {
    MerkleTree tree;
    bool built = false;
    uint32_t n = 0;
    TokenRange range;
    std::vector<NodeId> replicas;  // the range's first n nodes
    // Rebuild progress: the scan cursor and the last (offset, key) folded in.
    std::string cursor{};
    bool scanned_any = false;
    Token scanned_offset = 0;
    std::string scanned_key{};
    absl::Duration last_exchange = -absl::InfiniteDuration();  // Runtime::Elapsed()
    size_t next_peer = 0;
    bool exchanging = false;
    std::string sweep_cursor{};
    // The range has no other replica (N = 1, or a ring smaller than n): its
    // tree is kept empty, since there is no one to compare it with; the
    // range still drives tombstone sweeps.
    bool Solo() const { return replicas.size() < 2; }
  };

 private:
  struct Session {
    TreeKey tree;
    NodeId peer = kNoNode;
    std::unique_ptr<MerkleDiff> diff;
    std::deque<TokenRange> pending;  // sub-ranges still to exchange keys for
    std::set<std::string> sent_keys;  // keys sent in the current KeyExchange
    TimerId timeout = kNoTimer;
  };
  struct Reap {
    std::string key;
    SiblingSet tombstones;
    std::set<NodeId> waiting;
    TimerId timeout = kNoTimer;
  };

  const RangeState* FindTree(uint32_t n, Token token) const;
  void ScheduleTick();
  void Tick();
  void ScheduleRebuild();
  void RebuildBatch();
  void StartExchanges();
  void StartExchange(const TreeKey& key, RangeState& state, NodeId peer);
  // Sends a message of session `id` under a fresh request id; returns it.
  uint64_t SendInSession(uint64_t id, const Message& message);
  void SendNextKeys(uint64_t id);
  void FinishSession(uint64_t id, bool ok);
  void Sweep();
  void StartReap(const RangeState& state, std::string key, SiblingSet tombstones);
  void ReapIfExactly(std::string_view key, const SiblingSet& tombstones);
  void Send(NodeId to, const Message& message);
  uint64_t NextRequestId() { return ++*env_.request_id_counter; }
  // The monotonic clock that intervals (exchanges, sweeps, admission) use.
  absl::Duration Elapsed() { return env_.runtime->Elapsed(); }
  NodeId self() const { return env_.runtime->self(); }
  // Takes one background operation from the admission budget.
  bool Admit();
  void ChargeOne();

  // Finding a change's tree reads only the index: the range's begin sits
  // beside the state's address, so that the state itself (a cache miss in a
  // busy node, one of ~1000) is first touched by ApplyPendingChanges'
  // prefetches, not by the containment check before them.
  struct IndexedRange {
    Token begin = 0;
    RangeState* state = nullptr;
    bool solo = false;  // state->Solo()
  };
  // The trees of one replica count, by range end, for the search every key
  // change makes: a flat array with a TokenIndex over it (a std::map walk
  // over ~1000 trees was 5% of a pipelined SET's CPU, a bisection still
  // ~5% of a replica's). Rebuilt with trees_.
  struct TreeIndex {
    uint32_t n = 0;
    std::vector<Token> ends;             // ascending
    std::vector<IndexedRange> ranges;    // ranges[i] ends at ends[i]
    TokenIndex by_end;                   // over ends
    bool any_shared = false;             // some range keeps hashes
  };
  void RebuildTreeIndex();
  // The index of replica count n's trees, or null.
  const TreeIndex* IndexFor(uint32_t n) const;
  // The index entry of the range of replica count n holding `token`, or null.
  const IndexedRange* FindRange(uint32_t n, Token token) const;
  // A range's tree, if it keeps hashes (null for a solo range or none).
  RangeState* TreeToUpdate(uint32_t n, Token token) const;

  // A key change waiting to be folded into its tree. Changes wait only
  // while every tree is built (see OnKeyChanged), so none of them needs the
  // key itself, only its token.
  struct PendingChange {
    Token token = 0;
    uint64_t old_hash = 0;
    uint64_t new_hash = 0;
    uint32_t n = 0;
    RangeState* state = nullptr;  // found by ApplyPendingChanges
  };
  // Changes wait in batches of at most this many: enough to overlap the
  // misses of one pass with each other, few enough that the lines a batch
  // touches stay in the caches between passes.
  static constexpr size_t kPendingChangesMax = 64;
  // True when storage holds no key in `range` (one seek).
  bool HoldsNoKey(const TokenRange& range);
  // Folds the waiting changes into their trees. Called before any tree is
  // read or the set of trees changes, and when the batch is full.
  void ApplyPendingChanges();
  // Folds one change into its tree now (a change during a rebuild).
  void ApplyChange(uint32_t n, Token token, std::string_view key, uint64_t old_hash,
                   uint64_t new_hash);

  AntiEntropyEnv env_;
  std::map<TreeKey, RangeState> trees_;
  std::vector<TreeIndex> tree_index_;  // one per replica count, few
  std::vector<PendingChange> pending_changes_;  // at most kPendingChangesMax
  std::map<uint64_t, Session> sessions_;  // by the request id awaited
  std::map<uint64_t, Reap> reaps_;        // by request id
  std::set<std::string> reaping_keys_;
  TreeKey exchange_cursor_{0, 0};
  // Every tree before this key is built, and trees_built_ of them all are:
  // the rebuild takes trees in key order, so neither needs a walk over the
  // ~1000 trees per batch (OnRingChanged, which adds unbuilt trees
  // anywhere, resets both).
  TreeKey rebuild_cursor_{0, 0};
  size_t trees_built_ = 0;
  TreeKey sweep_range_{0, 0};
  absl::Duration next_sweep_ = -absl::InfiniteDuration();  // Runtime::Elapsed()
  TimerId tick_timer_ = kNoTimer;
  TimerId rebuild_timer_ = kNoTimer;
  bool started_ = false;
};

// The engine a Node actually uses: forwards to the engine it was given,
// times foreground reads for admission control, and reports every change of
// a key's stored set to AntiEntropy so its Merkle trees follow the data.
class ObservedStorage : public StorageEngineWrapper {
 public:
  // Borrowed pointers; admission may be null (no latency samples).
  ObservedStorage(StorageEngine* target, Runtime* runtime, AdmissionController* admission)
      : StorageEngineWrapper(target), runtime_(runtime), admission_(admission) {}
  void set_anti_entropy(AntiEntropy* anti_entropy) { anti_entropy_ = anti_entropy; }

  absl::StatusOr<SiblingSet> Get(std::string_view key) override;
  absl::Status Visit(std::string_view key,
                     absl::FunctionRef<void(const SiblingSet&)> reader) override;
  absl::StatusOr<SiblingSet> Put(std::string_view key, const SiblingSet& incoming,
                                 const WriteOptions& options) override;
  absl::Status Update(std::string_view key, const SiblingSet& incoming, const WriteOptions& options,
                      absl::FunctionRef<absl::Status(const SiblingSet&)> prepare,
                      absl::FunctionRef<void(const SiblingSet&)> reader) override;
  absl::Status ReapTombstones(std::string_view key, const SiblingSet& tombstones) override;
  absl::Status Erase(std::string_view key) override;

 private:
  // A foreground read, timed for admission control when there is any: one
  // read in kTimedEvery, counted, not drawn, so a simulation stays
  // deterministic. A p99 over a regular sample of the reads is the p99 of
  // the reads; timing all of them cost two clock reads each (~30 ns each on
  // a virtual machine, ~5% of a replica's share of a pipelined 3-node GET).
  static constexpr uint64_t kTimedEvery = 8;
  template <typename Read>
  auto Timed(Read read);
  // The replica count whose trees follow the key, 0 for none.
  uint32_t TrackedReplicas(std::string_view key) const;
  uint64_t HashNow(std::string_view key);
  void Changed(uint32_t n, std::string_view key, uint64_t old_hash, const SiblingSet& after);

  Runtime* runtime_;
  AdmissionController* admission_;
  AntiEntropy* anti_entropy_ = nullptr;
  uint64_t reads_ = 0;
};

}  // namespace dynamo::internal

#endif  // DYNAMO_NODE_ANTI_ENTROPY_H_

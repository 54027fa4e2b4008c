#include "node/anti_entropy.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace dynamo::internal {

namespace {

uint64_t HashOf(std::string_view key, const SiblingSet& siblings) {
  return siblings.empty() ? 0 : MerkleTree::KeyHash(key, siblings);
}

bool AllTombstones(const SiblingSet& siblings) {
  if (siblings.empty()) return false;
  for (const Version& v : siblings) {
    if (!v.tombstone) return false;
  }
  return true;
}

// Every tombstone is the same as, or is superseded by, a stored version.
bool Covers(const SiblingSet& stored, const SiblingSet& tombstones) {
  for (const Version& t : tombstones) {
    bool covered = false;
    for (const Version& s : stored) covered = covered || s.Descends(t);
    if (!covered) return false;
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------- ObservedStorage

template <typename Read>
auto ObservedStorage::Timed(Read read) {
  if (admission_ == nullptr || reads_++ % kTimedEvery != 0) return read();
  const absl::Duration start = runtime_->Elapsed();
  auto result = read();
  const absl::Duration end = runtime_->Elapsed();
  admission_->RecordSample(end, end - start);
  return result;
}

absl::StatusOr<SiblingSet> ObservedStorage::Get(std::string_view key) {
  return Timed([&] { return target()->Get(key); });
}

absl::Status ObservedStorage::Visit(std::string_view key,
                                    absl::FunctionRef<void(const SiblingSet&)> reader) {
  return Timed([&] { return target()->Visit(key, reader); });
}

uint32_t ObservedStorage::TrackedReplicas(std::string_view key) const {
  return anti_entropy_ == nullptr ? 0 : anti_entropy_->TrackedReplicas(key);
}

uint64_t ObservedStorage::HashNow(std::string_view key) {
  uint64_t hash = 0;
  (void)target()->Visit(key, [&](const SiblingSet& now) { hash = HashOf(key, now); });
  return hash;
}

void ObservedStorage::Changed(uint32_t n, std::string_view key, uint64_t old_hash,
                              const SiblingSet& after) {
  anti_entropy_->OnKeyChanged(n, key, old_hash, HashOf(key, after));
}

absl::StatusOr<SiblingSet> ObservedStorage::Put(std::string_view key, const SiblingSet& incoming,
                                                const WriteOptions& options) {
  return PutThroughVisit(key, incoming, options);
}

absl::Status ObservedStorage::Update(std::string_view key, const SiblingSet& incoming,
                                     const WriteOptions& options,
                                     absl::FunctionRef<absl::Status(const SiblingSet&)> prepare,
                                     absl::FunctionRef<void(const SiblingSet&)> reader) {
  // The hash before the write comes from the same lookup as the write.
  const uint32_t n = TrackedReplicas(key);
  uint64_t old_hash = 0;
  return target()->Update(
      key, incoming, options,
      [&](const SiblingSet& before) {
        if (n != 0) old_hash = HashOf(key, before);
        return prepare(before);
      },
      [&](const SiblingSet& stored) {
        if (n != 0) Changed(n, key, old_hash, stored);
        reader(stored);
      });
}

absl::Status ObservedStorage::ReapTombstones(std::string_view key, const SiblingSet& tombstones) {
  const uint32_t n = TrackedReplicas(key);
  const uint64_t old_hash = n != 0 ? HashNow(key) : 0;
  absl::Status status = target()->ReapTombstones(key, tombstones);
  if (n != 0 && status.ok()) {
    absl::StatusOr<SiblingSet> after = target()->Get(key);
    if (after.ok()) Changed(n, key, old_hash, *after);
  }
  return status;
}

absl::Status ObservedStorage::Erase(std::string_view key) {
  const uint32_t n = TrackedReplicas(key);
  const uint64_t old_hash = n != 0 ? HashNow(key) : 0;
  absl::Status status = target()->Erase(key);
  if (n != 0 && status.ok()) Changed(n, key, old_hash, SiblingSet());
  return status;
}

// ---------------------------------------------------------------- AntiEntropy

AntiEntropy::AntiEntropy(AntiEntropyEnv env) : env_(env) {}

AntiEntropy::~AntiEntropy() {
  env_.runtime->Cancel(tick_timer_);
  env_.runtime->Cancel(rebuild_timer_);
  for (auto& [id, s] : sessions_) env_.runtime->Cancel(s.timeout);
  for (auto& [id, r] : reaps_) env_.runtime->Cancel(r.timeout);
}

void AntiEntropy::Start() {
  started_ = true;
  OnRingChanged(*env_.ring);
  if (env_.options->anti_entropy_enabled || env_.options->tombstone_reaping_enabled) {
    ScheduleTick();
  }
}

uint32_t AntiEntropy::ReplicasOf(std::string_view storage_key) const {
  const size_t nul = storage_key.find('\0');
  if (nul == std::string_view::npos) return 0;
  const std::string_view bucket = storage_key.substr(0, nul);
  for (const BucketOptions& b : env_.options->buckets) {
    if (b.name == bucket) return static_cast<uint32_t>(b.n);
  }
  return 0;
}

void AntiEntropy::OnRingChanged(const Ring& ring) {
  if (!started_) return;
  ApplyPendingChanges();  // into the trees they were made for
  MerkleOptions shape;
  shape.fanout = env_.options->merkle_tree_fanout;
  shape.depth = env_.options->merkle_tree_depth;
  std::set<uint32_t> ns;
  for (const BucketOptions& b : env_.options->buckets) ns.insert(static_cast<uint32_t>(b.n));
  std::map<TreeKey, std::pair<TokenRange, std::vector<NodeId>>> wanted;
  for (uint32_t n : ns) {
    for (const TokenRange& range : ring.ReplicatedRanges(self(), n)) {
      std::vector<NodeId> replicas;
      ring.PreferenceList(range.end, n, 0, &replicas);
      wanted.emplace(TreeKey{n, range.end}, std::make_pair(range, std::move(replicas)));
    }
  }
  // Trees are edited in place (std::map nodes do not move), so exchanges over
  // kept trees keep valid pointers; exchanges over dropped ones are aborted.
  for (auto it = trees_.begin(); it != trees_.end();) {
    auto w = wanted.find(it->first);
    if (w != wanted.end() && w->second.first == it->second.range &&
        w->second.second == it->second.replicas) {
      wanted.erase(w);  // same data, same peers: keep the tree
      ++it;
      continue;
    }
    for (auto s = sessions_.begin(); s != sessions_.end();) {
      if (s->second.tree == it->first) {
        env_.runtime->Cancel(s->second.timeout);
        env_.metrics->anti_entropy_exchanges_failed++;
        s = sessions_.erase(s);
      } else {
        ++s;
      }
    }
    it = trees_.erase(it);
  }
  for (auto& [key, spec] : wanted) {
    absl::StatusOr<MerkleTree> tree = MerkleTree::Create(spec.first, shape);
    if (!tree.ok()) continue;  // a range smaller than the leaf count: not tracked
    // A range that holds no key has the empty tree, built as it is made: a
    // node that starts empty builds no tree in batches, and its writes take
    // the batched path from the first (see OnKeyChanged).
    const bool empty = HoldsNoKey(spec.first);
    trees_.emplace(key, RangeState{.tree = *std::move(tree),
                                   .built = empty,
                                   .n = key.first,
                                   .range = spec.first,
                                   .replicas = std::move(spec.second)});
  }
  RebuildTreeIndex();
  trees_built_ = 0;
  for (const auto& [key, state] : trees_) trees_built_ += state.built;
  rebuild_cursor_ = TreeKey{0, 0};
  env_.metrics->merkle_trees = trees_.size();
  env_.metrics->merkle_trees_built = trees_built_;
  ScheduleRebuild();
}

void AntiEntropy::RebuildTreeIndex() {
  tree_index_.clear();
  for (auto& [key, state] : trees_) {  // in (n, end) order
    if (tree_index_.empty() || tree_index_.back().n != key.first) {
      tree_index_.emplace_back().n = key.first;
    }
    tree_index_.back().ends.push_back(key.second);
    tree_index_.back().ranges.push_back(
        {.begin = state.range.begin, .state = &state, .solo = state.Solo()});
    tree_index_.back().any_shared |= !state.Solo();
  }
  for (TreeIndex& index : tree_index_) index.by_end.Build(index.ends);
}

const AntiEntropy::TreeIndex* AntiEntropy::IndexFor(uint32_t n) const {
  for (const TreeIndex& index : tree_index_) {
    if (index.n == n) return &index;
  }
  return nullptr;
}

const AntiEntropy::IndexedRange* AntiEntropy::FindRange(uint32_t n, Token token) const {
  const TreeIndex* index = IndexFor(n);
  if (index == nullptr) return nullptr;
  // The first range ending at or after the token; past the last end the
  // token can only be in a range that wraps around zero, the first one.
  size_t i = index->by_end.FirstAtOrAfter(index->ends, token);
  if (i == index->ends.size()) i = 0;
  const IndexedRange& range = index->ranges[i];
  return TokenRange{range.begin, index->ends[i]}.Contains(token) ? &range : nullptr;
}

const AntiEntropy::RangeState* AntiEntropy::FindTree(uint32_t n, Token token) const {
  const IndexedRange* range = FindRange(n, token);
  return range == nullptr ? nullptr : range->state;
}

absl::Status AntiEntropy::VerifyTrees() {
  ApplyPendingChanges();
  for (const auto& [key, state] : trees_) {
    if (!state.built) continue;
    absl::StatusOr<MerkleTree> fresh = MerkleTree::Create(state.range, state.tree.options());
    if (!fresh.ok()) return fresh.status();
    std::string cursor;
    bool more = !state.Solo();  // a solo range's tree stays empty
    while (more) {
      absl::StatusOr<ScanResult> page = env_.storage->Scan(state.range, cursor, ScanLimits());
      if (!page.ok()) return page.status();
      for (const KeyEntry& entry : page->entries) {
        if (ReplicasOf(entry.key) == state.n) {
          (void)fresh->Update(KeyToken(entry.key), 0, HashOf(entry.key, entry.siblings));
        }
      }
      cursor = std::move(page->resume_cursor);
      more = !cursor.empty();
    }
    if (fresh->Root() != state.tree.Root()) {
      return absl::InternalError(absl::StrCat(
          "node ", self(), ": the merkle tree of range (", TokenToString(state.range.begin), ", ",
          TokenToString(state.range.end), "] for n = ", state.n, " has root ", state.tree.Root(),
          ", its keys in storage give ", fresh->Root()));
    }
  }
  return absl::OkStatus();
}

AntiEntropy::RangeState* AntiEntropy::TreeToUpdate(uint32_t n, Token token) const {
  const IndexedRange* range = FindRange(n, token);
  return range == nullptr || range->solo ? nullptr : range->state;
}

uint32_t AntiEntropy::TrackedReplicas(std::string_view key) const {
  const uint32_t n = ReplicasOf(key);
  // A key with one replica has no one to compare its tree with: keeping
  // its hash would cost every write of an N = 1 bucket (~15% of a 1-node
  // server's pipelined SET) for nothing.
  if (n < 2) return 0;
  for (const TreeIndex& index : tree_index_) {
    if (index.n == n) return index.any_shared ? n : 0;
  }
  return 0;
}

bool AntiEntropy::Tracks(uint32_t n, std::string_view key) const {
  return TreeToUpdate(n, KeyToken(key)) != nullptr;
}

void AntiEntropy::OnKeyChanged(uint32_t n, std::string_view key, uint64_t old_hash,
                               uint64_t new_hash) {
  if (old_hash == new_hash) return;  // the same set: no tree changes
  const Token token = KeyToken(key);
  if (trees_built_ != trees_.size()) {
    ApplyChange(n, token, key, old_hash, new_hash);
    return;
  }
  pending_changes_.push_back(
      PendingChange{.token = token, .old_hash = old_hash, .new_hash = new_hash, .n = n});
  if (pending_changes_.size() >= kPendingChangesMax) ApplyPendingChanges();
}

void AntiEntropy::ApplyPendingChanges() {
  // One pass per link of each change's chain of loads, each pass starting
  // the loads the next one needs: the range index's bucket; the range's end
  // and entry there; the index search, then the tree's fields; the tree's
  // nodes (whose addresses come from those fields); the updates. Within a
  // pass the changes are independent, so their misses overlap instead of
  // following one another. Every tree is built while changes wait, so
  // every change in a tree counts.
  for (const PendingChange& change : pending_changes_) {
    if (const TreeIndex* index = IndexFor(change.n)) index->by_end.Prefetch(change.token);
  }
  for (const PendingChange& change : pending_changes_) {
    const TreeIndex* index = IndexFor(change.n);
    if (index == nullptr || index->ends.empty()) continue;
    const size_t i = std::min(index->by_end.ScanStart(change.token), index->ends.size() - 1);
    __builtin_prefetch(&index->ends[i]);
    __builtin_prefetch(&index->ranges[i]);
  }
  for (PendingChange& change : pending_changes_) {
    change.state = TreeToUpdate(change.n, change.token);
    if (change.state == nullptr) continue;
    const char* state_bytes = reinterpret_cast<const char*>(change.state);
    // The tree's two hot lines and the one after (see RangeState).
    for (int line = 0; line < 3; ++line) __builtin_prefetch(state_bytes + 64 * line, /*rw=*/1);
  }
  for (const PendingChange& change : pending_changes_) {
    if (change.state != nullptr) change.state->tree.Prefetch(change.token);
  }
  for (const PendingChange& change : pending_changes_) {
    if (change.state == nullptr) continue;
    (void)change.state->tree.Update(change.token, change.old_hash, change.new_hash);
    env_.metrics->merkle_key_updates++;
  }
  pending_changes_.clear();
}

void AntiEntropy::ApplyChange(uint32_t n, Token token, std::string_view key, uint64_t old_hash,
                              uint64_t new_hash) {
  RangeState* state = TreeToUpdate(n, token);
  if (state == nullptr) return;
  if (!state->built) {
    // The rebuild scan will read keys past its position itself.
    if (!state->scanned_any) return;
    const Token offset = token - state->range.begin - 1;
    if (offset > state->scanned_offset ||
        (offset == state->scanned_offset && key > state->scanned_key)) {
      return;
    }
  }
  (void)state->tree.Update(token, old_hash, new_hash);
  env_.metrics->merkle_key_updates++;
}

// ---------------------------------------------------------------- admission

bool AntiEntropy::Admit() {
  if (env_.admission == nullptr) return true;
  if (env_.admission->TryAcquire(Elapsed(), 1) == 1) return true;
  env_.metrics->background_ops_denied++;
  return false;
}

void AntiEntropy::ChargeOne() {
  if (env_.admission != nullptr) (void)env_.admission->TryAcquire(Elapsed(), 1);
}

void AntiEntropy::Send(NodeId to, const Message& message) {
  const std::string bytes = EncodeMessage(message);
  env_.metrics->anti_entropy_bytes_sent += bytes.size();
  (void)env_.runtime->transport().Send(to, bytes);
}

// ---------------------------------------------------------------- tree rebuild

void AntiEntropy::ScheduleRebuild() {
  if (rebuild_timer_ != kNoTimer || trees_built_ == trees_.size()) return;
  rebuild_timer_ = env_.runtime->Schedule(env_.options->merkle_rebuild_batch_interval, [this] {
    rebuild_timer_ = kNoTimer;
    RebuildBatch();
    ScheduleRebuild();
  });
}

bool AntiEntropy::HoldsNoKey(const TokenRange& range) {
  ScanLimits limits;
  limits.entries_max = 1;
  absl::StatusOr<ScanResult> page = env_.storage->Scan(range, "", limits);
  if (!page.ok()) {
    env_.metrics->storage_errors++;
    return false;  // the rebuild finds out
  }
  return page->entries.empty() && page->resume_cursor.empty();
}

void AntiEntropy::RebuildBatch() {
  ApplyPendingChanges();
  auto it = std::find_if(trees_.lower_bound(rebuild_cursor_), trees_.end(),
                         [](const auto& entry) { return !entry.second.built; });
  if (it == trees_.end() || !Admit()) return;
  rebuild_cursor_ = it->first;
  RangeState& state = it->second;
  if (state.Solo()) {  // nothing to compare with, so no hashes to fold in
    state.built = true;
    env_.metrics->merkle_trees_built = ++trees_built_;
    return;
  }
  ScanLimits limits;
  limits.entries_max = std::max<size_t>(1, env_.options->merkle_rebuild_batch_keys);
  limits.bytes_max = size_t{64} << 20;
  absl::StatusOr<ScanResult> page = env_.storage->Scan(state.range, state.cursor, limits);
  if (!page.ok()) {
    env_.metrics->storage_errors++;
    return;
  }
  for (const KeyEntry& entry : page->entries) {
    const Token token = KeyToken(entry.key);
    if (ReplicasOf(entry.key) == state.n) {
      (void)state.tree.Update(token, 0, HashOf(entry.key, entry.siblings));
    }
    state.scanned_any = true;
    state.scanned_offset = token - state.range.begin - 1;
    state.scanned_key = entry.key;
  }
  state.cursor = page->resume_cursor;
  if (state.cursor.empty()) {
    state.built = true;
    env_.metrics->merkle_trees_built = ++trees_built_;
  }
}

// ---------------------------------------------------------------- periodic work

void AntiEntropy::ScheduleTick() {
  const absl::Duration tick = std::clamp(env_.options->anti_entropy_interval / 10,
                                         absl::Milliseconds(10), absl::Seconds(1));
  tick_timer_ = env_.runtime->Schedule(tick, [this] {
    tick_timer_ = kNoTimer;
    Tick();
    ScheduleTick();
  });
}

void AntiEntropy::Tick() {
  // Exchanges read trees; and a quiet node's trees (and metrics) catch up.
  ApplyPendingChanges();
  if (env_.admission != nullptr) {
    env_.admission->Tick(Elapsed());
    env_.metrics->background_budget = env_.admission->budget();
    env_.metrics->background_read_p99_us =
        static_cast<uint64_t>(absl::ToInt64Microseconds(env_.admission->last_p99()));
  }
  if (env_.options->anti_entropy_enabled) StartExchanges();
  if (env_.options->tombstone_reaping_enabled && Elapsed() >= next_sweep_) {
    next_sweep_ = Elapsed() + env_.options->tombstone_sweep_interval;
    Sweep();
  }
}

void AntiEntropy::StartExchanges() {
  if (trees_.empty()) return;
  const absl::Duration now = Elapsed();
  // Visit every range once per tick, starting after the last one started,
  // so that ranges take turns.
  auto it = trees_.upper_bound(exchange_cursor_);
  for (size_t visited = 0; visited < trees_.size(); ++visited, ++it) {
    if (sessions_.size() >= env_.options->anti_entropy_exchanges_in_flight_max) return;
    if (it == trees_.end()) it = trees_.begin();
    RangeState& state = it->second;
    if (!state.built || state.exchanging) continue;
    if (now - state.last_exchange < env_.options->anti_entropy_interval) continue;
    // The next reachable replica other than this node, in turn.
    NodeId peer = kNoNode;
    for (size_t i = 0; i < state.replicas.size() && peer == kNoNode; ++i) {
      const NodeId candidate = state.replicas[(state.next_peer + i) % state.replicas.size()];
      if (candidate != self() && env_.failure_detector->IsReachable(candidate)) {
        peer = candidate;
        state.next_peer = (state.next_peer + i + 1) % state.replicas.size();
      }
    }
    if (peer == kNoNode) continue;  // nobody to talk to: try again next tick
    if (!Admit()) return;
    exchange_cursor_ = it->first;
    StartExchange(it->first, state, peer);
  }
}

void AntiEntropy::StartExchange(const TreeKey& key, RangeState& state, NodeId peer) {
  MerkleDiff::Options diff_options;
  diff_options.request_nodes_max = std::max<size_t>(1, env_.options->merkle_request_nodes_max);
  Session session;
  session.tree = key;
  session.peer = peer;
  session.diff = std::make_unique<MerkleDiff>(&state.tree, diff_options);
  state.exchanging = true;
  state.last_exchange = Elapsed();
  env_.metrics->anti_entropy_exchanges_started++;
  const uint64_t id = NextRequestId();
  sessions_.emplace(id, std::move(session));
  SendNextKeys(id);  // starts with the Merkle phase while the diff is not done
}

uint64_t AntiEntropy::SendInSession(uint64_t id, const Message& message) {
  auto node = sessions_.extract(id);
  Session& session = node.mapped();
  env_.runtime->Cancel(session.timeout);
  const uint64_t next_id = NextRequestId();
  Message out = message;
  std::visit(
      [&](auto& m) {
        if constexpr (requires { m.request_id; }) m.request_id = next_id;
      },
      out);
  const NodeId peer = session.peer;
  session.timeout = env_.runtime->Schedule(env_.options->anti_entropy_reply_timeout,
                                           [this, next_id] {
                                             auto it = sessions_.find(next_id);
                                             if (it == sessions_.end()) return;
                                             it->second.timeout = kNoTimer;
                                             env_.failure_detector->OnTimeout(it->second.peer,
                                                                              Elapsed());
                                             FinishSession(next_id, false);
                                           });
  node.key() = next_id;
  sessions_.insert(std::move(node));
  Send(peer, out);
  return next_id;
}

void AntiEntropy::SendNextKeys(uint64_t id) {
  Session& session = sessions_.at(id);
  const RangeState& state = trees_.at(session.tree);
  if (!session.diff->done()) {
    MerkleRequest request;
    request.n = state.n;
    request.begin = state.range.begin;
    request.end = state.range.end;
    request.fanout = static_cast<uint32_t>(state.tree.options().fanout);
    request.depth = static_cast<uint32_t>(state.tree.options().depth);
    for (const MerkleNodeRef& ref : session.diff->request()) {
      request.nodes.emplace_back(static_cast<uint32_t>(ref.level), ref.index);
    }
    env_.metrics->anti_entropy_rounds++;
    SendInSession(id, request);
    return;
  }
  if (session.pending.empty()) {
    FinishSession(id, true);
    return;
  }
  const TokenRange sub = session.pending.front();
  session.pending.pop_front();
  ScanLimits limits;
  limits.entries_max = std::max<size_t>(1, env_.options->anti_entropy_exchange_keys_max);
  limits.bytes_max = env_.options->anti_entropy_exchange_bytes_max;
  absl::StatusOr<ScanResult> page = env_.storage->Scan(sub, "", limits);
  if (!page.ok()) {
    env_.metrics->storage_errors++;
    FinishSession(id, false);
    return;
  }
  KeyExchange exchange;
  exchange.n = state.n;
  exchange.range_begin = state.range.begin;
  exchange.range_end = state.range.end;
  exchange.begin = sub.begin;
  exchange.end = sub.end;
  if (!page->resume_cursor.empty() && !page->entries.empty()) {
    // The page stopped at a limit: this message covers up to its last key;
    // the rest of the sub-range goes next. (Keys sharing one 128-bit token
    // would need the key bytes too; XXH3-128 collisions are ignored.)
    const Token last = KeyToken(page->entries.back().key);
    exchange.end = last;
    if (last != sub.end) session.pending.push_front(TokenRange{last, sub.end});
  }
  session.sent_keys.clear();
  for (KeyEntry& entry : page->entries) {
    if (ReplicasOf(entry.key) != state.n) continue;
    session.sent_keys.insert(entry.key);
    exchange.entries.emplace_back(std::move(entry.key), std::move(entry.siblings));
  }
  env_.metrics->anti_entropy_keys_sent += exchange.entries.size();
  ChargeOne();
  SendInSession(id, exchange);
}

void AntiEntropy::FinishSession(uint64_t id, bool ok) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  env_.runtime->Cancel(it->second.timeout);
  auto tree = trees_.find(it->second.tree);
  if (tree != trees_.end()) tree->second.exchanging = false;
  sessions_.erase(it);
  if (ok) {
    env_.metrics->anti_entropy_exchanges_completed++;
  } else {
    env_.metrics->anti_entropy_exchanges_failed++;
  }
}

void AntiEntropy::Handle(NodeId from, const MerkleRequest& m) {
  ApplyPendingChanges();
  MerkleReply reply;
  reply.request_id = m.request_id;
  auto it = trees_.find(TreeKey{m.n, m.end});
  if (it == trees_.end() || it->second.range.begin != m.begin || !it->second.built ||
      it->second.tree.options().fanout != m.fanout ||
      it->second.tree.options().depth != static_cast<int>(m.depth)) {
    reply.code = static_cast<int>(absl::StatusCode::kFailedPrecondition);
    reply.error = "no built merkle tree of that range and shape here";
  } else {
    std::vector<MerkleNodeRef> refs;
    refs.reserve(m.nodes.size());
    for (const auto& [level, index] : m.nodes) {
      refs.push_back(MerkleNodeRef{level > 1024 ? -1 : static_cast<int>(level), index});
    }
    absl::Status status = it->second.tree.AnswerRequest(refs, &reply.hashes);
    if (!status.ok()) {
      reply.code = static_cast<int>(status.code());
      reply.error = std::string(status.message());
      reply.hashes.clear();
    }
  }
  Send(from, reply);
}

void AntiEntropy::Handle(NodeId from, const MerkleReply& m) {
  ApplyPendingChanges();
  auto it = sessions_.find(m.request_id);
  if (it == sessions_.end() || it->second.peer != from) return;
  Session& session = it->second;
  if (m.code != 0 || !session.diff->AcceptReply(m.hashes).ok()) {
    FinishSession(m.request_id, false);
    return;
  }
  if (session.diff->done()) {
    const RangeState& state = trees_.at(session.tree);
    for (uint64_t leaf : session.diff->differing_leaves()) {
      session.pending.push_back(state.tree.LeafRange(leaf));
    }
  } else {
    ChargeOne();
  }
  SendNextKeys(m.request_id);
}

void AntiEntropy::Handle(NodeId from, const KeyExchange& m) {
  KeyExchangeReply reply;
  reply.request_id = m.request_id;
  auto it = trees_.find(TreeKey{m.n, m.range_end});
  const TokenRange sub{m.begin, m.end};
  if (it == trees_.end() || it->second.range.begin != m.range_begin ||
      !it->second.range.Contains(m.end) ||
      (m.begin != m.range_begin && !it->second.range.Contains(m.begin))) {
    reply.code = static_cast<int>(absl::StatusCode::kFailedPrecondition);
    reply.error = "this node does not replicate that range";
    Send(from, reply);
    return;
  }
  // Merge what the initiator has, remembering what it sent.
  std::map<std::string_view, const SiblingSet*> sent;
  for (const auto& [key, siblings] : m.entries) {
    if (ReplicasOf(key) != m.n || !sub.Contains(KeyToken(key))) continue;
    sent[key] = &siblings;
    absl::StatusOr<SiblingSet> stored =
        env_.writer->Put(key, siblings, WriteOptions{.replicated = true});
    if (!stored.ok() && stored.status().code() != absl::StatusCode::kFailedPrecondition) {
      env_.metrics->storage_errors++;
    }
  }
  env_.metrics->anti_entropy_keys_received += sent.size();
  // Answer with every key of the sub-range whose set differs from what the
  // initiator sent (including keys it did not send).
  ScanLimits limits;
  limits.entries_max = std::max<size_t>(1, env_.options->anti_entropy_exchange_keys_max);
  limits.bytes_max = env_.options->anti_entropy_exchange_bytes_max;
  absl::StatusOr<ScanResult> page = env_.storage->Scan(sub, "", limits);
  if (!page.ok()) {
    env_.metrics->storage_errors++;
    reply.code = static_cast<int>(page.status().code());
    reply.error = std::string(page.status().message());
    Send(from, reply);
    return;
  }
  for (KeyEntry& entry : page->entries) {
    if (ReplicasOf(entry.key) != m.n) continue;
    auto s = sent.find(entry.key);
    if (s != sent.end() && *s->second == entry.siblings) continue;
    reply.entries.emplace_back(std::move(entry.key), std::move(entry.siblings));
  }
  env_.metrics->anti_entropy_keys_sent += reply.entries.size();
  ChargeOne();
  Send(from, reply);
}

void AntiEntropy::Handle(NodeId from, const KeyExchangeReply& m) {
  auto it = sessions_.find(m.request_id);
  if (it == sessions_.end() || it->second.peer != from) return;
  if (m.code != 0) {
    FinishSession(m.request_id, false);
    return;
  }
  const uint32_t n = trees_.at(it->second.tree).n;
  for (const auto& [key, siblings] : m.entries) {
    if (ReplicasOf(key) != n || !Tracks(n, key)) continue;
    absl::StatusOr<SiblingSet> stored =
        env_.writer->Put(key, siblings, WriteOptions{.replicated = true});
    if (!stored.ok() && stored.status().code() != absl::StatusCode::kFailedPrecondition) {
      env_.metrics->storage_errors++;
    }
    env_.metrics->anti_entropy_keys_received++;
  }
  SendNextKeys(m.request_id);
}

// ---------------------------------------------------------------- tombstones

void AntiEntropy::Sweep() {
  if (trees_.empty()) return;
  if (reaps_.size() >= env_.options->tombstone_reaps_in_flight_max) return;
  // The next range this node is the first replica of, in turn.
  auto it = trees_.lower_bound(sweep_range_);
  for (size_t visited = 0; visited <= trees_.size(); ++visited, ++it) {
    if (it == trees_.end()) it = trees_.begin();
    if (it->second.built && !it->second.replicas.empty() && it->second.replicas[0] == self()) {
      break;
    }
  }
  if (it == trees_.end() || it->second.replicas.empty() || it->second.replicas[0] != self()) {
    return;
  }
  if (!Admit()) return;
  RangeState& state = it->second;
  ScanLimits limits;
  limits.entries_max = std::max<size_t>(1, env_.options->tombstone_sweep_batch_keys);
  limits.bytes_max = size_t{16} << 20;
  absl::StatusOr<ScanResult> page = env_.storage->Scan(state.range, state.sweep_cursor, limits);
  if (!page.ok()) {
    env_.metrics->storage_errors++;
    state.sweep_cursor.clear();
    return;
  }
  state.sweep_cursor = page->resume_cursor;
  // Done with this range: the next sweep moves on to the next one.
  auto next = std::next(it);
  sweep_range_ = !state.sweep_cursor.empty() ? it->first
                 : next == trees_.end()      ? trees_.begin()->first
                                             : next->first;
  const int64_t cutoff_us =
      absl::ToUnixMicros(env_.runtime->Now() - env_.options->tombstone_reap_grace);
  for (KeyEntry& entry : page->entries) {
    if (reaps_.size() >= env_.options->tombstone_reaps_in_flight_max) break;
    if (ReplicasOf(entry.key) != state.n || !AllTombstones(entry.siblings)) continue;
    bool old_enough = true;
    for (const Version& v : entry.siblings) old_enough &= v.dot.timestamp_us <= cutoff_us;
    if (!old_enough || reaping_keys_.contains(entry.key)) continue;
    StartReap(state, std::move(entry.key), std::move(entry.siblings));
  }
}

void AntiEntropy::StartReap(const RangeState& state, std::string key, SiblingSet tombstones) {
  Reap reap;
  for (NodeId replica : state.replicas) {
    if (replica != self()) reap.waiting.insert(replica);
  }
  if (reap.waiting.empty()) {
    ReapIfExactly(key, tombstones);
    return;
  }
  const uint64_t id = NextRequestId();
  for (NodeId replica : reap.waiting) {
    Send(replica, TombstoneCheck{id, key, tombstones});
  }
  reap.timeout = env_.runtime->Schedule(env_.options->anti_entropy_reply_timeout, [this, id] {
    auto it = reaps_.find(id);
    if (it == reaps_.end()) return;
    // A replica that is down (or slow) blocks reaping: try in a later sweep.
    env_.metrics->tombstone_reaps_blocked++;
    reaping_keys_.erase(it->second.key);
    reaps_.erase(it);
  });
  reaping_keys_.insert(key);
  reap.key = std::move(key);
  reap.tombstones = std::move(tombstones);
  reaps_.emplace(id, std::move(reap));
}

void AntiEntropy::Handle(NodeId from, const TombstoneCheck& m) {
  TombstoneCheckReply reply;
  reply.request_id = m.request_id;
  absl::StatusOr<SiblingSet> stored = env_.storage->Get(m.key);
  reply.holds = stored.ok() && AllTombstones(m.tombstones) && Covers(*stored, m.tombstones);
  Send(from, reply);
}

void AntiEntropy::Handle(NodeId from, const TombstoneCheckReply& m) {
  auto it = reaps_.find(m.request_id);
  if (it == reaps_.end() || !it->second.waiting.contains(from)) return;
  Reap& reap = it->second;
  if (!m.holds) {
    env_.metrics->tombstone_reaps_blocked++;
  } else {
    reap.waiting.erase(from);
    if (!reap.waiting.empty()) return;
    // Every replica holds the tombstones: reap them everywhere.
    const RangeState* state = FindTree(ReplicasOf(reap.key), KeyToken(reap.key));
    if (state != nullptr) {
      for (NodeId replica : state->replicas) {
        if (replica != self()) Send(replica, TombstoneReap{reap.key, reap.tombstones});
      }
    }
    ReapIfExactly(reap.key, reap.tombstones);
  }
  env_.runtime->Cancel(reap.timeout);
  reaping_keys_.erase(reap.key);
  reaps_.erase(it);
}

void AntiEntropy::Handle(NodeId /*from*/, const TombstoneReap& m) {
  if (!AllTombstones(m.tombstones)) return;
  ReapIfExactly(m.key, m.tombstones);
}

void AntiEntropy::ReapIfExactly(std::string_view key, const SiblingSet& tombstones) {
  absl::StatusOr<SiblingSet> stored = env_.storage->Get(key);
  // Anything written since the check (a new version, a concurrent one) keeps
  // the key as it is.
  if (!stored.ok() || *stored != tombstones) return;
  if (env_.writer->ReapTombstones(key, tombstones).ok()) {
    env_.metrics->tombstones_reaped++;
  } else {
    env_.metrics->storage_errors++;
  }
}

}  // namespace dynamo::internal

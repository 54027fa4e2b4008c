// dynamo-server: one node of a real libdynamo cluster. The unchanged Node runs
// on a TcpRuntime (peers over authenticated TCP, one event-loop thread) with
// an LmdbEngine in its data directory, and a Redis-protocol (RESP2) client
// port on the same loop, so redis-cli and Redis client libraries work.
//
// A cluster starts either statically — every server is given the same
// member list (--peers) and builds the same first ring (strategy 3, members
// added in id order) — or grows by joins (paper 4.8): a server started with
// --seeds and no --peers asks a seed to add it, pulls the ranges it will own
// and becomes up. Members announce their peer address in their membership
// entry (--advertise), so gossip tells every node where the others listen.
//
//   dynamo-server --id 1 --client 127.0.0.1:6381
//     --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
//     --data-dir /var/lib/dynamo/1 --secret-file /etc/dynamo/secret
//   dynamo-server --id 4 --listen 127.0.0.1:7004 --client 127.0.0.1:6384
//     --seeds 1=127.0.0.1:7001 --data-dir /var/lib/dynamo/4 --secret-file ...
//
// A server started with neither --peers nor --seeds waits, outside any
// cluster, until it is told to join (dynamoctl join / DYNAMO.JOIN).
//
// Flags may also come from --config FILE: one "name = value" per line (names
// as the flags without "--"), '#' starts a comment; flags given on the
// command line win. SIGTERM/SIGINT shut down cleanly (the storage is
// flushed); a restart with the same data directory resumes the node.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "dynamo/lmdb_engine.h"
#include "dynamo/memory_engine.h"
#include "dynamo/node.h"
#include "dynamo/ring.h"
#include "dynamo/tcp/tcp_runtime.h"
#include "tcp/resp_server.h"
#include "tcp/tcp_membership.h"

namespace {

using dynamo::Endpoint;

constexpr const char* kUsage =
    R"(usage: dynamo-server --id N (--data-dir DIR | --storage memory)
                     (--peers LIST | --listen HOST:PORT [--seeds LIST]) [options]
  --id N                 this node's id (> 0)
  --listen HOST:PORT     peer address (default: this node's entry in --peers)
  --advertise HOST:PORT  peer address announced to the other members
                         (default: --listen with the port actually bound)
  --client HOST:PORT     Redis-protocol client port (default 127.0.0.1:6379)
  --peers LIST           the first members, ID=HOST:PORT,...: a static start
  --seeds LIST           members to join through, ID=HOST:PORT,...; also
                         gossiped with regularly (paper 4.8)
  --data-dir DIR         LMDB directory (created if missing)
  --storage S            lmdb (default; needs --data-dir) or memory: nothing
                         survives the process, and a restarted node comes back
                         empty, as if its disk were wiped (a new actor; hinted
                         handoff, read repair and anti-entropy refill it)
  --memory-max-mb M      memory: bound on data and hints held (default 1024);
                         a write past it gets an error and changes nothing
  --n --r --w            the default bucket's N, R, W (default 3, 2, 2)
  --policy P             siblings (default) or lww
  --durability D         how writes reach disk (LMDB):
                           sync      every write fsynced (default)
                           nosync    every write committed, fsynced every
                                     --flush-interval-ms; survives a process
                                     crash, a machine crash may lose the interval
                           buffered  paper 6.1: writes buffered in memory and
                                     written every --flush-interval-ms by a
                                     writer thread, except the coordinator's
                                     own copy, written and fsynced at once
                           buffered-all  every copy buffered, the coordinator's
                                     too: a process crash loses what was not
                                     yet written, about one interval (more if
                                     the writer falls behind) of the writes
                                     this node held; with N > 1 the other
                                     replicas keep them
  --flush-interval-ms T  flush of buffered or unsynced writes (default 100)
  --write-buffer-objects K  buffered modes: distinct keys held before a put
                         flushes early (default 100000; the buffer is also
                         bounded at 64 MiB and flushed every interval)
  --secret S | --secret-file F | env DYNAMO_CLUSTER_SECRET   shared cluster secret
  --cluster-name NAME    (default "dynamo")
  --request-timeout-ms T (default 1000)
  --replica-timeout-ms T a replica silent this long is suspected and, for a
                         put short of W, replaced by a stand-in (default 300)
  --transfers-in-flight K       ownership-transfer batches in flight (default 2)
  --transfer-interval-ms T      pause after a full transfer batch (default 10;
                                smaller batches pause less, empty ones not at
                                all): the throttle of paper 6.5 on joins and
                                removals
  --ports-file F         write "PEER_PORT CLIENT_PORT" once listening (for port 0)
  --config FILE          read "name = value" lines; command-line flags win
A restart with the same --data-dir resumes the node with the membership it
stored; --peers and --seeds then only add addresses.
)";

// The paper's buffer held 1,000 objects and a separate writer thread
// flushed it. A flush the buffer being full forces (a synced LMDB
// transaction) runs on the node's one event-loop thread, unlike the periodic
// one, so a small count bound meant a synced flush on the loop every ~1,000
// distinct keys written: under load tens of fsyncs a second stalled every
// client (3-5x less SET throughput). The flush interval, not the
// count, is what bounds the window a crash loses; the count only bounds the
// buffer's size, which LmdbOptions::write_buffer_bytes_max bounds too.
constexpr size_t kWriteBufferObjectsDefault = 100000;

int Fail(const std::string& message) {
  std::cerr << "dynamo-server: " << message << "\n";
  return 2;
}

absl::Status ReadConfig(const std::string& path, std::map<std::string, std::string>* flags) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  std::string line;
  size_t lineno = 0;
  while (std::getline(in, line) && lineno < 10000) {
    ++lineno;
    std::string_view l = line;
    if (size_t hash = l.find('#'); hash != std::string_view::npos) l = l.substr(0, hash);
    std::string trimmed(absl::StripAsciiWhitespace(std::string(l)));
    if (trimmed.empty()) continue;
    size_t eq = trimmed.find('=');
    if (eq == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", lineno, ": expected name = value"));
    }
    std::string name(absl::StripAsciiWhitespace(trimmed.substr(0, eq)));
    std::string value(absl::StripAsciiWhitespace(trimmed.substr(eq + 1)));
    flags->emplace(name, value);  // command-line values, already present, win
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> SizeFlag(const std::map<std::string, std::string>& f, const std::string& n,
                                size_t def) {
  auto it = f.find(n);
  if (it == f.end()) return def;
  size_t v = 0;
  if (!absl::SimpleAtoi(it->second, &v)) {
    return absl::InvalidArgumentError(absl::StrCat("--", n, ": '", it->second, "' is not a number"));
  }
  return v;
}

using Flags = std::map<std::string, std::string>;

absl::StatusOr<std::unique_ptr<dynamo::StorageEngine>> OpenLmdbEngine(
    Flags& flags, dynamo::NodeOptions* nopt, std::optional<dynamo::FlushWriterThread>* writer) {
  dynamo::LmdbOptions lopt;
  lopt.path = flags["data-dir"];
  // The default is recorded in `flags`, where INFO node reads it.
  if (!flags.count("durability")) flags["durability"] = "sync";
  const std::string durability = flags["durability"];
  if (durability == "sync") {
    lopt.durability = dynamo::LmdbOptions::Durability::kSync;
  } else if (durability == "nosync") {
    lopt.durability = dynamo::LmdbOptions::Durability::kNoSync;
    nopt->coordinator_writes_durably = false;  // the operator chose no fsync at all
  } else if (durability == "buffered") {
    lopt.durability = dynamo::LmdbOptions::Durability::kBuffered;
  } else if (durability == "buffered-all") {
    lopt.durability = dynamo::LmdbOptions::Durability::kBuffered;
    nopt->coordinator_writes_durably = false;  // the operator chose to buffer every copy
  } else {
    return absl::InvalidArgumentError("--durability must be sync, nosync, buffered or buffered-all");
  }
  absl::StatusOr<size_t> buffer_objects =
      SizeFlag(flags, "write-buffer-objects", kWriteBufferObjectsDefault);
  if (!buffer_objects.ok()) return buffer_objects.status();
  if (*buffer_objects == 0) {
    return absl::InvalidArgumentError("--write-buffer-objects must be at least 1");
  }
  lopt.write_buffer_objects_max = *buffer_objects;
  if (lopt.durability == dynamo::LmdbOptions::Durability::kBuffered) {
    lopt.flush_writer = &writer->emplace();
  }
  absl::StatusOr<std::unique_ptr<dynamo::LmdbEngine>> engine = dynamo::LmdbEngine::Open(lopt);
  if (!engine.ok()) return engine.status();
  return std::unique_ptr<dynamo::StorageEngine>(*std::move(engine));
}

absl::StatusOr<std::unique_ptr<dynamo::StorageEngine>> OpenMemoryEngine(const Flags& flags) {
  absl::StatusOr<size_t> max_mb = SizeFlag(flags, "memory-max-mb", 1024);
  if (!max_mb.ok()) return max_mb.status();
  if (*max_mb == 0 || *max_mb > (uint64_t{1} << 24)) {
    return absl::InvalidArgumentError("--memory-max-mb must be between 1 and 16777216");
  }
  absl::StatusOr<std::unique_ptr<dynamo::MemoryEngine>> engine =
      dynamo::MemoryEngine::Create(dynamo::StorageLimits(), uint64_t{*max_mb} << 20);
  if (!engine.ok()) return engine.status();
  return std::unique_ptr<dynamo::StorageEngine>(*std::move(engine));
}

int Main(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (a.rfind("--", 0) != 0) return Fail(absl::StrCat("unexpected argument '", a, "'\n", kUsage));
    a = a.substr(2);
    if (size_t eq = a.find('='); eq != std::string::npos) {
      flags[a.substr(0, eq)] = a.substr(eq + 1);
    } else if (i + 1 < argc) {
      flags[a] = argv[++i];
    } else {
      return Fail(absl::StrCat("--", a, " needs a value"));
    }
  }
  if (flags.count("config")) {
    if (absl::Status s = ReadConfig(flags["config"], &flags); !s.ok()) return Fail(s.ToString());
  }
  static const char* kKnown[] = {"id", "listen", "advertise", "client", "peers", "seeds",
                                 "data-dir", "n", "r", "w",
                                 "policy", "durability", "secret", "secret-file", "cluster-name",
                                 "request-timeout-ms", "replica-timeout-ms", "transfers-in-flight",
                                 "transfer-interval-ms", "flush-interval-ms", "write-buffer-objects",
                                 "ports-file", "config", "storage", "memory-max-mb"};
  for (const auto& [name, value] : flags) {
    if (std::find(std::begin(kKnown), std::end(kKnown), name) == std::end(kKnown)) {
      return Fail(absl::StrCat("unknown flag --", name, "\n", kUsage));
    }
  }

  dynamo::NodeId self = 0;
  if (!flags.count("id") || !absl::SimpleAtoi(flags["id"], &self) || self == 0) {
    return Fail(absl::StrCat("--id must be a positive number\n", kUsage));
  }
  const std::string storage_kind = flags.count("storage") ? flags["storage"] : "lmdb";
  if (storage_kind == "memory") {
    for (const char* lmdb_only : {"data-dir", "durability", "write-buffer-objects"}) {
      if (flags.count(lmdb_only)) {
        return Fail(absl::StrCat("--", lmdb_only, " is for --storage lmdb, not memory"));
      }
    }
  } else if (storage_kind == "lmdb") {
    if (!flags.count("data-dir")) return Fail("--data-dir is required (or --storage memory)");
    if (flags.count("memory-max-mb")) return Fail("--memory-max-mb is for --storage memory");
  } else {
    return Fail("--storage must be lmdb or memory");
  }
  dynamo::TcpRuntimeOptions topt;
  topt.self = self;
  std::map<dynamo::NodeId, Endpoint> static_members, seeds;
  const std::pair<const char*, std::map<dynamo::NodeId, Endpoint>*> lists[] = {
      {"peers", &static_members}, {"seeds", &seeds}};
  for (const auto& [flag, list] : lists) {
    if (!flags.count(flag)) continue;
    auto parsed = dynamo::internal::ParseMemberAddresses(flags[flag]);
    if (!parsed.ok()) return Fail(absl::StrCat("--", flag, ": ", parsed.status().message()));
    *list = *std::move(parsed);
    topt.peers.insert(list->begin(), list->end());
  }
  if (!static_members.empty() && !static_members.count(self)) {
    return Fail(absl::StrCat("--peers does not list --id ", self));
  }
  if (static_members.count(self)) {
    topt.listen = static_members[self];
  } else if (!flags.count("listen")) {
    return Fail("--listen is required unless --peers lists this node");
  }
  if (flags.count("listen")) {
    absl::StatusOr<Endpoint> ep = Endpoint::Parse(flags["listen"]);
    if (!ep.ok()) return Fail(ep.status().ToString());
    topt.listen = *ep;
  }
  if (flags.count("cluster-name")) topt.cluster_name = flags["cluster-name"];
  if (flags.count("secret")) {
    topt.cluster_secret = flags["secret"];
  } else if (flags.count("secret-file")) {
    std::ifstream in(flags["secret-file"]);
    if (!in) return Fail(absl::StrCat("cannot read --secret-file ", flags["secret-file"]));
    std::getline(in, topt.cluster_secret);
  } else if (const char* env = std::getenv("DYNAMO_CLUSTER_SECRET")) {
    topt.cluster_secret = env;
  }
  if (topt.cluster_secret.empty()) {
    return Fail("a cluster secret is required: --secret, --secret-file or DYNAMO_CLUSTER_SECRET");
  }

  dynamo::NodeOptions nopt;
  dynamo::BucketOptions& bucket = nopt.buckets[0];
  absl::StatusOr<size_t> n = SizeFlag(flags, "n", 3), r = SizeFlag(flags, "r", 2),
                         w = SizeFlag(flags, "w", 2),
                         timeout_ms = SizeFlag(flags, "request-timeout-ms", 1000),
                         replica_timeout_ms = SizeFlag(
                             flags, "replica-timeout-ms",
                             absl::ToInt64Milliseconds(nopt.replica_timeout)),
                         transfers = SizeFlag(flags, "transfers-in-flight",
                                              nopt.transfers_in_flight_max),
                         transfer_interval_ms = SizeFlag(
                             flags, "transfer-interval-ms",
                             absl::ToInt64Milliseconds(nopt.transfer_batch_interval));
  for (const auto* s :
       {&n, &r, &w, &timeout_ms, &replica_timeout_ms, &transfers, &transfer_interval_ms}) {
    if (!s->ok()) return Fail(s->status().ToString());
  }
  if (*transfers == 0) return Fail("--transfers-in-flight must be at least 1");
  absl::StatusOr<size_t> flush_ms = SizeFlag(
      flags, "flush-interval-ms", absl::ToInt64Milliseconds(nopt.storage_flush_interval));
  if (!flush_ms.ok()) return Fail(flush_ms.status().ToString());
  if (*flush_ms == 0) return Fail("--flush-interval-ms must be at least 1");
  nopt.storage_flush_interval = absl::Milliseconds(static_cast<int64_t>(*flush_ms));
  nopt.transfers_in_flight_max = *transfers;
  nopt.transfer_batch_interval = absl::Milliseconds(static_cast<int64_t>(*transfer_interval_ms));
  bucket.n = *n;
  bucket.r = *r;
  bucket.w = *w;
  nopt.request_timeout = absl::Milliseconds(static_cast<int64_t>(*timeout_ms));
  nopt.replica_timeout = absl::Milliseconds(static_cast<int64_t>(*replica_timeout_ms));
  if (flags.count("policy")) {
    if (flags["policy"] == "lww") {
      bucket.policy = dynamo::ConflictPolicy::kLastWriteWins;
    } else if (flags["policy"] != "siblings") {
      return Fail("--policy must be siblings or lww");
    }
  }

  absl::StatusOr<Endpoint> client_ep =
      Endpoint::Parse(flags.count("client") ? flags["client"] : "127.0.0.1:6379");
  if (!client_ep.ok()) return Fail(client_ep.status().ToString());

  // The static ring: every server adds the same ids in the same order. A
  // joining server starts with an empty ring (not a member yet).
  dynamo::Ring ring{dynamo::RingOptions()};
  for (const auto& [id, ep] : static_members) {  // std::map: sorted by id
    dynamo::RingMember m;
    m.id = id;
    if (absl::Status s = ring.AddNode(m); !s.ok()) return Fail(s.ToString());
  }

  // Buffered modes write the buffer out on a thread of their own (paper
  // 6.1's writer thread), so the event loop keeps serving through the fsync.
  // Declared before the engine: destroyed after it.
  std::optional<dynamo::FlushWriterThread> flush_writer;
  absl::StatusOr<std::unique_ptr<dynamo::StorageEngine>> storage =
      storage_kind == "memory" ? OpenMemoryEngine(flags) : OpenLmdbEngine(flags, &nopt, &flush_writer);
  if (!storage.ok()) return Fail(storage.status().ToString());
  absl::StatusOr<std::unique_ptr<dynamo::TcpRuntime>> runtime =
      dynamo::TcpRuntime::Create(topt);
  if (!runtime.ok()) return Fail(runtime.status().ToString());
  for (const auto& [id, ep] : seeds) nopt.seeds.push_back(id);
  if (flags.count("advertise")) {
    absl::StatusOr<Endpoint> ep = Endpoint::Parse(flags["advertise"]);
    if (!ep.ok()) return Fail(absl::StrCat("--advertise: ", ep.status().message()));
    nopt.address = ep->ToString();
  } else if (topt.listen.host == "0.0.0.0" || topt.listen.host == "::") {
    return Fail("--advertise is required when --listen is a wildcard address");
  } else {
    nopt.address = Endpoint{topt.listen.host, (*runtime)->peer_port()}.ToString();
  }
  // Gossip brings members' addresses; the transport learns them at once
  // (before the node answers a joiner or pulls ranges from a new peer).
  dynamo::TcpRuntime* transport = runtime->get();
  nopt.on_membership_changed = [transport](const dynamo::Membership& membership) {
    if (absl::Status s = dynamo::internal::ApplyMemberAddresses(membership, *transport); !s.ok()) {
      std::cerr << "dynamo-server: peer addresses: " << s << "\n";
    }
  };
  absl::StatusOr<std::unique_ptr<dynamo::Node>> node =
      dynamo::Node::Create(nopt, runtime->get(), storage->get(), std::move(ring));
  if (!node.ok()) return Fail(node.status().ToString());
  dynamo::internal::RespServerOptions ropt;
  ropt.listen = *client_ep;
  ropt.bucket = bucket.name;
  if (auto* memory = dynamic_cast<dynamo::MemoryEngine*>(storage->get())) {
    ropt.storage_info = [memory] {
      return absl::StrCat("storage:memory\r\nstorage_bytes:", memory->bytes(),
                          "\r\nstorage_bytes_max:", memory->bytes_max(), "\r\n");
    };
  } else {
    ropt.storage_info = [text = absl::StrCat("storage:lmdb\r\ndata_dir:", flags["data-dir"],
                                             "\r\ndurability:", flags["durability"],
                                             "\r\n")] { return text; };
  }
  absl::StatusOr<std::unique_ptr<dynamo::internal::RespServer>> resp =
      dynamo::internal::RespServer::Create(ropt, (*runtime)->io_context(), node->get(),
                                           runtime->get());
  if (!resp.ok()) return Fail(resp.status().ToString());

  bool stopping = false;
  asio::signal_set signals((*runtime)->io_context(), SIGINT, SIGTERM);
  signals.async_wait([&](const asio::error_code& e, int signo) {
    if (e) return;
    std::cerr << "dynamo-server: node " << self << ": signal " << signo << ", shutting down\n";
    stopping = true;
    (*resp)->Close();
    (*runtime)->Stop();
  });

  // A server that is not a member joins through its seeds, retrying until
  // one accepts (a seed may be starting too).
  std::unique_ptr<dynamo::internal::SeedJoin> join;
  const dynamo::MemberEntry* mine = (*node)->membership().Find(self);
  if ((mine == nullptr || mine->status == dynamo::MemberStatus::kRemoved) && !seeds.empty()) {
    join = std::make_unique<dynamo::internal::SeedJoin>(
        node->get(), runtime->get(), seeds, /*attempts_max=*/0, absl::Seconds(1),
        [self](const absl::Status& s) {
          std::cerr << "dynamo-server: node " << self << ": "
                    << (s.ok() ? std::string("joined the cluster") : s.ToString()) << "\n";
        });
    join->set_on_retry([self](const absl::Status& s) {
      std::cerr << "dynamo-server: node " << self << ": " << s << " (retrying)\n";
    });
    join->Start();
  }

  if (flags.count("ports-file")) {
    std::string tmp = flags["ports-file"] + ".tmp";
    {
      std::ofstream out(tmp);
      out << (*runtime)->peer_port() << " " << (*resp)->port() << "\n";
    }
    std::rename(tmp.c_str(), flags["ports-file"].c_str());  // readers never see half a file
  }
  std::cerr << "dynamo-server: node " << self << " actor " << (*node)->identity().actor
            << " peers on " << topt.listen.host << ":" << (*runtime)->peer_port()
            << ", clients on " << client_ep->host << ":" << (*resp)->port() << ", N=" << bucket.n
            << " R=" << bucket.r << " W=" << bucket.w << ", advertised as " << nopt.address
            << ", " << (*node)->membership().Live().size() << " members known\n";

  absl::Status run = (*runtime)->Run();
  // Order: stop serving clients, drop the node (its pending requests end),
  // flush what the engine buffered, then close storage and the runtime.
  resp->reset();
  join.reset();
  node->reset();
  absl::Status flushed = (*storage)->Flush();
  if (!run.ok()) return Fail(run.ToString());
  if (!flushed.ok()) return Fail(absl::StrCat("flush on shutdown: ", flushed.ToString()));
  std::cerr << "dynamo-server: node " << self << " stopped" << (stopping ? "" : " (loop ended)")
            << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "dynamo-server: fatal: " << e.what() << "\n";
    return 1;
  }
}

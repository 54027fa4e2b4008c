// Multi-process tests of a real cluster: dynamo-server processes on
// 127.0.0.1, talking TCP to each other, driven through their Redis-protocol
// ports with a tiny RESP client. Every wait is bounded, and every child is
// killed (SIGKILL) and reaped when a test ends, pass or fail.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tcp/frame.h"
#include "tcp/resp_client.h"

namespace dynamo::internal {
namespace {

using Clock = std::chrono::steady_clock;

// A free loopback port: bind to port 0 and ask. Parallel runs could in
// principle race for it; Cluster retries the whole start if a bind fails.
uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

std::unique_ptr<RespClient> Connect(uint16_t port) {
  auto c = RespClient::Connect("127.0.0.1", port, absl::Seconds(5));
  REQUIRE(c.ok());
  return std::move(*c);
}

RespValue Cmd(uint16_t port, const std::vector<std::string>& args) {
  auto c = Connect(port);
  auto r = c->Command(args);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return *r;
}

// One INFO field as an integer (-1 if absent).
long long InfoField(uint16_t port, const std::string& section, const std::string& field) {
  RespValue v = Cmd(port, {"INFO", section});
  std::vector<std::string> lines = absl::StrSplit(v.str, "\r\n");
  for (const std::string& line : lines) {
    if (line.rfind(field + ":", 0) == 0) {
      long long x = -1;
      if (absl::SimpleAtoi(line.substr(field.size() + 1), &x)) return x;
    }
  }
  return -1;
}

// Polls `pred` every 50 ms for at most `limit`.
template <typename Pred>
bool WaitUntil(Pred pred, std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

struct ServerSpec {
  NodeId id;
  uint16_t peer_port;
  uint16_t client_port;
  std::string secret;
  pid_t pid = -1;
  bool joiner = false;  // started outside the cluster (no --peers), joins later
};

class Cluster {
 public:
  Cluster(size_t nodes, size_t n, size_t r, size_t w, std::string durability = "nosync")
      : n_(n), r_(r), w_(w), durability_(std::move(durability)) {
    char tmpl[] = "/tmp/dynamo-integration-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    for (size_t i = 0; i < nodes; ++i) {
      servers_.push_back(ServerSpec{static_cast<NodeId>(i + 1), 0, 0, "test-secret"});
    }
  }
  ~Cluster() {
    for (ServerSpec& s : servers_) Kill(s.id, SIGKILL);
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  ServerSpec& server(NodeId id) { return servers_[id - 1]; }
  // Flags added to every server's command line from the next Start on.
  void set_extra_args(std::vector<std::string> args) { extra_args_ = std::move(args); }
  const std::string& dir() const { return dir_; }

  // Adds and starts a server that is no member yet: it knows no peer and
  // waits to be told to join. Returns its id.
  // Starts a server outside the ring (it joins later). Retries with new
  // ports if one was taken meanwhile, as StartAll does: the test's own
  // client connections draw from the same ephemeral range.
  NodeId StartJoiner() {
    NodeId id = static_cast<NodeId>(servers_.size() + 1);
    servers_.push_back(ServerSpec{id, 0, 0, "test-secret"});
    servers_.back().joiner = true;
    for (int attempt = 0; attempt < 3; ++attempt) {
      servers_.back().peer_port = FreePort();
      servers_.back().client_port = FreePort();
      Start(id);
      if (WaitReady(id)) return id;
      Kill(id, SIGKILL);
    }
    return id;  // the caller's WaitReady fails and says so
  }
  uint16_t client_port(NodeId id) { return server(id).client_port; }

  // Starts every server and waits until each answers PING and is connected
  // to its peers. Retries with new ports if a port was taken meanwhile.
  void StartAll() {
    for (int attempt = 0; attempt < 3; ++attempt) {
      for (ServerSpec& s : servers_) {
        s.peer_port = FreePort();
        s.client_port = FreePort();
      }
      for (ServerSpec& s : servers_) Start(s.id);
      bool ok = true;
      for (ServerSpec& s : servers_) ok = ok && WaitReady(s.id);
      // Then until every node holds an authenticated connection to every
      // peer that shares its secret, so tests do not race the first dials.
      for (ServerSpec& s : servers_) {
        for (ServerSpec& p : servers_) {
          if (!ok || p.id == s.id || p.secret != s.secret) continue;
          std::string want = absl::StrCat("peer:", p.id, ",connected=1");
          ok = WaitUntil(
              [&] {
                auto c = RespClient::Connect("127.0.0.1", s.client_port, absl::Seconds(2));
                if (!c.ok()) return false;
                auto r = (*c)->Command({"INFO", "peers"});
                return r.ok() && r->str.find(want) != std::string::npos;
              },
              std::chrono::milliseconds(8000));
        }
      }
      if (ok) return;
      for (ServerSpec& s : servers_) Kill(s.id, SIGKILL);
    }
    FAIL("cluster did not start");
  }

  void Start(NodeId id) {
    ServerSpec& s = server(id);
    std::string peers;
    for (const ServerSpec& p : servers_) {
      if (p.joiner) continue;
      absl::StrAppend(&peers, peers.empty() ? "" : ",", p.id, "=127.0.0.1:", p.peer_port);
    }
    std::vector<std::string> args = {
        DYNAMO_SERVER_PATH, "--id", std::to_string(id), s.joiner ? "--listen" : "--peers",
        s.joiner ? absl::StrCat("127.0.0.1:", s.peer_port) : peers, "--client",
        absl::StrCat("127.0.0.1:", s.client_port), "--secret", s.secret, "--n", std::to_string(n_),
        "--r", std::to_string(r_), "--w", std::to_string(w_)};
    // "memory" stands for --storage memory, which takes no LMDB flags.
    const std::vector<std::string> storage =
        durability_ == "memory"
            ? std::vector<std::string>{"--storage", "memory"}
            : std::vector<std::string>{"--data-dir", absl::StrCat(dir_, "/node", id),
                                       "--durability", durability_};
    args.insert(args.end(), storage.begin(), storage.end());
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    std::string log = absl::StrCat(dir_, "/node", id, ".log");
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      FILE* f = freopen(log.c_str(), "a", stderr);
      (void)f;
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    s.pid = pid;
  }

  bool Alive(NodeId id) {
    ServerSpec& s = server(id);
    if (s.pid <= 0) return false;
    int status = 0;
    if (waitpid(s.pid, &status, WNOHANG) == s.pid) {
      s.pid = -1;
      return false;
    }
    return true;
  }

  bool WaitReady(NodeId id) {
    return WaitUntil(
        [&] {
          if (!Alive(id)) return false;
          auto c = RespClient::Connect("127.0.0.1", client_port(id), absl::Seconds(2));
          if (!c.ok()) return false;
          auto r = (*c)->Command({"PING"});
          return r.ok() && r->str == "PONG";
        },
        std::chrono::milliseconds(8000));
  }

  // Sends `sig` and reaps the process (SIGTERM: waits for a clean exit).
  int Kill(NodeId id, int sig) {
    ServerSpec& s = server(id);
    if (s.pid <= 0) return -1;
    kill(s.pid, sig);
    int status = 0;
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (waitpid(s.pid, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        kill(s.pid, SIGKILL);
        waitpid(s.pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    s.pid = -1;
    return status;
  }

  std::string Log(NodeId id) {
    std::string path = absl::StrCat(dir_, "/node", id, ".log");
    FILE* f = fopen(path.c_str(), "r");
    if (f == nullptr) return "";
    std::string out(8192, '\0');
    out.resize(fread(out.data(), 1, out.size(), f));
    fclose(f);
    return out;
  }

  // Runs dynamoctl against node `id`'s client port; its stdout, and its exit
  // status in `status`.
  std::string Ctl(NodeId id, const std::string& command, int* status) {
    std::string line = absl::StrCat(DYNAMOCTL_PATH, " --port ", client_port(id), " ", command,
                                    " 2>&1");
    FILE* p = popen(line.c_str(), "r");
    REQUIRE(p != nullptr);
    std::string out;
    char buf[4096];
    size_t got = 0;
    while ((got = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, got);
    int rc = pclose(p);
    *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    return out;
  }

 private:
  size_t n_, r_, w_;
  std::string durability_;
  std::vector<std::string> extra_args_;
  std::string dir_;
  std::vector<ServerSpec> servers_;
};

TEST_CASE("a 3-node cluster serves SET/GET to a RESP client") {
  Cluster cluster(3, 3, 2, 2);
  cluster.StartAll();
  for (int i = 0; i < 30; ++i) {
    RespValue r = Cmd(cluster.client_port(1 + i % 3), {"SET", absl::StrCat("key", i),
                                                       absl::StrCat("value", i)});
    INFO(r.DebugString());
    REQUIRE(r.str == "OK");
  }
  for (int i = 0; i < 30; ++i) {
    RespValue r = Cmd(cluster.client_port(1 + (i + 1) % 3), {"GET", absl::StrCat("key", i)});
    REQUIRE(r.type == RespValue::Type::kBulk);
    REQUIRE(r.str == absl::StrCat("value", i));
  }
  // Overwrite: SET reads the context first, so no sibling appears.
  REQUIRE(Cmd(cluster.client_port(2), {"SET", "key0", "new"}).str == "OK");
  RespValue d = Cmd(cluster.client_port(3), {"DGET", "key0"});
  REQUIRE(d.elements.size() == 2);
  REQUIRE(d.elements[1].str == "new");

  // Two blind writes make siblings; GET picks the same one everywhere.
  REQUIRE(Cmd(cluster.client_port(1), {"DPUT", "cart", "", "apple"}).str == "OK");
  REQUIRE(Cmd(cluster.client_port(2), {"DPUT", "cart", "", "pear"}).str == "OK");
  RespValue siblings = Cmd(cluster.client_port(3), {"DGET", "cart"});
  REQUIRE(siblings.elements.size() == 3);
  std::string g1 = Cmd(cluster.client_port(1), {"GET", "cart"}).str;
  REQUIRE(Cmd(cluster.client_port(2), {"GET", "cart"}).str == g1);
  REQUIRE(Cmd(cluster.client_port(3), {"GET", "cart"}).str == g1);
  // A put with the merged context resolves them.
  REQUIRE(Cmd(cluster.client_port(1), {"DPUT", "cart", siblings.elements[0].str, "apple+pear"})
              .str == "OK");
  RespValue merged = Cmd(cluster.client_port(2), {"DGET", "cart"});
  REQUIRE(merged.elements.size() == 2);
  REQUIRE(merged.elements[1].str == "apple+pear");

  RespValue mget = Cmd(cluster.client_port(1), {"MGET", "key1", "missing", "key2"});
  REQUIRE(mget.elements.size() == 3);
  REQUIRE(mget.elements[0].str == "value1");
  REQUIRE(mget.elements[1].type == RespValue::Type::kNull);
  REQUIRE(Cmd(cluster.client_port(1), {"EXISTS", "key1", "missing"}).integer == 1);
  REQUIRE(Cmd(cluster.client_port(2), {"DEL", "key1", "missing"}).integer == 1);
  REQUIRE(Cmd(cluster.client_port(3), {"GET", "key1"}).type == RespValue::Type::kNull);
  REQUIRE(InfoField(cluster.client_port(1), "node", "node_id") == 1);
  // Anti-entropy's trees, one per replicated range, finish their first build.
  REQUIRE(WaitUntil(
      [&] {
        const long long trees = InfoField(cluster.client_port(3), "metrics", "merkle_trees");
        return trees > 0 &&
               InfoField(cluster.client_port(3), "metrics", "merkle_trees_built") == trees;
      },
      std::chrono::milliseconds(30000)));
  REQUIRE(Cmd(cluster.client_port(1), {"DYNAMO.JOIN", "4"}).is_error());

  // Clean shutdown and restart from the data directory.
  int status = cluster.Kill(2, SIGTERM);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  cluster.Start(2);
  REQUIRE(cluster.WaitReady(2));
  REQUIRE(Cmd(cluster.client_port(2), {"GET", "key5"}).str == "value5");
}

TEST_CASE("memory storage: a node restarted empty is served by the others and repaired, a full "
          "node refuses writes and keeps serving") {
  {
    Cluster cluster(3, 3, 2, 2, "memory");
    cluster.StartAll();
    for (int i = 0; i < 20; ++i) {
      REQUIRE(Cmd(cluster.client_port(1), {"SET", absl::StrCat("key", i), absl::StrCat("v", i)})
                  .str == "OK");
    }
    // kill -9 loses everything node 3 held; it comes back as a new actor.
    cluster.Kill(3, SIGKILL);
    cluster.Start(3);
    REQUIRE(cluster.WaitReady(3));
    REQUIRE(WaitUntil(
        [&] {
          RespValue peers = Cmd(cluster.client_port(3), {"INFO", "peers"});
          return peers.str.find("peer:1,connected=1") != std::string::npos &&
                 peers.str.find("peer:2,connected=1") != std::string::npos;
        },
        std::chrono::milliseconds(8000)));
    // R = 2: its empty copy and one of the others' answer; read repair
    // writes the value back into it.
    for (int i = 0; i < 20; ++i) {
      REQUIRE(Cmd(cluster.client_port(3), {"GET", absl::StrCat("key", i)}).str ==
              absl::StrCat("v", i));
    }
    REQUIRE(WaitUntil([&] { return InfoField(cluster.client_port(3), "metrics",
                                             "read_repairs_sent") >= 20; },
                      std::chrono::milliseconds(8000)));
  }
  {
    Cluster one(1, 1, 1, 1, "memory");
    one.set_extra_args({"--memory-max-mb", "1"});
    one.StartAll();
    const std::string value(1000, 'x');
    auto c = Connect(one.client_port(1));
    int stored = 0;
    RespValue refused;
    for (int i = 0; i < 3000; ++i) {
      auto r = c->Command({"SET", absl::StrCat("big", i), value});
      REQUIRE(r.ok());
      if (r->is_error()) {
        refused = *r;
        break;
      }
      stored++;
    }
    INFO(refused.DebugString());
    REQUIRE(refused.is_error());
    CHECK(refused.str.find("memory engine full") != std::string::npos);
    CHECK(stored > 500);
    CHECK(stored < 1100);
    CHECK(Cmd(one.client_port(1), {"GET", "big0"}).str == value);
    CHECK(Cmd(one.client_port(1), {"GET", absl::StrCat("big", stored)}).type ==
          RespValue::Type::kNull);
    const long long held = InfoField(one.client_port(1), "node", "storage_bytes");
    CHECK(held > 1000 * 1000);
    CHECK(held <= 1 << 20);
    CHECK(InfoField(one.client_port(1), "node", "storage_bytes_max") == 1 << 20);
    REQUIRE(Cmd(one.client_port(1), {"DEL", "big0"}).integer == 1);
    CHECK(Cmd(one.client_port(1), {"PING"}).str == "PONG");
  }
}

TEST_CASE("kill -9 of a node during W=2 writes, then it restarts and receives its hints") {
  // Four nodes so that a stand-in exists for the dead node's replicas.
  Cluster cluster(4, 3, 2, 2);
  cluster.StartAll();
  int failures = 0;
  for (int i = 0; i < 80; ++i) {
    if (i == 20) cluster.Kill(4, SIGKILL);
    auto c = Connect(cluster.client_port(1 + i % 3));
    auto r = c->Command({"SET", absl::StrCat("k", i), absl::StrCat("v", i)});
    REQUIRE(r.ok());
    if (r->str != "OK") {
      ++failures;
      UNSCOPED_INFO("write " << i << ": " << r->DebugString());
    }
  }
  CHECK(failures == 0);
  long long hints = 0;
  for (NodeId id = 1; id <= 3; ++id) {
    hints += InfoField(cluster.client_port(id), "hints", "hints_stored");
  }
  REQUIRE(hints > 0);

  cluster.Start(4);
  REQUIRE(cluster.WaitReady(4));
  bool delivered = WaitUntil(
      [&] {
        long long held = 0, done = 0;
        for (NodeId id = 1; id <= 3; ++id) {
          held += InfoField(cluster.client_port(id), "hints", "hints_held");
          done += InfoField(cluster.client_port(id), "hints", "hints_delivered");
        }
        return held == 0 && done > 0;
      },
      std::chrono::milliseconds(20000));
  REQUIRE(delivered);
  REQUIRE(InfoField(cluster.client_port(4), "metrics", "replica_puts") > 0);
  for (int i = 0; i < 80; ++i) {
    RespValue r = Cmd(cluster.client_port(4), {"GET", absl::StrCat("k", i)});
    REQUIRE(r.str == absl::StrCat("v", i));
  }
}

TEST_CASE("buffered: every node killed with -9 mid-flush loses no acknowledged write") {
  // Paper 6.1: replicas buffer, and a writer thread writes the buffers out
  // while the nodes serve; the coordinator's own copy of each put is
  // written durably before the put is acknowledged. Killing every process
  // at once, wherever its writer is, must lose nothing acknowledged.
  Cluster cluster(3, 3, 2, 2, "buffered");
  cluster.StartAll();
  constexpr int kKeys = 150;
  for (int i = 0; i < kKeys; ++i) {
    RespValue r = Cmd(cluster.client_port(1 + i % 3),
                      {"SET", absl::StrCat("b", i), absl::StrCat("value", i)});
    INFO(r.DebugString());
    REQUIRE(r.str == "OK");
  }
  for (NodeId id = 1; id <= 3; ++id) cluster.Kill(id, SIGKILL);
  for (NodeId id = 1; id <= 3; ++id) cluster.Start(id);  // same ports and data
  for (NodeId id = 1; id <= 3; ++id) {
    REQUIRE(cluster.WaitReady(id));
    // Until the node reaches a peer again (a get needs R=2 answers).
    REQUIRE(WaitUntil(
        [&] {
          auto c = RespClient::Connect("127.0.0.1", cluster.client_port(id), absl::Seconds(2));
          if (!c.ok()) return false;
          auto r = (*c)->Command({"GET", absl::StrCat("b", id - 1)});
          return r.ok() && !r->is_error();
        },
        std::chrono::milliseconds(8000)));
  }
  for (int i = 0; i < kKeys; ++i) {
    // Through the node that coordinated the write: its durable copy is
    // one of the R=2 answers (a read quorum of the other two may not have
    // it yet; read repair and anti-entropy spread it).
    RespValue r = Cmd(cluster.client_port(1 + i % 3), {"GET", absl::StrCat("b", i)});
    INFO("key b" << i << ": " << r.DebugString());
    REQUIRE(r.str == absl::StrCat("value", i));
  }
}

TEST_CASE("garbage, truncated and oversize input on both ports leaves the node serving") {
  Cluster cluster(3, 3, 2, 2);
  cluster.StartAll();
  REQUIRE(Cmd(cluster.client_port(1), {"SET", "before", "1"}).str == "OK");
  std::mt19937_64 rng(42);
  auto random_bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    return s;
  };
  uint16_t peer_port = cluster.server(1).peer_port;

  // Peer port: garbage; a valid header with a truncated payload; an
  // oversize length; a hello with a wrong mac.
  {
    auto c = Connect(peer_port);
    (void)c->SendRaw(random_bytes(4096));
  }
  {
    auto c = Connect(peer_port);
    std::string frame = EncodeFrame(FrameType::kHello, random_bytes(100));
    (void)c->SendRaw(frame.substr(0, 40));
  }
  {
    auto c = Connect(peer_port);
    FrameHeader h = EncodeFrameHeader(FrameType::kData, 0);
    h[6] = h[7] = h[8] = h[9] = static_cast<char>(0xff);
    (void)c->SendRaw(std::string(h.data(), h.size()));
  }
  // Client port: protocol errors get a RESP error, then the connection closes.
  for (std::string bad : {std::string("*abc\r\n"), std::string("*1\r\n$99999999999\r\n"),
                          std::string("*1\r\n$3000000\r\n"), std::string("*2000000\r\n"),
                          std::string("*1\r\n$3\r\nGETXX\r\n")}) {
    auto c = Connect(cluster.client_port(1));
    REQUIRE(c->SendRaw(bad).ok());
    auto r = c->ReadReply();
    INFO(bad);
    REQUIRE(r.ok());
    REQUIRE(r->is_error());
    REQUIRE_FALSE(c->ReadReply().ok());  // closed
  }
  {
    auto c = Connect(cluster.client_port(2));
    (void)c->SendRaw(random_bytes(100000));
  }
  {
    auto c = Connect(cluster.client_port(3));
    (void)c->SendRaw("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nshort");  // truncated, then closed
  }
  {
    // Wrong arity and unknown commands are errors that keep the connection.
    auto c = Connect(cluster.client_port(1));
    REQUIRE(c->Command({"GET"})->is_error());
    REQUIRE(c->Command({"NOSUCH"})->is_error());
    REQUIRE(c->Command({"DPUT", "k", "zz", "v"})->is_error());
    REQUIRE(c->Command({"PING"})->str == "PONG");
  }
  for (NodeId id = 1; id <= 3; ++id) {
    REQUIRE(cluster.Alive(id));
    REQUIRE(Cmd(cluster.client_port(id), {"GET", "before"}).str == "1");
  }
  REQUIRE(Cmd(cluster.client_port(2), {"SET", "after", "2"}).str == "OK");
  REQUIRE(Cmd(cluster.client_port(3), {"GET", "after"}).str == "2");
  REQUIRE(InfoField(cluster.client_port(1), "transport", "frames_malformed") +
              InfoField(cluster.client_port(1), "transport", "handshakes_failed") >=
          3);
}

// The value of `field` in a line "prefix...,field=VALUE,..." of `text`.
std::string LineField(const std::string& text, const std::string& prefix, const std::string& field) {
  std::vector<std::string> lines = absl::StrSplit(text, absl::ByAnyChar("\r\n"), absl::SkipEmpty());
  for (const std::string& line : lines) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::vector<std::string> fields = absl::StrSplit(line, ',');
    for (const std::string& kv : fields) {
      if (kv.rfind(field + "=", 0) == 0) return kv.substr(field.size() + 1);
    }
  }
  return "";
}

TEST_CASE("a fourth node joins a running cluster under writes and takes over part of the ring") {
  Cluster cluster(3, 3, 2, 2);
  cluster.StartAll();
  // Members announce their peer addresses in their membership entries; a
  // joiner learns where to reach them from the seed's view.
  REQUIRE(WaitUntil(
      [&] {
        std::string node = Cmd(cluster.client_port(1), {"INFO", "node"}).str;
        for (NodeId id = 1; id <= 3; ++id) {
          if (LineField(node, absl::StrCat("member:", id, ","), "address").empty()) return false;
        }
        return true;
      },
      std::chrono::milliseconds(15000)));

  std::map<std::string, std::string> acknowledged;
  int write_counter = 0;
  auto write_some = [&](int count) {
    for (int i = 0; i < count; ++i, ++write_counter) {
      std::string key = absl::StrCat("key", write_counter);
      std::string value = absl::StrCat("value", write_counter);
      auto c = RespClient::Connect("127.0.0.1", cluster.client_port(1 + write_counter % 3),
                                   absl::Seconds(5));
      REQUIRE(c.ok());
      auto r = (*c)->Command({"SET", key, value});
      if (r.ok() && r->str == "OK") acknowledged[key] = value;
    }
  };
  write_some(300);
  REQUIRE(acknowledged.size() == 300);

  NodeId joiner = cluster.StartJoiner();
  REQUIRE(cluster.WaitReady(joiner));
  int status = -1;
  std::string status_out = cluster.Ctl(joiner, "status", &status);
  REQUIRE(status == 0);
  REQUIRE(status_out.find("member_status:none") != std::string::npos);

  std::string join_out = cluster.Ctl(
      joiner, absl::StrCat("join 1=127.0.0.1:", cluster.server(1).peer_port), &status);
  INFO(join_out << cluster.Log(joiner));
  REQUIRE(status == 0);
  REQUIRE(join_out == "OK\n");

  // Writes go on while the new node pulls its ranges and becomes up, until
  // every old member sees it up and it has no transfer left.
  bool joined = false;
  for (auto deadline = Clock::now() + std::chrono::seconds(30); Clock::now() < deadline;) {
    write_some(10);
    bool up_everywhere = true;
    for (NodeId id = 1; id <= 3; ++id) {
      std::string node = Cmd(cluster.client_port(id), {"INFO", "node"}).str;
      up_everywhere = up_everywhere && LineField(node, "member:4,", "status") == "up";
    }
    if (up_everywhere && InfoField(cluster.client_port(joiner), "node", "transfers_pending") == 0 &&
        InfoField(cluster.client_port(joiner), "metrics", "transfers_completed") > 0) {
      joined = true;
      break;
    }
  }
  INFO("joiner: " << Cmd(cluster.client_port(joiner), {"INFO"}).str);
  INFO("node 1: " << Cmd(cluster.client_port(1), {"INFO", "node"}).str);
  REQUIRE(joined);
  write_some(100);
  // Acknowledged writes during the join may have raced it; none are lost.
  CHECK(acknowledged.size() >= static_cast<size_t>(write_counter) * 9 / 10);
  REQUIRE(InfoField(cluster.client_port(joiner), "metrics", "transfer_keys_received") > 0);

  // Every node knows every other's address now, including the joiner's.
  for (NodeId id = 1; id <= 3; ++id) {
    std::string peers = Cmd(cluster.client_port(id), {"INFO", "peers"}).str;
    INFO(peers);
    REQUIRE(LineField(peers, "peer:4,", "address") ==
            absl::StrCat("127.0.0.1:", cluster.server(joiner).peer_port));
  }

  // The joiner owns part of the ring, as dynamoctl shows on an old member.
  std::string ring = cluster.Ctl(1, "ring", &status);
  INFO(ring);
  REQUIRE(status == 0);
  REQUIRE(ring.find("ring_members:4") != std::string::npos);
  double share = 0;
  REQUIRE(absl::SimpleAtod(LineField(ring, "ring_node:4,", "primary_share"), &share));
  REQUIRE(share > 0.1);

  // Every acknowledged key is readable, through every node. A read may be
  // refused (kUnavailable) while a busy machine makes the failure detector
  // suspect a peer; a client retries those, but a wrong value fails at once.
  size_t i = 0;
  for (const auto& [key, value] : acknowledged) {
    RespValue r;
    for (int attempt = 0; attempt < 20; ++attempt) {
      r = Cmd(cluster.client_port(1 + i % 4), {"GET", key});
      if (!r.is_error()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ++i;
    INFO(key << " " << r.DebugString());
    REQUIRE(r.str == value);
  }
  // The joiner pulled the old keys it now replicates (about 3/4 of them
  // with N=3 of 4 nodes) rather than waiting for new writes.
  REQUIRE(InfoField(cluster.client_port(joiner), "metrics", "transfer_keys_received") >=
          static_cast<long long>(300 / 4));

  // Removed again (dynamoctl remove, paper 4.8): the removal gossips to every
  // old member, which stops dialling the node (its transport forgets it).
  for (NodeId id = 1; id <= 3; ++id) {
    REQUIRE(InfoField(cluster.client_port(id), "transport", "peers_dialled") == 3);
  }
  std::string remove_out = cluster.Ctl(1, "remove 4", &status);
  INFO(remove_out);
  REQUIRE(status == 0);
  REQUIRE(WaitUntil(
      [&] {
        for (NodeId id = 1; id <= 3; ++id) {
          std::string node = Cmd(cluster.client_port(id), {"INFO", "node"}).str;
          if (LineField(node, "member:4,", "status") != "removed" ||
              InfoField(cluster.client_port(id), "transport", "peers_dialled") != 2) {
            return false;
          }
        }
        return true;
      },
      std::chrono::milliseconds(15000)));
}

TEST_CASE("a peer with the wrong secret is refused") {
  Cluster cluster(3, 2, 1, 1);
  cluster.server(3).secret = "not-the-secret";
  cluster.StartAll();
  // Nodes 1 and 2 connect to each other; nobody accepts node 3 and node 3
  // accepts nobody.
  REQUIRE(WaitUntil(
      [&] {
        return InfoField(cluster.client_port(1), "transport", "handshakes_failed") > 0 &&
               InfoField(cluster.client_port(3), "transport", "handshakes_failed") > 0;
      },
      std::chrono::milliseconds(5000)));
  RespValue peers1 = Cmd(cluster.client_port(1), {"INFO", "peers"});
  INFO(peers1.str);
  REQUIRE(peers1.str.find("peer:2,connected=1") != std::string::npos);
  REQUIRE(peers1.str.find("peer:3,connected=0") != std::string::npos);
  RespValue peers3 = Cmd(cluster.client_port(3), {"INFO", "peers"});
  REQUIRE(peers3.str.find("connected=1") == std::string::npos);
  REQUIRE(InfoField(cluster.client_port(1), "transport", "messages_received") >= 0);
  // Writes through node 3 cannot reach anyone: what it coordinates alone
  // never lands on nodes 1 and 2.
  (void)Cmd(cluster.client_port(3), {"DPUT", "intruder", "", "x"});
  REQUIRE(Cmd(cluster.client_port(1), {"DGET", "intruder"}).elements.size() <= 1);
}

}  // namespace
}  // namespace dynamo::internal

// Crash tests of LmdbEngine: a child process writes keys and reports each one
// once it is durable; the parent kills it with SIGKILL at a random (seeded)
// moment, reopens the environment and checks that every acknowledged write
// is there, exactly, and that the whole store reads back. In kSync a write
// is durable when Put() returns OK: the promise the coordinator relies on
// when it counts a replica's acknowledgement towards W. In kBuffered with a
// flush writer thread, the child starts background flushes as it goes, so
// kills land in the middle of the writer's transactions, and reports keys
// durable after each Flush().
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "storage/storage_test_util.h"

namespace dynamo::testing {
namespace {

constexpr int kRounds = 30;
constexpr int kKillDelayMsMin = 3;
constexpr int kKillDelayMsMax = 250;
constexpr uint32_t kKeysPerRoundMax = 1000000;

std::string KeyFor(int round, uint32_t i) {
  return "r" + std::to_string(round) + "-" + std::to_string(i);
}

// The exact sibling set written for a key: a version with a context, and for
// every third key a concurrent second version, so multi-sibling records are
// checked too.
SiblingSet SiblingsFor(int round, uint32_t i) {
  std::string value = KeyFor(round, i) + ":" + std::string((i % 7) * 61, 'x');
  SiblingSet s = {MakeVersion(1000 + round, 1 + i, Clock({{7, round + 1}, {9, i + 1}}), value)};
  if (i % 3 == 0) MergeVersion(s, MakeVersion(5, 1 + i, {}, "concurrent"));
  return s;
}

void Report(int report_fd, uint32_t i) {
  if (write(report_fd, &i, sizeof(i)) != static_cast<ssize_t>(sizeof(i))) _exit(4);
}

// The child: write until killed. Never returns.
[[noreturn]] void WriterChild(LmdbOptions options, int round, int report_fd) {
  std::optional<FlushWriterThread> writer;
  if (options.durability == LmdbOptions::Durability::kBuffered) {
    options.flush_writer = &writer.emplace();
  }
  auto engine = LmdbEngine::Open(options);
  if (!engine.ok()) _exit(2);
  uint32_t durable = 0;  // keys below it are reported
  for (uint32_t i = 0; i < kKeysPerRoundMax; ++i) {
    if (!(*engine)->Put(KeyFor(round, i), SiblingsFor(round, i), WriteOptions()).ok()) _exit(3);
    if (!writer.has_value()) {
      Report(report_fd, i);
      continue;
    }
    if (i % 97 == 0 && !(*engine)->StartFlush().ok()) _exit(5);
    if (i % 1000 == 999) {
      if (!(*engine)->Flush().ok()) _exit(6);
      for (; durable <= i; ++durable) Report(report_fd, durable);
    }
  }
  _exit(0);
}

// Reads whole 4-byte acknowledgements from `fd` into `acked`; returns false
// at end of file.
bool ReadAcks(int fd, std::string& partial, std::vector<uint32_t>& acked) {
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof(buf));
  if (n <= 0) return n < 0 && errno == EINTR;
  partial.append(buf, static_cast<size_t>(n));
  size_t whole = partial.size() / sizeof(uint32_t) * sizeof(uint32_t);
  for (size_t off = 0; off < whole; off += sizeof(uint32_t)) {
    uint32_t i;
    std::memcpy(&i, partial.data() + off, sizeof(i));
    acked.push_back(i);
  }
  partial.erase(0, whole);
  return true;
}

// Kills kRounds writer children and checks what each acknowledged.
void RunCrashRounds(LmdbOptions::Durability durability, uint64_t seed) {
  TempDir dir;
  LmdbOptions options;
  options.path = dir.path() + "/db";
  options.durability = durability;
  options.map_bytes_initial = size_t{1} << 20;  // small, so children also grow the map
  {
    auto engine = LmdbEngine::Open(options);  // create the environment up front
    REQUIRE(engine.ok());
  }
  std::mt19937_64 rng(seed);
  size_t total_acked = 0;
  for (int round = 0; round < kRounds; ++round) {
    const int delay_ms =
        kKillDelayMsMin + static_cast<int>(rng() % (kKillDelayMsMax - kKillDelayMsMin + 1));
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      close(fds[0]);
      WriterChild(options, round, fds[1]);
    }
    close(fds[1]);

    // Collect acknowledgements until the kill time, then kill and drain
    // what the child reported before it died.
    std::vector<uint32_t> acked;
    std::string partial;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms);
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now())
                      .count();
      if (left <= 0) break;
      pollfd pfd{fds[0], POLLIN, 0};
      int ready = poll(&pfd, 1, static_cast<int>(left));
      if (ready > 0 && !ReadAcks(fds[0], partial, acked)) break;  // child exited early
    }
    kill(pid, SIGKILL);
    int wstatus = 0;
    REQUIRE(waitpid(pid, &wstatus, 0) == pid);
    INFO("round " << round << ", kill after " << delay_ms << " ms, " << acked.size()
                  << " acknowledged before the kill");
    // Anything but our SIGKILL means the child failed on its own.
    REQUIRE(WIFSIGNALED(wstatus));
    REQUIRE(WTERMSIG(wstatus) == SIGKILL);
    while (ReadAcks(fds[0], partial, acked)) {
    }
    close(fds[0]);
    total_acked += acked.size();

    auto engine = LmdbEngine::Open(options);
    REQUIRE(engine.ok());
    for (uint32_t i : acked) {
      auto got = (*engine)->Get(KeyFor(round, i));
      REQUIRE(got.ok());
      SiblingSet want = SiblingsFor(round, i);
      REQUIRE(*got == want);
      for (size_t v = 0; v < want.size(); ++v) {
        CHECK((*got)[v].value == want[v].value);
        CHECK((*got)[v].context.entries() == want[v].context.entries());
        CHECK((*got)[v].dot.timestamp_us == want[v].dot.timestamp_us);
      }
    }
    // The whole store still reads back cleanly.
    std::string cursor;
    do {
      auto page = (*engine)->Scan(TokenRange{}, cursor, ScanLimits{5000, size_t{16} << 20});
      REQUIRE(page.ok());
      cursor = page->resume_cursor;
    } while (!cursor.empty());
  }
  INFO("acknowledged writes checked: " << total_acked);
  CHECK(total_acked > 0);
}

TEST_CASE("LmdbEngine keeps every acknowledged write across SIGKILL (seed 1234)",
          "[storage][lmdb][crash]") {
  RunCrashRounds(LmdbOptions::Durability::kSync, 1234);
}

TEST_CASE("LmdbEngine with a flush writer thread survives SIGKILL mid-flush (seed 4321)",
          "[storage][lmdb][crash]") {
  RunCrashRounds(LmdbOptions::Durability::kBuffered, 4321);
}

}  // namespace
}  // namespace dynamo::testing

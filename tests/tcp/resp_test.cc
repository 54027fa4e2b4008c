// The RESP2 parser treats client bytes as untrusted: partial input asks for
// more, malformed or oversize input is a protocol error, never a crash or an
// unbounded allocation; and the frame header parser and the server's
// ID=HOST:PORT lists likewise.
#include "tcp/resp.h"

#include <catch2/catch.hpp>
#include <random>

#include "tcp/frame.h"
#include "tcp/tcp_membership.h"

namespace dynamo::internal {
namespace {

TEST_CASE("RESP: whole, partial and pipelined commands") {
  RespLimits limits;
  std::string in = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
  size_t consumed = 0;
  std::vector<std::string_view> args;
  auto r = ParseRespCommand(in, limits, &consumed, &args);
  REQUIRE(r.ok());
  REQUIRE(*r);
  REQUIRE(args == std::vector<std::string_view>{"GET", "k"});
  REQUIRE(consumed == 20);
  // The arguments are views into the input, not copies.
  REQUIRE(args[1].data() == in.data() + 17);
  r = ParseRespCommand(std::string_view(in).substr(consumed), limits, &consumed, &args);
  REQUIRE(*r);
  REQUIRE(args == std::vector<std::string_view>{"PING"});
  for (size_t cut = 0; cut < 20; ++cut) {
    INFO(cut);
    auto partial = ParseRespCommand(std::string_view(in).substr(0, cut), limits, &consumed, &args);
    REQUIRE(partial.ok());
    REQUIRE_FALSE(*partial);
  }
  auto inl = ParseRespCommand("set  a   b\r\n", limits, &consumed, &args);
  REQUIRE(*inl);
  REQUIRE(args == std::vector<std::string_view>{"set", "a", "b"});
  REQUIRE(consumed == 12);
  // A blank line and a null array are whole commands with no arguments.
  REQUIRE(*ParseRespCommand("\r\n", limits, &consumed, &args));
  REQUIRE(args.empty());
  REQUIRE(consumed == 2);
  REQUIRE(*ParseRespCommand("*-1\r\n", limits, &consumed, &args));
  REQUIRE(args.empty());
  REQUIRE(consumed == 5);
  // An empty bulk string is an argument.
  REQUIRE(*ParseRespCommand("*2\r\n$3\r\nGET\r\n$0\r\n\r\n", limits, &consumed, &args));
  REQUIRE(args == std::vector<std::string_view>{"GET", ""});
}

TEST_CASE("RESP: malformed and oversize input is a protocol error") {
  RespLimits limits;
  limits.bulk_bytes_max = 100;
  limits.args_max = 4;
  size_t consumed = 0;
  std::vector<std::string_view> args;
  for (std::string bad : {"*x\r\n", "*5\r\n", "*1\r\n$101\r\n", "*1\r\n$-5\r\n", "*1\r\n+3\r\n",
                          "*1\r\n$3\r\nabcXY", "*99999999999999999999999\r\n",
                          "*1\r\n$999999999999999999999\r\n"}) {
    INFO(bad);
    REQUIRE_FALSE(ParseRespCommand(bad, limits, &consumed, &args).ok());
  }
  REQUIRE_FALSE(ParseRespCommand(std::string(70000, 'a'), limits, &consumed, &args).ok());
  // Random bytes: any answer but a crash.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string s(rng() % 64, '\0');
    for (char& c : s) c = "*$\r\n0123-abc"[rng() % 12];
    (void)ParseRespCommand(s, limits, &consumed, &args);
  }
}

TEST_CASE("RESP: replies and hex") {
  std::string out;
  AppendBulk(&out, "ab");
  AppendNull(&out);
  AppendInteger(&out, -3);
  AppendError(&out, "bad\r\nthing");
  REQUIRE(out == "$2\r\nab\r\n$-1\r\n:-3\r\n-bad  thing\r\n");
  REQUIRE(HexDecode(HexEncode(std::string("\x00\xff\x10", 3))) == std::string("\x00\xff\x10", 3));
  REQUIRE_FALSE(HexDecode("abc").has_value());
  REQUIRE_FALSE(HexDecode("zz").has_value());
}

TEST_CASE("frame headers: magic, version, type and length are checked") {
  FrameHeader h = EncodeFrameHeader(FrameType::kData, 5);
  REQUIRE(ParseFrameHeader(h, 10)->payload_bytes == 5);
  REQUIRE_FALSE(ParseFrameHeader(h, 4).ok());
  FrameHeader bad = h;
  bad[0] = 'X';
  REQUIRE_FALSE(ParseFrameHeader(bad, 10).ok());
  bad = h;
  bad[4] = 9;
  REQUIRE_FALSE(ParseFrameHeader(bad, 10).ok());
  bad = h;
  bad[5] = 0;
  REQUIRE_FALSE(ParseFrameHeader(bad, 10).ok());
  // The MAC binds the role, so a dialer's proof is no acceptor's proof.
  std::string n1 = RandomNonce(), n2 = RandomNonce();
  REQUIRE(HandshakeMac("s", 'C', "c", 1, 2, n1, n2) != HandshakeMac("s", 'S', "c", 1, 2, n1, n2));
  REQUIRE(HandshakeMac("s", 'C', "c", 1, 2, n1, n2) != HandshakeMac("t", 'C', "c", 1, 2, n1, n2));
  REQUIRE(MacEqual(HandshakeMac("s", 'C', "c", 1, 2, n1, n2), HandshakeMac("s", 'C', "c", 1, 2, n1, n2)));
}

}  // namespace
}  // namespace dynamo::internal

namespace dynamo::internal {
namespace {

TEST_CASE("member address lists: ID=HOST:PORT, checked") {
  auto ok = ParseMemberAddresses("1=127.0.0.1:7001,2=[::1]:7002,");
  REQUIRE(ok.ok());
  REQUIRE(ok->size() == 2);
  REQUIRE(ok->at(1).ToString() == "127.0.0.1:7001");
  REQUIRE(ok->at(2).host == "::1");
  REQUIRE(ParseMemberAddresses("")->empty());
  REQUIRE(absl::IsInvalidArgument(ParseMemberAddresses("1=127.0.0.1:7001,1=127.0.0.1:7002").status()));
  REQUIRE(absl::IsInvalidArgument(ParseMemberAddresses("0=127.0.0.1:7001").status()));
  REQUIRE(absl::IsInvalidArgument(ParseMemberAddresses("x=127.0.0.1:7001").status()));
  REQUIRE(absl::IsInvalidArgument(ParseMemberAddresses("1=127.0.0.1").status()));
  REQUIRE(absl::IsInvalidArgument(ParseMemberAddresses("1=127.0.0.1:70000").status()));
}

}  // namespace
}  // namespace dynamo::internal

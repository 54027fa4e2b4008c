// dynamoctl: operator commands for a dynamo-server cluster. It speaks RESP to
// one server's client port and prints the INFO sections the server keeps
// (dynamo-server's RespServer): members and their reachability as that node
// sees them, ring ownership per node, hints held and in flight.
//
//   dynamoctl [--host 127.0.0.1] [--port 6379] status|ring|hints|info [SECTION]
//
//   dynamoctl remove ID   removes node ID from the ring (explicit, paper 4.8)
//   dynamoctl leave       the node asked hands its data over and leaves
//   dynamoctl join SEED_ID=HOST:PORT
//                         the node asked (a dynamo-server started without
//                         --peers or --seeds, so outside any cluster) joins
//                         the cluster of the seed at that peer address; OK
//                         once the seed accepted. It then pulls the ranges
//                         it will own and becomes up (see `status`).
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "tcp/resp_client.h"

namespace {

constexpr const char* kUsage =
    "usage: dynamoctl [--host HOST] [--port PORT] status|ring|hints|info [SECTION]|remove ID|leave|\n"
    "                 join SEED_ID=HOST:PORT\n"
    "  status  this node, the members and whether each is connected and reachable\n"
    "  ring    ring ownership (tokens, primary and replica share) per node\n"
    "  hints   hinted writes held for unreachable nodes, deliveries in flight\n";

int Main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  std::vector<std::string> rest;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--host" || a == "--port") && i + 1 < argc) {
      std::string v = argv[++i];
      if (a == "--host") {
        host = v;
      } else if (uint32_t p = 0; absl::SimpleAtoi(v, &p) && p > 0 && p < 65536) {
        port = static_cast<uint16_t>(p);
      } else {
        std::cerr << "dynamoctl: --port: '" << v << "' is not a port\n";
        return 2;
      }
    } else if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    } else {
      rest.push_back(a);
    }
  }
  if (rest.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string& cmd = rest[0];
  if (cmd == "remove" || cmd == "leave" || cmd == "join") {
    std::vector<std::string> args;
    if (cmd == "remove" && rest.size() == 2) {
      args = {"DYNAMO.REMOVE", rest[1]};
    } else if (cmd == "leave" && rest.size() == 1) {
      args = {"DYNAMO.LEAVE"};
    } else if (cmd == "join" && rest.size() == 2) {
      std::vector<std::string> seed = absl::StrSplit(rest[1], absl::MaxSplits('=', 1));
      if (seed.size() != 2) {
        std::cerr << "dynamoctl: join: '" << rest[1] << "' is not SEED_ID=HOST:PORT\n";
        return 2;
      }
      args = {"DYNAMO.JOIN", seed[0], seed[1]};
    } else {
      std::cerr << "dynamoctl: usage: remove ID | leave | join SEED_ID=HOST:PORT\n";
      return 2;
    }
    // A join waits for the seed's answer (the node's join timeout, 5 s).
    auto client = dynamo::internal::RespClient::Connect(host, port, absl::Seconds(15));
    if (!client.ok()) {
      std::cerr << "dynamoctl: " << client.status().message() << "\n";
      return 1;
    }
    auto reply = (*client)->Command(args);
    if (!reply.ok() || reply->type == dynamo::internal::RespValue::Type::kError) {
      std::cerr << "dynamoctl: " << cmd << ": "
                << (reply.ok() ? reply->DebugString() : std::string(reply.status().message()))
                << "\n";
      return 1;
    }
    std::cout << "OK\n";
    return 0;
  }
  std::string section;
  if (cmd == "status") {
    section = "node";
  } else if (cmd == "ring") {
    section = "ring";
  } else if (cmd == "hints") {
    section = "hints";
  } else if (cmd == "info") {
    section = rest.size() > 1 ? rest[1] : "";
  } else {
    std::cerr << "dynamoctl: unknown command '" << cmd << "'\n" << kUsage;
    return 2;
  }
  auto client = dynamo::internal::RespClient::Connect(host, port, absl::Seconds(5));
  if (!client.ok()) {
    std::cerr << "dynamoctl: " << client.status().message() << "\n";
    return 1;
  }
  std::vector<std::string> sections = {section};
  if (cmd == "status") sections = {"node", "peers"};
  for (const std::string& s : sections) {
    std::vector<std::string> args = {"INFO"};
    if (!s.empty()) args.push_back(s);
    auto reply = (*client)->Command(args);
    if (!reply.ok() || reply->type != dynamo::internal::RespValue::Type::kBulk) {
      std::cerr << "dynamoctl: INFO " << s << ": "
                << (reply.ok() ? reply->DebugString() : std::string(reply.status().message()))
                << "\n";
      return 1;
    }
    std::vector<std::string> lines = absl::StrSplit(reply->str, "\r\n");
    for (const std::string& line : lines) std::cout << line << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }

// A minimal blocking RESP2 client over a POSIX socket with send/receive
// timeouts: what dynamoctl and the multi-process tests use to talk to
// dynamo-server's client port. Not a general Redis client: one request at a
// time, replies bounded by reply_bytes_max.
#ifndef DYNAMO_TCP_RESP_CLIENT_H_
#define DYNAMO_TCP_RESP_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace dynamo::internal {

struct RespValue {
  enum class Type { kSimple, kError, kInteger, kBulk, kNull, kArray };
  Type type = Type::kNull;
  std::string str;  // simple, error, bulk
  long long integer = 0;
  std::vector<RespValue> elements;
  bool is_error() const { return type == Type::kError; }
  std::string DebugString() const;
};

class RespClient {
 public:
  // Connects to a numeric IPv4 host. kUnavailable naming the address.
  static absl::StatusOr<std::unique_ptr<RespClient>> Connect(const std::string& host,
                                                             uint16_t port,
                                                             absl::Duration timeout);
  ~RespClient();
  RespClient(const RespClient&) = delete;
  RespClient& operator=(const RespClient&) = delete;

  // Sends one command (array of bulk strings) and reads one reply. A RESP
  // error reply is a RespValue of type kError, not a failed status; the
  // status fails for I/O errors, timeouts and malformed replies.
  absl::StatusOr<RespValue> Command(const std::vector<std::string>& args);
  // Writes raw bytes (for tests that send garbage).
  absl::Status SendRaw(std::string_view bytes);
  // Reads one reply.
  absl::StatusOr<RespValue> ReadReply();

  static constexpr size_t kReplyBytesMax = 64 << 20;

 private:
  explicit RespClient(int fd) : fd_(fd) {}
  absl::Status Fill();
  absl::StatusOr<std::string> Line();
  absl::StatusOr<RespValue> Parse(int depth);

  int fd_;
  std::string buf_;
  size_t pos_ = 0;
};

}  // namespace dynamo::internal

#endif  // DYNAMO_TCP_RESP_CLIENT_H_

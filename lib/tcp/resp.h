// RESP2, the Redis serialization protocol, as far as dynamo-server's client
// port needs it: an incremental parser for commands (arrays of bulk strings,
// and inline commands as typed into telnet) that treats its input as
// untrusted, and reply encoders. Every size the parser accepts is bounded by
// RespLimits and checked before anything is allocated.
#ifndef DYNAMO_TCP_RESP_H_
#define DYNAMO_TCP_RESP_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace dynamo::internal {

struct RespLimits {
  size_t args_max = 1024;                          // arguments of one command
  size_t bulk_bytes_max = (1 << 20) + (64 << 10);  // one argument (a value fits)
  size_t inline_bytes_max = 64 << 10;              // one inline command line
  // One whole command; the connection's read buffer is bounded by this.
  size_t command_bytes_max = (2 << 20);
};

// Parses one command from the front of `in` into `args`, views into `in`
// (valid while it is unchanged). Returns true and sets *consumed when a
// whole command was there (`args` is empty for a blank line or a null
// array: nothing to run), false when `in` holds only part of one (read
// more), or kInvalidArgument naming the protocol error (the connection
// should answer with it and close: its framing is lost).
absl::StatusOr<bool> ParseRespCommand(std::string_view in, const RespLimits& limits,
                                      size_t* consumed, std::vector<std::string_view>* args);

void AppendSimple(std::string* out, std::string_view s);  // +s
void AppendError(std::string* out, std::string_view s);   // -s (newlines replaced)
void AppendInteger(std::string* out, long long v);
void AppendBulk(std::string* out, std::string_view s);
void AppendNull(std::string* out);  // $-1
void AppendArrayHeader(std::string* out, size_t n);

std::string HexEncode(std::string_view bytes);
// std::nullopt for odd length or a non-hex digit.
std::optional<std::string> HexDecode(std::string_view hex);

}  // namespace dynamo::internal

#endif  // DYNAMO_TCP_RESP_H_

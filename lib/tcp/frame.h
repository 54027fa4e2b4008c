// The frame layer of the TCP transport (see dynamo/tcp/tcp_runtime.h): a
// 10-byte header (magic, version, type, big-endian payload length) in front of
// every payload, and the handshake payloads, encoded with the wire codec.
// Kept apart from the runtime so tests can build valid and invalid frames.
#ifndef DYNAMO_TCP_FRAME_H_
#define DYNAMO_TCP_FRAME_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dynamo/types.h"

namespace dynamo::internal {

inline constexpr char kFrameMagic[4] = {'D', 'Y', 'N', 'M'};
inline constexpr uint8_t kFrameVersion = 1;
inline constexpr size_t kFrameHeaderBytes = 10;
inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kMacBytes = 32;  // HMAC-SHA256
// Handshake frames are small; anything larger is an attack or a bug.
inline constexpr size_t kHandshakeFrameBytesMax = 1024;
inline constexpr size_t kClusterNameBytesMax = 256;

enum class FrameType : uint8_t {
  kChallenge = 1,  // acceptor -> dialer: cluster, acceptor id, nonce
  kHello = 2,      // dialer -> acceptor: cluster, dialer id, nonce, mac
  kWelcome = 3,    // acceptor -> dialer: mac
  kData = 4,       // one codec-encoded node message
};

using FrameHeader = std::array<char, kFrameHeaderBytes>;

FrameHeader EncodeFrameHeader(FrameType type, size_t payload_bytes);

struct ParsedHeader {
  FrameType type;
  size_t payload_bytes;
};
// kInvalidArgument naming the problem for a wrong magic, version or type, or
// a length over `payload_bytes_max`.
absl::StatusOr<ParsedHeader> ParseFrameHeader(const FrameHeader& header, size_t payload_bytes_max);

// A whole frame (header + payload), for tests and the handshake.
std::string EncodeFrame(FrameType type, std::string_view payload);

struct Challenge {
  std::string cluster;
  NodeId node = kNoNode;
  std::string nonce;
};
struct Hello {
  std::string cluster;
  NodeId node = kNoNode;
  std::string nonce;
  std::string mac;
};
std::string EncodeChallenge(const Challenge& c);
absl::StatusOr<Challenge> DecodeChallenge(std::string_view bytes);
std::string EncodeHello(const Hello& h);
absl::StatusOr<Hello> DecodeHello(std::string_view bytes);

// HMAC-SHA256 under `secret` over the handshake transcript; `role` is 'C'
// for the dialer's proof and 'S' for the acceptor's, so one cannot be
// replayed as the other.
std::string HandshakeMac(std::string_view secret, char role, std::string_view cluster,
                         NodeId acceptor, NodeId dialer, std::string_view acceptor_nonce,
                         std::string_view dialer_nonce);
// Constant-time comparison.
bool MacEqual(std::string_view a, std::string_view b);
// kNonceBytes bytes from OpenSSL's CSPRNG.
std::string RandomNonce();

}  // namespace dynamo::internal

#endif  // DYNAMO_TCP_FRAME_H_

#include "tcp/frame.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/codec.h"
#include "core/status_macros.h"

namespace dynamo::internal {

FrameHeader EncodeFrameHeader(FrameType type, size_t payload_bytes) {
  FrameHeader h;
  std::memcpy(h.data(), kFrameMagic, 4);
  h[4] = static_cast<char>(kFrameVersion);
  h[5] = static_cast<char>(type);
  uint32_t n = static_cast<uint32_t>(payload_bytes);
  h[6] = static_cast<char>(n >> 24);
  h[7] = static_cast<char>(n >> 16);
  h[8] = static_cast<char>(n >> 8);
  h[9] = static_cast<char>(n);
  return h;
}

absl::StatusOr<ParsedHeader> ParseFrameHeader(const FrameHeader& h, size_t payload_bytes_max) {
  if (std::memcmp(h.data(), kFrameMagic, 4) != 0) {
    return absl::InvalidArgumentError("frame: bad magic (not a libdynamo peer)");
  }
  if (static_cast<uint8_t>(h[4]) != kFrameVersion) {
    return absl::InvalidArgumentError(absl::StrCat("frame: unsupported version ",
                                                   static_cast<uint8_t>(h[4]), ", expected ",
                                                   kFrameVersion));
  }
  uint8_t type = static_cast<uint8_t>(h[5]);
  if (type < 1 || type > 4) {
    return absl::InvalidArgumentError(absl::StrCat("frame: unknown type ", type));
  }
  size_t n = (size_t{static_cast<uint8_t>(h[6])} << 24) | (size_t{static_cast<uint8_t>(h[7])} << 16) |
             (size_t{static_cast<uint8_t>(h[8])} << 8) | size_t{static_cast<uint8_t>(h[9])};
  if (n > payload_bytes_max) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame: payload of ", n, " bytes exceeds the maximum of ", payload_bytes_max));
  }
  return ParsedHeader{static_cast<FrameType>(type), n};
}

std::string EncodeFrame(FrameType type, std::string_view payload) {
  FrameHeader h = EncodeFrameHeader(type, payload.size());
  std::string out(h.data(), h.size());
  out.append(payload.data(), payload.size());
  return out;
}

std::string EncodeChallenge(const Challenge& c) {
  std::string out;
  Encoder e(&out);
  e.PutBytes(c.cluster);
  e.PutVarint(c.node);
  e.PutBytes(c.nonce);
  return out;
}

absl::StatusOr<Challenge> DecodeChallenge(std::string_view bytes) {
  Decoder d(bytes);
  Challenge c;
  DYNAMO_RETURN_IF_ERROR(d.GetString(&c.cluster, kClusterNameBytesMax, "challenge cluster"));
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&c.node));
  DYNAMO_RETURN_IF_ERROR(d.GetString(&c.nonce, kNonceBytes, "challenge nonce"));
  DYNAMO_RETURN_IF_ERROR(d.ExpectEnd("challenge"));
  if (c.nonce.size() != kNonceBytes) return absl::InvalidArgumentError("challenge: short nonce");
  return c;
}

std::string EncodeHello(const Hello& h) {
  std::string out;
  Encoder e(&out);
  e.PutBytes(h.cluster);
  e.PutVarint(h.node);
  e.PutBytes(h.nonce);
  e.PutBytes(h.mac);
  return out;
}

absl::StatusOr<Hello> DecodeHello(std::string_view bytes) {
  Decoder d(bytes);
  Hello h;
  DYNAMO_RETURN_IF_ERROR(d.GetString(&h.cluster, kClusterNameBytesMax, "hello cluster"));
  DYNAMO_RETURN_IF_ERROR(d.GetVarint(&h.node));
  DYNAMO_RETURN_IF_ERROR(d.GetString(&h.nonce, kNonceBytes, "hello nonce"));
  DYNAMO_RETURN_IF_ERROR(d.GetString(&h.mac, kMacBytes, "hello mac"));
  DYNAMO_RETURN_IF_ERROR(d.ExpectEnd("hello"));
  if (h.nonce.size() != kNonceBytes) return absl::InvalidArgumentError("hello: short nonce");
  return h;
}

std::string HandshakeMac(std::string_view secret, char role, std::string_view cluster,
                         NodeId acceptor, NodeId dialer, std::string_view acceptor_nonce,
                         std::string_view dialer_nonce) {
  std::string transcript = "libdynamo-handshake-v1";
  Encoder e(&transcript);
  e.PutU8(static_cast<uint8_t>(role));
  e.PutBytes(cluster);
  e.PutFixed64(acceptor);
  e.PutFixed64(dialer);
  e.PutBytes(acceptor_nonce);
  e.PutBytes(dialer_nonce);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(transcript.data()), transcript.size(), mac, &mac_len);
  return std::string(reinterpret_cast<const char*>(mac), mac_len);
}

bool MacEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string RandomNonce() {
  std::string nonce(kNonceBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), static_cast<int>(nonce.size())) !=
      1) {
    // The CSPRNG failing is not an operating error we can recover from: a
    // predictable nonce would make the handshake replayable.
    std::abort();
  }
  return nonce;
}

}  // namespace dynamo::internal

#include "tcp/resp_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tcp/resp.h"

namespace dynamo::internal {

std::string RespValue::DebugString() const {
  switch (type) {
    case Type::kSimple: return str;
    case Type::kError: return absl::StrCat("(error) ", str);
    case Type::kInteger: return absl::StrCat("(integer) ", integer);
    case Type::kBulk: return absl::StrCat("\"", str, "\"");
    case Type::kNull: return "(nil)";
    case Type::kArray: {
      std::vector<std::string> parts;
      for (const RespValue& e : elements) parts.push_back(e.DebugString());
      return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
    }
  }
  return "";
}

absl::StatusOr<std::unique_ptr<RespClient>> RespClient::Connect(const std::string& host,
                                                                uint16_t port,
                                                                absl::Duration timeout) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("'", host, "' is not an IPv4 address"));
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
  timeval tv = absl::ToTimeval(timeout);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", host, ":", port, ": ", std::strerror(err)));
  }
  return std::unique_ptr<RespClient>(new RespClient(fd));
}

RespClient::~RespClient() { close(fd_); }

absl::Status RespClient::SendRaw(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("send: ", std::strerror(errno)));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<RespValue> RespClient::Command(const std::vector<std::string>& args) {
  std::string out;
  AppendArrayHeader(&out, args.size());
  for (const std::string& a : args) AppendBulk(&out, a);
  absl::Status s = SendRaw(out);
  if (!s.ok()) return s;
  return ReadReply();
}

absl::Status RespClient::Fill() {
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }
  if (buf_.size() > kReplyBytesMax) return absl::ResourceExhaustedError("reply too large");
  char chunk[16384];
  for (;;) {
    ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
    if (n > 0) {
      buf_.append(chunk, static_cast<size_t>(n));
      return absl::OkStatus();
    }
    if (n == 0) return absl::UnavailableError("connection closed by the server");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return absl::DeadlineExceededError("no reply before the timeout");
    }
    return absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno)));
  }
}

absl::StatusOr<std::string> RespClient::Line() {
  for (;;) {
    size_t end = buf_.find("\r\n", pos_);
    if (end != std::string::npos) {
      std::string line = buf_.substr(pos_, end - pos_);
      pos_ = end + 2;
      return line;
    }
    absl::Status s = Fill();
    if (!s.ok()) return s;
  }
}

absl::StatusOr<RespValue> RespClient::ReadReply() { return Parse(0); }

absl::StatusOr<RespValue> RespClient::Parse(int depth) {
  if (depth > 8) return absl::InvalidArgumentError("reply nested too deeply");
  absl::StatusOr<std::string> line = Line();
  if (!line.ok()) return line.status();
  if (line->empty()) return absl::InvalidArgumentError("empty reply line");
  RespValue v;
  std::string rest = line->substr(1);
  long long n = 0;
  switch ((*line)[0]) {
    case '+': v.type = RespValue::Type::kSimple; v.str = rest; return v;
    case '-': v.type = RespValue::Type::kError; v.str = rest; return v;
    case ':':
      if (!absl::SimpleAtoi(rest, &n)) return absl::InvalidArgumentError("bad integer reply");
      v.type = RespValue::Type::kInteger;
      v.integer = n;
      return v;
    case '$': {
      if (!absl::SimpleAtoi(rest, &n) || n > static_cast<long long>(kReplyBytesMax)) {
        return absl::InvalidArgumentError("bad bulk length");
      }
      if (n < 0) return v;  // null
      while (buf_.size() - pos_ < static_cast<size_t>(n) + 2) {
        absl::Status s = Fill();
        if (!s.ok()) return s;
      }
      v.type = RespValue::Type::kBulk;
      v.str = buf_.substr(pos_, static_cast<size_t>(n));
      pos_ += static_cast<size_t>(n) + 2;
      return v;
    }
    case '*': {
      if (!absl::SimpleAtoi(rest, &n) || n > (1 << 20)) {
        return absl::InvalidArgumentError("bad array length");
      }
      if (n < 0) return v;
      v.type = RespValue::Type::kArray;
      for (long long i = 0; i < n; ++i) {
        absl::StatusOr<RespValue> e = Parse(depth + 1);
        if (!e.ok()) return e.status();
        v.elements.push_back(std::move(*e));
      }
      return v;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("unexpected reply type '", line->substr(0, 1), "'"));
  }
}

}  // namespace dynamo::internal

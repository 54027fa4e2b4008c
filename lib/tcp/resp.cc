#include "tcp/resp.h"

#include "absl/strings/str_cat.h"

namespace dynamo::internal {

namespace {

// Reads a decimal integer line ("123\r\n") starting at pos. Returns false on
// malformed input; sets *complete=false when the line has not fully arrived.
bool ReadIntLine(std::string_view in, size_t* pos, long long* v, bool* complete) {
  // One pass over the digits, then the CRLF right after them (four length
  // lines per pipelined SET; searching for the CRLF first read them twice).
  // A length line longer than 20 characters is garbage, not a partial line.
  constexpr size_t kLineMax = 20;
  const size_t start = *pos;
  size_t i = start;
  const bool negative = i < in.size() && in[i] == '-';
  if (negative) ++i;
  const size_t first_digit = i;
  long long value = 0;
  while (i < in.size() && in[i] >= '0' && in[i] <= '9') {
    if (value > (1LL << 50)) return false;
    value = value * 10 + (in[i] - '0');
    ++i;
  }
  if (i - start > kLineMax) return false;
  if (i == in.size()) {  // the line goes on in the next read
    *complete = false;
    return true;
  }
  if (i == first_digit || in[i] != '\r') return false;
  if (i + 1 == in.size()) {
    *complete = false;
    return true;
  }
  if (in[i + 1] != '\n') return false;
  *v = negative ? -value : value;
  *pos = i + 2;
  *complete = true;
  return true;
}

absl::Status Protocol(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("Protocol error: ", std::string(what)));
}

}  // namespace

absl::StatusOr<bool> ParseRespCommand(std::string_view in, const RespLimits& limits,
                                      size_t* consumed, std::vector<std::string_view>* args) {
  args->clear();
  if (in.empty()) return false;
  if (in[0] != '*') {
    // Inline command: space-separated words up to a newline.
    size_t end = in.find('\n');
    if (end == std::string_view::npos) {
      if (in.size() > limits.inline_bytes_max) return Protocol("too big inline request");
      return false;
    }
    if (end > limits.inline_bytes_max) return Protocol("too big inline request");
    std::string_view line = in.substr(0, end);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      size_t start = i;
      while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
      if (i > start) {
        if (args->size() >= limits.args_max) return Protocol("too many arguments");
        args->push_back(line.substr(start, i - start));
      }
    }
    *consumed = end + 1;
    return true;  // may have no arguments: a blank line, ignored by the caller
  }
  size_t pos = 1;
  long long count = 0;
  bool complete = false;
  if (!ReadIntLine(in, &pos, &count, &complete)) return Protocol("invalid multibulk length");
  if (!complete) return false;
  if (count < 0) {  // a null array: nothing to run
    *consumed = pos;
    return true;
  }
  if (static_cast<unsigned long long>(count) > limits.args_max) {
    return Protocol("invalid multibulk length");
  }
  // Views, not copies: a partial request costs no allocation however often
  // it is re-parsed, and a whole one none once `args` has grown.
  size_t total = 0;
  for (long long i = 0; i < count; ++i) {
    if (pos >= in.size()) return false;
    if (in[pos] != '$') {
      return Protocol(absl::StrCat("expected '$', got '", std::string(1, in[pos]), "'"));
    }
    ++pos;
    long long len = 0;
    if (!ReadIntLine(in, &pos, &len, &complete)) return Protocol("invalid bulk length");
    if (!complete) return false;
    if (len < 0 || static_cast<unsigned long long>(len) > limits.bulk_bytes_max) {
      return Protocol("invalid bulk length");
    }
    total += static_cast<size_t>(len);
    if (total > limits.command_bytes_max) return Protocol("request too large");
    if (in.size() - pos < static_cast<size_t>(len) + 2) return false;
    if (in[pos + len] != '\r' || in[pos + len + 1] != '\n') {
      return Protocol("bulk string not terminated by CRLF");
    }
    args->push_back(in.substr(pos, static_cast<size_t>(len)));
    pos += static_cast<size_t>(len) + 2;
  }
  *consumed = pos;
  return true;
}

void AppendSimple(std::string* out, std::string_view s) {
  out->push_back('+');
  out->append(s.data(), s.size());
  out->append("\r\n");
}

void AppendError(std::string* out, std::string_view s) {
  out->push_back('-');
  for (char c : s) out->push_back(c == '\r' || c == '\n' ? ' ' : c);
  out->append("\r\n");
}

void AppendInteger(std::string* out, long long v) { absl::StrAppend(out, ":", v, "\r\n"); }

void AppendBulk(std::string* out, std::string_view s) {
  // One allocation for a reply's value instead of a doubling per append
  // (libstdc++ still grows geometrically when a loop appends many).
  out->reserve(out->size() + s.size() + 24);
  absl::StrAppend(out, "$", s.size(), "\r\n");
  out->append(s.data(), s.size());
  out->append("\r\n");
}

void AppendNull(std::string* out) { out->append("$-1\r\n"); }

void AppendArrayHeader(std::string* out, size_t n) { absl::StrAppend(out, "*", n, "\r\n"); }

std::string HexEncode(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::optional<std::string> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi << 4 | lo));
  }
  return out;
}

}  // namespace dynamo::internal

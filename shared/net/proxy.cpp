// parse_proxy_header (see proxy.h): the PROXY protocol v1 line (§2.1) and v2 block (§2.2) of
// HAProxy's doc/proxy-protocol.txt. Invariants: `need` never reaches past the shortest valid
// header the bytes so far can begin, so a reader that reads exactly `need` never consumes a byte
// of the protocol that follows; addresses are checked in the family the header announces.
#include "shared/net/proxy.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "shared/ip.h"

namespace rg::net {
namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
// §2.1: the shortest complete lines once the protocol field is known; any valid header starting
// this way is at least this long, so reading up to it never reads past the header.
constexpr std::size_t kV1MinTcp4 = 32;  // "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n"
constexpr std::size_t kV1MinTcp6 = 22;  // "PROXY TCP6 :: :: 0 0\r\n"
// §2.2: the address block of TCP over IPv4 (2*4 + 2*2) and over IPv6 (2*16 + 2*2).
constexpr std::size_t kV2Inet4Block = 12;
constexpr std::size_t kV2Inet6Block = 36;
// §2.2: the 13th byte's high nibble is the version, its low nibble the command; the 14th byte's
// high nibble the address family, its low nibble the transport protocol.
constexpr unsigned kV2Version = 0x2;
constexpr unsigned kCmdLocal = 0x0, kCmdProxy = 0x1;
constexpr unsigned kAfUnspec = 0x0, kAfInet = 0x1, kAfInet6 = 0x2, kAfUnix = 0x3;
constexpr unsigned kProtoUnspec = 0x0, kProtoDgram = 0x2;

ProxyHeader invalid(int version, std::string_view reason) {
  ProxyHeader h;
  h.status = ProxyHeader::invalid;
  h.version = version;
  h.reason = reason;
  return h;
}

ProxyHeader incomplete(int version, std::size_t need) {
  ProxyHeader h;
  h.status = ProxyHeader::incomplete;
  h.version = version;
  h.need = std::max<std::size_t>(need, 1);
  return h;
}

// A text address in exactly the announced family (§2.1: "the advertised protocol family dictates
// what format to use"; inet_pton refuses IPv4 numbers with leading zeroes, as §2.1 wants).
bool text_address(std::string_view text, int family, std::string& out) {
  constexpr std::size_t kMax = 46;  // INET6_ADDRSTRLEN
  if (text.empty() || text.size() >= kMax || text.find('\0') != std::string_view::npos) return false;
  char buf[kMax] = {};
  std::memcpy(buf, text.data(), text.size());
  std::array<unsigned char, 16> raw{};
  if (inet_pton(family, buf, raw.data()) != 1) return false;
  out = canonical_ip(text).value_or(std::string());
  return !out.empty();
}

// §2.1: a decimal 0..65535 without leading zeroes.
bool text_port(std::string_view text, std::uint16_t& out) {
  if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) return false;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) return false;
  out = static_cast<std::uint16_t>(value);
  return true;
}

std::vector<std::string_view> split_spaces(std::string_view s) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto sp = s.find(' ');
    out.push_back(s.substr(0, sp));
    if (sp == std::string_view::npos) return out;
    s.remove_prefix(sp + 1);
  }
}

// §2.1, once the line (without its CRLF) is complete.
ProxyHeader parse_v1_line(std::string_view line) {
  const auto fields = split_spaces(line.substr(kV1Prefix.size()));
  ProxyHeader h;
  h.status = ProxyHeader::parsed;
  h.version = 1;
  h.length = line.size() + 2;
  if (fields[0] == "UNKNOWN") {
    // §2.1: "the receiver must ignore anything presented before the CRLF" and use the real
    // connection's parameters.
    h.local = true;
    return h;
  }
  int family = 0;
  if (fields[0] == "TCP4")
    family = AF_INET;
  else if (fields[0] == "TCP6")
    family = AF_INET6;
  else
    return invalid(1, "v1-bad-protocol");
  // Exactly one space between exactly five fields: an empty field is a doubled or trailing space.
  if (fields.size() != 5 || std::any_of(fields.begin(), fields.end(), [](auto f) { return f.empty(); }))
    return invalid(1, "v1-bad-fields");
  std::string destination;
  if (!text_address(fields[1], family, h.source_ip) || !text_address(fields[2], family, destination))
    return invalid(1, "v1-bad-address");
  std::uint16_t destination_port = 0;
  if (!text_port(fields[3], h.source_port) || !text_port(fields[4], destination_port)) return invalid(1, "v1-bad-port");
  return h;
}

ProxyHeader parse_v1(std::string_view bytes) {
  const std::string_view window = bytes.substr(0, kProxyV1MaxLength);
  const std::size_t prefix = std::min(window.size(), kV1Prefix.size());
  if (window.substr(0, prefix) != kV1Prefix.substr(0, prefix)) return invalid(1, "bad-signature");
  // §2.1: only CRLF ends the line; a lone CR or LF is not tolerated.
  const auto crlf = window.find("\r\n");
  const std::string_view line = window.substr(0, crlf);  // the whole window when no CRLF yet
  const auto stray = line.find_first_of("\r\n");
  const bool awaiting_lf = crlf == std::string_view::npos && stray + 1 == window.size() && window[stray] == '\r';
  if (stray != std::string_view::npos && !awaiting_lf) return invalid(1, "v1-bare-cr-lf");
  if (crlf != std::string_view::npos) return parse_v1_line(line);
  if (window.size() >= kProxyV1MaxLength) return invalid(1, "v1-too-long");
  std::size_t shortest = kProxyV1MinLength;
  if (window.starts_with("PROXY TCP4 ")) shortest = kV1MinTcp4;
  if (window.starts_with("PROXY TCP6 ")) shortest = kV1MinTcp6;
  return incomplete(1, shortest > window.size() ? shortest - window.size() : 1);
}

std::string binary_address(const unsigned char* p, int family) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, p, text, sizeof text);
  return canonical_ip(text).value_or(text);
}

ProxyHeader parse_v2(std::string_view bytes) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t signature = std::min(bytes.size(), kProxyV2Signature.size());
  if (bytes.substr(0, signature) != kProxyV2Signature.substr(0, signature)) return invalid(2, "bad-signature");
  if (bytes.size() > 12) {
    if ((b[12] >> 4) != kV2Version) return invalid(2, "v2-bad-version");
    // §2.2: "Receivers must drop connections presenting unexpected values here."
    if ((b[12] & 0xF) != kCmdLocal && (b[12] & 0xF) != kCmdProxy) return invalid(2, "v2-bad-command");
  }
  if (bytes.size() < kProxyV2FixedLength) return incomplete(2, kProxyV2FixedLength - bytes.size());
  const std::size_t payload = (std::size_t{b[14]} << 8) | b[15];
  if (payload > kProxyV2MaxPayload) return invalid(2, "v2-too-long");
  const std::size_t total = kProxyV2FixedLength + payload;
  if (bytes.size() < total) return incomplete(2, total - bytes.size());

  ProxyHeader h;
  h.status = ProxyHeader::parsed;
  h.version = 2;
  h.length = total;  // §2.2: "always exactly 16 + this value"; TLVs after the addresses are skipped
  // §2.2 LOCAL: "must use the real connection endpoints and discard the protocol block including
  // the family which is ignored".
  if ((b[12] & 0xF) == kCmdLocal) {
    h.local = true;
    return h;
  }
  const unsigned family = b[13] >> 4, protocol = b[13] & 0xF;
  if (family > kAfUnix || protocol > kProtoDgram) return invalid(2, "v2-bad-family");  // "must be rejected"
  // §2.2 UNSPEC family or transport: "free to accept the connection anyway and use the real
  // endpoint addresses"; the address bytes, if any, are ignored.
  if (family == kAfUnspec || protocol == kProtoUnspec) {
    h.local = true;
    return h;
  }
  if (family == kAfUnix) return invalid(2, "v2-unix-family");
  if (protocol == kProtoDgram) return invalid(2, "v2-datagram");
  const unsigned char* a = b + kProxyV2FixedLength;
  if (family == kAfInet) {
    if (payload < kV2Inet4Block) return invalid(2, "v2-short-address");
    h.source_ip = binary_address(a, AF_INET);
    h.source_port = static_cast<std::uint16_t>((a[8] << 8) | a[9]);
  } else {
    if (payload < kV2Inet6Block) return invalid(2, "v2-short-address");
    h.source_ip = binary_address(a, AF_INET6);
    h.source_port = static_cast<std::uint16_t>((a[32] << 8) | a[33]);
  }
  return h;
}

}  // namespace

ProxyHeader parse_proxy_header(std::string_view bytes) {
  // §2.2 "Identifying the protocol version": "\r" begins only v2's signature, "P" only v1's
  // "PROXY". The first byte is read alone, so a peer speaking something else is dropped at once.
  if (bytes.empty()) return incomplete(0, 1);
  if (bytes[0] == kV1Prefix[0]) return parse_v1(bytes);
  if (bytes[0] == kProxyV2Signature[0]) return parse_v2(bytes);
  return invalid(0, "not-a-proxy-header");
}

}  // namespace rg::net

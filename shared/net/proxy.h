// The PROXY protocol header a load balancer (HAProxy) prepends to a connection, versions 1 (text)
// and 2 (binary), per HAProxy's doc/proxy-protocol.txt ("the spec" below, sections cited).
// Pure: no I/O, no Boost; parse_proxy_header never reads past the header and says how many more
// bytes can be read without reading past it, which is how read_proxy_header (proxy_reader.h)
// consumes exactly the header and not one byte of the protocol that follows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace rg::net {

// §2.1: the longest v1 line a receiver must support, CRLF included ("PROXY UNKNOWN" with two
// full IPv6 addresses and ports); no CRLF within it makes the line invalid.
inline constexpr std::size_t kProxyV1MaxLength = 107;
// §2.1: the shortest v1 line, "PROXY UNKNOWN\r\n".
inline constexpr std::size_t kProxyV1MinLength = 15;
// §2.2: the fixed part of a v2 header (signature, version/command, family, length).
inline constexpr std::size_t kProxyV2FixedLength = 16;
// Our bound on a v2 header's length field (addresses plus TLVs, which are skipped, §2.2). The
// spec allows 65535; a sender's header is meant to fit one 536-byte segment (§2), HAProxy's TLVs
// (ALPN, authority, unique id, SSL) stay well under this, and it bounds what one peer makes us read.
inline constexpr std::size_t kProxyV2MaxPayload = 1024;
// §2.2: the 12-byte v2 signature (it holds a NUL: never a C string).
inline constexpr std::string_view kProxyV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};

struct ProxyHeader {
  enum Status {
    incomplete,  // a valid header may still follow: read `need` more bytes
    invalid,     // not a valid header: drop the connection (§2.1 "must be discarded", §2.2)
    parsed,      // a complete, valid header of `length` bytes
  } status = incomplete;
  std::size_t need = 0;    // incomplete: bytes that can be read without reading past the header (>= 1)
  std::size_t length = 0;  // parsed: bytes of the header, the protocol starts after them
  int version = 0;         // 1 or 2 once the first bytes tell (0 before)
  // parsed: true when the header carries no client address and the connection's own peer (the
  // balancer) stays the address: v1 UNKNOWN (§2.1), v2 LOCAL (health checks), v2 UNSPEC family or
  // transport (§2.2). False: source_ip/source_port are the client's.
  bool local = false;
  std::string source_ip;          // parsed, !local: canonical text (shared/ip.h; v4-mapped folds to v4)
  std::uint16_t source_port = 0;  // parsed, !local
  std::string_view reason;        // invalid: a log token ("bad-signature", "v1-bad-address", ...)
};

// Parses the header at the start of `bytes` (which may hold bytes after it: they are not looked
// at). Refused (invalid), besides malformed input: v2 AF_UNIX and DGRAM (UDP) addresses, which a
// TCP listener cannot use (the spec lets a receiver reject them; treating them as LOCAL would give
// the session the balancer's address and, with it, whatever trust that address has).
ProxyHeader parse_proxy_header(std::string_view bytes);

}  // namespace rg::net

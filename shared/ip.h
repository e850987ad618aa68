// IP address text forms shared by grants, limits and trusted networks.
// Canonical form: IPv4 dotted quad, IPv6 per RFC 5952 (inet_ntop); IPv4-mapped IPv6
// (::ffff:a.b.c.d) folds to a.b.c.d so one client never holds two grant keys.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rg {

// Canonical text of an IP address, or nullopt if `text` is not exactly one address
// (no zone ids, prefixes, brackets or whitespace).
std::optional<std::string> canonical_ip(std::string_view text);

// The key under which failed logins are counted: the address itself for IPv4,
// its /64 prefix for IPv6 (one host usually owns a whole /64).
std::string failure_net_key(const std::string& canonical);

struct Cidr {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};
  int prefix = 0;
};
// "a.b.c.d", "a.b.c.d/n", "v6", "v6/n"; nullopt when malformed or the prefix is out of range.
std::optional<Cidr> parse_cidr(std::string_view text);
bool cidr_contains(const Cidr& net, const std::string& canonical_ip);

}  // namespace rg

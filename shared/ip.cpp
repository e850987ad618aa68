// IP canonicalization and CIDR matching over inet_pton/inet_ntop; no DNS, no allocation
// beyond the result strings.
#include "shared/ip.h"

#include <arpa/inet.h>

#include <cstring>

namespace rg {
namespace {

constexpr size_t kMaxIpText = 64;

bool fits(std::string_view t) { return !t.empty() && t.size() < kMaxIpText && t.find('\0') == std::string_view::npos; }
bool parse_v4(std::string_view t, uint8_t out[4]) {
  if (!fits(t)) return false;
  char buf[kMaxIpText] = {};
  std::memcpy(buf, t.data(), t.size());
  return inet_pton(AF_INET, buf, out) == 1;
}
bool parse_v6(std::string_view t, uint8_t out[16]) {
  if (!fits(t)) return false;
  char buf[kMaxIpText] = {};
  std::memcpy(buf, t.data(), t.size());
  return inet_pton(AF_INET6, buf, out) == 1;
}
bool is_v4_mapped(const uint8_t a[16]) {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a, prefix, 12) == 0;
}
std::string v4_text(const uint8_t a[4]) {
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, a, buf, sizeof buf);
  return buf;
}
std::string v6_text(const uint8_t a[16]) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, a, buf, sizeof buf);
  return buf;
}

}  // namespace

std::optional<std::string> canonical_ip(std::string_view text) {
  uint8_t a[16];
  if (parse_v4(text, a)) return v4_text(a);
  if (parse_v6(text, a)) return is_v4_mapped(a) ? v4_text(a + 12) : v6_text(a);
  return std::nullopt;
}

std::string failure_net_key(const std::string& canonical) {
  uint8_t a[16];
  if (canonical.find(':') == std::string::npos || !parse_v6(canonical, a)) return canonical;
  std::memset(a + 8, 0, 8);
  return v6_text(a) + "/64";
}

std::optional<Cidr> parse_cidr(std::string_view text) {
  Cidr c;
  std::string_view addr = text;
  int max_prefix = 0;
  std::optional<int> prefix;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    std::string_view p = text.substr(slash + 1);
    if (p.empty() || p.size() > 3) return std::nullopt;
    int v = 0;
    for (char ch : p) {
      if (ch < '0' || ch > '9') return std::nullopt;
      v = v * 10 + (ch - '0');
    }
    prefix = v;
  }
  if (parse_v4(addr, c.bytes.data())) {
    max_prefix = 32;
  } else if (parse_v6(addr, c.bytes.data())) {
    c.v6 = true;
    max_prefix = 128;
  } else {
    return std::nullopt;
  }
  c.prefix = prefix.value_or(max_prefix);
  if (c.prefix < 0 || c.prefix > max_prefix) return std::nullopt;
  return c;
}

bool cidr_contains(const Cidr& net, const std::string& ip) {
  uint8_t a[16] = {};
  bool v6 = ip.find(':') != std::string::npos;
  if (v6 != net.v6) return false;
  if (!(v6 ? parse_v6(ip, a) : parse_v4(ip, a))) return false;
  int bits = net.prefix;
  for (int i = 0; bits > 0; ++i, bits -= 8) {
    uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((a[i] & mask) != (net.bytes[static_cast<size_t>(i)] & mask)) return false;
  }
  return true;
}

}  // namespace rg

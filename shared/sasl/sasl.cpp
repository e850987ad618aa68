// Mechanism lookup and APOP verification (see sasl.h). Lookup is case-insensitive and returns a
// fresh mechanism object every time; APOP compares digests in constant time.
// RFC 4954 §4 / RFC 5034 §4 (mechanism names), RFC 1939 §7 (APOP).
#include "shared/sasl/sasl.h"

#include "shared/sasl/codec.h"
#include "shared/sasl/mech.h"

namespace rg::sasl {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = char(x - 'a' + 'A');
    if (y >= 'a' && y <= 'z') y = char(y - 'a' + 'A');
    if (x != y) return false;
  }
  return true;
}

constexpr std::size_t kMd5HexLen = 32;

}  // namespace

std::unique_ptr<Mechanism> make_mechanism(std::string_view name, const Context& ctx) {
  if (iequals(name, "PLAIN")) return detail::make_plain();
  if (iequals(name, "LOGIN")) return detail::make_login();
  if (iequals(name, "CRAM-MD5")) return detail::make_cram_md5(ctx);
  if (iequals(name, "DIGEST-MD5")) return detail::make_digest_md5(ctx);
  return nullptr;
}

bool apop_verify(std::string_view timestamp, std::string_view secret, std::string_view client_hex_digest) {
  std::string input(timestamp);
  input += secret;
  const std::string expected = hex_lower(md5(input));
  // A CRAM-MD5 context (codec.h) is not the password APOP digests: the same work, then refused.
  if (cram_md5_context(secret)) return false;
  // Length is public (always 32); ct_equal_hex rejects any other length without early exit.
  return client_hex_digest.size() == kMd5HexLen && ct_equal_hex(expected, client_hex_digest);
}

}  // namespace rg::sasl

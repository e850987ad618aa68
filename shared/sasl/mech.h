// Internal to rg_sasl (and its tests): per-mechanism factories with test hooks, limits, and the
// DIGEST-MD5 parser and digest computation. Daemons use sasl.h only.
// RFC 4616 §2, RFC 2195 §2, RFC 2831 §2.1.2 / §7.1, draft-murchison-sasl-login.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "shared/sasl/sasl.h"

namespace rg::sasl::detail {

// Identity/password limits. RFC 4616 §2: servers MUST accept 255 octets for authzid/authcid/
// passwd; we accept longer passwords (passphrases) up to kMaxPasswordLen.
inline constexpr std::size_t kMaxIdentityLen = 255;
inline constexpr std::size_t kMaxPasswordLen = 1024;
// RFC 2831 §2.1.2: a digest-response is at most 4096 octets.
inline constexpr std::size_t kMaxDigestResponseLen = 4096;
// Directives in one digest-response (the RFC defines 12; unknown auth-params are ignored).
inline constexpr std::size_t kMaxDigestDirectives = 32;

std::unique_ptr<Mechanism> make_plain();
std::unique_ptr<Mechanism> make_login();
// fixed_challenge: test hook replacing the fresh msg-id challenge (RFC 2195 §2 example).
std::unique_ptr<Mechanism> make_cram_md5(const Context& ctx, std::optional<std::string> fixed_challenge = {});
// fixed_nonce: test hook replacing the random nonce (RFC 2831 §4 example).
std::unique_ptr<Mechanism> make_digest_md5(const Context& ctx, std::optional<std::string> fixed_nonce = {});

// A parsed RFC 2831 §2.1.2 digest-response (values unquoted/unescaped; absent = nullopt).
struct DigestResponse {
  std::optional<std::string> username, realm, nonce, cnonce, nc, qop, digest_uri, response, maxbuf, charset, cipher,
      authzid;
};
struct DigestParse {
  std::optional<DigestResponse> value;  // set on success
  std::string error;                    // set on failure
};
// Syntax only (§7.1 #rule list, quoted-string with backslash escapes, duplicate single-valued
// directives rejected, length/count limits); the mechanism checks the semantics.
DigestParse parse_digest_response(std::string_view in);

// Inputs to the RFC 2831 §2.1.2.1 response-value.
struct DigestInput {
  std::string_view username, realm, password, nonce, cnonce, nc, qop, digest_uri;
  std::optional<std::string_view> authzid;
};
// Lowercase hex response-value. a2_prefix "AUTHENTICATE" gives the client's "response";
// "" gives the server's "rspauth" (§2.1.3).
std::string digest_md5_response(const DigestInput& in, std::string_view a2_prefix);

}  // namespace rg::sasl::detail

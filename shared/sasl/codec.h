// Byte codecs and crypto primitives for SASL: strict base64, hex, MD5, HMAC-MD5, random challenges.
// Pure functions; digests are raw bytes unless the name says hex; comparisons are constant-time.
// RFC 4648 §3.5/§4, RFC 1321, RFC 2104, RFC 1939 §7 and RFC 2195 §2 (challenges).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace rg::sasl {

// RFC 4648 §4 base64 with '=' padding.
std::string base64_encode(std::string_view bytes);
// Strict RFC 4648 §4 decode: alphabet A-Za-z0-9+/ only, length a multiple of 4, '=' only as
// final padding, no whitespace, pad bits zero (§3.5); "" decodes to "". nullopt if invalid.
std::optional<std::string> base64_decode(std::string_view text);
// Lowercase hex of raw bytes.
std::string hex_lower(std::string_view bytes);
// Raw 16-byte MD5 digest (OpenSSL EVP).
std::string md5(std::string_view data);
// Raw 16-byte HMAC-MD5 (RFC 2104) of data under key (OpenSSL EVP_MAC).
std::string hmac_md5(std::string_view key, std::string_view data);
// A legacy secret (authdb UserAuth::legacy_secret) is the plaintext password, or a CRAM-MD5
// context imported from Dovecot's {CRAM-MD5} scheme: this prefix and 64 hex digits, HMAC-MD5's
// outer then inner MD5 state (A, B, C, D little-endian) after the padded key block, as Dovecot's
// hmac_md5_get_cram_context writes it. A context answers CRAM-MD5 only (RFC 2195 needs nothing
// but HMAC-MD5 of the challenge); APOP and DIGEST-MD5 need the plaintext and refuse it.
inline constexpr std::string_view kCramMd5ContextPrefix = "{CRAM-MD5}";
inline constexpr std::size_t kCramMd5ContextOctets = 32;
// The 32 raw octets of a secret in the context form above, else nullopt (a plaintext secret).
std::optional<std::string> cram_md5_context(std::string_view secret);
// The same HMAC-MD5 as hmac_md5(key, data), resumed from a key's CRAM-MD5 context (32 octets).
std::string hmac_md5_from_context(std::string_view context, std::string_view data);
// Constant-time equality (CRYPTO_memcmp); a length mismatch is false, contents never exit early.
bool ct_equal(std::string_view a, std::string_view b);
// Constant-time compare of our lowercase hex digest with a client's hex (either case).
bool ct_equal_hex(std::string_view expected_lower_hex, std::string_view client_hex);
// nbytes from RAND_bytes as lowercase hex (2*nbytes chars). Throws std::runtime_error if the
// RNG fails (a system fault, never a protocol outcome).
std::string random_hex(std::size_t nbytes);
// "<PID.COUNTER.UNIXTIME.RANDHEX@hostname>": unique per process (atomic counter) and
// unpredictable (8 random bytes) — the APOP timestamp (RFC 1939 §7) and CRAM-MD5 challenge
// (RFC 2195 §2).
std::string make_msgid_challenge(std::string_view hostname);

}  // namespace rg::sasl

// Byte codecs and crypto primitives (see codec.h). Every function is pure apart from the RNG and
// the challenge counter; OpenSSL handles are scoped with unique_ptr deleters.
// RFC 4648 §3.5/§4, RFC 1321, RFC 2104, RFC 1939 §7, RFC 2195 §2.
#include "shared/sasl/codec.h"

// MD5_CTX is OpenSSL's deprecated low-level API, and the only one that lets a digest resume from
// a saved state (EVP hides it); hmac_md5_from_context needs exactly that.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/md5.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <ctime>
#include <memory>
#include <stdexcept>

namespace rg::sasl {
namespace {

constexpr std::string_view kB64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kHexDigits = "0123456789abcdef";
constexpr std::size_t kMd5Size = 16;
constexpr std::size_t kChallengeRandomBytes = 8;  // Dovecot-style: pid, counter, time, random

// 6-bit value of a base64 alphabet character, or -1.
int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

}  // namespace

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const std::uint32_t v = std::uint32_t(std::uint8_t(in[i])) << 16 | std::uint32_t(std::uint8_t(in[i + 1])) << 8 |
                            std::uint8_t(in[i + 2]);
    out += kB64Alphabet[v >> 18 & 63];
    out += kB64Alphabet[v >> 12 & 63];
    out += kB64Alphabet[v >> 6 & 63];
    out += kB64Alphabet[v & 63];
  }
  const std::size_t rest = in.size() - i;
  if (rest > 0) {
    std::uint32_t v = std::uint32_t(std::uint8_t(in[i])) << 16;
    if (rest == 2) v |= std::uint32_t(std::uint8_t(in[i + 1])) << 8;
    out += kB64Alphabet[v >> 18 & 63];
    out += kB64Alphabet[v >> 12 & 63];
    out += rest == 2 ? kB64Alphabet[v >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (std::size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    const int a = b64_value(std::uint8_t(in[i]));
    const int b = b64_value(std::uint8_t(in[i + 1]));
    if (a < 0 || b < 0) return std::nullopt;
    const char c3 = in[i + 2], c4 = in[i + 3];
    int pad = 0;
    if (last && c4 == '=') pad = c3 == '=' ? 2 : 1;
    const int c = pad == 2 ? 0 : b64_value(std::uint8_t(c3));
    const int d = pad >= 1 ? 0 : b64_value(std::uint8_t(c4));
    if (c < 0 || d < 0) return std::nullopt;  // also rejects '=' anywhere but the end
    const std::uint32_t v = std::uint32_t(a) << 18 | std::uint32_t(b) << 12 | std::uint32_t(c) << 6 | std::uint32_t(d);
    if (pad == 2 && (v & 0xFFFF) != 0) return std::nullopt;  // non-zero pad bits, RFC 4648 §3.5
    if (pad == 1 && (v & 0xFF) != 0) return std::nullopt;
    out += char(v >> 16 & 0xFF);
    if (pad < 2) out += char(v >> 8 & 0xFF);
    if (pad < 1) out += char(v & 0xFF);
  }
  return out;
}

std::string hex_lower(std::string_view in) {
  std::string out;
  out.reserve(in.size() * 2);
  for (const char ch : in) {
    const auto b = std::uint8_t(ch);
    out += kHexDigits[b >> 4];
    out += kHexDigits[b & 15];
  }
  return out;
}

std::string md5(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_md5(), nullptr) != 1 || len != kMd5Size)
    throw std::runtime_error("EVP_Digest(MD5) failed");
  return std::string(reinterpret_cast<const char*>(out.data()), len);
}

std::string hmac_md5(std::string_view key, std::string_view data) {
  using MacPtr = std::unique_ptr<EVP_MAC, decltype(&EVP_MAC_free)>;
  using CtxPtr = std::unique_ptr<EVP_MAC_CTX, decltype(&EVP_MAC_CTX_free)>;
  MacPtr mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr), &EVP_MAC_free);
  if (!mac) throw std::runtime_error("EVP_MAC_fetch(HMAC) failed");
  CtxPtr ctx(EVP_MAC_CTX_new(mac.get()), &EVP_MAC_CTX_free);
  if (!ctx) throw std::runtime_error("EVP_MAC_CTX_new failed");
  char digest_name[] = "MD5";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string("digest", digest_name, 0),
      OSSL_PARAM_construct_end(),
  };
  static const unsigned char kEmptyKey[1] = {0};  // OpenSSL wants a non-null key pointer
  const unsigned char* k = key.empty() ? kEmptyKey : bytes(key);
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  std::size_t len = 0;
  if (EVP_MAC_init(ctx.get(), k, key.size(), params) != 1 || EVP_MAC_update(ctx.get(), bytes(data), data.size()) != 1 ||
      EVP_MAC_final(ctx.get(), out.data(), &len, out.size()) != 1 || len != kMd5Size)
    throw std::runtime_error("HMAC-MD5 failed");
  return std::string(reinterpret_cast<const char*>(out.data()), len);
}

std::optional<std::string> cram_md5_context(std::string_view secret) {
  if (!secret.starts_with(kCramMd5ContextPrefix)) return std::nullopt;
  const std::string_view hex = secret.substr(kCramMd5ContextPrefix.size());
  if (hex.size() != 2 * kCramMd5ContextOctets) return std::nullopt;
  std::string out;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const auto hi = kHexDigits.find(hex[i]), lo = kHexDigits.find(hex[i + 1]);  // lower case, as stored
    if (hi == kHexDigits.npos || lo == kHexDigits.npos) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

namespace {
constexpr unsigned kMd5BlockBits = 512;  // the padded key block the saved state has consumed

uint32_t le32(std::string_view b, std::size_t at) {
  return static_cast<uint32_t>(static_cast<unsigned char>(b[at])) |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 1])) << 8 |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 2])) << 16 |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 3])) << 24;
}

// MD5 of (the 64-octet block behind `state`) || data.
std::string md5_resumed(std::string_view state, std::string_view data) {
  MD5_CTX ctx;
  MD5_Init(&ctx);
  ctx.A = le32(state, 0);
  ctx.B = le32(state, 4);
  ctx.C = le32(state, 8);
  ctx.D = le32(state, 12);
  ctx.Nl = kMd5BlockBits;
  ctx.Nh = 0;
  std::array<unsigned char, kMd5Size> out{};
  if (MD5_Update(&ctx, data.data(), data.size()) != 1 || MD5_Final(out.data(), &ctx) != 1)
    throw std::runtime_error("MD5 failed");
  return std::string(reinterpret_cast<const char*>(out.data()), out.size());
}
}  // namespace

std::string hmac_md5_from_context(std::string_view context, std::string_view data) {
  if (context.size() != kCramMd5ContextOctets) throw std::invalid_argument("a CRAM-MD5 context is 32 octets");
  // RFC 2104 §2: H(K^opad || H(K^ipad || data)); the context holds both states after the key.
  return md5_resumed(context.substr(0, kMd5Size), md5_resumed(context.substr(kMd5Size), data));
}

bool ct_equal(std::string_view a, std::string_view b) {
  // On a length mismatch compare a with itself so the work does not depend on b's contents.
  const bool same_len = a.size() == b.size();
  const void* other = same_len ? b.data() : a.data();
  const int diff = a.empty() ? 0 : CRYPTO_memcmp(a.data(), other, a.size());
  return same_len && diff == 0;
}

bool ct_equal_hex(std::string_view expected_lower_hex, std::string_view client_hex) {
  std::string lowered(client_hex);  // the client's own input: not secret
  for (char& ch : lowered)
    if (ch >= 'A' && ch <= 'F') ch = char(ch - 'A' + 'a');
  return ct_equal(expected_lower_hex, lowered);
}

std::string random_hex(std::size_t nbytes) {
  std::string raw(nbytes, '\0');
  if (nbytes > 0 && RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(nbytes)) != 1)
    throw std::runtime_error("RAND_bytes failed");
  return hex_lower(raw);
}

std::string make_msgid_challenge(std::string_view hostname) {
  static std::atomic<std::uint64_t> counter{0};
  const std::uint64_t n = counter.fetch_add(1, std::memory_order_relaxed) + 1;
  std::string out = "<";
  out += std::to_string(static_cast<long long>(::getpid()));
  out += '.';
  out += std::to_string(n);
  out += '.';
  out += std::to_string(static_cast<long long>(std::time(nullptr)));
  out += '.';
  out += random_hex(kChallengeRandomBytes);
  out += '@';
  out += hostname;
  out += '>';
  return out;
}

}  // namespace rg::sasl

// libcrypt (crypt_r/crypt_gensalt_rn) wrappers; struct crypt_data is large, so it lives on
// the heap per call, which also makes every function safe on any worker thread.
#include "authdb/password.h"

#include <argon2.h>
#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>

#include "shared/sasl/codec.h"

namespace rg::authdb {
namespace {

// yescrypt with libcrypt's default cost (count 0 => "5", ~the shadow default).
constexpr const char* kHashPrefix = "$y$";

std::optional<std::string> crypt_string(std::string_view password, const std::string& setting) {
  if (password.size() > kMaxPasswordOctets || std::memchr(password.data(), '\0', password.size())) return std::nullopt;
  auto data = std::make_unique<crypt_data>();
  std::memset(data.get(), 0, sizeof(crypt_data));
  std::string pw(password);
  const char* out = crypt_r(pw.c_str(), setting.c_str(), data.get());
  // libcrypt returns a string starting with '*' (failure token) for invalid settings.
  if (out == nullptr || out[0] == '*') return std::nullopt;
  return std::string(out);
}

// Dovecot's salted digests: "{SCHEME}" + base64(digest || salt), digest = H(password || salt).
struct SaltedScheme {
  std::string_view prefix;
  const EVP_MD* (*md)();
};
constexpr SaltedScheme kSaltedSchemes[] = {{"{SSHA512}", EVP_sha512}, {"{SSHA256}", EVP_sha256}, {"{SSHA}", EVP_sha1}};
constexpr size_t kMaxSaltOctets = 256;  // Dovecot's are 4-16; a longer one is not a hash of ours

const SaltedScheme* salted_scheme(std::string_view hash) {
  for (const auto& s : kSaltedSchemes)
    if (hash.starts_with(s.prefix)) return &s;
  return nullptr;
}

// nullopt when `hash` is not a well-formed salted digest; else whether password matches.
std::optional<bool> verify_salted(const SaltedScheme& scheme, std::string_view hash, std::string_view password) {
  const auto raw = sasl::base64_decode(hash.substr(scheme.prefix.size()));
  const EVP_MD* md = scheme.md();
  const auto digest_len = static_cast<size_t>(EVP_MD_get_size(md));
  if (!raw || raw->size() <= digest_len || raw->size() - digest_len > kMaxSaltOctets) return std::nullopt;
  std::string input(password);
  input.append(*raw, digest_len);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(input.data(), input.size(), out, &len, md, nullptr) != 1 || len != digest_len) return std::nullopt;
  return CRYPTO_memcmp(out, raw->data(), digest_len) == 0;
}

// libargon2's encoded form; its verifier reads the parameters from the string.
std::optional<argon2_type> argon2_kind(std::string_view hash) {
  if (hash.starts_with("$argon2id$")) return Argon2_id;
  if (hash.starts_with("$argon2i$")) return Argon2_i;
  return std::nullopt;
}

// nullopt when `hash` does not decode; else whether password matches.
std::optional<bool> verify_argon2(argon2_type kind, std::string_view hash, std::string_view password) {
  if (password.size() > kMaxPasswordOctets) return false;
  const std::string encoded(hash);
  const int rc = argon2_verify(encoded.c_str(), password.data(), password.size(), kind);
  if (rc == ARGON2_OK) return true;
  if (rc == ARGON2_VERIFY_MISMATCH) return false;
  return std::nullopt;
}

const std::string& dummy_hash() {
  static std::once_flag once;
  static std::string hash;
  std::call_once(once, [] { hash = hash_password("relaygate dummy password for unknown users"); });
  return hash;
}

}  // namespace

std::string hash_password(std::string_view password) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn(kHashPrefix, 0, nullptr, 0, salt, sizeof salt) == nullptr)
    throw std::runtime_error("cannot generate a password salt (libcrypt without yescrypt?)");
  auto out = crypt_string(password, salt);
  if (!out) throw std::runtime_error("cannot hash the password");
  return *out;
}

bool verify_password(std::string_view hash, std::string_view password) {
  if (hash.empty() || hash.front() == '!' || hash.front() == '*') return false;  // locked
  if (const auto* scheme = salted_scheme(hash)) return verify_salted(*scheme, hash, password).value_or(false);
  if (const auto kind = argon2_kind(hash)) return verify_argon2(*kind, hash, password).value_or(false);
  auto out = crypt_string(password, std::string(hash));
  if (!out || out->size() != hash.size()) return false;
  return CRYPTO_memcmp(out->data(), hash.data(), hash.size()) == 0;
}

bool verify_dummy(std::string_view password) {
  verify_password(dummy_hash(), password);
  return false;
}

bool is_supported_hash(std::string_view hash) {
  if (hash.empty() || hash.size() > 512) return false;
  for (unsigned char c : hash)
    if (c <= ' ' || c >= 0x7f || c == ':') return false;
  if (const auto* scheme = salted_scheme(hash)) return verify_salted(*scheme, hash, "relaygate-probe").has_value();
  if (const auto kind = argon2_kind(hash)) return verify_argon2(*kind, hash, "relaygate-probe").has_value();
  if (hash.front() != '$') return false;
  auto out = crypt_string("relaygate-probe", std::string(hash));
  // crypt returns the setting-plus-hash; it must keep the stored salt/parameters.
  return out.has_value() && out->size() == hash.size() &&
         out->compare(0, hash.rfind('$'), hash.substr(0, hash.rfind('$'))) == 0;
}

}  // namespace rg::authdb

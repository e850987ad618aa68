// libcrypt (crypt_r/crypt_gensalt_rn) wrappers; struct crypt_data is large, so it lives on
// the heap per call, which also makes every function safe on any worker thread.
#include "authdb/password.h"

#include <crypt.h>
#include <openssl/crypto.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>

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
  auto out = crypt_string(password, std::string(hash));
  if (!out || out->size() != hash.size()) return false;
  return CRYPTO_memcmp(out->data(), hash.data(), hash.size()) == 0;
}

bool verify_dummy(std::string_view password) {
  verify_password(dummy_hash(), password);
  return false;
}

bool is_supported_hash(std::string_view hash) {
  if (hash.empty() || hash.front() != '$' || hash.size() > 512) return false;
  for (unsigned char c : hash)
    if (c <= ' ' || c >= 0x7f || c == ':') return false;
  auto out = crypt_string("relaygate-probe", std::string(hash));
  // crypt returns the setting-plus-hash; it must keep the stored salt/parameters.
  return out.has_value() && out->size() == hash.size() &&
         out->compare(0, hash.rfind('$'), hash.substr(0, hash.rfind('$'))) == 0;
}

}  // namespace rg::authdb

// TLS context construction and self-signed certificate generation with OpenSSL 3 APIs
// (RFC 3207, 2595, 8314; RFC 5280 certificate fields). Invariants: errors name the file and
// the problem; the private key file is written with mode 0600 and never world-readable.
#include "shared/net/tls.h"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>

#include "shared/fd.h"
#include "shared/fsutil.h"
#include "shared/log.h"

namespace rg::net {
namespace {

namespace fs = std::filesystem;
namespace ssl = boost::asio::ssl;

template <auto Free>
struct Deleter {
  template <class T>
  void operator()(T* p) const {
    Free(p);
  }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;

// The OpenSSL error queue as one string (and emptied), e.g. " (error:...:no start line)".
std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += out.empty() ? " (" : "; ";
    out += buf;
  }
  return out.empty() ? out : out + ")";
}

[[noreturn]] void fail(const std::string& what, const std::string& path, const std::string& why) {
  throw std::runtime_error(what + " '" + path + "': " + why + openssl_errors());
}

// Opens a file for reading, or throws naming it: missing, not a regular file, unreadable.
BioPtr open_pem(const std::string& what, const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(what, path, "missing");
  if (!fs::is_regular_file(path, ec)) fail(what, path, "not a regular file");
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    const int err = errno;
    ERR_clear_error();
    fail(what, path, std::string("unreadable: ") + std::strerror(err));
  }
  return bio;
}

// Never prompt on a terminal for a passphrase: encrypted keys are an error.
int no_passphrase(char*, int, int, void*) { return -1; }

void apply_common_options(SSL_CTX* ctx) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
}

std::string to_pem(auto write) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || write(bio.get()) != 1) throw std::runtime_error("PEM encoding failed" + openssl_errors());
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

// Writes path durably (fsutil::write_durably: temp file, fsync, rename, fsync the folder) with
// exactly the given mode. The caller holds the GenerationLock, so a "<path>.tmp" found here is
// the leftover of a generation cut short, not another writer's file.
void write_file(const fs::path& path, const std::string& data, mode_t mode) {
  const fs::path tmp = path.string() + ".tmp";
  ::unlink(tmp.c_str());
  fsutil::DurableOptions options;
  options.mode = mode;
  options.exact_mode = true;
  try {
    fsutil::write_durably(tmp, path, {data}, options);
  } catch (const std::system_error& e) {
    throw std::runtime_error("cannot write '" + path.string() + "': " + e.code().message());
  }
}

bool is_dns_name(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  for (unsigned char c : name)
    if (!std::isalnum(c) && c != '-' && c != '.') return false;
  return true;
}

void add_extension(X509* cert, X509V3_CTX* v3, int nid, const std::string& value) {
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, v3, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    throw std::runtime_error("certificate extension '" + value + "' failed" + openssl_errors());
}

}  // namespace

std::shared_ptr<ssl::context> make_server_tls_context(const std::string& cert_file, const std::string& key_file) {
  const std::string cert_what = "TLS certificate file", key_what = "TLS private key file";
  X509Ptr cert(PEM_read_bio_X509(open_pem(cert_what, cert_file).get(), nullptr, no_passphrase, nullptr));
  if (!cert) fail(cert_what, cert_file, "not a PEM certificate");
  KeyPtr key(PEM_read_bio_PrivateKey(open_pem(key_what, key_file).get(), nullptr, no_passphrase, nullptr));
  if (!key) fail(key_what, key_file, "not an unencrypted PEM private key");
  if (X509_check_private_key(cert.get(), key.get()) != 1)
    fail(key_what, key_file, "does not match the certificate in '" + cert_file + "'");

  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* c = ctx->native_handle();
  apply_common_options(c);
  SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(c, 0);  // no TLS 1.3 tickets either
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  if (SSL_CTX_set_cipher_list(c, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1)
    throw std::runtime_error("TLS cipher list rejected" + openssl_errors());
  if (SSL_CTX_use_certificate_chain_file(c, cert_file.c_str()) != 1)
    fail(cert_what, cert_file, "not a PEM certificate chain");
  if (SSL_CTX_use_PrivateKey(c, key.get()) != 1 || SSL_CTX_check_private_key(c) != 1)
    fail(key_what, key_file, "does not match the certificate in '" + cert_file + "'");
  return ctx;
}

namespace {
// Serializes first-start generation between processes (pop3d and smtpd start together): an
// flock on a file beside the key, released when the descriptor closes.
class GenerationLock {
 public:
  explicit GenerationLock(const fs::path& key_file) {
    std::error_code ec;
    if (key_file.has_parent_path()) fs::create_directories(key_file.parent_path(), ec);
    const fs::path lock = (key_file.has_parent_path() ? key_file.parent_path() : fs::path(".")) / ".relaygate-tls.lock";
    // Without a lock file (or a lock), generation still works, unserialized.
    guard_ = FlockGuard::lock(Fd(::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)));
  }

 private:
  FlockGuard guard_;
};
}  // namespace

void ensure_self_signed_certificate(const std::string& cert_file, const std::string& key_file,
                                    const std::string& hostname) {
  std::error_code ec;
  if (fs::exists(cert_file, ec) && fs::exists(key_file, ec)) return;
  GenerationLock lock{fs::path(key_file)};
  const bool have_cert = fs::exists(cert_file, ec), have_key = fs::exists(key_file, ec);
  if (have_cert && have_key) return;  // another process made them while we waited
  if (have_cert) throw std::runtime_error("TLS private key file '" + key_file + "': missing (the certificate exists)");
  if (have_key) throw std::runtime_error("TLS certificate file '" + cert_file + "': missing (the private key exists)");

  boost::system::error_code not_ip;
  boost::asio::ip::make_address(hostname, not_ip);
  if (not_ip && !is_dns_name(hostname))
    throw std::runtime_error("cannot make a certificate for invalid hostname '" + hostname + "'");
  std::string san = not_ip ? "DNS:" + hostname : "IP:" + hostname;
  for (const char* extra : {"DNS:localhost", "IP:127.0.0.1", "IP:::1"})
    if (san.rfind(extra, 0) != 0) san += std::string(",") + extra;

  KeyPtr key(EVP_EC_gen("P-256"));
  X509Ptr cert(X509_new());
  BnPtr serial(BN_new());
  if (!key || !cert || !serial || BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) ||
      X509_set_version(cert.get(), X509_VERSION_3) != 1 || !X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0) ||
      !X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 365 * 24 * 3600) ||
      X509_set_pubkey(cert.get(), key.get()) != 1)
    throw std::runtime_error("cannot generate a TLS key and certificate" + openssl_errors());
  X509_NAME* name = X509_get_subject_name(cert.get());
  const std::string cn = hostname.size() <= 64 ? hostname : "localhost";  // CN is at most 64
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0) != 1 ||
      X509_set_issuer_name(cert.get(), name) != 1)
    throw std::runtime_error("cannot set certificate name '" + cn + "'" + openssl_errors());
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, cert.get(), cert.get(), nullptr, nullptr, 0);
  add_extension(cert.get(), &v3, NID_basic_constraints, "critical,CA:FALSE");
  add_extension(cert.get(), &v3, NID_key_usage, "critical,digitalSignature");
  add_extension(cert.get(), &v3, NID_ext_key_usage, "serverAuth");
  add_extension(cert.get(), &v3, NID_subject_key_identifier, "hash");
  add_extension(cert.get(), &v3, NID_subject_alt_name, san);
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0)
    throw std::runtime_error("cannot sign the self-signed certificate" + openssl_errors());

  const std::string key_pem =
      to_pem([&](BIO* b) { return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr); });
  const std::string cert_pem = to_pem([&](BIO* b) { return PEM_write_bio_X509(b, cert.get()); });
  for (const auto& file : {fs::path(key_file), fs::path(cert_file)})
    if (file.has_parent_path()) {
      fs::create_directories(file.parent_path(), ec);
      if (ec) throw std::runtime_error("cannot create folder '" + file.parent_path().string() + "': " + ec.message());
    }
  write_file(key_file, key_pem, 0600);
  write_file(cert_file, cert_pem, 0644);
  // Issue 9: every generation is logged with the paths and the fingerprint clients will see.
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  std::string fingerprint;
  if (X509_digest(cert.get(), EVP_sha256(), md, &md_len) == 1)
    for (unsigned int i = 0; i < md_len; ++i) {
      char hex[4];
      std::snprintf(hex, sizeof hex, i ? ":%02X" : "%02X", md[i]);
      fingerprint += hex;
    }
  log::warn()
      .kv("event", "tls-generated")
      .kv("certificate", cert_file)
      .kv("private_key", key_file)
      .kv("sha256", fingerprint)
      .kv("hostname", hostname)
      .msg("self-signed certificate made: replace it with a real one");
}

std::shared_ptr<ssl::context> make_client_tls_context(const std::optional<std::string>& ca_file, bool verify) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  apply_common_options(ctx->native_handle());
  boost::system::error_code ec;
  if (!verify) {
    ctx->set_verify_mode(ssl::verify_none);
    return ctx;
  }
  ctx->set_verify_mode(ssl::verify_peer, ec);
  if (ca_file) {
    open_pem("TLS CA file", *ca_file);
    ctx->load_verify_file(*ca_file, ec);
    if (ec) fail("TLS CA file", *ca_file, "not a PEM certificate bundle: " + ec.message());
  } else {
    ctx->set_default_verify_paths(ec);
    if (ec) throw std::runtime_error("cannot load the system CA store: " + ec.message());
  }
  return ctx;
}

}  // namespace rg::net

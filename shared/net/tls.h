// TLS contexts for the daemons (server: STARTTLS RFC 3207, STLS RFC 2595, implicit RFC 8314)
// and for the smarthost client. Invariants: TLS >= 1.2, no compression, no renegotiation, no
// session tickets; every start-up problem throws std::runtime_error naming the file.
#pragma once

#include <memory>
#include <optional>
#include <string>

namespace boost::asio::ssl {
class context;
}

namespace rg::net {

// Loads a PEM certificate chain and its PEM private key (unencrypted). Throws
// std::runtime_error naming the file and the problem: missing, unreadable, not PEM, mismatch.
std::shared_ptr<boost::asio::ssl::context> make_server_tls_context(const std::string& cert_file,
                                                                   const std::string& key_file);

// If neither file exists, writes an EC P-256 key (mode 0600) and a 10-year self-signed
// certificate for hostname (+ localhost, 127.0.0.1, ::1), creating parent folders. Both exist:
// does nothing. Only one exists: throws std::runtime_error naming the missing one.
void ensure_self_signed_certificate(const std::string& cert_file, const std::string& key_file,
                                    const std::string& hostname);

// Client context: TLS >= 1.2; with verify, peers must chain to ca_file (or the system store)
// and match the name given to Stream::start_tls_client. Throws if ca_file cannot be loaded.
std::shared_ptr<boost::asio::ssl::context> make_client_tls_context(const std::optional<std::string>& ca_file,
                                                                   bool verify);

}  // namespace rg::net

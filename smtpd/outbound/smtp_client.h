// SMTP client to the smarthost (RFC 5321 client side) on Boost.Asio: connect, greeting, EHLO
// (HELO fallback), STARTTLS (RFC 3207) with certificate and host-name verification, AUTH PLAIN
// or LOGIN (RFC 4954, 4616), then transactions with PIPELINING (RFC 2920) when offered, SIZE
// (RFC 1870), BODY=8BITMIME (RFC 6152), per-recipient results, DATA in CRLF with dot-stuffing.
// Several transactions per connection; RSET after a failed one.
// Invariants: no network outcome throws (each becomes a Reply with `local` set); with tls
// "required" or "implicit" no MAIL is ever sent outside TLS; credentials are only sent over
// TLS (or with tls "none", the administrator's explicit choice) and never logged.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "shared/config.h"
#include "smtpd/outbound/smtp_client_wire.h"

namespace boost::asio::ssl {
class context;
}

namespace rg::net {
class Stream;
}

namespace rg::smtp::client {

struct Options {
  std::string host;
  uint16_t port = 25;
  config::TlsMode tls = config::TlsMode::Required;
  std::shared_ptr<boost::asio::ssl::context> tls_context;  // for every mode but "none"
  std::string helo;                                        // our host name
  std::string username;                                    // "" = no AUTH
  std::string password;
  std::chrono::seconds connect_timeout{30};
  std::chrono::seconds command_timeout{300};
  std::chrono::seconds data_timeout{600};
  ReplyLimits limits;
};

class Client {
 public:
  Client(boost::asio::any_io_executor executor, std::shared_ptr<const Options> options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Connects and gets ready for MAIL (greeting, EHLO, STARTTLS, AUTH). A positive reply when
  // ready; otherwise why not (the server's reply or a local one) and the connection is closed.
  boost::asio::awaitable<Reply> open();
  // One transaction on an open connection: one reply per recipient, in order — the RCPT
  // reply for a refused recipient, else the reply to MAIL, DATA or the final "." that decided.
  boost::asio::awaitable<std::vector<Reply>> send(const std::string& sender, const std::vector<std::string>& recipients,
                                                  std::shared_ptr<const std::string> message);
  // QUIT and close (bounded by the command timeout); idempotent.
  boost::asio::awaitable<void> quit();

  bool is_open() const;
  size_t transactions() const { return transactions_; }
  // "host[ip]:port" once connected, else "host:port".
  const std::string& relay() const { return relay_; }
  // "TLSv1.3 TLS_AES_256_GCM_SHA384" once TLS is up on this connection, or "none".
  const std::string& tls() const { return tls_; }

 private:
  boost::asio::awaitable<Reply> read_reply(std::chrono::seconds timeout, const char* stage);
  boost::asio::awaitable<Reply> command(const std::string& line, std::chrono::seconds timeout, const char* stage);
  boost::asio::awaitable<Reply> ehlo();
  boost::asio::awaitable<Reply> starttls();
  boost::asio::awaitable<Reply> authenticate();
  boost::asio::awaitable<Reply> send_data(const std::string& message);
  Reply lost(const char* stage, const std::string& why);
  void close();

  boost::asio::any_io_executor executor_;
  std::shared_ptr<const Options> opt_;
  std::unique_ptr<net::Stream> stream_;
  Capabilities caps_;
  std::string relay_;
  std::string tls_ = "none";
  size_t transactions_ = 0;
};

}  // namespace rg::smtp::client

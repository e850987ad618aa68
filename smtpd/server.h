// smtpd's shared state: config, authdb, TLS context, worker pool, limits, authenticator,
// spool and listeners, on the one I/O thread (DESIGN.md).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <vector>

#include "authdb/authdb.h"
#include "shared/auth.h"
#include "shared/config.h"
#include "shared/ip.h"
#include "shared/net/limits.h"
#include "shared/spool.h"

namespace boost::asio::ssl {
class context;
}

namespace rg::smtp {

class Server {
 public:
  Server(boost::asio::io_context& io, config::Config cfg);
  ~Server();
  void start();  // binds every listener (throws naming address:port) and accepts
  void stop();   // stops accepting

  boost::asio::io_context& io;
  config::Config cfg;
  authdb::AuthDb db;
  net::WorkerPool pool;
  std::shared_ptr<boost::asio::ssl::context> tls;
  net::ConnectionLimiter limiter;
  Authenticator auth;
  spool::Spool spool;
  std::vector<Cidr> trusted;
  uint64_t sessions_started = 0;

 private:
  boost::asio::awaitable<void> accept(size_t listener_index);
  std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> acceptors_;
};

}  // namespace rg::smtp

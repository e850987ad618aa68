// pop3d's shared state: the daemon skeleton (config, TLS context, limits, listeners, sessions)
// plus authdb, worker pool, authenticator and the status-file publisher. Lives on the one I/O
// thread (DESIGN.md); sessions reach it by reference and never outlive it.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "auth/authenticator.h"
#include "authdb/client.h"
#include "shared/config.h"
#include "shared/daemon_server.h"
#include "shared/net/limits.h"

namespace rg::pop3 {

// The skeleton (listeners, session registry, reload table) plus what only pop3d has. A session
// is drained by closing its connection (nothing is removed: deletions happen only at QUIT).
class Server : public daemon::ServerBase {
 public:
  Server(boost::asio::io_context& io, config::Config cfg);
  ~Server() override;

  // Every database call of the daemon, off the I/O thread, within database_timeout_ms.
  authdb::Client db;
  Authenticator auth;
  // The status file, rewritten after grant changes and every grants.status_interval_seconds.
  daemon::StatusPublisher status;

 private:
  boost::asio::awaitable<void> session(config::Listener listener, net::Stream stream,
                                       net::ConnectionLimiter::Token token) override;
  void on_start() override;  // the periodic purge + status rewrite
  void on_stop() override;
  boost::asio::awaitable<void> housekeeping();
  boost::asio::awaitable<void> rewrite_status();
  boost::asio::steady_timer timer_;
};

}  // namespace rg::pop3

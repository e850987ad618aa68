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
#include "authdb/authdb.h"
#include "shared/config.h"
#include "shared/daemon_server.h"
#include "shared/net/limits.h"

namespace rg::pop3 {

// Rewrites the status file after grant changes, coalescing bursts: at most one write in
// flight, and one more if anything changed meanwhile (the fsync runs on the worker pool).
class StatusPublisher {
 public:
  StatusPublisher(boost::asio::io_context& io, authdb::AuthDb& db, net::WorkerPool& pool, std::filesystem::path file,
                  std::filesystem::path spool_dir)
      : io_(io), db_(db), pool_(pool), file_(std::move(file)), spool_dir_(std::move(spool_dir)) {}
  void request();

 private:
  boost::asio::awaitable<void> run();
  boost::asio::io_context& io_;
  authdb::AuthDb& db_;
  net::WorkerPool& pool_;
  std::filesystem::path file_;
  std::filesystem::path spool_dir_;  // for the queue summary (count, oldest age)
  bool running_ = false;
  bool dirty_ = false;
};

// The skeleton (listeners, session registry, reload table) plus what only pop3d has. A session
// is drained by closing its connection (nothing is removed: deletions happen only at QUIT).
class Server : public daemon::ServerBase {
 public:
  Server(boost::asio::io_context& io, config::Config cfg);
  ~Server() override;

  authdb::AuthDb db;
  Authenticator auth;
  StatusPublisher status;

 private:
  boost::asio::awaitable<void> session(config::Listener listener, net::Stream stream,
                                       net::ConnectionLimiter::Token token) override;
  void on_start() override;  // the periodic purge + status rewrite
  void on_stop() override;
  boost::asio::awaitable<void> housekeeping();
  boost::asio::steady_timer timer_;
};

}  // namespace rg::pop3

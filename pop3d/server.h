// pop3d's shared state: config, authdb, TLS context, worker pool, connection limits, the
// status-file publisher and the listeners. Lives on the one I/O thread (DESIGN.md); sessions
// reach it by reference and never outlive it.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "auth/authenticator.h"
#include "authdb/authdb.h"
#include "shared/config.h"
#include "shared/net/limits.h"

namespace boost::asio::ssl {
class context;
}

namespace rg::net {
class Stream;
}

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

class Server {
 public:
  Server(boost::asio::io_context& io, config::Config cfg);
  ~Server();

  // Binds every listener (throws naming address:port) and starts accepting and the periodic
  // purge + status rewrite.
  void start();
  // Stops accepting and housekeeping and closes every session's connection, so each session
  // coroutine ends on its own (nothing is removed: deletions happen only at QUIT).
  void stop();
  bool stopping() const { return stopping_; }
  // SIGHUP: takes the TLS certificate and the settings that need no new sockets or files from
  // `fresh` (auth, grants, local domains, pop3d limits and timeouts); live sessions keep going.
  // Listener, database, Maildir and status-file changes are logged as needing a restart.
  // Throws (keeping everything as it was) if the new certificate cannot be loaded.
  void reload(config::Config fresh);
  // After stop(): true once every session has ended (daemon_main polls this to drain).
  // Sessions may still be waiting for a password hash or a failed-login delay.
  bool idle() const { return streams_.empty() && limiter.total() == 0; }

  // Sessions register their stream for their lifetime, so that stop() can close it.
  void track(net::Stream& stream) { streams_.insert(&stream); }
  void untrack(net::Stream& stream) { streams_.erase(&stream); }

  boost::asio::io_context& io;
  config::Config cfg;
  authdb::AuthDb db;
  net::WorkerPool pool;
  std::shared_ptr<boost::asio::ssl::context> tls;
  net::ConnectionLimiter limiter;
  Authenticator auth;
  StatusPublisher status;
  uint64_t sessions_started = 0;

 private:
  boost::asio::awaitable<void> accept(size_t listener_index);
  boost::asio::awaitable<void> housekeeping();
  std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> acceptors_;
  boost::asio::steady_timer timer_;
  std::unordered_set<net::Stream*> streams_;
  bool stopping_ = false;
};

}  // namespace rg::pop3

// smtpd's shared state: config, authdb, TLS context, worker pool, limits, authenticator,
// spool, the queue runner and listeners, on the one I/O thread (DESIGN.md).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <unordered_set>
#include <vector>

#include "auth/authenticator.h"
#include "authdb/authdb.h"
#include "shared/config.h"
#include "shared/ip.h"
#include "shared/net/limits.h"
#include "shared/spool.h"

namespace boost::asio::ssl {
class context;
}

namespace rg::smtp {

class QueueRunner;

// What the server asks of a live session when it stops (SIGTERM).
class Drainable {
 public:
  virtual ~Drainable() = default;
  // Ends the session now if it is between commands; one receiving or delivering a message
  // finishes that transaction first, then ends with 421 4.3.2.
  virtual void stop_if_idle() = 0;
};

class Server {
 public:
  Server(boost::asio::io_context& io, config::Config cfg);
  ~Server();
  void start();  // binds every listener (throws naming address:port) and accepts
  // Stops accepting and ends idle sessions; busy ones end after their transaction.
  void stop();
  bool stopping() const { return stopping_; }
  // After stop(): true once every session and every smarthost delivery has ended
  // (daemon_main polls this to drain).
  bool idle() const;
  // SIGHUP: new TLS context and settings from `fresh` for new sessions and commands; live
  // sessions go on. Throws (keeping everything as it was) if the certificate cannot be loaded.
  void reload(config::Config fresh);
  void track(Drainable* s) { sessions_.insert(s); }
  void untrack(Drainable* s) { sessions_.erase(s); }

  boost::asio::io_context& io;
  config::Config cfg;
  authdb::AuthDb db;
  // Password hashing: CPU-bound, one thread per core is all it can use.
  net::WorkerPool pool;
  // Message writes and their fsyncs: disk-bound, so many run at once (a disk completes
  // parallel fsyncs together); kept apart so an AUTH burst never delays a 250 after DATA.
  static constexpr size_t kDiskThreads = 16;
  net::WorkerPool disk_pool;
  std::shared_ptr<boost::asio::ssl::context> tls;
  net::ConnectionLimiter limiter;
  Authenticator auth;
  spool::Spool spool;
  std::vector<Cidr> trusted;
  uint64_t sessions_started = 0;
  // Delivery to the smarthost; null when none is configured (non-local RCPTs are refused).
  // Declared last: destroyed first, before the pool and the database it uses.
  std::unique_ptr<QueueRunner> queue;

 private:
  boost::asio::awaitable<void> accept(size_t listener_index);
  boost::asio::awaitable<void> report_status();  // systemd STATUS= counts once a minute
  std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> acceptors_;
  std::unordered_set<Drainable*> sessions_;
  bool stopping_ = false;
  std::unique_ptr<boost::asio::steady_timer> status_timer_;
};

}  // namespace rg::smtp

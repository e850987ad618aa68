// smtpd's shared state on the one I/O thread (DESIGN.md): the daemon skeleton (config, TLS
// context, limits, listeners, sessions) plus authdb, worker pools, authenticator, spool and the
// queue runner.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <vector>

#include "auth/authenticator.h"
#include "authdb/client.h"
#include "authdb/user_cache.h"
#include "shared/config.h"
#include "shared/daemon_server.h"
#include "shared/ip.h"
#include "shared/net/limits.h"
#include "shared/spool.h"

namespace rg::smtp {

class QueueRunner;

// Sessions are Drainable: SIGTERM ends idle ones, a transaction under way finishes first.
using daemon::Drainable;

// The skeleton (listeners, session registry, reload table) plus what only smtpd has.
class Server : public daemon::ServerBase {
 public:
  Server(boost::asio::io_context& io, config::Config cfg);
  ~Server() override;

  // Every database call of the daemon, off the I/O thread, within database_timeout_ms.
  authdb::Client db;
  // Positive RCPT lookups of local users (never AUTH): local mail flows while the database waits.
  authdb::UserCache rcpt_users;
  // Message writes and their fsyncs: disk-bound, so many run at once (a disk completes
  // parallel fsyncs together); kept apart so an AUTH burst never delays a 250 after DATA.
  static constexpr size_t kDiskThreads = 16;
  net::WorkerPool disk_pool;
  Authenticator auth;
  spool::Spool spool;
  std::vector<Cidr> trusted;
  // The status file: rewritten at start and once a minute, and whenever a change the queue
  // runner's watch on queue/ reports changes the queue summary (count, oldest) — not for every
  // envelope rewrite, so a delivery burst costs no extra fsync'd writes.
  daemon::StatusPublisher status;
  // Delivery to the smarthost; null when none is configured (non-local RCPTs are refused).
  // Declared last: destroyed first, before the pool and the database it uses.
  std::unique_ptr<QueueRunner> queue;

 private:
  boost::asio::awaitable<void> session(config::Listener listener, net::Stream stream,
                                       net::ConnectionLimiter::Token token) override;
  void on_start() override;  // recovers the spool (the queue runner) before any session can enqueue
  void on_stop() override;
  // Deliveries to the smarthost under way finish too (the runner stopped starting new ones).
  bool work_in_flight() const override;
  // New trusted networks; the queue runner takes new smarthost and retry settings.
  std::function<void()> prepare_reload(const config::Config& fresh) override;
  boost::asio::awaitable<void> report_status();  // systemd STATUS= counts once a minute
  // Lists the spool, stores its summary in authdb, then rewrites the status file from authdb.
  boost::asio::awaitable<void> rewrite_status();
  bool status_due_ = true;  // the next rewrite writes even if the queue summary is the same
  std::unique_ptr<boost::asio::steady_timer> status_timer_;
};

}  // namespace rg::smtp

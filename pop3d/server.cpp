// pop3d on the daemon skeleton: its profile and reload table; a timer that purges expired
// grants and rewrites the status file (DESIGN.md: at least every minute).
#include "pop3d/server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "authdb/status.h"
#include "pop3d/session.h"
#include "shared/daemon.h"
#include "shared/fsutil.h"
#include "shared/log.h"

namespace rg::pop3 {

namespace asio = boost::asio;

namespace {

using config::Config;

// SIGHUP, pop3d's own keys (after daemon::kSharedReloadKeys): the status file it writes needs a
// restart; its settings (and smtpd's, for the status file's view) apply to new sessions.
constexpr daemon::ReloadKey kReloadKeys[] = {
    {"status_file", daemon::differs<&Config::status_file>, nullptr},
    {"smtpd", nullptr, daemon::take<&Config::smtpd>},
};

const daemon::Profile kProfile{
    daemon::section<&Config::pop3d>("pop3d"),
    [](const Config&) { return std::string("-ERR [SYS/TEMP] Too many connections\r\n"); },
    false,
    kReloadKeys,
};

}  // namespace

void StatusPublisher::request() {
  if (running_) {
    dirty_ = true;
    return;
  }
  running_ = true;
  asio::co_spawn(io_, run(), log::OnCrash{"session-crashed"});
}

asio::awaitable<void> StatusPublisher::run() {
  do {
    dirty_ = false;
    try {
      const int64_t now = std::time(nullptr);
      // The grants are read here (authdb is the I/O thread's); listing the spool and the
      // fsync run on the pool. A named job, not a temporary: g++ 12 double-destroys prvalue
      // arguments to a coroutine inside co_await (the GCC PR 100611 family).
      auto job = [file = file_, spool = spool_dir_, grants = db_.list(now), now] {
        const spool::Summary queue = spool::Spool(spool).summary();
        authdb::write_status_file(file, grants, now, &queue);
      };
      co_await pool_.run(job);
    } catch (const std::exception& e) {
      log::error().kv("event", "status-write-failed").kv("file", file_.string()).kv("error", e.what());
    }
  } while (dirty_);
  running_ = false;
}

Server::Server(asio::io_context& io_ctx, Config config)
    : daemon::ServerBase(io_ctx, std::move(config), kProfile),
      db(cfg.database, authdb::OpenMode::Create),
      auth(db, pool, cfg),
      status(io_ctx, db, pool, cfg.status_file, cfg.spool_dir),
      timer_(io_ctx) {}

Server::~Server() = default;

asio::awaitable<void> Server::session(config::Listener listener, net::Stream stream,
                                      net::ConnectionLimiter::Token token) {
  return run_session(*this, std::move(listener), std::move(stream), std::move(token));
}

void Server::on_start() { spawn(housekeeping()); }

void Server::on_stop() { timer_.cancel(); }

asio::awaitable<void> Server::housekeeping() {
  for (;;) {
    try {
      int purged = db.purge_expired(std::time(nullptr));
      if (purged > 0) log::info().kv("event", "purge").kv("expired_grants", purged);
    } catch (const std::exception& e) {
      log::error().kv("event", "purge-failed").kv("error", e.what());
    }
    status.request();
    if (stopping()) co_return;
    // systemd's STATUS line (`systemctl status`): live counts, refreshed with the status file.
    daemon::notify("STATUS=sessions=" + std::to_string(limiter.total()) +
                   " logins_since_start=" + std::to_string(sessions_started));
    timer_.expires_after(std::chrono::seconds(cfg.grants.status_interval_seconds));
    auto [ec] = co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
  }
}

}  // namespace rg::pop3

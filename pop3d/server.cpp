// pop3d on the daemon skeleton: its profile and reload table; a timer that purges expired
// grants and rewrites the status file (DESIGN.md: at least every minute).
#include "pop3d/server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "authdb/backend.h"
#include "authdb/status_publish.h"
#include "pop3d/session.h"
#include "shared/daemon.h"
#include "shared/fsutil.h"
#include "shared/log.h"

namespace rg::pop3 {

namespace asio = boost::asio;

namespace {

using config::Config;

// SIGHUP, pop3d's own keys (after its section and daemon::kSharedReloadKeys).
constexpr daemon::ReloadKey kReloadKeys[] = {
    {"smtpd", nullptr, daemon::take<&Config::smtpd>},
    {"database_timeout_ms", daemon::differs<&Config::database_timeout_ms>, nullptr},  // the Client's threads hold it
};

const daemon::Profile kProfile{
    daemon::section<&Config::pop3d>("pop3d"),
    [](const Config&) { return std::string("-ERR [SYS/TEMP] Too many connections\r\n"); },
    false,
    kReloadKeys,
};

}  // namespace

Server::Server(asio::io_context& io_ctx, Config config)
    : daemon::ServerBase(io_ctx, std::move(config), kProfile),
      db(authdb::store_factory(cfg), cfg.database_name(), std::chrono::milliseconds(cfg.database_timeout_ms),
         authdb::Client::kReadThreads, authdb::write_threads(cfg)),
      auth(db, pool, cfg),
      status(io_ctx, cfg.status_file, [this] { return rewrite_status(); }),
      timer_(io_ctx) {}

Server::~Server() = default;

asio::awaitable<void> Server::session(config::Listener listener, net::Stream stream,
                                      net::ConnectionLimiter::Token token) {
  return run_session(*this, std::move(listener), std::move(stream), std::move(token));
}

asio::awaitable<void> Server::rewrite_status() { return authdb::rewrite_status(db, pool, status.file()); }

void Server::on_start() { spawn(housekeeping()); }

void Server::on_stop() { timer_.cancel(); }

asio::awaitable<void> Server::housekeeping() {
  for (;;) {
    co_await authdb::purge_expired_grants(db);
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

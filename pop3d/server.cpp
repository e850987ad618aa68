// pop3d server wiring: listeners → connection limits → one coroutine per session; a timer
// that purges expired grants and rewrites the status file (DESIGN.md: at least every minute).
#include "pop3d/server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <thread>

#include "authdb/status.h"
#include "pop3d/session.h"
#include "shared/daemon.h"
#include "shared/fsutil.h"
#include "shared/log.h"
#include "shared/net/listener.h"
#include "shared/net/stream.h"
#include "shared/net/tls.h"

namespace rg::pop3 {

namespace asio = boost::asio;

namespace {

size_t worker_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return std::clamp<size_t>(n, 2, 8);
}

void log_session_end(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    log::error().kv("event", "session-crashed").kv("error", ex.what());
  }
}

}  // namespace

void StatusPublisher::request() {
  if (running_) {
    dirty_ = true;
    return;
  }
  running_ = true;
  asio::co_spawn(io_, run(), [](std::exception_ptr e) { log_session_end(e); });
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

Server::Server(asio::io_context& io_ctx, config::Config config)
    : io(io_ctx),
      cfg(std::move(config)),
      db(cfg.database, authdb::OpenMode::Create),
      pool(worker_threads()),
      limiter(static_cast<size_t>(cfg.pop3d.max_connections), static_cast<size_t>(cfg.pop3d.max_connections_per_ip)),
      auth(db, pool, cfg),
      status(io_ctx, db, pool, cfg.status_file, cfg.spool_dir),
      timer_(io_ctx) {
  // Only where the config allows it (tls.generate_self_signed): a mistyped path is an error.
  if (cfg.tls.generate_self_signed)
    net::ensure_self_signed_certificate(cfg.tls.certificate, cfg.tls.private_key, cfg.hostname);
  tls = net::make_server_tls_context(cfg.tls.certificate, cfg.tls.private_key);
}

Server::~Server() = default;

void Server::start() {
  for (size_t i = 0; i < cfg.pop3d.listen.size(); ++i) {
    const auto& l = cfg.pop3d.listen[i];
    acceptors_.push_back(std::make_unique<asio::ip::tcp::acceptor>(net::open_acceptor(io, l.address, l.port)));
    log::info()
        .kv("event", "listening")
        .kv("address", l.address)
        .kv("port", acceptors_.back()->local_endpoint().port())
        .kv("tls", config::to_string(l.tls));
  }
  for (size_t i = 0; i < acceptors_.size(); ++i)
    asio::co_spawn(io, accept(i), [](std::exception_ptr e) { log_session_end(e); });
  asio::co_spawn(io, housekeeping(), [](std::exception_ptr e) { log_session_end(e); });
}

void Server::stop() {
  stopping_ = true;
  for (auto& a : acceptors_) {
    boost::system::error_code ec;
    a->close(ec);
  }
  timer_.cancel();
  // Closing cancels the pending read or write; each session then logs its end and returns.
  for (net::Stream* s : streams_) s->close();
}

namespace {
bool same_listeners(const std::vector<config::Listener>& a, const std::vector<config::Listener>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].address != b[i].address || a[i].port != b[i].port || a[i].tls != b[i].tls) return false;
  return true;
}
}  // namespace

void Server::reload(config::Config fresh) {
  if (fresh.tls.generate_self_signed)
    net::ensure_self_signed_certificate(fresh.tls.certificate, fresh.tls.private_key, fresh.hostname);
  auto fresh_tls = net::make_server_tls_context(fresh.tls.certificate, fresh.tls.private_key);
  // Sessions hold their own reference across a handshake, so the old context lives on until then.
  tls = std::move(fresh_tls);
  cfg.tls = fresh.tls;
  for (auto [key, same] : {std::pair{"pop3d.listen", same_listeners(cfg.pop3d.listen, fresh.pop3d.listen)},
                           std::pair{"database", cfg.database == fresh.database},
                           std::pair{"maildir_root", cfg.maildir_root == fresh.maildir_root},
                           std::pair{"status_file", cfg.status_file == fresh.status_file}})
    if (!same) log::warn().kv("event", "reload").kv("key", key).kv("outcome", "needs-restart");
  cfg.hostname = fresh.hostname;
  cfg.local_domains = fresh.local_domains;
  cfg.grants = fresh.grants;
  cfg.auth = fresh.auth;
  const auto listen = std::move(cfg.pop3d.listen);
  cfg.pop3d = fresh.pop3d;
  cfg.pop3d.listen = listen;
  cfg.smtpd = fresh.smtpd;
  limiter.set_limits(static_cast<size_t>(cfg.pop3d.max_connections),
                     static_cast<size_t>(cfg.pop3d.max_connections_per_ip));
  log::info().kv("event", "reload").kv("outcome", "ok").kv("config", cfg.file.string());
}

asio::awaitable<void> Server::accept(size_t index) {
  const config::Listener listener = cfg.pop3d.listen[index];
  for (;;) {
    auto [ec, socket] = co_await acceptors_[index]->async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || stopping_) co_return;
    if (ec) {
      log::warn().kv("event", "accept-failed").kv("error", ec.message());
      asio::steady_timer pause(io, std::chrono::milliseconds(100));  // EMFILE must not spin
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    net::Stream stream(std::move(socket));
    auto token = limiter.try_acquire(stream.remote_ip());
    if (!token) {
      log::warn().kv("event", "connection-refused").kv("ip", stream.remote_ip()).kv("reason", "connection-limit");
      if (listener.tls != config::TlsMode::Implicit) {
        boost::system::error_code wec;
        asio::write(stream.lowest_layer(), asio::buffer(std::string_view("-ERR [SYS/TEMP] Too many connections\r\n")),
                    wec);
      }
      stream.close();
      continue;
    }
    asio::co_spawn(io, run_session(*this, listener, std::move(stream), std::move(*token)),
                   [](std::exception_ptr e) { log_session_end(e); });
  }
}

asio::awaitable<void> Server::housekeeping() {
  for (;;) {
    try {
      int purged = db.purge_expired(std::time(nullptr));
      if (purged > 0) log::info().kv("event", "purge").kv("expired_grants", purged);
    } catch (const std::exception& e) {
      log::error().kv("event", "purge-failed").kv("error", e.what());
    }
    status.request();
    if (stopping_) co_return;
    // systemd's STATUS line (`systemctl status`): live counts, refreshed with the status file.
    daemon::notify("STATUS=sessions=" + std::to_string(limiter.total()) +
                   " logins_since_start=" + std::to_string(sessions_started));
    timer_.expires_after(std::chrono::seconds(cfg.grants.status_interval_seconds));
    auto [ec] = co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
  }
}

}  // namespace rg::pop3

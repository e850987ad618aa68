// smtpd wiring: listeners → connection limits (421 4.7.0) → one coroutine per session.
#include "smtpd/server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <thread>

#include "shared/daemon.h"
#include "shared/log.h"
#include "shared/net/listener.h"
#include "shared/net/stream.h"
#include "shared/net/tls.h"
#include "smtpd/outbound/queue_runner.h"
#include "smtpd/session.h"

namespace rg::smtp {

namespace asio = boost::asio;

namespace {
void log_crash(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    log::error().kv("event", "session-crashed").kv("error", ex.what());
  }
}
}  // namespace

Server::Server(asio::io_context& io_ctx, config::Config config)
    : io(io_ctx),
      cfg(std::move(config)),
      db(cfg.database, authdb::OpenMode::Create),
      pool(std::clamp<size_t>(std::thread::hardware_concurrency(), 2, 8)),
      disk_pool(kDiskThreads),
      limiter(static_cast<size_t>(cfg.smtpd.max_connections), static_cast<size_t>(cfg.smtpd.max_connections_per_ip)),
      auth(db, pool, cfg),
      spool(cfg.spool_dir) {
  // Only where the config allows it (tls.generate_self_signed): a mistyped path is an error.
  if (cfg.tls.generate_self_signed)
    net::ensure_self_signed_certificate(cfg.tls.certificate, cfg.tls.private_key, cfg.hostname);
  tls = net::make_server_tls_context(cfg.tls.certificate, cfg.tls.private_key);
  for (const auto& n : cfg.smtpd.trusted_networks) trusted.push_back(*parse_cidr(n));
  spool.ensure();
  if (cfg.smarthost.configured()) {
    queue = std::make_unique<QueueRunner>(io, cfg, db, disk_pool);
  } else if (auto left = spool.summary(); left.count > 0) {
    log::warn()
        .kv("event", "queue-not-delivered")
        .kv("queued", left.count)
        .kv("reason", "no smarthost configured: queued mail stays until one is");
  }
}

Server::~Server() = default;

void Server::start() {
  // Bind first: a port that is taken ends the start before the spool is touched (issue 9).
  for (const auto& l : cfg.smtpd.listen) {
    acceptors_.push_back(std::make_unique<asio::ip::tcp::acceptor>(net::open_acceptor(io, l.address, l.port)));
    log::info()
        .kv("event", "listening")
        .kv("address", l.address)
        .kv("port", acceptors_.back()->local_endpoint().port())
        .kv("mode", config::to_string(l.mode))
        .kv("tls", config::to_string(l.tls));
  }
  if (queue) queue->start();  // recovers the spool before any session can enqueue (accepting starts below)
  for (size_t i = 0; i < acceptors_.size(); ++i) asio::co_spawn(io, accept(i), log_crash);
  status_timer_ = std::make_unique<asio::steady_timer>(io);
  asio::co_spawn(io, report_status(), log_crash);
}

asio::awaitable<void> Server::report_status() {
  while (!stopping_) {
    std::string line = "STATUS=sessions=" + std::to_string(limiter.total()) +
                       " connections_since_start=" + std::to_string(sessions_started);
    try {
      line += " queued=" + std::to_string(spool.summary().count);
    } catch (const std::exception&) {
    }
    daemon::notify(line);
    status_timer_->expires_after(std::chrono::seconds(60));
    auto [ec] = co_await status_timer_->async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
  }
}

void Server::stop() {
  stopping_ = true;
  if (status_timer_) status_timer_->cancel();
  if (queue) queue->stop();
  for (auto& a : acceptors_) {
    boost::system::error_code ec;
    a->close(ec);
  }
  // Copy first: a session closed here may untrack itself before the loop ends.
  const std::vector<Drainable*> live(sessions_.begin(), sessions_.end());
  for (Drainable* d : live) d->stop_if_idle();
}

bool Server::idle() const {
  // Deliveries to the smarthost under way finish too (the runner stopped starting new ones).
  return sessions_.empty() && limiter.total() == 0 && !(queue && queue->active() > 0);
}

namespace {
bool same_listeners(const std::vector<config::Listener>& a, const std::vector<config::Listener>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].address != b[i].address || a[i].port != b[i].port || a[i].tls != b[i].tls || a[i].mode != b[i].mode)
      return false;
  return true;
}
}  // namespace

void Server::reload(config::Config fresh) {
  // Everything that can fail comes first, so a bad config or key leaves the old one in force.
  if (fresh.tls.generate_self_signed)
    net::ensure_self_signed_certificate(fresh.tls.certificate, fresh.tls.private_key, fresh.hostname);
  auto fresh_tls = net::make_server_tls_context(fresh.tls.certificate, fresh.tls.private_key);
  std::vector<Cidr> fresh_trusted;
  for (const auto& n : fresh.smtpd.trusted_networks) fresh_trusted.push_back(*parse_cidr(n));
  // The queue runner takes new smarthost and retry settings (it re-reads the password and CA
  // files, and throws before changing anything); adding or removing the smarthost needs a restart.
  const bool smarthost_now = static_cast<bool>(queue);
  if (smarthost_now && fresh.smarthost.configured()) queue->reload(fresh);
  const bool smarthost_same_presence = smarthost_now == fresh.smarthost.configured();
  if (!smarthost_same_presence) log::warn().kv("event", "reload").kv("key", "smarthost").kv("outcome", "needs-restart");
  for (auto [key, same] : {std::pair{"smtpd.listen", same_listeners(cfg.smtpd.listen, fresh.smtpd.listen)},
                           std::pair{"database", cfg.database == fresh.database},
                           std::pair{"maildir_root", cfg.maildir_root == fresh.maildir_root},
                           std::pair{"spool_dir", cfg.spool_dir == fresh.spool_dir}})
    if (!same) log::warn().kv("event", "reload").kv("key", key).kv("outcome", "needs-restart");
  // Sessions copy the context pointer before a handshake, so the old one lives until then.
  tls = std::move(fresh_tls);
  trusted = std::move(fresh_trusted);
  cfg.tls = fresh.tls;
  cfg.hostname = fresh.hostname;
  cfg.local_domains = fresh.local_domains;
  cfg.grants = fresh.grants;
  cfg.auth = fresh.auth;
  const auto listen = std::move(cfg.smtpd.listen);
  cfg.smtpd = fresh.smtpd;
  cfg.smtpd.listen = listen;
  cfg.run_as = fresh.run_as;
  if (smarthost_same_presence) {
    cfg.smarthost = fresh.smarthost;
    cfg.queue = fresh.queue;
  }
  limiter.set_limits(static_cast<size_t>(cfg.smtpd.max_connections),
                     static_cast<size_t>(cfg.smtpd.max_connections_per_ip));
  log::info().kv("event", "reload").kv("outcome", "ok").kv("config", cfg.file.string());
}

asio::awaitable<void> Server::accept(size_t index) {
  const config::Listener listener = cfg.smtpd.listen[index];
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
        std::string msg = "421 4.7.0 " + cfg.hostname + " Error: too many connections\r\n";
        asio::write(stream.lowest_layer(), asio::buffer(msg), wec);
      }
      stream.close();
      continue;
    }
    asio::co_spawn(io, run_session(*this, listener, std::move(stream), std::move(*token)), log_crash);
  }
}

}  // namespace rg::smtp

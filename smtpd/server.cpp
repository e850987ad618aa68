// smtpd wiring: listeners → connection limits (421 4.7.0) → one coroutine per session.
#include "smtpd/server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <thread>

#include "shared/log.h"
#include "shared/net/listener.h"
#include "shared/net/stream.h"
#include "shared/net/tls.h"
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
      limiter(static_cast<size_t>(cfg.smtpd.max_connections), static_cast<size_t>(cfg.smtpd.max_connections_per_ip)),
      auth(db, pool, cfg),
      spool(cfg.spool_dir) {
  net::ensure_self_signed_certificate(cfg.tls.certificate, cfg.tls.private_key, cfg.hostname);
  tls = net::make_server_tls_context(cfg.tls.certificate, cfg.tls.private_key);
  for (const auto& n : cfg.smtpd.trusted_networks) trusted.push_back(*parse_cidr(n));
  spool.ensure();
}

Server::~Server() = default;

void Server::start() {
  for (const auto& l : cfg.smtpd.listen) {
    acceptors_.push_back(std::make_unique<asio::ip::tcp::acceptor>(net::open_acceptor(io, l.address, l.port)));
    log::info().kv("event", "listening").kv("address", l.address).kv("port", acceptors_.back()->local_endpoint().port())
        .kv("mode", config::to_string(l.mode)).kv("tls", config::to_string(l.tls));
  }
  for (size_t i = 0; i < acceptors_.size(); ++i) asio::co_spawn(io, accept(i), log_crash);
}

void Server::stop() {
  for (auto& a : acceptors_) {
    boost::system::error_code ec;
    a->close(ec);
  }
}

asio::awaitable<void> Server::accept(size_t index) {
  const config::Listener listener = cfg.smtpd.listen[index];
  for (;;) {
    auto [ec, socket] = co_await acceptors_[index]->async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted) co_return;
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

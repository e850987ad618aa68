// smtpd on the daemon skeleton: its profile and reload table, the spool and the queue runner.
#include "smtpd/server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <utility>

#include "authdb/backend.h"
#include "authdb/status.h"
#include "shared/daemon.h"
#include "shared/log.h"
#include "smtpd/outbound/queue_runner.h"
#include "smtpd/session.h"

namespace rg::smtp {

namespace asio = boost::asio;
using config::Config;

namespace {

// Adding or removing the smarthost needs a restart (the queue runner exists or not); while it
// stays, its settings and the retry schedule are taken.
bool smarthost_presence_differs(const Config& running, const Config& fresh) {
  return running.smarthost.configured() != fresh.smarthost.configured();
}
void take_smarthost(Config& running, const Config& fresh) {
  running.smarthost = fresh.smarthost;
  running.queue = fresh.queue;
}

// SIGHUP, smtpd's own keys (after daemon::kSharedReloadKeys): the spool it holds needs a restart,
// its settings apply to new sessions and commands.
constexpr daemon::ReloadKey kReloadKeys[] = {
    {"smarthost", smarthost_presence_differs, take_smarthost},
    {"spool_dir", daemon::differs<&Config::spool_dir>, nullptr},
    {"database_timeout_ms", daemon::differs<&Config::database_timeout_ms>, nullptr},  // the Client's threads hold it
    {"run_as", nullptr, daemon::take<&Config::run_as>},
};

const daemon::Profile kProfile{
    daemon::section<&Config::smtpd>("smtpd"),
    [](const Config& c) { return "421 4.7.0 " + c.hostname + " Error: too many connections\r\n"; },
    true,
    kReloadKeys,
};

std::vector<Cidr> parse_trusted(const Config& c) {
  std::vector<Cidr> out;
  for (const auto& n : c.smtpd.trusted_networks) out.push_back(*parse_cidr(n));
  return out;
}

}  // namespace

Server::Server(asio::io_context& io_ctx, Config config)
    : daemon::ServerBase(io_ctx, std::move(config), kProfile),
      db(authdb::store_factory(cfg), cfg.database_name(), std::chrono::milliseconds(cfg.database_timeout_ms),
         authdb::Client::kReadThreads, authdb::write_threads(cfg)),
      disk_pool(kDiskThreads),
      auth(db, pool, cfg),
      spool(cfg.spool_dir),
      trusted(parse_trusted(cfg)),
      status(io_ctx, cfg.status_file, [this] { return rewrite_status(); }) {
  spool.ensure();
  if (cfg.smarthost.configured()) {
    queue = std::make_unique<QueueRunner>(io, cfg, db, disk_pool);
    queue->on_change = [this] { status.request(); };
  } else if (auto left = spool.summary(); left.count > 0) {
    log::warn()
        .kv("event", "queue-not-delivered")
        .kv("queued", left.count)
        .kv("reason", "no smarthost configured: queued mail stays until one is");
  }
}

Server::~Server() = default;

asio::awaitable<void> Server::session(config::Listener listener, net::Stream stream,
                                      net::ConnectionLimiter::Token token) {
  return run_session(*this, std::move(listener), std::move(stream), std::move(token));
}

void Server::on_start() {
  if (queue) queue->start();  // accepting starts after this
  status_timer_ = std::make_unique<asio::steady_timer>(io);
  spawn(report_status());
}

asio::awaitable<void> Server::rewrite_status() {
  // Listing the spool and the fsync run on the disk pool, authdb on its write lane (the summary
  // and the snapshot in one job). Named jobs, not temporaries: g++ 12 double-destroys prvalue
  // arguments to a coroutine inside co_await.
  auto list = [s = spool] { return s.summary(); };
  const spool::Summary queued = co_await disk_pool.run(list);
  const authdb::QueueSummary summary{static_cast<int64_t>(queued.count), queued.oldest_created_at};
  const bool due = std::exchange(status_due_, false);
  auto store = [summary, due, now = static_cast<int64_t>(std::time(nullptr))](
                   authdb::Store& s) -> std::optional<authdb::StatusSnapshot> {
    if (s.queue_summary() != summary)
      s.set_queue_summary(summary);
    else if (!due)
      return std::nullopt;  // a queue change the file does not show (an attempt recorded, a hold)
    return authdb::read_status(s, now);
  };
  std::optional<authdb::StatusSnapshot> snapshot = co_await db.run(authdb::Lane::Write, "write queue summary", store);
  if (!snapshot) co_return;
  auto write = [file = status.file(), snap = std::move(*snapshot)] { authdb::write_status_file(file, snap); };
  co_await disk_pool.run(write);
}

asio::awaitable<void> Server::report_status() {
  while (!stopping()) {
    std::string line = "STATUS=sessions=" + std::to_string(limiter.total()) +
                       " connections_since_start=" + std::to_string(sessions_started);
    try {
      line += " queued=" + std::to_string(spool.summary().count);
    } catch (const std::exception&) {
    }
    daemon::notify(line);
    status_due_ = true;  // generated_at, and grants expired since, at least once a minute
    status.request();
    status_timer_->expires_after(std::chrono::seconds(60));
    auto [ec] = co_await status_timer_->async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
  }
}

void Server::on_stop() {
  if (status_timer_) status_timer_->cancel();
  if (queue) queue->stop();
}

bool Server::work_in_flight() const { return queue && queue->active() > 0; }

std::function<void()> Server::prepare_reload(const Config& fresh) {
  auto fresh_trusted = parse_trusted(fresh);
  // The runner re-reads the password and CA files and throws before changing anything: last.
  if (queue && fresh.smarthost.configured()) queue->reload(fresh);
  return [this, t = std::move(fresh_trusted)]() mutable { trusted = std::move(t); };
}

}  // namespace rg::smtp

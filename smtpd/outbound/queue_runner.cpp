// See queue_runner.h. Everything here runs on the I/O thread; file work goes to the worker
// pool as named jobs over copies (queue_store.h), never touching the runner's state.
#include "smtpd/outbound/queue_runner.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <ctime>
#include <fstream>
#include <set>

#include "authdb/users.h"
#include "shared/ascii.h"
#include "shared/log.h"
#include "shared/net/tls.h"
#include "smtpd/outbound/queue_dsn.h"
#include "smtpd/outbound/queue_plan.h"
#include "smtpd/outbound/spool_watch.h"

namespace rg::smtp {

namespace asio = boost::asio;

struct QueueRunner::Watch {
  Watch(asio::io_context& io, int fd) : descriptor(io, fd) {}
  asio::posix::stream_descriptor descriptor;
};

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr int64_t kRetrySoon = 10;  // seconds: a failed state write (disk full) or DSN is redone after this
constexpr int64_t kBusyRetry = 1;   // seconds: a message locked by relaygatectl, or a DSN waiting for its parent
constexpr auto kIdleLinger = std::chrono::seconds(1);  // an idle connection waits this long for more mail

int64_t now_s() { return static_cast<int64_t>(std::time(nullptr)); }

constexpr log::OnCrash log_crash{"queue-crashed"};

std::string read_password(const config::Config& cfg) {
  std::ifstream in(cfg.smarthost.password_file, std::ios::binary);
  std::string line;
  if (!in || !std::getline(in, line))
    throw config::ConfigError(cfg.file.filename().string() + ": smarthost.password_file: cannot read " +
                              cfg.smarthost.password_file.string());
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty())
    throw config::ConfigError(cfg.file.filename().string() +
                              ": smarthost.password_file: " + cfg.smarthost.password_file.string() + " is empty");
  return line;
}

}  // namespace

QueueRunner::QueueRunner(asio::io_context& io, const config::Config& cfg, authdb::Client& db, net::WorkerPool& pool)
    : io_(io),
      cfg_(cfg),
      db_(db),
      pool_(pool),
      spool_(cfg.spool_dir),
      policy_(queue::Policy::from(cfg.queue)),
      limits_(cfg.queue),
      options_(make_options(cfg)),
      wake_(io) {}

std::shared_ptr<const client::Options> QueueRunner::make_options(const config::Config& cfg) {
  auto o = std::make_shared<client::Options>();
  const auto& sh = cfg.smarthost;
  o->host = sh.host;
  o->port = sh.port;
  o->tls = sh.tls;
  o->helo = cfg.hostname;
  o->username = sh.username;
  if (!sh.username.empty()) o->password = read_password(cfg);
  if (sh.tls != config::TlsMode::None) {
    std::optional<std::string> ca;
    if (!sh.ca_file.empty()) ca = sh.ca_file.string();
    o->tls_context = net::make_client_tls_context(ca, sh.verify);
  }
  o->connect_timeout = std::chrono::seconds(sh.connect_timeout_seconds);
  o->command_timeout = std::chrono::seconds(sh.command_timeout_seconds);
  o->data_timeout = std::chrono::seconds(sh.data_timeout_seconds);
  return o;
}

void QueueRunner::reload(const config::Config& fresh) {
  if (!fresh.smarthost.configured()) throw config::ConfigError("smarthost: removing it needs a restart");
  auto options = make_options(fresh);  // may throw: nothing has changed yet
  options_ = std::move(options);
  policy_ = queue::Policy::from(fresh.queue);
  limits_ = fresh.queue;
  next_scan_ = 0;  // apply the new schedule to every queued message
  kick();
  log::info()
      .kv("event", "queue-reloaded")
      .kv("relay", options_->host + ":" + std::to_string(options_->port))
      .kv("tls", config::to_string(options_->tls))
      .kv("auth", !options_->username.empty());
}

QueueRunner::~QueueRunner() = default;

void QueueRunner::start() {
  spool_.ensure();
  const spool::Recovery rec = spool_.recover();
  for (const auto& p : rec.problems) log::warn().kv("event", "queue-problem").kv("problem", p);
  const spool::Summary sum = spool_.summary();
  log::info()
      .kv("event", "queue-started")
      .kv("relay", options_->host + ":" + std::to_string(options_->port))
      .kv("tls", config::to_string(options_->tls))
      .kv("verify", cfg_.smarthost.verify)
      .kv("auth", !options_->username.empty())
      .kv("queued", sum.count)
      .kv("partial_removed", rec.removed_partial)
      .kv("orphans_removed", rec.removed_orphans);

  int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd >= 0 && ::inotify_add_watch(fd, spool_.queue_dir().c_str(),
                                     IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM) >= 0) {
    inotify_ = std::make_unique<Watch>(io_, fd);
    asio::co_spawn(io_, watcher(), log_crash);
  } else {
    log::warn()
        .kv("event", "queue-watch-unavailable")
        .kv("error", std::strerror(errno))
        .kv("scan_interval", limits_.scan_interval_seconds);
    if (fd >= 0) ::close(fd);
  }
  asio::co_spawn(io_, dispatcher(), log_crash);
}

void QueueRunner::stop() {
  stopping_ = true;
  wake_.cancel();
  for (auto* timer : idle_) timer->cancel();  // idle connections QUIT now
  if (inotify_) {
    boost::system::error_code ec;
    inotify_->descriptor.close(ec);
  }
}

void QueueRunner::kick() {
  kicked_ = true;
  wake_.cancel();
}

void QueueRunner::release(const std::string& id, int64_t next, bool held) {
  auto& item = items_[id];
  item.busy = false;
  item.next = next;
  item.held = held;
  if (!held) kick();
}

asio::awaitable<void> QueueRunner::dispatcher() {
  while (!stopping_) {
    int64_t now = now_s();
    if (now >= next_scan_) {
      co_await rescan();
      now = now_s();
      next_scan_ = now + limits_.scan_interval_seconds;
    }
    queue::DispatchInput in;
    in.now = now;
    in.next_scan = next_scan_;
    in.waiting = ready_.size();
    in.connections = connections_;
    in.idle = idle_.size();
    in.max_connections = static_cast<size_t>(limits_.max_connections);
    const queue::Dispatch plan = queue::plan_dispatch(items_, in);
    for (const auto& id : plan.due) {
      items_[id].busy = true;
      ready_.push_back(id);
    }
    if (!ready_.empty())
      for (auto* timer : idle_) timer->cancel();  // lingering connections take work first
    for (size_t i = 0; i < plan.open; ++i) {
      ++connections_;
      asio::co_spawn(io_, connection(), log_crash);
    }
    const int64_t earliest = plan.wake_at;
    if (kicked_) {
      kicked_ = false;
      continue;
    }
    wake_.expires_after(std::chrono::seconds(std::max<int64_t>(earliest - now, 1)));
    co_await wake_.async_wait(kTuple);
    kicked_ = false;
  }
}

asio::awaitable<void> QueueRunner::watcher() {
  std::array<char, 16384> buf;
  for (;;) {
    auto [ec, n] = co_await inotify_->descriptor.async_read_some(asio::buffer(buf), kTuple);
    if (ec) {
      if (ec != asio::error::operation_aborted) log::warn().kv("event", "queue-watch-failed").kv("error", ec.message());
      co_return;
    }
    bool any = false, changed = false;
    for (const auto& [mask, name] : queue::parse_inotify_events({buf.data(), n})) {
      if (mask & IN_Q_OVERFLOW) {
        next_scan_ = 0;
        any = changed = true;
        continue;
      }
      if (name.size() <= 4 || name.compare(name.size() - 4, 4, ".env") != 0) continue;
      std::string id = name.substr(0, name.size() - 4);
      if (!spool::valid_id(id)) continue;
      if (mask & (IN_MOVED_TO | IN_CLOSE_WRITE)) {
        auto& item = items_[id];
        if (!item.busy) {
          item.next = 0;  // look now: new mail, or relaygatectl flush/hold/release
          item.held = false;
          any = true;
        }
      } else if (mask & (IN_DELETE | IN_MOVED_FROM)) {
        auto it = items_.find(id);
        if (it != items_.end() && !it->second.busy) items_.erase(it);
      }
      changed = true;
    }
    if (changed && on_change) on_change();
    if (any) kick();
  }
}

asio::awaitable<void> QueueRunner::rescan() {
  struct Scan {
    std::vector<spool::Envelope> envelopes;
    std::vector<std::string> problems;
  };
  auto job = [spool = spool_] {
    Scan s;
    s.envelopes = spool.list(&s.problems);
    return s;
  };
  Scan scan;
  try {
    scan = co_await pool_.run(job);
  } catch (const std::exception& e) {
    log::error().kv("event", "queue-scan-failed").kv("error", e.what());
    co_return;
  }
  for (const auto& p : scan.problems) log::warn().kv("event", "queue-problem").kv("problem", p);
  std::set<std::string> seen;
  for (const auto& env : scan.envelopes) {
    seen.insert(env.id);
    auto& item = items_[env.id];
    if (item.busy) continue;
    item.held = env.held;
    item.next = queue::next_look(env);
  }
  for (auto it = items_.begin(); it != items_.end();) {
    if (!it->second.busy && !seen.count(it->first))
      it = items_.erase(it);
    else
      ++it;
  }
}

asio::awaitable<void> QueueRunner::connection() {
  client::Client client(io_.get_executor(), options_);
  std::optional<client::Reply> down;  // the smarthost could not be reached: defer the rest at once
  while (!stopping_) {
    if (ready_.empty()) {
      // Keep a working connection a moment for mail that is about to be due (Postfix's
      // connection cache does the same): no new TCP + TLS + AUTH per message under load.
      if (!client.is_open() || down) break;
      asio::steady_timer idle(io_, kIdleLinger);
      idle_.push_back(&idle);
      auto [ec] = co_await idle.async_wait(kTuple);
      idle_.erase(std::find(idle_.begin(), idle_.end(), &idle));
      if (!ec || ready_.empty()) break;  // the linger ran out (or a wake found nothing left)
      continue;
    }
    std::string id = std::move(ready_.front());
    ready_.pop_front();
    try {
      co_await process(client, down, id);
    } catch (const std::exception& e) {
      log::error(id).kv("event", "queue-error").kv("error", e.what());
      unsaved_.erase(id);
      release(id, now_s() + limits_.scan_interval_seconds);
    }
  }
  if (client.is_open()) co_await client.quit();
  --connections_;
  kick();
}

asio::awaitable<void> QueueRunner::process(client::Client& client, std::optional<client::Reply>& down, std::string id) {
  const int64_t now = now_s();
  auto load_job = [spool = spool_, id, now] { return queue::load(spool, id, now); };
  Job job;
  job.loaded = co_await pool_.run(load_job);
  queue::Loaded& l = job.loaded;
  switch (l.status) {
    case queue::Loaded::Gone:
      items_.erase(id);
      unsaved_.erase(id);
      co_return;
    case queue::Loaded::Busy:
    case queue::Loaded::WaitParent: release(id, now + kBusyRetry); co_return;
    case queue::Loaded::NotDue: release(id, l.next); co_return;
    case queue::Loaded::Held: release(id, l.next, true); co_return;
    case queue::Loaded::Error:
      log::error(id).kv("event", "queue-read-failed").kv("error", l.error);
      release(id, now + limits_.scan_interval_seconds);
      co_return;
    case queue::Loaded::Ready: break;
  }
  if (auto u = unsaved_.find(id); u != unsaved_.end()) {
    // The last attempt's results could not be written: write them before trying again.
    l.env = u->second;
    l.attempt = false;
  }
  if (l.attempt) {
    job.attempted = true;
    const std::vector<size_t> indices = queue::pending(l.env);
    std::vector<std::string> recipients;
    for (size_t i : indices) recipients.push_back(l.env.recipients[i].address);
    if (!down) {
      if (client.is_open() && client.transactions() >= static_cast<size_t>(limits_.max_messages_per_connection))
        co_await client.quit();
      if (!client.is_open()) {
        client::Reply r = co_await client.open();
        if (!r.positive()) down = std::move(r);
      }
    }
    std::vector<client::Reply> replies;
    if (down)
      replies.assign(indices.size(), *down);
    else
      replies = co_await client.send(l.env.sender, recipients, l.message);
    for (size_t k = 0; k < indices.size(); ++k) job.outcomes.push_back({indices[k], replies[k], down.has_value()});
  }
  co_await finish(job, client);
}

asio::awaitable<void> QueueRunner::finish(Job& job, const client::Client& client) {
  queue::Loaded& l = job.loaded;
  const std::string id = l.env.id;
  spool::Envelope env = l.env;
  const int64_t now = now_s();
  std::vector<queue::Event> events;
  if (job.attempted) events = queue::apply_attempt(env, job.outcomes, now, policy_);
  queue::Plan p = co_await plan(env, *l.message, now);
  auto persist_job = [spool = spool_, root = cfg_.maildir_root, p] { return queue::persist(spool, root, p); };
  queue::Persisted res = co_await pool_.run(persist_job);
  // Logged once the envelope is on disk (or failed to be): whoever acts on a delivery line
  // (relaygatectl queue show, a test) reads the state it reports.
  log_events(env, events, client, now);
  if (!res.ok) {
    log::error(id).kv("event", "queue-write-failed").kv("error", res.error).kv("retry_in", kRetrySoon);
    unsaved_[id] = env;  // never attempt again what this attempt already delivered
    release(id, now + kRetrySoon);
    co_return;
  }
  unsaved_.erase(id);
  for (const auto& d : p.dsns) {
    const bool existing = std::find(res.dsn_existing.begin(), res.dsn_existing.end(), d.id) != res.dsn_existing.end();
    log::info(id)
        .kv("event", "dsn")
        .kv("dsn_id", d.id)
        .kv("to", env.sender)
        .kv("delivery", d.local_user.empty() ? "queued" : "maildir")
        .kv("outcome", existing ? "already-made" : "made");
  }
  if (p.remove) {
    items_.erase(id);
    log::info(id).kv("event", "removed").kv("attempts", p.final.attempts);
    co_return;
  }
  const bool dsn_left = !queue::unnotified_failures(p.final).empty();
  release(id, dsn_left ? now + kRetrySoon : p.final.next_attempt_at);
}

asio::awaitable<queue::Plan> QueueRunner::plan(const spool::Envelope& env, const std::string& message, int64_t now) {
  queue::AttemptInput in;
  in.reporting_mta = cfg_.hostname;
  in.remote_mta = options_->host;
  in.policy = policy_;
  in.now = now;
  // Where a DSN to the sender goes: a local sender gets it in their mailbox (or nowhere, if
  // there is no such user); a failed lookup decides on a later pass.
  const auto at = env.sender.rfind('@');
  const std::string domain = at == std::string::npos ? std::string() : ascii::lower(env.sender.substr(at + 1));
  if (std::find(cfg_.local_domains.begin(), cfg_.local_domains.end(), domain) != cfg_.local_domains.end()) {
    const std::string local = env.sender.substr(0, at);
    in.target = queue::DsnTarget::Drop;
    if (!authdb::user_name_problem(local)) {
      try {
        auto find = [name = authdb::canonical_user_name(local)](authdb::Store& s) { return s.find_user(name); };
        if (auto u = co_await db_.run(authdb::Lane::Read, "look up user", find)) {
          in.target = queue::DsnTarget::Local;
          in.local_user = u->name;
        }
      } catch (const authdb::Error& e) {
        log::error(env.id).kv("event", "dsn-lookup-failed").kv("error", e.what());
        in.target = queue::DsnTarget::Retry;
      }
    }
  }
  queue::AttemptPlan out = queue::plan_after_attempt(env, message, in);
  if (out.dropped)
    log::warn(env.id).kv("event", "dsn-undeliverable").kv("to", env.sender).kv("reason", "no-such-local-user");
  co_return std::move(out.plan);
}

void QueueRunner::log_events(const spool::Envelope& env, const std::vector<queue::Event>& events,
                             const client::Client& client, int64_t now) const {
  for (const auto& ev : events) {
    const auto& r = env.recipients[ev.index];
    log::info(env.id)
        .kv("event", "delivery")
        .kv("to", r.address)
        .kv("relay", client.relay())
        .kv("tls", client.tls())
        .kv("status", queue::to_string(ev.result))
        .kv("code", ev.reply.code)
        .kv("dsn", r.status)
        .kv("reply", ev.reply.text())
        .kv("delay", now - env.created_at)
        .kv("attempt", env.attempts);
  }
}

}  // namespace rg::smtp

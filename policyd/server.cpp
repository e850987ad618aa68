// relaygate-policyd's server (see server.h): accept loops, one coroutine per connection, the
// policy request loop, the grant socket, housekeeping and stats.
#include "policyd/server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include "authdb/backend.h"
#include "authdb/status_publish.h"
#include "policyd/policy_request.h"
#include "shared/ascii.h"
#include "shared/daemon.h"
#include "shared/ip.h"
#include "shared/log.h"
#include "shared/net/listener.h"

namespace rg::policy {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using Seconds = std::chrono::seconds;

namespace {

constexpr size_t kReadChunk = 4096;
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);  // after EMFILE and the like

// Runs `op` (an awaitable of a socket operation) with a deadline: past it the socket's pending
// operations are cancelled and `timed_out` is set.
template <class Socket, class Op>
asio::awaitable<std::pair<boost::system::error_code, size_t>> timed(Socket& s, Seconds limit, bool& timed_out, Op op) {
  asio::steady_timer timer(s.get_executor());
  timer.expires_after(limit);
  timed_out = false;
  timer.async_wait([&s, &timed_out](const boost::system::error_code& ec) {
    if (ec) return;  // cancelled: the operation finished first
    timed_out = true;
    boost::system::error_code ignored;
    s.cancel(ignored);
  });
  auto [ec, n] = co_await op();
  timer.cancel();
  co_return std::pair{ec, n};
}

template <class Socket>
asio::awaitable<std::pair<boost::system::error_code, size_t>> read_some(Socket& s, char* buf, Seconds limit,
                                                                        bool& timed_out) {
  auto op = [&s, buf] { return s.async_read_some(asio::buffer(buf, kReadChunk), asio::as_tuple(asio::use_awaitable)); };
  co_return co_await timed(s, limit, timed_out, op);
}

template <class Socket>
asio::awaitable<bool> write_all(Socket& s, const std::string& data, Seconds limit) {
  bool timed_out = false;
  auto op = [&s, &data] { return asio::async_write(s, asio::buffer(data), asio::as_tuple(asio::use_awaitable)); };
  auto [ec, n] = co_await timed(s, limit, timed_out, op);
  co_return !ec;
}

// A stale socket file (a previous run that was killed) is replaced; anything else at the path
// is not ours to delete.
void remove_stale_socket(const std::filesystem::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (!S_ISSOCK(st.st_mode)) throw std::runtime_error(path.string() + ": exists and is not a socket");
  if (::unlink(path.c_str()) != 0)
    throw std::runtime_error(path.string() + ": cannot remove the stale socket: " + std::strerror(errno));
}

std::unique_ptr<local::acceptor> open_unix(asio::io_context& io, const std::filesystem::path& path, unsigned mode) {
  remove_stale_socket(path);
  auto a = std::make_unique<local::acceptor>(io);
  boost::system::error_code ec;
  a->open(local(), ec);
  if (!ec) a->bind(local::endpoint(path.string()), ec);
  if (ec) throw std::runtime_error(path.string() + ": cannot bind: " + ec.message());
  // The mode decides who may connect (Postfix's smtpd runs as user postfix; the grant socket is
  // further checked with SO_PEERCRED).
  if (::chmod(path.c_str(), static_cast<mode_t>(mode)) != 0)
    throw std::runtime_error(path.string() + ": chmod: " + std::strerror(errno));
  a->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error(path.string() + ": cannot listen: " + ec.message());
  return a;
}

std::string mode_text(unsigned mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", mode);
  return buf;
}

// The relaygate user a grant line names: the name itself, or for local@domain with a local
// domain (Dovecot users are often full addresses) the local part.
std::vector<std::string> candidate_users(const std::string& given, const std::vector<std::string>& local_domains) {
  std::vector<std::string> out{ascii::lower(given)};
  const auto at = given.rfind('@');
  if (at != std::string::npos && at > 0) {
    const std::string domain = ascii::lower(given.substr(at + 1));
    if (std::find(local_domains.begin(), local_domains.end(), domain) != local_domains.end())
      out.push_back(ascii::lower(given.substr(0, at)));
  }
  return out;
}

}  // namespace

Server::Server(asio::io_context& io_ctx, config::Config config)
    : io(io_ctx),
      cfg(std::move(config)),
      limiter(static_cast<size_t>(cfg.policyd.max_connections), static_cast<size_t>(cfg.policyd.max_connections)),
      pool(1),  // the status file's write and fsync; nothing CPU-bound
      db(authdb::store_factory(cfg), cfg.database_name(), std::chrono::milliseconds(cfg.database_timeout_ms),
         authdb::Client::kReadThreads, authdb::write_threads(cfg)),
      status(io_ctx, cfg.status_file, [this] { return authdb::rewrite_status(db, pool, status.file()); }),
      timer_(io_ctx) {}

Server::~Server() = default;

uint16_t Server::port(size_t i) const { return tcp_ports_.at(i); }

void Server::spawn(asio::awaitable<void> work) { asio::co_spawn(io, std::move(work), log::OnCrash{"session-crashed"}); }

void Server::start() {
  // Bind everything first: a taken port or a bad socket path ends the start before anything runs.
  for (const auto& l : cfg.policyd.listen) {
    if (!l.path.empty()) {
      unix_.push_back(open_unix(io, l.path, l.mode));
      log::info().kv("event", "listening").kv("path", l.path.string()).kv("mode", mode_text(l.mode));
      continue;
    }
    tcp_.push_back(std::make_unique<asio::ip::tcp::acceptor>(net::open_acceptor(io, l.address, l.port)));
    tcp_ports_.push_back(tcp_.back()->local_endpoint().port());
    log::info().kv("event", "listening").kv("address", l.address).kv("port", tcp_ports_.back());
  }
  const size_t policy_unix = unix_.size();
  const auto& g = cfg.policyd.grant_socket;
  if (!g.path.empty()) {
    unix_.push_back(open_unix(io, g.path, g.mode));
    std::string uids;
    for (auto u : g.allowed_uids) uids += (uids.empty() ? "" : ",") + std::to_string(u);
    log::info()
        .kv("event", "listening")
        .kv("path", g.path.string())
        .kv("mode", mode_text(g.mode))
        .kv("grant_socket", true)
        .kv("allowed_uids", uids);
  }
  for (auto& a : tcp_) spawn(accept_tcp(*a));
  for (size_t i = 0; i < unix_.size(); ++i) spawn(accept_unix(*unix_[i], i >= policy_unix));
  spawn(housekeeping());
}

void Server::stop() {
  stopping_ = true;
  boost::system::error_code ec;
  for (auto& a : tcp_) a->close(ec);
  for (auto& a : unix_) a->close(ec);
  timer_.cancel();
  // Between requests there is nothing to finish: Postfix reconnects (or uses default_action).
  const std::vector<Conn*> live(conns_.begin(), conns_.end());
  for (Conn* c : live) c->close();
  log_stats("shutdown");
}

void Server::reload(config::Config fresh) {
  auto needs_restart = [](std::string_view key) {
    log::warn().kv("event", "reload").kv("key", key).kv("outcome", "needs-restart");
  };
  if (!(cfg.policyd.listen == fresh.policyd.listen)) needs_restart("policyd.listen");
  if (cfg.policyd.grant_socket.path != fresh.policyd.grant_socket.path ||
      cfg.policyd.grant_socket.mode != fresh.policyd.grant_socket.mode)
    needs_restart("policyd.grant_socket.path");
  if (cfg.database_name() != fresh.database_name()) needs_restart("database");
  if (cfg.status_file != fresh.status_file) needs_restart("status_file");
  if (cfg.database_timeout_ms != fresh.database_timeout_ms) needs_restart("database_timeout_ms");
  cfg.policyd.request_timeout_seconds = fresh.policyd.request_timeout_seconds;
  cfg.policyd.idle_timeout_seconds = fresh.policyd.idle_timeout_seconds;
  cfg.policyd.max_connections = fresh.policyd.max_connections;
  // Allowed peers are checked at each connection, so a reload takes them at once.
  cfg.policyd.grant_socket.allowed_users = fresh.policyd.grant_socket.allowed_users;
  cfg.policyd.grant_socket.allowed_uids = fresh.policyd.grant_socket.allowed_uids;
  cfg.grants = fresh.grants;
  cfg.local_domains = fresh.local_domains;
  cfg.hostname = fresh.hostname;
  limiter.set_limits(static_cast<size_t>(cfg.policyd.max_connections),
                     static_cast<size_t>(cfg.policyd.max_connections));
  log::info().kv("event", "reload").kv("outcome", "ok").kv("config", cfg.file.string());
}

asio::awaitable<void> Server::accept_tcp(asio::ip::tcp::acceptor& a) {
  asio::steady_timer backoff(io);
  for (;;) {
    auto [ec, socket] = co_await a.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || stopping_) co_return;
    if (ec) {
      log::warn().kv("event", "accept-failed").kv("error", ec.message());
      backoff.expires_after(kAcceptBackoff);
      co_await backoff.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    boost::system::error_code pe;
    const auto ep = socket.remote_endpoint(pe);
    std::string peer = pe ? std::string() : canonical_ip(ep.address().to_string()).value_or("");
    auto token = limiter.try_acquire(peer);
    if (!token) {
      log::warn().kv("event", "connection-refused").kv("ip", peer).kv("reason", "connection-limit");
      continue;  // closed unanswered: Postfix uses its default_action
    }
    spawn(policy_session(std::move(socket), std::move(peer), std::move(*token)));
  }
}

asio::awaitable<void> Server::accept_unix(local::acceptor& a, bool grant) {
  asio::steady_timer backoff(io);
  for (;;) {
    auto [ec, socket] = co_await a.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || stopping_) co_return;
    if (ec) {
      log::warn().kv("event", "accept-failed").kv("error", ec.message());
      backoff.expires_after(kAcceptBackoff);
      co_await backoff.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    auto token = limiter.try_acquire("unix");
    if (!token) {
      log::warn().kv("event", "connection-refused").kv("ip", "unix").kv("reason", "connection-limit");
      continue;
    }
    if (!grant) {
      spawn(policy_session(std::move(socket), "unix", std::move(*token)));
      continue;
    }
    // Who is on the other end, as the kernel says (SO_PEERCRED, unix(7)): only listed uids may
    // write grants. uid 0 and our own uid are not implied: list them to allow them.
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) cred.uid = ~0U;
    const auto& uids = cfg.policyd.grant_socket.allowed_uids;
    if (std::find(uids.begin(), uids.end(), cred.uid) == uids.end()) {
      ++stats.denied_peer;
      log::warn()
          .kv("event", "grant-socket")
          .kv("outcome", "refused")
          .kv("reason", "peer-not-allowed")
          .kv("uid", static_cast<uint64_t>(cred.uid))
          .kv("pid", static_cast<int64_t>(cred.pid));
      boost::system::error_code ignored;
      asio::write(socket, asio::buffer(std::string_view("NO permission denied\n")), ignored);  // best effort
      continue;
    }
    spawn(grant_session(std::move(socket), cred.uid, std::move(*token)));
  }
}

template <class Socket>
asio::awaitable<void> Server::policy_session(Socket socket, std::string peer, net::ConnectionLimiter::Token token) {
  const Tracked tracked(conns_, [&socket] {
    boost::system::error_code ec;
    socket.close(ec);
  });
  (void)token;
  const std::string id = "P" + std::to_string(++next_id_);
  RequestReader reader;
  std::string pending;
  char buf[kReadChunk];
  for (;;) {
    if (!pending.empty()) pending.erase(0, reader.feed(pending));
    if (reader.state() == RequestReader::State::Bad) {
      ++stats.requests;
      ++stats.bad_request;
      const Decision d = bad_request();
      log::warn(id)
          .kv("event", "policy")
          .kv("action", d.action)
          .kv("reason", d.reason)
          .kv("client", peer)
          .kv("error", reader.error());
      co_await write_all(socket, reply(d), Seconds(cfg.policyd.request_timeout_seconds));
      co_return;  // framing is lost: Postfix reconnects for its next request
    }
    if (reader.state() == RequestReader::State::Complete) {
      const Request r = reader.take();
      ++stats.requests;
      std::string ip;
      auto pre = precheck(r, ip);
      Decision d;
      if (pre) {
        d = std::move(*pre);
      } else {
        Lookup lookup;
        try {
          auto read = [ip, now = static_cast<int64_t>(std::time(nullptr))](authdb::Store& s) {
            return s.live_grant(ip, now);
          };
          lookup.grant = co_await db.run(authdb::Lane::Read, "look up grant", read);
        } catch (const std::exception& e) {
          lookup.failed = true;
          log::error(id).kv("event", "database-error").kv("ip", ip).kv("error", e.what());
        }
        d = decide(lookup, r.get("sender"));
      }
      if (d.action == "OK")
        ++stats.ok;
      else if (d.action == "DUNNO")
        ++stats.dunno;
      else
        ++stats.defer;
      {
        auto line = d.reason == "database-error" ? log::warn(id) : log::info(id);
        line.kv("event", "policy").kv("action", d.action.substr(0, d.action.find(' '))).kv("reason", d.reason);
        line.kv("client", r.get("client_address")).kv("instance", r.get("instance"));
        line.kv("protocol_state", r.get("protocol_state")).kv("sasl", !r.get("sasl_username").empty());
        if (!d.user.empty()) line.kv("user", d.user);
        line.kv("sender", r.get("sender")).kv("recipient", r.get("recipient"));
      }
      if (!co_await write_all(socket, reply(d), Seconds(cfg.policyd.request_timeout_seconds))) co_return;
      continue;
    }
    // Between requests the idle timeout (Postfix closes first); inside one, the request timeout.
    const Seconds limit(reader.empty() ? cfg.policyd.idle_timeout_seconds : cfg.policyd.request_timeout_seconds);
    bool timed_out = false;
    auto [ec, n] = co_await read_some(socket, buf, limit, timed_out);
    if (ec) {
      if (timed_out && !reader.empty()) log::info(id).kv("event", "policy-timeout").kv("client", peer);
      co_return;
    }
    pending.append(buf, n);
  }
}

asio::awaitable<std::string> Server::answer_grant(std::string line, uint32_t uid) {
  std::vector<std::string> tok;
  for (size_t i = 0; i < line.size();) {
    const size_t sp = line.find(' ', i);
    const size_t end = sp == std::string::npos ? line.size() : sp;
    if (end > i) tok.push_back(line.substr(i, end - i));
    i = end + 1;
  }
  auto refuse = [&](const char* reason, const std::string& reply, const std::string& ip = "",
                    const std::string& user = "") {
    ++stats.refused;
    auto l = log::warn();
    l.kv("event", "grant-socket").kv("outcome", "refused").kv("reason", reason).kv("ip", ip);
    l.kv("uid", static_cast<uint64_t>(uid));
    if (!user.empty()) l.kv("user", user);
    return reply;
  };
  if (tok.size() != 4 || tok[0] != "grant") co_return refuse("bad-request", "NO bad request\n");
  const auto ip = canonical_ip(tok[1]);
  if (!ip) co_return refuse("bad-address", "NO bad address\n");
  const std::string& method = tok[3];
  if (std::find(std::begin(kGrantMethods), std::end(kGrantMethods), method) == std::end(kGrantMethods))
    co_return refuse("unknown-method", "NO unknown method\n", *ip, tok[2]);
  std::string granted;
  try {
    auto write = [ip = *ip, users = candidate_users(tok[2], cfg.local_domains), method, ttl = cfg.grants.ttl_seconds,
                  now = static_cast<int64_t>(std::time(nullptr))](authdb::Store& s) {
      for (const auto& u : users)
        if (s.grant(ip, u, method, ttl, now)) return u;
      return std::string();
    };
    granted = co_await db.run(authdb::Lane::Write, "write grant", write);
  } catch (const std::exception& e) {
    log::error()
        .kv("event", "grant-socket")
        .kv("outcome", "tempfail")
        .kv("reason", "database-error")
        .kv("ip", *ip)
        .kv("error", e.what());
    ++stats.refused;
    co_return std::string("TEMP database unavailable\n");
  }
  if (granted.empty()) co_return refuse("unknown-user", "NO unknown or disabled user\n", *ip, tok[2]);
  ++stats.granted;
  status.request();
  log::info()
      .kv("event", "grant")
      .kv("ip", *ip)
      .kv("user", granted)
      .kv("method", method)
      .kv("node", cfg.hostname)
      .kv("ttl", cfg.grants.ttl_seconds)
      .kv("uid", static_cast<uint64_t>(uid));
  co_return std::string("OK\n");
}

template <class Socket>
asio::awaitable<void> Server::grant_session(Socket socket, uint32_t uid, net::ConnectionLimiter::Token token) {
  const Tracked tracked(conns_, [&socket] {
    boost::system::error_code ec;
    socket.close(ec);
  });
  (void)token;
  const Seconds limit(cfg.policyd.request_timeout_seconds);
  std::string pending;
  char buf[kReadChunk];
  for (;;) {
    const size_t lf = pending.find('\n');
    if (lf == std::string::npos) {
      if (pending.size() > kMaxGrantLineOctets) {
        ++stats.refused;
        log::warn()
            .kv("event", "grant-socket")
            .kv("outcome", "refused")
            .kv("reason", "line-too-long")
            .kv("uid", static_cast<uint64_t>(uid));
        co_await write_all(socket, std::string("NO line too long\n"), limit);
        co_return;
      }
      bool timed_out = false;
      auto [ec, n] = co_await read_some(socket, buf, limit, timed_out);
      if (ec) co_return;
      pending.append(buf, n);
      continue;
    }
    std::string line = pending.substr(0, lf);
    pending.erase(0, lf + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.size() > kMaxGrantLineOctets) {
      co_await write_all(socket, std::string("NO line too long\n"), limit);
      co_return;
    }
    std::string answer = co_await answer_grant(std::move(line), uid);
    if (!co_await write_all(socket, answer, limit)) co_return;
  }
}

void Server::log_stats(const char* when) {
  log::info()
      .kv("event", "stats")
      .kv("when", when)
      .kv("requests", stats.requests)
      .kv("ok", stats.ok)
      .kv("dunno", stats.dunno)
      .kv("defer", stats.defer)
      .kv("bad_request", stats.bad_request)
      .kv("granted", stats.granted)
      .kv("refused", stats.refused)
      .kv("denied_peer", stats.denied_peer)
      .kv("connections", limiter.total());
}

asio::awaitable<void> Server::housekeeping() {
  // pop3d purges too; with Postfix and Dovecot it may not run at all, and a purge twice is harmless.
  for (;;) {
    co_await authdb::purge_expired_grants(db);
    status.request();
    if (stopping_) co_return;
    daemon::notify("STATUS=connections=" + std::to_string(limiter.total()) +
                   " requests=" + std::to_string(stats.requests) + " ok=" + std::to_string(stats.ok) +
                   " dunno=" + std::to_string(stats.dunno) + " defer=" + std::to_string(stats.defer) +
                   " bad_request=" + std::to_string(stats.bad_request) + " granted=" + std::to_string(stats.granted) +
                   " refused=" + std::to_string(stats.refused) + " denied_peer=" + std::to_string(stats.denied_peer));
    timer_.expires_after(Seconds(cfg.grants.status_interval_seconds));
    auto [ec] = co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    log_stats("interval");
  }
}

}  // namespace rg::policy

// The daemon skeleton (see daemon_server.h): listeners → (PROXY header) → connection limits →
// one coroutine per session; the session registry for SIGTERM; the reload table.
#include "shared/daemon_server.h"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/write.hpp>
#include <thread>

#include "shared/ip.h"
#include "shared/log.h"
#include "shared/net/listener.h"
#include "shared/net/proxy_reader.h"
#include "shared/net/tls.h"

namespace rg::daemon {

namespace asio = boost::asio;
using config::Config;

namespace {
constexpr ReloadKey kShared[] = {
    {"tls", nullptr, take<&Config::tls>},
    {"database", differs<&Config::database>, nullptr},
    {"maildir_root", differs<&Config::maildir_root>, nullptr},
    {"status_file", differs<&Config::status_file>, nullptr},
    {"hostname", nullptr, take<&Config::hostname>},
    {"local_domains", nullptr, take<&Config::local_domains>},
    {"grants", nullptr, take<&Config::grants>},
    {"auth", nullptr, take<&Config::auth>},
};
constexpr size_t kMinCpuThreads = 2, kMaxCpuThreads = 8;
}  // namespace

const std::span<const ReloadKey> kSharedReloadKeys = kShared;

bool same_listeners(const std::vector<config::Listener>& a, const std::vector<config::Listener>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].address != b[i].address || a[i].port != b[i].port || a[i].tls != b[i].tls || a[i].mode != b[i].mode ||
        a[i].proxy_protocol != b[i].proxy_protocol || a[i].proxy_from != b[i].proxy_from)
      return false;
  return true;
}

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
      co_await rewrite_();
    } catch (const std::exception& e) {
      log::error().kv("event", "status-write-failed").kv("file", file_.string()).kv("error", e.what());
    }
  } while (dirty_);
  running_ = false;
}

std::shared_ptr<asio::ssl::context> load_tls(const config::Config& cfg) {
  if (cfg.tls.generate_self_signed)
    net::ensure_self_signed_certificate(cfg.tls.certificate, cfg.tls.private_key, cfg.hostname);
  return net::make_server_tls_context(cfg.tls.certificate, cfg.tls.private_key);
}

ServerBase::ServerBase(asio::io_context& io_ctx, config::Config config, const Profile& profile)
    : io(io_ctx),
      cfg(std::move(config)),
      tls(load_tls(cfg)),
      limiter(profile.section.limits(cfg).first, profile.section.limits(cfg).second),
      pool(std::clamp<size_t>(std::thread::hardware_concurrency(), kMinCpuThreads, kMaxCpuThreads)),
      profile_(profile) {}

ServerBase::~ServerBase() = default;

void ServerBase::spawn(asio::awaitable<void> work) {
  asio::co_spawn(io, std::move(work), log::OnCrash{"session-crashed"});
}

void ServerBase::start() {
  // Bind first: a port that is taken ends the start before anything is touched (issue 9).
  for (const auto& l : profile_.section.listeners(cfg)) {
    auto acceptor = std::make_unique<asio::ip::tcp::acceptor>(net::open_acceptor(io, l.address, l.port));
    const uint16_t port = acceptor->local_endpoint().port();
    auto line = log::info();
    line.kv("event", "listening").kv("address", l.address).kv("port", port);
    if (profile_.log_listener_mode) line.kv("mode", config::to_string(l.mode));
    line.kv("tls", config::to_string(l.tls));
    listening_.push_back({l, std::move(acceptor), port});
  }
  on_start();
  for (auto& l : listening_) {
    auto loop = net::accept_loop(
        *l.acceptor, [this, &listener = l.listener](asio::ip::tcp::socket s) { admit(listener, std::move(s)); },
        [](const boost::system::error_code& ec) {
          log::warn().kv("event", "accept-failed").kv("error", ec.message());
        });
    spawn(std::move(loop));
  }
}

namespace {
bool in_proxy_from(const config::Listener& listener, const std::string& ip) {
  for (const auto& entry : listener.proxy_from)
    if (const auto net = parse_cidr(entry); net && cidr_contains(*net, ip)) return true;
  return false;
}
// A refusal line begins `event= outcome= reason= ip=` (README, Logs); ip is the connection's
// peer, since no header named anyone else.
void log_proxy_refused(const config::Listener& listener, const std::string& peer, std::string_view reason,
                       std::string_view error = {}) {
  auto line = log::warn();
  line.kv("event", "proxy-refused").kv("outcome", "rejected").kv("reason", reason).kv("ip", peer);
  line.kv("listener", listener.port);
  if (!error.empty()) line.kv("error", error);
}
}  // namespace

void ServerBase::admit(const config::Listener& listener, asio::ip::tcp::socket socket) {
  if (stopping_) return;  // accepted just before stop(): closed unanswered, like a closed port
  net::Stream stream(std::move(socket));
  if (!listener.proxy_protocol) return admit_client(listener, std::move(stream));
  // A peer that reset the connection before we looked has no address (getpeername: ENOTCONN):
  // HAProxy's health checks close that way after their LOCAL header. Nothing to refuse or warn.
  if (stream.remote_ip().empty()) {
    log::debug().kv("event", "proxy-peer-gone").kv("listener", listener.port);
    stream.close();
    return;
  }
  // proxy-protocol.txt §5: the header is accepted "only from a number of known sources"; anyone
  // else could name any address (and with it a grant or a trusted network). Closed unanswered.
  if (!in_proxy_from(listener, stream.remote_ip())) {
    log_proxy_refused(listener, stream.remote_ip(), "not-in-proxy-from");
    stream.close();
    return;
  }
  spawn(admit_proxied(listener, std::move(stream)));
}

asio::awaitable<void> ServerBase::admit_proxied(config::Listener listener, net::Stream stream) {
  // §2: "The receiver MUST NOT start processing the connection before it receives a complete and
  // valid PROXY protocol header": nothing is written and no TLS handshake starts before it.
  if (stopping_) {
    stream.close();
    co_return;
  }
  boost::system::error_code ec;
  net::ProxyHeader header;
  {
    // Untracked however the read ends (an exception too): stop() must never see a dead stream.
    proxy_headers_.insert(&stream);
    struct Untrack {
      std::unordered_set<net::Stream*>& set;
      net::Stream* stream;
      ~Untrack() { set.erase(stream); }
    } untrack{proxy_headers_, &stream};
    std::tie(ec, header) = co_await net::read_proxy_header(stream.lowest_layer(), net::kProxyHeaderTimeout);
  }
  if (ec) {
    const std::string_view reason = stopping_                           ? "server-stopping"
                                    : ec == net::errc::timeout          ? "timeout"
                                    : ec == net::errc::bad_proxy_header ? "bad-header"
                                    : ec == asio::error::eof            ? "closed"
                                                                        : "read-error";
    log_proxy_refused(listener, stream.remote_ip(), reason, ec == net::errc::bad_proxy_header ? header.reason : "");
    stream.close();
    co_return;
  }
  if (stopping_) {
    stream.close();
    co_return;
  }
  // LOCAL and UNKNOWN (a balancer's health check) keep the balancer's own address (§2.1, §2.2).
  if (header.local)
    stream.set_proxied_peer(stream.remote_ip(), stream.remote_port());
  else
    stream.set_proxied_peer(std::move(header.source_ip), header.source_port);
  admit_client(listener, std::move(stream));
}

void ServerBase::admit_client(const config::Listener& listener, net::Stream stream) {
  auto token = limiter.try_acquire(stream.remote_ip());
  if (!token) {
    {
      auto logged = log::warn();
      logged.kv("event", "connection-refused").kv("ip", stream.remote_ip()).kv("reason", "connection-limit");
      if (!stream.proxy_ip().empty()) logged.kv("proxy", stream.proxy_ip());
    }
    if (listener.tls != config::TlsMode::Implicit) {
      boost::system::error_code ec;  // best effort: the client may already be gone
      const std::string line = profile_.refusal(cfg);
      asio::write(stream.lowest_layer(), asio::buffer(line), ec);
    }
    stream.close();
    return;
  }
  spawn(session(listener, std::move(stream), std::move(*token)));
}

void ServerBase::stop() {
  stopping_ = true;
  for (auto& l : listening_) {
    boost::system::error_code ec;
    l.acceptor->close(ec);  // the accept loop ends with operation_aborted
  }
  on_stop();
  // No session began on these: nothing to say, and their reads end now, not at the header timeout.
  for (net::Stream* s : proxy_headers_) s->close();
  // Copy first: a session closed here may untrack itself before the loop ends.
  const std::vector<Drainable*> live(sessions_.begin(), sessions_.end());
  for (Drainable* d : live) d->stop_if_idle();
}

std::function<void()> ServerBase::prepare_reload(const config::Config&) { return {}; }

asio::awaitable<bool> ServerBase::begin_session(net::Stream& stream, const config::Listener& listener,
                                                std::string_view session_id, net::Duration timeout) {
  {
    auto line = log::info(session_id);
    line.kv("event", "connect")
        .kv("ip", stream.remote_ip())
        .kv("port", stream.remote_port())
        .kv("listener", listener.port);
    if (profile_.log_listener_mode)
      line.kv("mode", config::to_string(listener.mode));
    else
      line.kv("tls", config::to_string(listener.tls));
    if (!stream.proxy_ip().empty()) line.kv("proxy", stream.proxy_ip());
  }
  if (listener.tls != config::TlsMode::Implicit) co_return true;
  const auto ctx = tls;  // kept alive across the handshake even if SIGHUP replaces it
  if (auto ec = co_await stream.start_tls(*ctx, timeout)) {
    log::info(session_id).kv("event", "disconnect").kv("reason", "tls-handshake-failed").kv("error", ec.message());
    co_return false;
  }
  co_return true;
}

void ServerBase::reload(config::Config fresh) {
  // Everything that can fail comes first, so a bad certificate or key leaves the old config in force.
  auto fresh_tls = load_tls(fresh);
  const auto commit = prepare_reload(fresh);
  tls = std::move(fresh_tls);
  auto needs_restart = [](std::string_view key) {
    log::warn().kv("event", "reload").kv("key", key).kv("outcome", "needs-restart");
  };
  const Section& own = profile_.section;
  if (!same_listeners(own.listeners(cfg), own.listeners(fresh))) needs_restart(std::string(own.name) + ".listen");
  own.take_keeping_listeners(cfg, fresh);
  for (const auto keys : {kSharedReloadKeys, profile_.reload_keys})
    for (const ReloadKey& k : keys) {
      if (k.needs_restart && k.needs_restart(cfg, fresh)) {
        needs_restart(k.key);
      } else if (k.take) {
        k.take(cfg, fresh);
      }
    }
  if (commit) commit();
  const auto [total, per_ip] = own.limits(cfg);
  limiter.set_limits(total, per_ip);
  log::info().kv("event", "reload").kv("outcome", "ok").kv("config", cfg.file.string());
}

}  // namespace rg::daemon

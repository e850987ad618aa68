// The daemon skeleton smtpd and pop3d are built on: the listeners (bound at start, accepted
// through net::accept_loop, refused at the connection limit), the registry of live sessions that
// SIGTERM drains, crash logging of what it spawns, and SIGHUP's reload driven by each daemon's
// table of keys. What differs between the daemons is data (a Profile) and four hooks.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "shared/config.h"
#include "shared/net/limits.h"
#include "shared/net/stream.h"

namespace boost::asio::ssl {
class context;
}

namespace rg::daemon {

// What the skeleton asks of a live session when the daemon stops (SIGTERM).
class Drainable {
 public:
  virtual ~Drainable() = default;
  // Ends the session now if it is between commands; one in the middle of a transaction
  // (receiving or delivering a message) finishes it first, then ends on its own. Writes
  // nothing itself (a TLS stream may be mid-record): it cancels the pending read
  // (net::Stream::cancel_read) and the session's own loop writes its goodbye (SMTP 421 4.3.2,
  // RFC 5321 §3.8; POP3 -ERR) bounded by protocol::kShutdownTimeout, then closes.
  virtual void stop_if_idle() = 0;
};

// One row of a daemon's reload table: what SIGHUP does with one configuration key.
struct ReloadKey {
  const char* key;  // as logged: "smtpd.listen", "database"
  // Set: when it says so, the key cannot change without a restart: the running value stays and
  // `event=reload key=<key> outcome=needs-restart` is logged.
  bool (*needs_restart)(const config::Config& running, const config::Config& fresh);
  // Set: copies the fresh value into the running config (unless a restart is needed).
  void (*take)(config::Config& running, const config::Config& fresh);
};

// Table helpers for a top-level member of Config: `differs<&Config::database>`, `take<&Config::grants>`.
template <auto Member>
bool differs(const config::Config& running, const config::Config& fresh) {
  return !(running.*Member == fresh.*Member);
}
template <auto Member>
void take(config::Config& running, const config::Config& fresh) {
  running.*Member = fresh.*Member;
}
// Address, port, TLS mode and SMTP mode, in order: what a bound socket cannot change.
bool same_listeners(const std::vector<config::Listener>& a, const std::vector<config::Listener>& b);
// A daemon's own section of the config (`Config::smtpd`, `Config::pop3d`) as the skeleton uses
// it: the listeners it binds, the connection limits, and on reload every key of the section but
// `listen` (a bound socket stays as it is; a changed one is logged as needing a restart).
struct Section {
  const char* name;  // "smtpd": the reload log's key is "smtpd.listen"
  const std::vector<config::Listener>& (*listeners)(const config::Config&);
  std::pair<size_t, size_t> (*limits)(const config::Config&);  // {max_connections, per IP}
  void (*take_keeping_listeners)(config::Config& running, const config::Config& fresh);
};

template <auto Member>
constexpr Section section(const char* name) {
  return {
      name,
      [](const config::Config& c) -> const std::vector<config::Listener>& { return (c.*Member).listen; },
      [](const config::Config& c) {
        return std::pair{static_cast<size_t>((c.*Member).max_connections),
                         static_cast<size_t>((c.*Member).max_connections_per_ip)};
      },
      [](config::Config& running, const config::Config& fresh) {
        auto listen = std::move((running.*Member).listen);
        running.*Member = fresh.*Member;
        (running.*Member).listen = std::move(listen);
      },
  };
}

// What one daemon plugs into the skeleton, as data.
struct Profile {
  Section section;
  // The one line sent before closing a connection over the limit (not on implicit-TLS ports,
  // where the client expects a handshake): "421 4.7.0 ..." or "-ERR [SYS/TEMP] ...".
  std::string (*refusal)(const config::Config&);
  bool log_listener_mode;  // smtpd's "listening" line names the mode (relay, submission...)
  // This daemon's own reload keys, applied after its section and kSharedReloadKeys.
  std::span<const ReloadKey> reload_keys;
};

// The reload keys every daemon treats alike: the certificate's paths, the files both hold open,
// and the settings sessions read per command.
extern const std::span<const ReloadKey> kSharedReloadKeys;

// Rewrites the status file when asked, coalescing bursts: at most one rewrite in flight, and one
// more if asked meanwhile. `rewrite` is the daemon's job (its authdb snapshot on the I/O thread,
// the write and fsync on a worker pool); a failure is logged as status-write-failed and the next
// request tries again.
class StatusPublisher {
 public:
  StatusPublisher(boost::asio::io_context& io, std::filesystem::path file,
                  std::function<boost::asio::awaitable<void>()> rewrite)
      : io_(io), file_(std::move(file)), rewrite_(std::move(rewrite)) {}
  void request();
  const std::filesystem::path& file() const { return file_; }

 private:
  boost::asio::awaitable<void> run();
  boost::asio::io_context& io_;
  std::filesystem::path file_;
  std::function<boost::asio::awaitable<void>()> rewrite_;
  bool running_ = false;
  bool dirty_ = false;
};

// Loads the server certificate for `cfg` (generating a self-signed one first only where
// tls.generate_self_signed allows it: a mistyped path is an error). Throws naming the problem.
std::shared_ptr<boost::asio::ssl::context> load_tls(const config::Config& cfg);

class ServerBase {
 public:
  // Loads the certificate (throws on a bad one) and sets the connection limits.
  ServerBase(boost::asio::io_context& io, config::Config cfg, const Profile& profile);
  virtual ~ServerBase();
  ServerBase(const ServerBase&) = delete;
  ServerBase& operator=(const ServerBase&) = delete;

  // Binds every listener (throws naming address:port, before anything else happens), runs
  // on_start(), then accepts.
  void start();
  // Stops accepting, runs on_stop(), and asks every live session to end (stop_if_idle).
  void stop();
  bool stopping() const { return stopping_; }
  // The port listener `i` is bound to, after start() (a configured port 0 picks a free one).
  uint16_t port(size_t i) const { return listening_.at(i).port; }
  // After stop(): true once every session has ended and no other work is in flight
  // (daemon_main polls this to drain).
  bool idle() const {
    return sessions_.empty() && limiter.total() == 0 && proxy_headers_pending_ == 0 && !work_in_flight();
  }
  // SIGHUP: the certificate and every key the profile's table takes, for new sessions and
  // commands; live sessions go on. Throws, keeping everything as it was, if the certificate
  // or prepare_reload() fails; keys that need a restart are logged and keep their value.
  void reload(config::Config fresh);

  // A session's first steps: the `event=connect` line (ip, port, listener, then smtpd's `mode=`
  // or pop3d's `tls=`, then `proxy=<balancer>` when a PROXY header named the client), then on an implicit-TLS listener
  // (RFC 8314 §3.3, RFC 2595 §7) the handshake within `timeout`, with the certificate in use when it began (a reload
  // during it frees nothing). False, after `event=disconnect reason=tls-handshake-failed`, when the handshake fails:
  // the session ends without a word.
  boost::asio::awaitable<bool> begin_session(net::Stream& stream, const config::Listener& listener,
                                             std::string_view session_id, net::Duration timeout);

  // Sessions register for their lifetime, so that stop() reaches them.
  void track(Drainable* s) { sessions_.insert(s); }
  void untrack(Drainable* s) { sessions_.erase(s); }

  boost::asio::io_context& io;
  config::Config cfg;
  // Sessions copy the pointer before a handshake, so a reload never frees one in use.
  std::shared_ptr<boost::asio::ssl::context> tls;
  net::ConnectionLimiter limiter;
  // Password hashing and other CPU-bound work: one thread per core (2 to 8) is all it can use.
  net::WorkerPool pool;
  uint64_t sessions_started = 0;  // session ids and systemd's STATUS line

 protected:
  // Runs one admitted connection (spawned with crash logging; `token` holds its limiter slot).
  virtual boost::asio::awaitable<void> session(config::Listener listener, net::Stream stream,
                                               net::ConnectionLimiter::Token token) = 0;
  virtual void on_start() {}  // after binding, before accepting
  virtual void on_stop() {}
  virtual bool work_in_flight() const { return false; }  // e.g. deliveries under way
  // Reload steps beyond the certificate that can fail: throw before changing anything, or return
  // what to commit once the table has been applied (may be empty).
  virtual std::function<void()> prepare_reload(const config::Config& fresh);
  // Spawns `work` on the I/O thread, logging an exception that escapes it as session-crashed.
  void spawn(boost::asio::awaitable<void> work);

 private:
  struct Listening {
    config::Listener listener;
    std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor;
    uint16_t port;  // as bound
  };
  // A new connection: on a proxy_protocol listener, a peer outside proxy_from is closed at once
  // and the others go to admit_proxied; then admit_client.
  void admit(const config::Listener& listener, boost::asio::ip::tcp::socket socket);
  // Reads the PROXY header (within net::kProxyHeaderTimeout), refusing the connection without a
  // word when it is missing or invalid; after it the client it names is the session's peer.
  boost::asio::awaitable<void> admit_proxied(config::Listener listener, net::Stream stream);
  // The connection limits, counted against the client's address (after a PROXY header, the one
  // it names, not the balancer's), then the session.
  void admit_client(const config::Listener& listener, net::Stream stream);

  const Profile& profile_;
  std::vector<Listening> listening_;
  std::unordered_set<Drainable*> sessions_;
  bool stopping_ = false;
  size_t proxy_headers_pending_ = 0;  // connections still reading their PROXY header
};

}  // namespace rg::daemon

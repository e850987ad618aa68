// relaygate-policyd's server: Postfix policy connections on TCP and unix listeners, the Dovecot
// grant socket, decision counters, and the housekeeping pop3d also does (purge of expired
// grants, status file), since with Postfix and Dovecot pop3d may not run at all.
// Not a daemon::ServerBase: that skeleton is about TLS sessions (certificate, PROXY header,
// begin_session); policyd has no TLS, no greeting and unix listeners. It offers what
// daemon::run_main needs: cfg, limiter, start(), stop(), idle(), reload().
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "authdb/client.h"
#include "shared/config.h"
#include "shared/daemon_server.h"
#include "shared/net/limits.h"

namespace rg::policy {

// Decision metrics: in systemd's STATUS= line and an `event=stats` log line every
// grants.status_interval_seconds and at shutdown (a Prometheus endpoint comes with issue 15).
struct Stats {
  uint64_t requests = 0, ok = 0, dunno = 0, defer = 0, bad_request = 0;
  uint64_t granted = 0, refused = 0, denied_peer = 0;  // the grant socket
};

// The grant socket's line: `grant IP USER METHOD`, at most this long (an IPv6 address, a
// 64-octet user name or a local@domain of 254, a method: far below).
inline constexpr size_t kMaxGrantLineOctets = 512;
// The methods a grant line may name (README: a grant's method says where it came from).
inline constexpr const char* kGrantMethods[] = {"dovecot-imap", "dovecot-pop3"};

class Server {
 public:
  Server(boost::asio::io_context& io, config::Config cfg);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start();  // binds every listener and the grant socket (throws naming it), then accepts
  void stop();   // closes listeners and connections, logs the final stats
  bool idle() const { return conns_.empty() && limiter.total() == 0; }
  void reload(config::Config fresh);  // timeouts, limits, grant_socket users; listeners need a restart
  uint16_t port(size_t i) const;      // the TCP port of listener i, as bound

  boost::asio::io_context& io;
  config::Config cfg;
  net::ConnectionLimiter limiter;
  net::WorkerPool pool;
  authdb::Client db;
  daemon::StatusPublisher status;
  Stats stats;

 private:
  struct Conn {
    std::function<void()> close;
  };
  // A live connection in conns_ for its lifetime (stop() closes what is still there).
  struct Tracked {
    Tracked(std::unordered_set<Conn*>& set, std::function<void()> close) : set_(set), conn_{std::move(close)} {
      set_.insert(&conn_);
    }
    ~Tracked() { set_.erase(&conn_); }
    Tracked(const Tracked&) = delete;
    Tracked& operator=(const Tracked&) = delete;

   private:
    std::unordered_set<Conn*>& set_;
    Conn conn_;
  };
  template <class Socket>
  boost::asio::awaitable<void> policy_session(Socket socket, std::string peer, net::ConnectionLimiter::Token token);
  template <class Socket>
  boost::asio::awaitable<void> grant_session(Socket socket, uint32_t uid, net::ConnectionLimiter::Token token);
  boost::asio::awaitable<void> accept_tcp(boost::asio::ip::tcp::acceptor& a);
  boost::asio::awaitable<void> accept_unix(boost::asio::local::stream_protocol::acceptor& a, bool grant);
  boost::asio::awaitable<std::string> answer_grant(std::string line, uint32_t uid);
  boost::asio::awaitable<void> housekeeping();
  void log_stats(const char* when);
  void spawn(boost::asio::awaitable<void> work);

  std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> tcp_;
  std::vector<uint16_t> tcp_ports_;
  std::vector<std::unique_ptr<boost::asio::local::stream_protocol::acceptor>> unix_;
  std::unordered_set<Conn*> conns_;
  boost::asio::steady_timer timer_;
  bool stopping_ = false;
  uint64_t next_id_ = 0;
};

}  // namespace rg::policy

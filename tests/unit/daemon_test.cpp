// The daemon skeleton both servers derive from: what SIGHUP takes and keeps (the reload table),
// that a bad certificate keeps everything, the connection limit's refusal line, and that stop()
// ends idle sessions while a busy one finishes.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>

#include "shared/config.h"
#include "shared/daemon_server.h"

namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using rg::config::Config;
using namespace std::chrono_literals;

// A test daemon's own keys, as smtpd and pop3d declare theirs.
constexpr rg::daemon::ReloadKey kKeys[] = {
    {"status_file", rg::daemon::differs<&Config::status_file>, nullptr},
    {"smtpd", nullptr, rg::daemon::take<&Config::smtpd>},
};
const rg::daemon::Profile kProfile{
    rg::daemon::section<&Config::pop3d>("pop3d"),
    [](const Config& c) { return "-ERR busy at " + c.hostname + "\r\n"; },
    false,
    kKeys,
};

class TestServer;

// Greets, then waits for lines; "BUSY" marks it busy (stop() lets it finish), "DONE" ends it.
class Session final : public rg::daemon::Drainable {
 public:
  Session(TestServer& srv, rg::net::Stream stream);
  ~Session() override;
  asio::awaitable<void> run() {
    // Behind a PROXY header the greeting names the peer the session sees, and the balancer.
    const std::string hello = stream_.proxy_ip().empty()
                                  ? "+OK hi\r\n"
                                  : "+OK hi " + stream_.remote_ip() + ":" + std::to_string(stream_.remote_port()) +
                                        " via " + stream_.proxy_ip() + "\r\n";
    co_await stream_.write(hello, 5s);
    for (;;) {
      auto [ec, line] = co_await stream_.read_line(100, 5s);
      if (ec || line == "DONE\r\n") break;
      busy_ = line == "BUSY\r\n";
      co_await stream_.write(busy_ ? "+OK busy\r\n" : "+OK\r\n", 5s);
    }
    stream_.close();
  }
  void stop_if_idle() override {
    if (!busy_) stream_.close();
  }

 private:
  TestServer& srv_;
  rg::net::Stream stream_;
  bool busy_ = false;
};

class TestServer : public rg::daemon::ServerBase {
 public:
  TestServer(asio::io_context& io, Config cfg) : ServerBase(io, std::move(cfg), kProfile) {}
  bool fail_prepare = false;
  int committed = 0;

 private:
  asio::awaitable<void> session(rg::config::Listener, rg::net::Stream stream,
                                rg::net::ConnectionLimiter::Token token) override {
    auto held = std::move(token);
    Session s(*this, std::move(stream));
    co_await s.run();
  }
  std::function<void()> prepare_reload(const Config&) override {
    if (fail_prepare) throw std::runtime_error("prepare failed");
    return [this] { ++committed; };
  }
};

Session::Session(TestServer& srv, rg::net::Stream stream) : srv_(srv), stream_(std::move(stream)) { srv_.track(this); }
Session::~Session() { srv_.untrack(this); }

struct Dir {
  Dir() {
    char tmpl[] = "/tmp/rg-daemon-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~Dir() { fs::remove_all(path); }
  fs::path path;
};

// The embedded defaults in `dir` (self-signed certificate there), pop3d on 127.0.0.1 port 0.
Config make_config(const fs::path& dir) {
  const std::string json = R"({"hostname": "one.example", "pop3d": {"listen": [{"address": "127.0.0.1", "port": 1}],
                               "max_connections": 1}})";
  Config cfg = rg::config::parse(json, dir / "relaygate.json", dir);
  cfg.pop3d.listen[0].port = 0;  // any free port (the config file itself cannot say 0)
  return cfg;
}

TEST(DaemonReload, TakesTheTableAndKeepsWhatNeedsARestart) {
  Dir d;
  asio::io_context io;
  TestServer server(io, make_config(d.path));
  const auto old_tls = server.tls;
  struct Row {
    const char* what;
    std::function<void(Config&)> change;
    std::function<bool(const Config&)> running_has_it;
  };
  const Row rows[] = {
      // taken: the shared keys, the section but its listeners, the daemon's own
      {"hostname", [](Config& c) { c.hostname = "two.example"; },
       [](const Config& c) { return c.hostname == "two.example"; }},
      {"grants", [](Config& c) { c.grants.status_interval_seconds = 7; },
       [](const Config& c) { return c.grants.status_interval_seconds == 7; }},
      {"pop3d.max_connections", [](Config& c) { c.pop3d.max_connections = 3; },
       [](const Config& c) { return c.pop3d.max_connections == 3; }},
      {"smtpd (own key)", [](Config& c) { c.smtpd.max_errors = 4; },
       [](const Config& c) { return c.smtpd.max_errors == 4; }},
      // kept: a restart is needed
      {"database", [](Config& c) { c.database = "/elsewhere.db"; },
       [](const Config& c) { return c.database != "/elsewhere.db"; }},
      {"status_file (own key)", [](Config& c) { c.status_file = "/elsewhere.json"; },
       [](const Config& c) { return c.status_file != "/elsewhere.json"; }},
      {"pop3d.listen", [](Config& c) { c.pop3d.listen[0].port = 1; },
       [](const Config& c) { return c.pop3d.listen.at(0).port == 0; }},
  };
  for (const Row& r : rows) {
    Config fresh = server.cfg;
    r.change(fresh);
    server.reload(fresh);
    EXPECT_TRUE(r.running_has_it(server.cfg)) << r.what;
  }
  EXPECT_EQ(server.committed, static_cast<int>(std::size(rows)));
  EXPECT_NE(server.tls, old_tls);  // a new context each time, for new sessions
  EXPECT_EQ(server.limiter.max_total(), 3u);
}

TEST(DaemonReload, ABadCertificateOrAFailedStepKeepsEverything) {
  Dir d;
  asio::io_context io;
  TestServer server(io, make_config(d.path));
  const auto old_tls = server.tls;
  Config fresh = server.cfg;
  fresh.hostname = "two.example";
  fresh.tls.generate_self_signed = false;
  fresh.tls.certificate = d.path / "missing.pem";
  EXPECT_ANY_THROW(server.reload(fresh));
  EXPECT_EQ(server.cfg.hostname, "one.example");
  EXPECT_EQ(server.tls, old_tls);

  fresh = server.cfg;
  fresh.hostname = "two.example";
  server.fail_prepare = true;
  EXPECT_THROW(server.reload(fresh), std::runtime_error);
  EXPECT_EQ(server.cfg.hostname, "one.example");
  EXPECT_EQ(server.tls, old_tls);
  EXPECT_EQ(server.committed, 0);
}

// A blocking client on the test thread; the server runs on its own thread.
struct Client {
  explicit Client(uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Client() { ::close(fd); }
  // One line, "" when the server closed the connection, "<timeout>" after 5 s of silence.
  std::string line() {
    std::string out;
    char c;
    for (;;) {
      const ssize_t n = ::recv(fd, &c, 1, 0);
      if (n < 0) return out.empty() ? "<timeout>" : out;
      if (n == 0) return out;
      out += c;
      if (c == '\n') return out;
    }
  }
  void send(const std::string& s) { (void)!::write(fd, s.data(), s.size()); }
  int fd;
  bool ok = false;
};

struct Running {
  explicit Running(Config cfg) : server(io, std::move(cfg)) {
    server.start();
    thread = std::thread([this] { io.run(); });
  }
  ~Running() {
    asio::post(io, [this] { server.stop(); });
    work.reset();
    thread.join();
  }
  // Runs `f` on the I/O thread and waits for its result.
  template <class F>
  auto on_io(F f) {
    std::promise<decltype(f())> p;
    asio::post(io, [&] { p.set_value(f()); });
    return p.get_future().get();
  }
  asio::io_context io;
  // Keeps run() going once no session or listener is left, so on_io() always gets an answer.
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  TestServer server;
  std::thread thread;
};

TEST(DaemonListeners, RefuseOverTheLimitWithTheProfilesLine) {
  Dir d;
  Running r(make_config(d.path));  // max_connections 1
  Client first(r.server.port(0));
  ASSERT_TRUE(first.ok);
  EXPECT_EQ(first.line(), "+OK hi\r\n");
  Client second(r.server.port(0));
  EXPECT_EQ(second.line(), "-ERR busy at one.example\r\n");
  EXPECT_EQ(second.line(), "");  // closed
  first.send("DONE\r\n");
  EXPECT_EQ(first.line(), "");
  // The slot is free again once the session ended.
  for (int i = 0; i < 100 && r.on_io([&] { return r.server.limiter.total(); }) != 0; ++i)
    std::this_thread::sleep_for(10ms);
  Client third(r.server.port(0));
  EXPECT_EQ(third.line(), "+OK hi\r\n");
}

TEST(DaemonDrain, StopEndsIdleSessionsAndLetsABusyOneFinish) {
  Dir d;
  Running r(make_config(d.path));
  r.on_io([&] {
    r.server.limiter.set_limits(10, 10);
    return 0;
  });
  Client idle(r.server.port(0)), busy(r.server.port(0));
  EXPECT_EQ(idle.line(), "+OK hi\r\n");
  EXPECT_EQ(busy.line(), "+OK hi\r\n");
  busy.send("BUSY\r\n");
  EXPECT_EQ(busy.line(), "+OK busy\r\n");
  r.on_io([&] {
    r.server.stop();
    return 0;
  });
  EXPECT_EQ(idle.line(), "");  // closed by stop()
  EXPECT_FALSE(r.on_io([&] { return r.server.idle(); }));
  busy.send("NOOP\r\n");
  EXPECT_EQ(busy.line(), "+OK\r\n");  // still served
  busy.send("DONE\r\n");
  EXPECT_EQ(busy.line(), "");
  bool idle_now = false;
  for (int i = 0; i < 100 && !(idle_now = r.on_io([&] { return r.server.idle(); })); ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(idle_now);
  Client late(r.server.port(0));
  EXPECT_FALSE(late.ok);  // no longer listening
}

// A proxy_protocol listener for 127.0.0.1 (or `proxy_from`), one connection per client address.
Config make_proxy_config(const fs::path& dir, const std::string& proxy_from) {
  const std::string json = R"({"hostname": "one.example", "pop3d": {"listen": [{"address": "127.0.0.1", "port": 1,
                               "proxy_protocol": true, "proxy_from": [")" +
                           proxy_from + R"("]}], "max_connections": 10, "max_connections_per_ip": 1}})";
  Config cfg = rg::config::parse(json, dir / "relaygate.json", dir);
  cfg.pop3d.listen[0].port = 0;
  return cfg;
}

TEST(DaemonProxy, TheHeaderNamesTheSessionsPeerAndTheLimitCountsIt) {
  Dir d;
  Running r(make_proxy_config(d.path, "127.0.0.0/8"));
  const uint16_t port = r.server.port(0);
  // The header and the first command in one write: the session still reads the command.
  Client first(port);
  first.send("PROXY TCP4 192.0.2.1 127.0.0.1 1111 110\r\nNOOP\r\n");
  EXPECT_EQ(first.line(), "+OK hi 192.0.2.1:1111 via 127.0.0.1\r\n");
  EXPECT_EQ(first.line(), "+OK\r\n");
  // Per-IP limit 1: counted against the client the header names, not the balancer's address.
  Client same(port);
  same.send("PROXY TCP4 192.0.2.1 127.0.0.1 2222 110\r\n");
  EXPECT_EQ(same.line(), "-ERR busy at one.example\r\n");
  EXPECT_EQ(same.line(), "");
  Client other(port);
  const std::string v2_inet6 = std::string("\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24", 16) + "\x20\x01\x0d\xb8" +
                               std::string(11, '\0') + "\x07" + std::string(15, '\0') + "\x01" +
                               std::string("\x01\xbb\x00\x6e", 4);
  other.send(v2_inet6);
  EXPECT_EQ(other.line(), "+OK hi 2001:db8::7:443 via 127.0.0.1\r\n");
  // LOCAL (a health check) keeps the balancer's own address.
  Client check(port);
  check.send(std::string("\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00", 16));
  const std::string local = check.line();
  EXPECT_TRUE(local.starts_with("+OK hi 127.0.0.1:") && local.ends_with(" via 127.0.0.1\r\n")) << local;
  // No header: closed without a greeting.
  Client talker(port);
  talker.send("USER alice\r\n");
  EXPECT_EQ(talker.line(), "");
  for (Client* c : {&first, &other, &check}) c->send("DONE\r\n");
}

TEST(DaemonProxy, APeerOutsideProxyFromIsClosedUnanswered) {
  Dir d;
  Running r(make_proxy_config(d.path, "10.0.0.0/8"));
  Client c(r.server.port(0));
  ASSERT_TRUE(c.ok);
  c.send("PROXY TCP4 192.0.2.1 127.0.0.1 1111 110\r\n");
  EXPECT_EQ(c.line(), "");
  EXPECT_EQ(r.on_io([&] { return r.server.limiter.total(); }), 0u);
}

}  // namespace

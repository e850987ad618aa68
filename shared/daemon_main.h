// The one main() both daemons run: options, config, bind, drop root, sd_notify, SIGHUP reload
// and SIGTERM drain. Server must offer: Server(io_context&, Config), start(), stop(),
// bool idle() (every session ended), reload(Config), `cfg` and `limiter`: daemon::ServerBase
// (shared/daemon_server.h) provides all but the constructor.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

#include "shared/config.h"
#include "shared/daemon.h"
#include "shared/log.h"
#include "shared/net/preflight.h"
#include "shared/version.h"

namespace rg::daemon {

struct MainOptions {
  const char* program;                    // "relaygate-smtpd"
  const char* log_name;                   // "smtpd"
  std::chrono::milliseconds drain_limit;  // what SIGTERM waits for live sessions
  size_t (*listener_count)(const config::Config&);
  // The instance lock file in this daemon's state folder (one instance per spool / status file).
  std::string (*lock_file)(const config::Config&);
};

namespace detail {
// After stop(): polls server.idle() until true (returns true) or `limit` passed (false).
template <class Server>
boost::asio::awaitable<bool> drain(Server& server, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  boost::asio::steady_timer poll(co_await boost::asio::this_coro::executor);
  while (!server.idle()) {
    if (std::chrono::steady_clock::now() >= deadline) co_return false;
    poll.expires_after(std::chrono::milliseconds(20));
    co_await poll.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  }
  co_return true;
}

template <class Server>
void wait_for_hangup(boost::asio::signal_set& hup, Server& server, const std::string& config_file) {
  hup.async_wait([&hup, &server, &config_file](const boost::system::error_code& ec, int) {
    if (ec) return;  // cancelled at shutdown
    notify("RELOADING=1");
    try {
      server.reload(config::load_or_defaults(config_file));
    } catch (const std::exception& e) {
      // The running config and certificate stay in force.
      log::error().kv("event", "reload").kv("outcome", "failed").kv("error", e.what());
    }
    notify("READY=1");
    wait_for_hangup(hup, server, config_file);
  });
}
}  // namespace detail

template <class Server>
int run_main(int argc, char** argv, const MainOptions& opt) {
  log::set_program(opt.log_name);
  std::string config_file;
  bool check_only = false;
  bool allow_root = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config_file = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      config_file = a.substr(9);
    } else if (a == "--check-config") {
      check_only = true;
    } else if (a == "--allow-root") {
      allow_root = true;  // explicit permission to keep running as uid 0 (run_as.allow_root)
    } else if (a == "--version") {
      std::cout << opt.program << " " << kVersion << "\n";
      return 0;
    } else if (a == "-h" || a == "--help") {
      std::cout
          << "usage: " << opt.program << " [--config FILE] [--check-config] [--allow-root] [--version] [--help]\n"
          << "  --config FILE   the configuration (default: the embedded defaults, relative to the current folder)\n"
          << "  --check-config  validate the configuration and exit (0 ok, 1 problem)\n"
          << "  --allow-root    keep running as root instead of becoming run_as.user\n"
          << "  --version       print the version and exit\n"
          << "Runs in the foreground and logs to stderr. SIGHUP reloads, SIGTERM stops. See " << opt.program
          << "(8).\n";
      return 0;
    } else {
      std::cerr << opt.program << ": unknown option " << a << "\n"
                << "usage: " << opt.program
                << " [--config FILE] [--check-config] [--allow-root] [--version] [--help]\n";
      return 2;
    }
  }
  try {
    config::Config cfg = config::load_or_defaults(config_file);
    cfg.run_as.allow_root = cfg.run_as.allow_root || allow_root;
    const bool is_smtpd = std::string_view(opt.log_name) == "smtpd";
    const bool is_policyd = std::string_view(opt.log_name) == "policyd";  // no TLS, no Maildirs
    // Issue 9: what the daemon will need, checked as the user it will run as, before anything
    // is created: a root-owned database or an unwritable spool stops the start with its name.
    if (!preflight::log_report(preflight::check_as_service_user(cfg, !is_smtpd && !is_policyd, is_smtpd, !is_policyd)))
      return 1;
    if (check_only) {
      std::cout << (config_file.empty() ? "embedded defaults" : config_file) << ": ok\n";
      return 0;
    }
    std::signal(SIGPIPE, SIG_IGN);
    // Issue 9: the lock comes first, so a second instance touches nothing (no spool recovery,
    // no purge) and says who holds it; the ports are bound next, and only then is anything changed.
    const InstanceLock instance(opt.lock_file(cfg), config_file.empty() ? "(embedded defaults)" : config_file,
                                cfg.run_as.user, cfg.run_as.group);
    boost::asio::io_context io(1);
    Server server(io, std::move(cfg));
    server.start();
    // Ports are bound (25/110 need root or CAP_NET_BIND_SERVICE): now give up root.
    const std::string identity =
        drop_privileges(server.cfg.run_as.user, server.cfg.run_as.group, server.cfg.run_as.allow_root);
    bool forced = false;
    boost::asio::signal_set hup(io, SIGHUP);
    detail::wait_for_hangup(hup, server, config_file);
    boost::asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      log::info().kv("event", "stopping").kv("signal", strsignal(sig)).kv("sessions", server.limiter.total());
      notify("STOPPING=1");
      hup.cancel();
      server.stop();
      // Sessions end once their connection is closed (busy ones after their transaction);
      // io.run() then returns with no coroutine left that could outlive the Server.
      boost::asio::co_spawn(io, detail::drain(server, opt.drain_limit), [&](std::exception_ptr, bool clean) {
        if (!clean) {
          forced = true;
          io.stop();
        }
      });
    });
    log::info().kv("event", "started").kv("database", server.cfg.database_name()).kv("running_as", identity);
    notify("READY=1\nSTATUS=listening on " + std::to_string(opt.listener_count(server.cfg)) + " ports");
    io.run();
    if (forced) {
      // Suspended sessions still refer to the Server: skip destructors rather than run them in
      // the wrong order. Acknowledged mail is fsync'd and POP3 deletes only at QUIT.
      log::warn().kv("event", "stopped").kv("outcome", "forced").kv("sessions", server.limiter.total());
      std::fflush(nullptr);
      std::_Exit(1);
    }
    log::info().kv("event", "stopped").kv("outcome", "clean");
    return 0;
  } catch (const std::exception& e) {
    std::cerr << opt.program << ": " << e.what() << "\n";
    return 1;
  }
}

}  // namespace rg::daemon

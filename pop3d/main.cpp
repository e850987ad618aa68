// relaygate-pop3d: the POP3 server whose logins grant POP-before-SMTP relay rights.
// Usage: relaygate-pop3d [--config FILE] [--check-config] [--allow-root]; foreground, logs to stderr.
// Signals: SIGTERM/SIGINT close the listeners and every session (nothing is removed: deletions
// happen only at QUIT) and exit once the sessions have ended; SIGHUP reloads the config file.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "pop3d/server.h"
#include "shared/config.h"
#include "shared/daemon.h"
#include "shared/log.h"

namespace {

using namespace rg;

// How long sessions get to end after SIGTERM: a password hash or a failed-login delay in flight.
constexpr std::chrono::milliseconds kDrainLimit{10000};

void wait_for_hangup(boost::asio::signal_set& hup, pop3::Server& server, const std::string& config_file) {
  hup.async_wait([&hup, &server, &config_file](const boost::system::error_code& ec, int) {
    if (ec) return;  // cancelled at shutdown
    try {
      server.reload(config::load_or_defaults(config_file));
    } catch (const std::exception& e) {
      log::error().kv("event", "reload").kv("outcome", "failed").kv("error", e.what());
    }
    wait_for_hangup(hup, server, config_file);
  });
}

}  // namespace

int main(int argc, char** argv) {
  log::set_program("pop3d");
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
    } else {
      std::cerr << "usage: relaygate-pop3d [--config FILE] [--check-config] [--allow-root]\n";
      return 2;
    }
  }
  try {
    config::Config cfg = config::load_or_defaults(config_file);
    cfg.run_as.allow_root = cfg.run_as.allow_root || allow_root;
    if (check_only) {
      std::cout << (config_file.empty() ? "embedded defaults" : config_file) << ": ok\n";
      return 0;
    }
    std::signal(SIGPIPE, SIG_IGN);
    boost::asio::io_context io(1);
    pop3::Server server(io, std::move(cfg));
    server.start();
    // Ports are bound (25/110 need root or CAP_NET_BIND_SERVICE): now give up root.
    const std::string identity = daemon::drop_privileges(server.cfg.run_as.user, server.cfg.run_as.group,
                                                         server.cfg.run_as.allow_root);
    bool forced = false;
    boost::asio::signal_set hup(io, SIGHUP);
    wait_for_hangup(hup, server, config_file);
    boost::asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      log::info().kv("event", "stopping").kv("signal", strsignal(sig)).kv("sessions", server.limiter.total());
      daemon::notify("STOPPING=1");
      hup.cancel();
      server.stop();
      // Sessions end on their own once their connection is closed; io.run() then returns with no
      // coroutine left, so nothing outlives the Server it refers to.
      boost::asio::co_spawn(io, server.drain(kDrainLimit), [&](std::exception_ptr, bool clean) {
        if (!clean) {
          forced = true;
          io.stop();
        }
      });
    });
    log::info().kv("event", "started").kv("database", server.cfg.database.string()).kv("running_as", identity);
    daemon::notify("READY=1\nSTATUS=listening on " + std::to_string(server.cfg.pop3d.listen.size()) + " ports");
    io.run();
    if (forced) {
      // Suspended sessions still refer to the Server: skip every destructor rather than run
      // them in the wrong order. The database is consistent (WAL) and nothing was being removed.
      log::warn().kv("event", "stopped").kv("outcome", "forced").kv("sessions", server.limiter.total());
      std::fflush(nullptr);
      std::_Exit(1);
    }
    log::info().kv("event", "stopped").kv("outcome", "clean");
    return 0;
  } catch (const config::ConfigError& e) {
    std::cerr << "relaygate-pop3d: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "relaygate-pop3d: " << e.what() << "\n";
    return 1;
  }
}

// relaygate-smtpd: SMTP with SMTP AUTH and the POP-before-SMTP relay policy.
// Usage: relaygate-smtpd [--config FILE] [--check-config] [--allow-root]; foreground, logs to stderr.
// Signals: SIGTERM/SIGINT stop accepting, end idle sessions, let a message being received or
// delivered finish (bounded by kDrainLimit) and exit 0; SIGHUP reloads config and certificate.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "shared/config.h"
#include "shared/daemon.h"
#include "shared/log.h"
#include "smtpd/server.h"

namespace {

using namespace rg;

// How long a message in DATA (or its fsync'd delivery) gets to finish after SIGTERM. Nothing
// acknowledged can be lost when it runs out: 250 is only sent after fsync.
constexpr std::chrono::milliseconds kDrainLimit{30000};

void wait_for_hangup(boost::asio::signal_set& hup, smtp::Server& server, const std::string& config_file) {
  hup.async_wait([&hup, &server, &config_file](const boost::system::error_code& ec, int) {
    if (ec) return;  // cancelled at shutdown
    daemon::notify("RELOADING=1");
    try {
      server.reload(config::load_or_defaults(config_file));
    } catch (const std::exception& e) {
      // The running config and certificate stay in force.
      log::error().kv("event", "reload").kv("outcome", "failed").kv("error", e.what());
    }
    daemon::notify("READY=1");
    wait_for_hangup(hup, server, config_file);
  });
}

}  // namespace

int main(int argc, char** argv) {
  log::set_program("smtpd");
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
      std::cerr << "usage: relaygate-smtpd [--config FILE] [--check-config] [--allow-root]\n";
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
    smtp::Server server(io, std::move(cfg));
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
      boost::asio::co_spawn(io, server.drain(kDrainLimit), [&](std::exception_ptr, bool clean) {
        if (!clean) {
          forced = true;
          io.stop();
        }
      });
    });
    log::info().kv("event", "started").kv("database", server.cfg.database.string()).kv("running_as", identity);
    daemon::notify("READY=1\nSTATUS=listening on " + std::to_string(server.cfg.smtpd.listen.size()) + " ports");
    io.run();
    if (forced) {
      // Sessions still suspended refer to the Server: skip destructors rather than run them in
      // the wrong order. Every 250 was preceded by fsync, so nothing acknowledged is lost.
      log::warn().kv("event", "stopped").kv("outcome", "forced").kv("sessions", server.limiter.total());
      std::fflush(nullptr);
      std::_Exit(1);
    }
    log::info().kv("event", "stopped").kv("outcome", "clean");
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "relaygate-smtpd: " << e.what() << "\n";
    return 1;
  }
}

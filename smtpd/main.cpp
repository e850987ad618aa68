// relaygate-smtpd: SMTP with SMTP AUTH and the POP-before-SMTP relay policy.
// Usage: relaygate-smtpd [--config FILE] [--check-config] [--allow-root]; foreground, logs to stderr.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstring>
#include <iostream>

#include "shared/config.h"
#include "shared/daemon.h"
#include "shared/log.h"
#include "smtpd/server.h"

int main(int argc, char** argv) {
  using namespace rg;
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
    boost::asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      log::info().kv("event", "stopping").kv("signal", strsignal(sig));
      daemon::notify("STOPPING=1");
      server.stop();
      // Mail is acknowledged only after fsync, so stopping loses nothing acknowledged.
      io.stop();
    });
    log::info().kv("event", "started").kv("database", server.cfg.database.string()).kv("running_as", identity);
    daemon::notify("READY=1\nSTATUS=listening on " + std::to_string(server.cfg.smtpd.listen.size()) + " ports");
    io.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "relaygate-smtpd: " << e.what() << "\n";
    return 1;
  }
}

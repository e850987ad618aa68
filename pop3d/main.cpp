// relaygate-pop3d: the POP3 server whose logins grant POP-before-SMTP relay rights.
// Usage: relaygate-pop3d [--config FILE] [--check-config]; foreground, logs to stderr.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstring>
#include <iostream>

#include "pop3d/server.h"
#include "shared/config.h"
#include "shared/log.h"

int main(int argc, char** argv) {
  using namespace rg;
  log::set_program("pop3d");
  std::string config_file;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config_file = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      config_file = a.substr(9);
    } else if (a == "--check-config") {
      check_only = true;
    } else {
      std::cerr << "usage: relaygate-pop3d [--config FILE] [--check-config]\n";
      return 2;
    }
  }
  try {
    config::Config cfg = config::load_or_defaults(config_file);
    if (check_only) {
      std::cout << (config_file.empty() ? "embedded defaults" : config_file) << ": ok\n";
      return 0;
    }
    std::signal(SIGPIPE, SIG_IGN);
    boost::asio::io_context io(1);
    pop3::Server server(io, std::move(cfg));
    server.start();
    boost::asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      log::info().kv("event", "stopping").kv("signal", strsignal(sig));
      server.stop();
      io.stop();  // POP3 sessions lose nothing when cut: deletions happen only at QUIT
    });
    log::info().kv("event", "started").kv("database", server.cfg.database.string());
    io.run();
    return 0;
  } catch (const config::ConfigError& e) {
    std::cerr << "relaygate-pop3d: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "relaygate-pop3d: " << e.what() << "\n";
    return 1;
  }
}

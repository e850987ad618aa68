// relaygate-smtpd: SMTP with SMTP AUTH and the POP-before-SMTP relay policy.
// Usage: relaygate-smtpd [--config FILE] [--check-config]; foreground, logs to stderr.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstring>
#include <iostream>

#include "shared/config.h"
#include "shared/log.h"
#include "smtpd/server.h"

int main(int argc, char** argv) {
  using namespace rg;
  log::set_program("smtpd");
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
      std::cerr << "usage: relaygate-smtpd [--config FILE] [--check-config]\n";
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
    smtp::Server server(io, std::move(cfg));
    server.start();
    boost::asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      log::info().kv("event", "stopping").kv("signal", strsignal(sig));
      server.stop();
      // Mail is acknowledged only after fsync, so stopping loses nothing acknowledged.
      io.stop();
    });
    log::info().kv("event", "started").kv("database", server.cfg.database.string());
    io.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "relaygate-smtpd: " << e.what() << "\n";
    return 1;
  }
}

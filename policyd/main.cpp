// relaygate-policyd: Postfix's policy service for relaygate's grants, and the grant socket
// Dovecot's post-login program writes to. Usage: relaygate-policyd [--config FILE]
// [--check-config] [--allow-root]; foreground, logs to stderr. SIGHUP reloads, SIGTERM stops.
#include "policyd/server.h"
#include "shared/daemon_main.h"

int main(int argc, char** argv) {
  // Nothing a connection waits for outlasts a database call.
  const rg::daemon::MainOptions options{
      "relaygate-policyd", "policyd", std::chrono::milliseconds(5000),
      [](const rg::config::Config& c) { return c.policyd.listen.size(); },
      [](const rg::config::Config& c) { return (c.status_file.parent_path() / "relaygate-policyd.lock").string(); }};
  return rg::daemon::run_main<rg::policy::Server>(argc, argv, options);
}

// relaygate-pop3d: the POP3 server whose logins grant POP-before-SMTP relay rights.
// Usage: relaygate-pop3d [--config FILE] [--check-config] [--allow-root]; foreground, logs to stderr.
// Signals: SIGTERM/SIGINT close the listeners and every session (nothing is removed: deletions
// happen only at QUIT) and exit once the sessions have ended; SIGHUP reloads the config file.
#include "pop3d/server.h"
#include "shared/daemon_main.h"

int main(int argc, char** argv) {
  // A password hash or a failed-login delay in flight is all a session can be waiting for.
  const rg::daemon::MainOptions options{
      "relaygate-pop3d", "pop3d", std::chrono::milliseconds(10000),
      [](const rg::config::Config& c) { return c.pop3d.listen.size(); },
      [](const rg::config::Config& c) { return (c.status_file.parent_path() / "relaygate-pop3d.lock").string(); }};
  return rg::daemon::run_main<rg::pop3::Server>(argc, argv, options);
}

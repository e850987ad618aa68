// relaygate-smtpd: SMTP with SMTP AUTH and the POP-before-SMTP relay policy.
// Usage: relaygate-smtpd [--config FILE] [--check-config] [--allow-root]; foreground, logs to stderr.
// Signals: SIGTERM/SIGINT stop accepting, end idle sessions, let a message being received or
// delivered finish (within 30 s) and exit 0; SIGHUP reloads config and certificate.
#include "shared/daemon_main.h"
#include "smtpd/server.h"

int main(int argc, char** argv) {
  // A message in DATA, its fsync'd delivery or a relay to the smarthost gets this long; nothing
  // acknowledged can be lost when it runs out, since 250 is only sent after fsync.
  const rg::daemon::MainOptions options{
      "relaygate-smtpd", "smtpd", std::chrono::milliseconds(30000),
      [](const rg::config::Config& c) { return c.smtpd.listen.size(); },
      [](const rg::config::Config& c) { return (c.spool_dir / "relaygate-smtpd.lock").string(); }};
  return rg::daemon::run_main<rg::smtp::Server>(argc, argv, options);
}

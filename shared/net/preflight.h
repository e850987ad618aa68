// Start-up preflight shared by `relaygatectl config check`, `--check-config` and both daemons'
// start (issue 9, like `postfix check`): TLS files, folders the daemons write, the smarthost
// password file. Checked as the service user: a root caller forks a child that becomes
// run_as.user first, so "readable" and "writable" mean what they will mean for the daemon.
#pragma once

#include <string>
#include <vector>

#include "shared/config.h"

namespace rg::preflight {

struct Finding {
  bool error;           // false: a warning (e.g. the certificate expires within 30 days)
  std::string message;  // names the path or key, its owner and mode where it matters
};

// A certificate that expires sooner than this is warned about.
inline constexpr long kCertificateWarnDays = 30;

// Every check, run as the current user. `daemons` says whose folders: "pop3d", "smtpd" or both.
// `mail`: the TLS files and the Maildir root (relaygate-policyd serves neither: false).
std::vector<Finding> check(const config::Config& cfg, bool pop3d, bool smtpd, bool mail = true);

// check(), but as run_as.user when called as root and that user exists (in a forked child);
// as root otherwise (the finding then says the user is missing).
std::vector<Finding> check_as_service_user(const config::Config& cfg, bool pop3d, bool smtpd, bool mail = true);

// Prints findings as "<error|warning>: <message>" lines to stderr; returns true when no error.
bool report(const std::vector<Finding>& findings);
// The same as log lines (`event=preflight outcome=failed|warning msg=...`), for the daemons.
bool log_report(const std::vector<Finding>& findings);

}  // namespace rg::preflight

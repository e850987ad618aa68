// Credential checks both daemons share: login-name mapping, slow password verification on the
// worker pool (with a dummy hash for unknown users), legacy-secret lookup for APOP/CRAM-MD5/
// DIGEST-MD5, and the escalating failed-login delay kept in authdb per client network
// (IPv4 address, IPv6 /64) so pop3d and smtpd slow down the same guesser.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "authdb/client.h"
#include "shared/config.h"
#include "shared/net/limits.h"

namespace rg {

struct AuthOutcome {
  enum class Result { Ok, UnknownUser, BadPassword, Disabled, TempFail } result = Result::UnknownUser;
  std::string user;            // canonical name when Ok
  const char* reason() const;  // "ok", "unknown-user", ... for logs
};

struct LegacySecret {
  std::optional<std::string> user;    // canonical name when the user exists, is enabled and has a secret
  std::optional<std::string> secret;  // set together with user
  bool tempfail = false;              // the database could not be read
};

// First failure waits kFailureDelayBase, each further one twice as long, up to the configured cap.
constexpr std::chrono::milliseconds kFailureDelayBase{250};
std::chrono::milliseconds failure_delay(int64_t failures, int64_t cap_ms);

class Authenticator {
 public:
  // Every database call goes through `db` (its threads, its time limit): a lookup never blocks
  // the I/O thread. Logins never use smtpd's RCPT cache: a password change or a disabled user
  // takes effect at the next login.
  Authenticator(authdb::Client& db, net::WorkerPool& pool, const config::Config& cfg)
      : db_(db), pool_(pool), cfg_(cfg) {}

  // Maps `login` to a user and verifies `password` on the worker pool. Unknown users cost the
  // same hashing time. Never throws for database faults (TempFail).
  boost::asio::awaitable<AuthOutcome> check_password(std::string login, std::string password);
  // The legacy secret of `login`'s user, if it has one.
  boost::asio::awaitable<LegacySecret> legacy_secret(std::string login);
  // Canonical user for a login or authzid ("alice", "Alice@example.test"), nullopt if not ours.
  std::optional<std::string> user_of(std::string_view login) const;

  // One failed login as both daemons report it. The views must outlive the call (the caller
  // awaits it).
  struct FailedLogin {
    std::string_view session;  // the session id of the log line
    std::string_view ip;
    std::string_view proto;  // "smtp", "pop3"
    std::string_view mech;   // "PLAIN", ..., "USER", "APOP"
    std::string_view login;  // the identity the client named
    std::string_view why;    // short, secret-free
    bool tls = false;
  };
  // Records a failed login, waits the escalating delay, then writes the one line fail2ban's
  // filter reads (packaging/fail2ban/filter.d/relaygate.conf): `event=auth outcome=failed
  // reason= ip= proto= mech= login= tls= failures=`. Returns the failure count.
  boost::asio::awaitable<int64_t> failed(FailedLogin attempt);
  // Forgets the failures of `ip`'s network after a successful login. False (logged) when the
  // database could not be written: the daemons then answer a temporary failure (smtpd 454 4.7.0,
  // pop3d -ERR [SYS/TEMP]) rather than a login whose bookkeeping was lost — a login's outcome is
  // given only once its writes are committed, which also keeps the two daemons' answers the same
  // while the database is locked (pop3d must commit its grant anyway).
  boost::asio::awaitable<bool> succeeded(std::string ip);

 private:
  authdb::Client& db_;
  net::WorkerPool& pool_;
  const config::Config& cfg_;
};

}  // namespace rg

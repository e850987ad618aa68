// The session's logins (RFC 1939 §7 USER/PASS and APOP, RFC 5034 AUTH): the work after the
// gates and the checks of commands.h, then the one path a login takes (login / login_failed):
// the maildrop lock, the relay grant, the failed-login delay and the log line fail2ban reads.
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <ctime>

#include "auth/sasl_exchange.h"
#include "authdb/users.h"
#include "pop3d/command_parse.h"
#include "pop3d/limits.h"
#include "pop3d/server.h"
#include "pop3d/session.h"
#include "shared/log.h"
#include "shared/net/errors.h"
#include "shared/sasl/sasl.h"

namespace rg::pop3 {

namespace asio = boost::asio;

asio::awaitable<void> Session::proceed_user(std::string_view name) {
  pending_user_ = std::string(name);
  // The same reply for every name: it must not reveal which users exist.
  ok("Send your password");
  co_return;
}

asio::awaitable<void> Session::proceed_pass(std::string_view password_arg) {
  std::string login_name = std::move(*pending_user_);  // check_pass: USER was given
  pending_user_.reset();
  // RFC 1939 §7: PASS has one argument, which may contain spaces.
  const std::string password(password_arg);
  const AuthOutcome outcome = co_await srv_.auth.check_password(login_name, password);
  if (outcome.result != AuthOutcome::Result::Ok) co_return co_await login_failed("pop3", login_name, outcome.reason());
  co_await login(outcome.user, "pop3");
}

asio::awaitable<void> Session::proceed_apop(std::string_view args) {
  const ApopArgs a = *parse_apop(args);  // check_apop: well-formed
  const std::string apop_name(a.name);
  const LegacySecret ls = co_await srv_.auth.legacy_secret(apop_name);
  if (ls.tempfail) co_return co_await login_failed("apop", a.name, "tempfail");
  // Unknown users get the same digest work against a dummy secret.
  const bool good =
      sasl::apop_verify(apop_timestamp_, ls.secret ? std::string_view(*ls.secret) : "relaygate-no-such-user", a.digest);
  if (!good || !ls.secret)
    co_return co_await login_failed("apop", a.name, ls.secret ? "bad-digest" : "no-legacy-secret-or-unknown-user");
  co_await login(*ls.user, "apop");
}

asio::awaitable<void> Session::proceed_auth(std::string_view args) {
  if (split_args(args).empty()) {
    // Pre-RFC 5034 clients (and fetchmail) list mechanisms with a bare AUTH.
    const std::string mechs = usable_mechanisms();  // split_args returns views into it
    std::string out = "+OK\r\n";
    for (auto m : split_args(mechs)) out.append(m).append("\r\n");
    stream_.queue(out + ".\r\n");
    co_return;
  }
  // check_auth: well-formed, an offered mechanism, an initial response that decodes.
  const auto a = parse_auth(args);
  auto mech = sasl::make_mechanism(a->mechanism, {srv_.cfg.hostname, "pop", ""});
  const std::string mech_name(mech->name());
  sasl_mech_ = mech_name;
  std::optional<std::string> initial;
  if (a->initial) initial = decode_initial_response(*a->initial);
  // The exchange itself is auth/sasl_exchange.h; here only its POP3 framing and replies.
  // POP3 framing of the exchange (RFC 5034 §4): "+ <base64>" out, one line in, bounded by the
  // SASL response limit and the idle timeout.
  LineSaslTransport transport(stream_, "+ ", Limits::kSaslResponse,
                              std::chrono::seconds(srv_.cfg.pop3d.idle_timeout_seconds), [this] { return flush(); });
  const SaslOutcome out = co_await run_sasl_exchange(*mech, initial, srv_.auth, transport);
  switch (out.kind) {
    case SaslOutcome::Kind::Ok: co_return co_await login(out.user, "pop3-sasl");
    case SaslOutcome::Kind::Failed:
    case SaslOutcome::Kind::TempFail: co_return co_await login_failed("pop3-sasl", out.login, out.reason);
    case SaslOutcome::Kind::Protocol:
      co_return co_await login_failed(
          "pop3-sasl", out.login,
          out.reason.empty() ? std::string_view("bad-credentials") : std::string_view(out.reason));
    case SaslOutcome::Kind::Closed: end(out.timed_out ? "idle-timeout" : "client-closed"); co_return;
    case SaslOutcome::Kind::TooLong: co_return err("[AUTH] Authentication response too long");
    case SaslOutcome::Kind::BadBase64: co_return err("[AUTH] Invalid base64 in response");
    case SaslOutcome::Kind::Cancelled:
      // RFC 5034 §4: the client cancelled; an abort is not a failed password.
      log::info(id_)
          .kv("event", "auth")
          .kv("outcome", "aborted")
          .kv("reason", "client-cancelled")
          .kv("ip", stream_.remote_ip())
          .kv("proto", "pop3")
          .kv("mech", mech_name);
      co_return err("[AUTH] Authentication cancelled");
    case SaslOutcome::Kind::Malformed:
      log::info(id_)
          .kv("event", "auth")
          .kv("outcome", "malformed")
          .kv("reason", log::token(out.reason))
          .kv("ip", stream_.remote_ip())
          .kv("proto", "pop3")
          .kv("mech", mech_name);
      co_return err("[AUTH] Malformed authentication response");
  }
}

asio::awaitable<void> Session::login_failed(const char* method, std::string_view login_name, std::string_view why) {
  ++n_auth_fail_;
  if (why == "tempfail") {
    err("[SYS/TEMP] Temporary authentication failure");
    co_return;
  }
  // Escalating delay per client network, shared with smtpd through authdb (auth/authenticator.h).
  const Authenticator::FailedLogin attempt{id_, stream_.remote_ip(), "pop3", mech_of(method), login_name,
                                           why, stream_.is_tls()};
  co_await srv_.auth.failed(attempt);
  err("[AUTH] Authentication failed");
}

asio::awaitable<void> Session::login(const std::string& user, const char* method) {
  const int64_t now = std::time(nullptr);
  try {
    drop_ = Maildrop::open(srv_.cfg.maildir_root, user);
    if (!drop_) {
      log::info(id_)
          .kv("event", "auth")
          .kv("outcome", "in-use")
          .kv("reason", "maildrop-locked")
          .kv("ip", stream_.remote_ip())
          .kv("proto", "pop3")
          .kv("mech", mech_of(method))
          .kv("user", user);
      err("[IN-USE] Mailbox is locked by another POP3 session");
      co_return;
    }
  } catch (const std::exception& e) {
    log::error(id_)
        .kv("event", "auth")
        .kv("outcome", "tempfail")
        .kv("reason", "maildrop-error")
        .kv("ip", stream_.remote_ip())
        .kv("method", method)
        .kv("user", user)
        .kv("error", e.what());
    drop_.reset();
    err("[SYS/TEMP] Cannot open the mailbox");
    co_return;
  }
  // The login holds only once its grant is committed (issue 11): any database fault, a timeout
  // included, is -ERR [SYS/TEMP] with the reason logged, never +OK from what a cache remembers.
  std::string grant_error;
  try {
    const std::string ip = stream_.remote_ip();
    auto write = [ip, user, method = std::string(method), ttl = srv_.cfg.grants.ttl_seconds, now](authdb::Store& s) {
      return s.grant(ip, user, method, ttl, now);
    };
    if (!co_await srv_.db.run(authdb::Lane::Write, "write grant", write))
      throw authdb::Error("user " + user + " vanished during login");
    if (!co_await srv_.auth.succeeded(ip)) throw authdb::Error("could not clear the failed-login counter");
  } catch (const std::exception& e) {
    grant_error = e.what();
  }
  if (!grant_error.empty()) {
    log::error(id_)
        .kv("event", "auth")
        .kv("outcome", "tempfail")
        .kv("reason", "grant-failed")
        .kv("ip", stream_.remote_ip())
        .kv("method", method)
        .kv("user", user)
        .kv("error", grant_error);
    drop_.reset();
    err("[SYS/TEMP] Temporary failure, try again later");
    co_return;
  }
  srv_.status.request();
  user_ = user;
  state_ = State::Transaction;
  const Maildrop::Totals all = drop_->all();
  log::info(id_)
      .kv("event", "auth")
      .kv("outcome", "ok")
      .kv("ip", stream_.remote_ip())
      .kv("proto", "pop3")
      .kv("mech", mech_of(method))
      .kv("user", user)
      .kv("method", method)
      .kv("tls", stream_.is_tls() ? stream_.tls_description() : "no")
      .kv("messages", all.count)
      .kv("grant_ttl", srv_.cfg.grants.ttl_seconds);
  ok("Logged in, " + std::to_string(all.count) + " messages (" + std::to_string(all.octets) + " octets)");
}

}  // namespace rg::pop3

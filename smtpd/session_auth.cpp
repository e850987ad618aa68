// SMTP AUTH (RFC 4954): the work after check_auth (commands.cpp) passed — the mechanism, its
// initial response, the exchange (auth/sasl_exchange.h) in SMTP's framing, and the replies.
#include <algorithm>
#include <chrono>

#include "auth/sasl_exchange.h"
#include "shared/log.h"
#include "shared/net/errors.h"
#include "shared/sasl/codec.h"
#include "shared/sasl/sasl.h"
#include "smtpd/limits.h"
#include "smtpd/session.h"

namespace rg::smtp {

namespace asio = boost::asio;

asio::awaitable<void> Session::auth_failed(std::string_view mech, std::string_view login, std::string_view why) {
  count(false);
  if (why == "tempfail") co_return reply(454, "4.7.0", "Temporary authentication failure");
  const Authenticator::FailedLogin attempt{id_, stream_.remote_ip(), "smtp", mech, login, why, stream_.is_tls()};
  co_await srv_.auth.failed(attempt);
  reply(535, "5.7.8", "Error: authentication failed");
}

asio::awaitable<void> Session::auth_succeeded(const std::string& user, std::string_view mech) {
  const std::string ip = stream_.remote_ip();
  if (!co_await srv_.auth.succeeded(ip)) {
    // The failed-login counter could not be cleared (authenticator.h: no login before its
    // writes are committed); like any database fault during AUTH.
    count(false);
    event_line(log::Level::Error, "tempfail", "database").kv("proto", "smtp").kv("mech", mech).kv("user", user);
    co_return reply(454, "4.7.0", "Temporary authentication failure");
  }
  count(true);
  auth_user_ = user;
  auth_mech_ = std::string(mech);
  log::info(id_)
      .kv("event", "auth")
      .kv("outcome", "ok")
      .kv("ip", stream_.remote_ip())
      .kv("proto", "smtp")
      .kv("mech", mech)
      .kv("user", user)
      .kv("tls", stream_.is_tls() ? stream_.tls_description() : "no");
  reply(235, "2.7.0", "Authentication successful");
  co_return;
}

asio::awaitable<void> Session::proceed_auth(std::string_view args) {
  // After the sequence and the syntax (check_auth): the mechanism, then the TLS policy, then
  // the initial response (RFC 4954 §4).
  const AuthArgs a = split_auth_args(args);
  auto mech = sasl::make_mechanism(a.mechanism, {srv_.cfg.hostname, "smtp", ""});
  const auto offered = offered_mechanisms();
  if (!mech) {
    co_return refuse({504, "5.5.4", "Unrecognized authentication type", "unknown-mechanism"});
  }
  if (std::find(offered.begin(), offered.end(), mech->name()) == offered.end()) {
    count(false);
    // RFC 4954 §6: 538 when the mechanism would be allowed once TLS is active.
    const auto with_tls = config::sasl_mechanisms(srv_.cfg, listener_, true);
    if (!stream_.is_tls() && std::find(with_tls.begin(), with_tls.end(), mech->name()) != with_tls.end())
      co_return reply(538, "5.7.11", "Encryption required for requested authentication mechanism");
    co_return reply(504, "5.5.4", "Unrecognized authentication type");
  }
  const std::string mname(mech->name());
  std::optional<std::string> initial;
  if (!a.initial.empty()) {
    if (a.initial == "=") {
      initial = "";  // RFC 4954 §4: "=" is an empty initial response
    } else {
      initial = sasl::base64_decode(a.initial);
      if (!initial) {
        co_return refuse({501, "5.5.2", "Error: invalid base64 data", "bad-base64"});
      }
    }
  }
  // The exchange itself is auth/sasl_exchange.h; here only its SMTP framing and replies.
  // SMTP framing of the exchange (RFC 4954 §4): "334 <base64>" out, one line in, bounded by
  // the SASL response limit and the command timeout.
  LineSaslTransport transport(stream_, "334 ", limits::kMaxSaslResponse,
                              std::chrono::seconds(srv_.cfg.smtpd.command_timeout_seconds), [this] { return flush(); });
  const SaslOutcome out = co_await run_sasl_exchange(*mech, initial, srv_.auth, transport);
  switch (out.kind) {
    case SaslOutcome::Kind::Ok: co_return co_await auth_succeeded(out.user, mname);
    case SaslOutcome::Kind::Failed:
    case SaslOutcome::Kind::TempFail: co_return co_await auth_failed(mname, out.login, out.reason);
    case SaslOutcome::Kind::Closed: closing_ = true; co_return;
    case SaslOutcome::Kind::TooLong:
      co_return refuse({500, "5.5.6", "Error: authentication exchange line is too long", "syntax"});
    case SaslOutcome::Kind::BadBase64: co_return refuse({501, "5.5.2", "Error: invalid base64 data", "bad-base64"});
    case SaslOutcome::Kind::Cancelled:
      count(false);
      event_line(log::Level::Info, "aborted", "client-cancelled").kv("proto", "smtp").kv("mech", mname);
      co_return reply(501, "5.7.0", "Authentication aborted");
    case SaslOutcome::Kind::Malformed:
    case SaslOutcome::Kind::Protocol:
      count(false);
      event_line(log::Level::Info, "malformed",
                 out.reason.empty() ? std::string_view("malformed") : std::string_view(out.reason))
          .kv("proto", "smtp")
          .kv("mech", mname);
      co_return reply(501, "5.5.2", "Error: malformed authentication response");
  }
}

}  // namespace rg::smtp

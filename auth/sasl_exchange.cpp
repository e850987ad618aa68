// See sasl_exchange.h. One loop over the mechanism's steps; each branch is one sasl::Step.
#include "auth/sasl_exchange.h"

#include <variant>

#include "shared/net/errors.h"
#include "shared/sasl/codec.h"

namespace rg {

namespace asio = boost::asio;

namespace {

SaslOutcome outcome(SaslOutcome::Kind kind, std::string_view login, std::string_view reason = {}) {
  SaslOutcome o;
  o.kind = kind;
  o.login = std::string(login);
  o.reason = std::string(reason);
  return o;
}

}  // namespace

asio::awaitable<bool> LineSaslTransport::send_challenge(const std::string& base64) {
  stream_.queue(prefix_ + base64 + "\r\n");
  co_return co_await flush_();
}

asio::awaitable<SaslResponse> LineSaslTransport::read_response() {
  auto [ec, raw] = co_await stream_.read_line(max_line_, timeout_);
  SaslResponse r;
  if (ec == net::errc::line_too_long)
    r.status = SaslResponse::Status::TooLong;
  else if (ec == net::errc::timeout)
    r.status = SaslResponse::Status::Timeout;
  else if (ec)
    r.status = SaslResponse::Status::Closed;
  if (!raw.empty() && raw.back() == '\n') raw.pop_back();
  if (!raw.empty() && raw.back() == '\r') raw.pop_back();
  r.text = std::move(raw);
  co_return r;
}

asio::awaitable<SaslOutcome> run_sasl_exchange(sasl::Mechanism& mech, const std::optional<std::string>& initial,
                                               Authenticator& auth, SaslTransport& transport) {
  using Kind = SaslOutcome::Kind;
  sasl::Step step = initial ? mech.start(std::string_view(*initial)) : mech.start(std::nullopt);
  std::string login = "-";
  for (;;) {
    if (auto* ch = std::get_if<sasl::Challenge>(&step)) {
      if (!co_await transport.send_challenge(sasl::base64_encode(ch->data))) co_return outcome(Kind::Closed, login);
      SaslResponse resp = co_await transport.read_response();
      if (resp.status == SaslResponse::Status::TooLong) co_return outcome(Kind::TooLong, login);
      if (resp.status != SaslResponse::Status::Ok) {
        SaslOutcome closed = outcome(Kind::Closed, login);
        closed.timed_out = resp.status == SaslResponse::Status::Timeout;
        co_return closed;
      }
      if (resp.text == "*") co_return outcome(Kind::Cancelled, login, "client-cancelled");
      auto decoded = sasl::base64_decode(resp.text);
      if (!decoded) co_return outcome(Kind::BadBase64, login, "bad-base64");
      step = mech.step(*decoded);
    } else if (auto* vp = std::get_if<sasl::VerifyPassword>(&step)) {
      login = vp->authcid;
      const AuthOutcome checked = co_await auth.check_password(vp->authcid, vp->password);
      if (checked.result == AuthOutcome::Result::TempFail) co_return outcome(Kind::TempFail, login, "tempfail");
      if (checked.result != AuthOutcome::Result::Ok) co_return outcome(Kind::Failed, login, checked.reason());
      // RFC 4616 §2: acting as another identity is refused.
      if (!vp->authzid.empty() && auth.user_of(vp->authzid) != checked.user)
        co_return outcome(Kind::Failed, login, "authzid-mismatch");
      SaslOutcome ok = outcome(Kind::Ok, login);
      ok.user = checked.user;
      co_return ok;
    } else if (auto* ns = std::get_if<sasl::NeedSecret>(&step)) {
      login = ns->authcid;
      const std::string authcid(ns->authcid);
      const LegacySecret ls = co_await auth.legacy_secret(authcid);
      if (ls.tempfail) co_return outcome(Kind::TempFail, login, "tempfail");
      // Unknown users and users without a secret: the mechanism does the same work against a
      // dummy and fails, so timing tells nothing.
      step = ls.secret ? mech.provide_secret(std::string_view(*ls.secret)) : mech.provide_secret(std::nullopt);
    } else if (auto* s = std::get_if<sasl::Success>(&step)) {
      const auto user = auth.user_of(s->authcid);
      if (!user || (!s->authzid.empty() && auth.user_of(s->authzid) != user))
        co_return outcome(Kind::Failed, login, "authzid-mismatch");
      SaslOutcome ok = outcome(Kind::Ok, login);
      ok.user = *user;
      co_return ok;
    } else {
      const auto& f = std::get<sasl::Failure>(step);
      switch (f.kind) {
        case sasl::Failure::Kind::Malformed: co_return outcome(Kind::Malformed, login, f.reason);
        case sasl::Failure::Kind::Protocol: co_return outcome(Kind::Protocol, login, f.reason);
        case sasl::Failure::Kind::BadCredentials:
          co_return outcome(Kind::Failed, login,
                            f.reason.empty() ? std::string_view("bad-credentials") : std::string_view(f.reason));
      }
      co_return outcome(Kind::Failed, login, "bad-credentials");
    }
  }
}

}  // namespace rg

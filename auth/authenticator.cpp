// See authenticator.h.
#include "auth/authenticator.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <ctime>
#include <random>

#include "authdb/password.h"
#include "authdb/users.h"
#include "shared/ip.h"
#include "shared/log.h"

namespace rg {

namespace asio = boost::asio;

const char* AuthOutcome::reason() const {
  switch (result) {
    case Result::Ok: return "ok";
    case Result::UnknownUser: return "unknown-user";
    case Result::BadPassword: return "bad-password";
    case Result::Disabled: return "disabled";
    case Result::TempFail: return "tempfail";
  }
  return "?";
}

std::chrono::milliseconds failure_delay(int64_t failures, int64_t cap_ms) {
  if (failures <= 0) return std::chrono::milliseconds(0);
  int64_t shift = std::min<int64_t>(failures - 1, 20);
  return std::chrono::milliseconds(std::min<int64_t>(kFailureDelayBase.count() << shift, cap_ms));
}

std::optional<std::string> Authenticator::user_of(std::string_view login) const {
  return authdb::login_to_user(login, cfg_.local_domains);
}

asio::awaitable<AuthOutcome> Authenticator::check_password(std::string login, std::string password) {
  AuthOutcome out;
  std::optional<authdb::UserAuth> rec;
  try {
    if (auto user = user_of(login)) rec = db_.find_user(*user);
  } catch (const authdb::Error& e) {
    log::error().kv("event", "auth-lookup-failed").kv("error", e.what());
    out.result = AuthOutcome::Result::TempFail;
    co_return out;
  }
  if (!rec) {
    // Named jobs, not temporaries: g++ 12 double-destroys prvalue coroutine arguments in co_await.
    auto dummy = [password] { return authdb::verify_dummy(password); };
    co_await pool_.run(dummy);
    out.result = AuthOutcome::Result::UnknownUser;
    co_return out;
  }
  auto verify = [hash = rec->password_hash, password] { return authdb::verify_password(hash, password); };
  bool good = co_await pool_.run(verify);
  if (!good) {
    out.result = AuthOutcome::Result::BadPassword;
  } else if (!rec->enabled) {
    out.result = AuthOutcome::Result::Disabled;
  } else {
    out.result = AuthOutcome::Result::Ok;
    out.user = rec->name;
  }
  co_return out;
}

LegacySecret Authenticator::legacy_secret(std::string_view login) {
  LegacySecret out;
  try {
    auto user = user_of(login);
    if (!user) return out;
    auto rec = db_.find_user(*user);
    if (!rec || !rec->enabled || !rec->legacy_secret) return out;
    out.user = rec->name;
    out.secret = rec->legacy_secret;
  } catch (const authdb::Error& e) {
    log::error().kv("event", "auth-lookup-failed").kv("error", e.what());
    out.tempfail = true;
  }
  return out;
}

asio::awaitable<int64_t> Authenticator::failed(FailedLogin attempt) {
  const std::string net = failure_net_key(std::string(attempt.ip));
  int64_t failures = 1;
  try {
    const int64_t now = std::time(nullptr);
    db_.record_failure(net, now);
    failures = db_.failure_count(net, now);
  } catch (const authdb::Error& e) {
    log::error().kv("event", "record-failure-failed").kv("error", e.what());
  }
  static thread_local std::mt19937 rng{std::random_device{}()};
  auto delay = failure_delay(failures, cfg_.auth.failure_delay_max_ms);
  // A little jitter (OpenSMTPD: random pause after a failed auth), never past the cap.
  delay = std::min(delay + std::chrono::milliseconds(rng() % 100),
                   std::chrono::milliseconds(cfg_.auth.failure_delay_max_ms));
  asio::steady_timer t(co_await asio::this_coro::executor, delay);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  log::warn(attempt.session)
      .kv("event", "auth")
      .kv("outcome", "failed")
      .kv("reason", log::token(attempt.why))
      .kv("ip", attempt.ip)
      .kv("proto", attempt.proto)
      .kv("mech", attempt.mech)
      .kv("login", attempt.login)
      .kv("tls", attempt.tls)
      .kv("failures", failures);
  co_return failures;
}

void Authenticator::succeeded(const std::string& ip) {
  try {
    db_.clear_failures(failure_net_key(ip));
  } catch (const authdb::Error& e) {
    log::error().kv("event", "clear-failures-failed").kv("error", e.what());
  }
}

}  // namespace rg

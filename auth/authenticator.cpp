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
    if (auto user = user_of(login)) {
      auto find = [name = *user](authdb::Store& s) { return s.find_user(name); };
      rec = co_await db_.run(authdb::Lane::Read, "look up user", find);
    }
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

asio::awaitable<LegacySecret> Authenticator::legacy_secret(std::string login) {
  LegacySecret out;
  try {
    auto user = user_of(login);
    if (!user) co_return out;
    auto find = [name = *user](authdb::Store& s) { return s.find_user(name); };
    auto rec = co_await db_.run(authdb::Lane::Read, "look up user", find);
    if (!rec || !rec->enabled || !rec->legacy_secret) co_return out;
    out.user = rec->name;
    out.secret = rec->legacy_secret;
  } catch (const authdb::Error& e) {
    log::error().kv("event", "auth-lookup-failed").kv("error", e.what());
    out.tempfail = true;
  }
  co_return out;
}

asio::awaitable<int64_t> Authenticator::failed(FailedLogin attempt) {
  const std::string net = failure_net_key(std::string(attempt.ip));
  int64_t failures = 1;
  try {
    // One write job: the count read after the write sees it.
    auto record = [net, now = static_cast<int64_t>(std::time(nullptr))](authdb::Store& s) {
      s.record_failure(net, now);
      return s.failure_count(net, now);
    };
    failures = co_await db_.run(authdb::Lane::Write, "record failed login", record);
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

asio::awaitable<bool> Authenticator::succeeded(std::string ip) {
  try {
    auto clear = [net = failure_net_key(ip)](authdb::Store& s) { s.clear_failures(net); };
    co_await db_.run(authdb::Lane::Write, "clear failed logins", clear);
  } catch (const authdb::Error& e) {
    log::error().kv("event", "clear-failures-failed").kv("error", e.what());
    co_return false;
  }
  co_return true;
}

}  // namespace rg

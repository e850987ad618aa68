// auth/: the SASL exchange driver over a scripted transport and a real authdb (no sockets):
// every outcome kind, what the transport saw, and that no outcome carries a secret.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <deque>
#include <filesystem>

#include "auth/sasl_exchange.h"
#include "authdb/authdb.h"
#include "authdb/password.h"
#include "shared/config.h"
#include "shared/sasl/codec.h"

namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using rg::SaslOutcome;
using rg::SaslResponse;
using Kind = rg::SaslOutcome::Kind;

// Replays client lines; records every challenge sent.
class ScriptedTransport final : public rg::SaslTransport {
 public:
  explicit ScriptedTransport(std::deque<SaslResponse> replies) : replies_(std::move(replies)) {}
  asio::awaitable<bool> send_challenge(const std::string& base64) override {
    challenges.push_back(base64);
    co_return writable;
  }
  asio::awaitable<SaslResponse> read_response() override {
    if (replies_.empty()) co_return SaslResponse{SaslResponse::Status::Closed, ""};
    SaslResponse r = replies_.front();
    replies_.pop_front();
    co_return r;
  }
  std::vector<std::string> challenges;
  bool writable = true;

 private:
  std::deque<SaslResponse> replies_;
};

SaslResponse line(std::string text) { return {SaslResponse::Status::Ok, std::move(text)}; }
std::string b64(std::string_view s) { return rg::sasl::base64_encode(s); }

struct SaslExchangeTest : ::testing::Test {
  fs::path dir = [] {
    char tmpl[] = "/tmp/rg-auth-test-XXXXXX";
    return fs::path(mkdtemp(tmpl));
  }();
  rg::config::Config cfg = [this] {
    auto c = rg::config::defaults(dir);
    c.local_domains = {"example.test"};
    c.auth.failure_delay_max_ms = 1;
    return c;
  }();
  rg::authdb::AuthDb db{dir / "auth.db", rg::authdb::OpenMode::Create};
  asio::io_context io;  // before the pool: the pool's threads finish with io's executor first
  rg::net::WorkerPool pool{1};
  rg::authdb::Client client{rg::authdb::sqlite_store_factory(dir / "auth.db", std::chrono::milliseconds(2000)),
                            "auth.db", std::chrono::milliseconds(2000)};
  rg::Authenticator auth{client, pool, cfg};

  void SetUp() override {
    ASSERT_TRUE(db.add_user("alice", rg::authdb::hash_password("wonderland"), std::string("legacy-secret"), 1));
    ASSERT_TRUE(db.add_user("bob", rg::authdb::hash_password("builder"), std::nullopt, 1));
  }
  ~SaslExchangeTest() override { fs::remove_all(dir); }

  SaslOutcome run(std::string_view mech_name, std::optional<std::string> initial, ScriptedTransport& t) {
    auto mech = rg::sasl::make_mechanism(mech_name, {"mx.example.test", "smtp", ""});
    EXPECT_TRUE(mech);
    auto f = asio::co_spawn(io, rg::run_sasl_exchange(*mech, initial, auth, t), asio::use_future);
    io.run();
    io.restart();
    return f.get();
  }
};

TEST_F(SaslExchangeTest, PlainInitialResponse) {
  ScriptedTransport t({});
  auto out = run("PLAIN", std::string("\0alice\0wonderland", 17), t);
  EXPECT_EQ(out.kind, Kind::Ok);
  EXPECT_EQ(out.user, "alice");
  EXPECT_EQ(out.login, "alice");
  EXPECT_TRUE(t.challenges.empty());
}

TEST_F(SaslExchangeTest, PlainLoginWithDomainMapsToTheUser) {
  ScriptedTransport t({line(b64(std::string("\0Alice@example.test\0wonderland", 30)))});
  auto out = run("PLAIN", std::nullopt, t);
  EXPECT_EQ(out.kind, Kind::Ok);
  EXPECT_EQ(out.user, "alice");
  ASSERT_EQ(t.challenges.size(), 1u);
  EXPECT_EQ(t.challenges[0], "");  // RFC 4954 §4: an empty challenge, "334 " on the wire
}

TEST_F(SaslExchangeTest, WrongPasswordUnknownUserAndDisabled) {
  ScriptedTransport t1({});
  auto bad = run("PLAIN", std::string("\0alice\0wrong", 12), t1);
  EXPECT_EQ(bad.kind, Kind::Failed);
  EXPECT_EQ(bad.reason, "bad-password");
  EXPECT_EQ(bad.login, "alice");
  ScriptedTransport t2({});
  auto unknown = run("PLAIN", std::string("\0carol\0x", 8), t2);
  EXPECT_EQ(unknown.kind, Kind::Failed);
  EXPECT_EQ(unknown.reason, "unknown-user");
  ASSERT_TRUE(db.set_enabled("bob", false, 2));
  ScriptedTransport t3({});
  auto disabled = run("PLAIN", std::string("\0bob\0builder", 12), t3);
  EXPECT_EQ(disabled.kind, Kind::Failed);
  EXPECT_EQ(disabled.reason, "disabled");
  for (const auto* o : {&bad, &unknown, &disabled}) {
    EXPECT_EQ(o->reason.find("wrong"), std::string::npos);
    EXPECT_EQ(o->reason.find("builder"), std::string::npos);
  }
}

TEST_F(SaslExchangeTest, AuthzidOfAnotherUserIsRefused) {
  ScriptedTransport t({});
  auto out = run("PLAIN", std::string("bob\0alice\0wonderland", 20), t);
  EXPECT_EQ(out.kind, Kind::Failed);
  EXPECT_EQ(out.reason, "authzid-mismatch");
  ScriptedTransport same({});
  EXPECT_EQ(run("PLAIN", std::string("alice@example.test\0alice\0wonderland", 35), same).kind, Kind::Ok);
}

TEST_F(SaslExchangeTest, LoginTwoChallenges) {
  ScriptedTransport t({line(b64("alice")), line(b64("wonderland"))});
  auto out = run("LOGIN", std::nullopt, t);
  EXPECT_EQ(out.kind, Kind::Ok);
  ASSERT_EQ(t.challenges.size(), 2u);
  EXPECT_EQ(t.challenges[0], b64("Username:"));
  EXPECT_EQ(t.challenges[1], b64("Password:"));
}

TEST_F(SaslExchangeTest, CramMd5WithLegacySecretAndWithout) {
  // The response is computed from the challenge the driver sent: a transport that answers late.
  class Cram final : public rg::SaslTransport {
   public:
    Cram(std::string user, std::string secret) : user_(std::move(user)), secret_(std::move(secret)) {}
    asio::awaitable<bool> send_challenge(const std::string& base64) override {
      challenge_ = *rg::sasl::base64_decode(base64);
      co_return true;
    }
    asio::awaitable<SaslResponse> read_response() override {
      co_return line(b64(user_ + " " + rg::sasl::hex_lower(rg::sasl::hmac_md5(secret_, challenge_))));
    }

   private:
    std::string user_, secret_, challenge_;
  };
  auto exchange = [&](std::string user, std::string secret) {
    auto mech = rg::sasl::make_mechanism("CRAM-MD5", {"mx.example.test", "smtp", ""});
    Cram t(std::move(user), std::move(secret));
    const std::optional<std::string> no_initial;  // the exchange keeps a reference: it must outlive it
    auto f = asio::co_spawn(io, rg::run_sasl_exchange(*mech, no_initial, auth, t), asio::use_future);
    io.run();
    io.restart();
    return f.get();
  };
  auto ok = exchange("alice", "legacy-secret");
  EXPECT_EQ(ok.kind, Kind::Ok);
  EXPECT_EQ(ok.user, "alice");
  auto wrong = exchange("alice", "guess");
  EXPECT_EQ(wrong.kind, Kind::Failed);
  EXPECT_EQ(wrong.login, "alice");
  auto no_secret = exchange("bob", "builder");  // bob has no legacy secret
  EXPECT_EQ(no_secret.kind, Kind::Failed);
}

TEST_F(SaslExchangeTest, TransportOutcomes) {
  struct Row {
    const char* what;
    std::deque<SaslResponse> replies;
    Kind kind;
    bool timed_out;
  };
  const Row rows[] = {
      {"cancel", {line("*")}, Kind::Cancelled, false},
      {"bad base64", {line("!!notbase64")}, Kind::BadBase64, false},
      {"too long", {{SaslResponse::Status::TooLong, ""}}, Kind::TooLong, false},
      {"closed", {{SaslResponse::Status::Closed, ""}}, Kind::Closed, false},
      {"timeout", {{SaslResponse::Status::Timeout, ""}}, Kind::Closed, true},
      {"malformed", {line(b64("no-nuls"))}, Kind::Malformed, false},
  };
  for (const auto& r : rows) {
    ScriptedTransport t(r.replies);
    auto out = run("PLAIN", std::nullopt, t);
    EXPECT_EQ(out.kind, r.kind) << r.what;
    EXPECT_EQ(out.timed_out, r.timed_out) << r.what;
  }
  ScriptedTransport gone({});
  gone.writable = false;
  EXPECT_EQ(run("LOGIN", std::nullopt, gone).kind, Kind::Closed);
}

TEST_F(SaslExchangeTest, InitialResponseToAMechanismWithoutOneIsProtocol) {
  ScriptedTransport t({});
  auto out = run("CRAM-MD5", std::string("x"), t);
  EXPECT_EQ(out.kind, Kind::Protocol);
  EXPECT_TRUE(t.challenges.empty());
}

}  // namespace

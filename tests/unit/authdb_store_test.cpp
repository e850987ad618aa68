// The Store contract on both backends (issue 12): every StoreContract test runs against SQLite and
// PostgreSQL (value-parameterized, "sqlite" / "postgresql"), on the real clock, since PostgreSQL
// ignores the caller's `now` (tests that need a fake clock are SQLite's, in authdb_test.cpp).
// PgStore tests: schema migration and refusal, two nodes migrating at once, the time limit on a
// stalled server (a held lock, a stopped postmaster), reconnect after a restart (and none
// failing when it happened between calls), two hosts with the first down, start while the
// server is down, the callers' clocks ignored, and the passfile.
// PostgreSQL comes from tests/pgtest.py (RG_TEST_PG_URI and friends); without it those tests
// skip, and CTest runs them under pgtest (authdb_store.cmake). Each test gets its own database.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

#include "authdb/authdb.h"
#include "authdb/client.h"
#include "authdb/pg_store.h"

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using rg::authdb::AuthDb;
using rg::authdb::Grant;
using rg::authdb::PgStore;
using rg::authdb::Store;

namespace {

// The server's clock in unix seconds, as PgStore reads it.
#define RG_PG_NOW_SQL "floor(extract(epoch FROM now()))::bigint"

constexpr int64_t TTL = 1800;
constexpr auto kLimit = 2000ms;  // the per-query deadline the contract tests' Stores get
constexpr const char* kNode = "node-a";

int64_t now() { return static_cast<int64_t>(::time(nullptr)); }

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

bool have_pg() { return env("RG_TEST_PG_URI") && env("RG_TEST_PG_SOCKDIR") && env("RG_TEST_PG_PORT"); }

// A URI for `db` on pgtest's server as `user`; extra query parameters appended.
std::string pg_uri(const std::string& db, const std::string& user = "relaygate", const std::string& extra = "") {
  return "postgresql://" + user + "@/" + db + "?host=" + env("RG_TEST_PG_SOCKDIR") + "&port=" + env("RG_TEST_PG_PORT") +
         extra;
}

// A blocking libpq session for setting up and inspecting what the Store under test did.
class PgSession {
 public:
  explicit PgSession(const std::string& db, const std::string& user = "postgres")
      : c_(PQconnectdb(pg_uri(db, user).c_str())) {
    if (PQstatus(c_) != CONNECTION_OK) throw std::runtime_error(std::string("admin connect: ") + PQerrorMessage(c_));
  }
  ~PgSession() { PQfinish(c_); }
  PgSession(const PgSession&) = delete;
  PgSession& operator=(const PgSession&) = delete;
  // Runs sql; returns the first column of the first row ("" if none); throws on error.
  std::string exec(const std::string& sql) {
    PGresult* r = PQexec(c_, sql.c_str());
    const auto st = PQresultStatus(r);
    std::string out = st == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
    std::string err = PQresultErrorMessage(r);
    PQclear(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) throw std::runtime_error(sql + ": " + err);
    return out;
  }

 private:
  PGconn* c_;
};

// A fresh database owned by the unprivileged role "relaygate", dropped at the end.
class PgDatabase {
 public:
  PgDatabase() {
    static std::atomic<int> n{0};
    name_ = "rgt_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
    PgSession("postgres").exec("CREATE DATABASE " + name_ + " OWNER relaygate");
  }
  ~PgDatabase() {
    try {
      PgSession("postgres").exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (const std::exception&) {
      // the server may be down after a failed restart test; pgtest throws it all away
    }
  }
  const std::string& name() const { return name_; }
  std::string uri(const std::string& extra = "") const { return pg_uri(name_, "relaygate", extra); }

 private:
  std::string name_;
};

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/rg-store-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path operator/(const std::string& s) const { return path_ / s; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// pg_ctl on pgtest's server (as the user that owns its data folder when we are root).
int pg_ctl(const std::string& args) {
  const std::string datadir = env("RG_TEST_PG_DATADIR");
  std::string cmd = std::string(env("RG_TEST_PG_BIN")) + "/pg_ctl -D " + datadir + " -w -t 60 " + args;
  struct stat st {};
  if (::geteuid() == 0 && ::stat(datadir.c_str(), &st) == 0)
    cmd = "setpriv --reuid=" + std::to_string(st.st_uid) + " --regid=" + std::to_string(st.st_gid) +
          " --clear-groups -- " + cmd;
  return std::system((cmd + " >/dev/null 2>&1").c_str());
}
bool pg_stop() { return pg_ctl("-m immediate stop") == 0; }
bool pg_start() { return pg_ctl(std::string("-l ") + env("RG_TEST_PG_LOG") + " start") == 0; }

// ---- the contract, on both backends ----

class StoreContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      if (!have_pg()) GTEST_SKIP() << "RG_TEST_PG_URI is not set (run under tests/pgtest.py)";
      pg_.emplace();
    }
    db = open();
    ASSERT_TRUE(db->add_user("alice", "$y$unused", std::nullopt, now()));
  }
  void TearDown() override { db.reset(); }

  // Another connection to the same database (another process or node).
  std::unique_ptr<Store> open(const std::string& node = kNode) {
    if (pg_) return std::make_unique<PgStore>(pg_->uri(), kLimit, node);
    return std::make_unique<AuthDb>(dir_ / "relaygate.db", rg::authdb::OpenMode::Create, kLimit, node);
  }

  std::unique_ptr<Store> db;

 private:
  TempDir dir_;
  std::optional<PgDatabase> pg_;
};

INSTANTIATE_TEST_SUITE_P(Backends, StoreContract, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

TEST_P(StoreContract, BackendAndSchemaVersion) {
  EXPECT_EQ(db->backend(), GetParam());
  EXPECT_EQ(db->schema_version(), Store::kSchemaVersion);
  auto again = open();  // a current schema opens without migrating
  EXPECT_EQ(again->schema_version(), Store::kSchemaVersion);
  EXPECT_TRUE(again->find_user("alice"));
}

TEST_P(StoreContract, GrantRecordsTimesNodeAndRefreshKeepsGrantTime) {
  const int64_t t0 = now();
  ASSERT_TRUE(db->grant("192.0.2.1", "alice", "pop3", TTL, t0));
  auto g = db->live_grant("192.0.2.1", now());
  ASSERT_TRUE(g);
  EXPECT_EQ(g->user, "alice");
  EXPECT_EQ(g->method, "pop3");
  EXPECT_EQ(g->node, kNode);
  EXPECT_EQ(g->ttl, TTL);
  EXPECT_LE(std::abs(g->granted_at - t0), 2);  // PostgreSQL's clock: the server on this host
  EXPECT_EQ(g->refreshed_at, g->granted_at);
  EXPECT_EQ(g->expires_at, g->granted_at + TTL);
  EXPECT_FALSE(g->last_used_at);
  const int64_t granted = g->granted_at;

  db->touch("192.0.2.1", now());
  std::this_thread::sleep_for(1100ms);  // a refresh one second later moves the expiry
  ASSERT_TRUE(db->grant("192.0.2.1", "alice", "apop", TTL, now()));
  g = db->live_grant("192.0.2.1", now());
  ASSERT_TRUE(g);
  EXPECT_EQ(g->granted_at, granted);
  EXPECT_GT(g->refreshed_at, granted);
  EXPECT_EQ(g->expires_at, g->refreshed_at + TTL);
  EXPECT_EQ(g->method, "apop");
  ASSERT_TRUE(g->last_used_at);
  EXPECT_GE(*g->last_used_at, granted);
  // Another connection (node) sees the committed grant at once.
  auto other = open();
  EXPECT_TRUE(other->live_grant("192.0.2.1", now()));
}

TEST_P(StoreContract, ExpiredAndFutureGrantsAreNotLive) {
  const int64_t t = now();
  // Expired a while ago; and "expiring" further ahead than its ttl (a clock that went back).
  ASSERT_TRUE(db->import_grant(Grant{"192.0.2.1", "alice", "pop3", t - 100, t - 100, t - 10, std::nullopt, 90, "x"}));
  ASSERT_TRUE(db->import_grant(
      Grant{"192.0.2.2", "alice", "pop3", t + 9000, t + 9000, t + 9000 + TTL, std::nullopt, TTL, "x"}));
  ASSERT_TRUE(db->import_grant(Grant{"192.0.2.3", "alice", "pop3", t, t, t + TTL, t, TTL, "node-b"}));
  EXPECT_FALSE(db->live_grant("192.0.2.1", now()));
  EXPECT_FALSE(db->live_grant("192.0.2.2", now()));
  auto live = db->list(now());
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].ip, "192.0.2.3");
  EXPECT_EQ(live[0].node, "node-b");
  EXPECT_EQ(live[0].last_used_at, t);
  db->touch("192.0.2.1", now());  // an expired grant is not brought back by a relay
  EXPECT_FALSE(db->live_grant("192.0.2.1", now()));
  EXPECT_EQ(db->purge_expired(now()), 2);
  EXPECT_EQ(db->list(now()).size(), 1u);
  EXPECT_EQ(db->purge_expired(now()), 0);
}

TEST_P(StoreContract, ShortTtlExpiresOnTheDatabaseClock) {
  ASSERT_TRUE(db->grant("192.0.2.1", "alice", "pop3", 1, now()));
  std::this_thread::sleep_for(2100ms);
  EXPECT_FALSE(db->live_grant("192.0.2.1", now()));
  EXPECT_TRUE(db->list(now()).empty());
  EXPECT_EQ(db->purge_expired(now()), 1);
}

TEST_P(StoreContract, CanonicalIpv6AndMappedIpv4ShareOneKey) {
  ASSERT_TRUE(db->grant("::ffff:192.0.2.9", "alice", "pop3", TTL, now()));
  EXPECT_TRUE(db->live_grant("192.0.2.9", now()));
  EXPECT_TRUE(db->live_grant("::FFFF:192.0.2.9", now()));
  ASSERT_TRUE(db->grant("2001:DB8:0::1", "alice", "pop3", TTL, now()));
  EXPECT_TRUE(db->live_grant("2001:db8::1", now()));
  EXPECT_FALSE(db->live_grant("2001:db8::2", now()));
  ASSERT_TRUE(db->grant("10.0.0.1", "alice", "pop3", TTL, now()));
  auto all = db->list(now());
  ASSERT_EQ(all.size(), 3u);  // by ip, bytewise (as SQLite orders text)
  EXPECT_EQ(all[0].ip, "10.0.0.1");
  EXPECT_EQ(all[1].ip, "192.0.2.9");
  EXPECT_EQ(all[2].ip, "2001:db8::1");
  EXPECT_THROW(db->grant("not-an-ip", "alice", "pop3", TTL, now()), std::invalid_argument);
  EXPECT_FALSE(db->live_grant("not-an-ip", now()));
}

TEST_P(StoreContract, UnknownOrDisabledUserGetsNoGrant) {
  EXPECT_FALSE(db->grant("192.0.2.1", "bob", "pop3", TTL, now()));
  ASSERT_TRUE(db->grant("192.0.2.1", "alice", "pop3", TTL, now()));
  ASSERT_TRUE(db->set_enabled("alice", false, now()));  // revokes her grants with it
  EXPECT_FALSE(db->live_grant("192.0.2.1", now()));
  EXPECT_FALSE(db->grant("192.0.2.1", "alice", "pop3", TTL, now()));
  EXPECT_FALSE(db->find_user("alice")->enabled);
  ASSERT_TRUE(db->set_enabled("ALICE", true, now()));
  EXPECT_FALSE(db->live_grant("192.0.2.1", now()));  // re-enabling does not bring a grant back
  EXPECT_TRUE(db->find_user("alice")->enabled);
  EXPECT_FALSE(db->set_enabled("nobody", false, now()));
}

TEST_P(StoreContract, RevokeAndDeleteUserRemoveGrants) {
  ASSERT_TRUE(db->add_user("bob", "$y$unused", std::string("secret"), now()));
  ASSERT_TRUE(db->grant("192.0.2.1", "alice", "pop3", TTL, now()));
  ASSERT_TRUE(db->grant("192.0.2.2", "alice", "pop3", TTL, now()));
  ASSERT_TRUE(db->grant("192.0.2.3", "bob", "apop", TTL, now()));
  auto other = open();  // revoking on one node takes effect on the other at once
  EXPECT_TRUE(other->revoke("192.0.2.1"));
  EXPECT_FALSE(db->live_grant("192.0.2.1", now()));
  EXPECT_FALSE(db->revoke("192.0.2.1"));
  EXPECT_EQ(db->revoke_user("ALICE"), 1);
  EXPECT_EQ(db->revoke_user("alice"), 0);
  EXPECT_TRUE(db->delete_user("bob"));
  EXPECT_FALSE(db->delete_user("bob"));
  EXPECT_FALSE(db->find_user("bob"));
  EXPECT_TRUE(db->list(now()).empty());
}

// relaygatectl user import's batch: one refused change (here the last) leaves every user as it
// was, the earlier adds and updates included; a batch without one writes everything.
TEST_P(StoreContract, WriteUsersIsAllOrNothing) {
  using Kind = rg::authdb::UserWrite::Kind;
  const std::vector<rg::authdb::UserWrite> refused = {
      {Kind::Add, "dave", "$y$d", std::nullopt},
      {Kind::SetPassword, "alice", "$y$changed", std::string("s")},
      {Kind::Add, "ALICE", "$y$x", std::nullopt},
  };
  EXPECT_EQ(db->write_users(refused, now()), "ALICE");
  EXPECT_FALSE(db->find_user("dave"));
  EXPECT_EQ(db->find_user("alice")->password_hash, "$y$unused");
  EXPECT_EQ(db->write_users({{Kind::SetPassword, "nobody", "$y$n", std::nullopt}}, now()), "nobody");

  const std::vector<rg::authdb::UserWrite> good = {
      {Kind::Add, "dave", "$y$d", std::nullopt},
      {Kind::Add, "erin", "!", std::string("{CRAM-MD5}00")},
      {Kind::SetPassword, "Alice", "$y$changed", std::string("s")},
  };
  EXPECT_EQ(db->write_users(good, now()), std::nullopt);
  ASSERT_TRUE(db->find_user("dave"));
  EXPECT_TRUE(db->find_user("dave")->enabled);
  EXPECT_EQ(db->find_user("erin")->legacy_secret, "{CRAM-MD5}00");
  EXPECT_EQ(db->find_user("alice")->password_hash, "$y$changed");
  EXPECT_EQ(db->find_user("alice")->legacy_secret, "s");
  EXPECT_EQ(db->list_users().size(), 3u);
  EXPECT_EQ(db->write_users({}, now()), std::nullopt);
}

TEST_P(StoreContract, UsersAreCaseInsensitiveUniqueAndListedByName) {
  EXPECT_FALSE(db->add_user("ALICE", "$y$x", std::nullopt, now()));
  auto u = db->find_user("Alice");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->name, "alice");
  EXPECT_EQ(u->password_hash, "$y$unused");
  EXPECT_FALSE(u->legacy_secret);
  EXPECT_FALSE(db->find_user("nobody"));
  ASSERT_TRUE(db->add_user("Carol", "$y$c", std::string("s3cret"), now()));
  ASSERT_TRUE(db->add_user("bob", "$y$b", std::nullopt, now()));
  EXPECT_TRUE(db->set_password("CAROL", "$y$new", std::nullopt, now()));
  EXPECT_FALSE(db->set_password("nobody", "$y$new", std::nullopt, now()));
  u = db->find_user("carol");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->password_hash, "$y$new");
  EXPECT_FALSE(u->legacy_secret);
  ASSERT_TRUE(db->set_password("bob", "$y$b2", std::string("apop-secret"), now()));
  EXPECT_EQ(db->find_user("bob")->legacy_secret, "apop-secret");
  auto users = db->list_users();
  ASSERT_EQ(users.size(), 3u);
  EXPECT_EQ(users[0].name, "alice");
  EXPECT_EQ(users[1].name, "bob");
  EXPECT_TRUE(users[1].legacy);
  EXPECT_EQ(users[2].name, "Carol");  // stored as given, ordered case-insensitively
  EXPECT_FALSE(users[2].legacy);
  EXPECT_LE(std::abs(users[0].created_at - now()), 2);
}

TEST_P(StoreContract, ImportKeepsWhatWasStoredElsewhere) {
  rg::authdb::User u{"dave", false, true, 1'700'000'000};
  rg::authdb::UserAuth a{"dave", false, "$6$salt$hash", std::string("legacy")};
  ASSERT_TRUE(db->import_user(u, a));
  EXPECT_FALSE(db->import_user(u, a));  // idempotent: the name exists
  auto got = db->find_user("dave");
  ASSERT_TRUE(got);
  EXPECT_FALSE(got->enabled);
  EXPECT_EQ(got->password_hash, "$6$salt$hash");
  EXPECT_EQ(got->legacy_secret, "legacy");
  auto users = db->list_users();
  ASSERT_EQ(users.size(), 2u);
  EXPECT_EQ(users[1].created_at, 1'700'000'000);
  const int64_t t = now();
  ASSERT_TRUE(db->grant("192.0.2.7", "alice", "pop3", TTL, t));
  // Replaces the grant of the same ip, its times and node kept.
  ASSERT_TRUE(db->import_grant(Grant{"192.0.2.7", "alice", "apop", t - 5, t - 1, t + 60, t - 2, 61, "node-b"}));
  auto g = db->live_grant("192.0.2.7", now());
  ASSERT_TRUE(g);
  EXPECT_EQ(g->method, "apop");
  EXPECT_EQ(g->granted_at, t - 5);
  EXPECT_EQ(g->refreshed_at, t - 1);
  EXPECT_EQ(g->expires_at, t + 60);
  EXPECT_EQ(g->last_used_at, t - 2);
  EXPECT_EQ(g->ttl, 61);
  EXPECT_EQ(g->node, "node-b");
  EXPECT_FALSE(db->import_grant(Grant{"192.0.2.8", "nobody", "pop3", t, t, t + 60, std::nullopt, 60, ""}));
  EXPECT_THROW(db->import_grant(Grant{"bad", "alice", "pop3", t, t, t + 60, std::nullopt, 60, ""}),
               std::invalid_argument);
}

// db copy --force: replace overwrites an existing user exactly (hash, secret, enabled,
// created_at) and, when it disables, drops the user's grants like set_enabled.
TEST_P(StoreContract, ReplaceUserOverwritesExactlyAndDisablingDropsGrants) {
  using rg::authdb::User;
  using rg::authdb::UserAuth;
  const int64_t t = now();
  ASSERT_TRUE(db->grant("192.0.2.9", "alice", "pop3", TTL, t));
  EXPECT_FALSE(db->replace_user(User{"carol", true, false, t}, UserAuth{"carol", true, "$y$c", std::nullopt}));
  EXPECT_FALSE(db->find_user("carol"));
  ASSERT_TRUE(db->replace_user(User{"ALICE", true, true, 1'600'000'000}, UserAuth{"alice", true, "$y$new", "sec"}));
  auto got = db->find_user("alice");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->password_hash, "$y$new");
  EXPECT_EQ(got->legacy_secret, "sec");
  EXPECT_EQ(db->list_users().at(0).created_at, 1'600'000'000);
  EXPECT_EQ(db->list(now()).size(), 1u);  // still enabled: the grant stays
  ASSERT_TRUE(
      db->replace_user(User{"alice", false, false, 1'600'000'000}, UserAuth{"alice", false, "$y$new", std::nullopt}));
  EXPECT_FALSE(db->find_user("alice")->legacy_secret);
  EXPECT_TRUE(db->list(now()).empty());
  ASSERT_TRUE(
      db->replace_user(User{"alice", true, false, 1'600'000'000}, UserAuth{"alice", true, "$y$new", std::nullopt}));
  EXPECT_FALSE(db->live_grant("192.0.2.9", now()));  // dropped, not merely hidden while disabled
}

TEST_P(StoreContract, FailureCountersCountAcrossConnectionsAndClear) {
  EXPECT_EQ(db->failure_count("192.0.2.0/24", now()), 0);
  auto other = open();  // pop3d and smtpd, or two nodes: one counter
  db->record_failure("192.0.2.0/24", now());
  other->record_failure("192.0.2.0/24", now());
  db->record_failure("192.0.2.0/24", now());
  EXPECT_EQ(db->failure_count("192.0.2.0/24", now()), 3);
  EXPECT_EQ(other->failure_count("192.0.2.0/24", now()), 3);
  EXPECT_EQ(db->failure_count("198.51.100.0/24", now()), 0);
  EXPECT_EQ(db->purge_expired(now()), 0);  // recent failures survive a purge
  EXPECT_EQ(db->failure_count("192.0.2.0/24", now()), 3);
  other->clear_failures("192.0.2.0/24");
  EXPECT_EQ(db->failure_count("192.0.2.0/24", now()), 0);
}

TEST_P(StoreContract, QueueSummaryStoresTheLastSummaryWritten) {
  using Q = rg::authdb::QueueSummary;
  const int64_t t = 1'800'000'000;
  EXPECT_EQ(db->queue_summary(), (Q{0, 0}));
  db->set_queue_summary({1, t});
  EXPECT_EQ(db->queue_summary(), (Q{1, t}));
  db->set_queue_summary({0, t});  // empty: oldest is meaningless, stored as 0
  EXPECT_EQ(db->queue_summary(), (Q{0, 0}));
  db->set_queue_summary({3, t - 3600});
  EXPECT_EQ(open()->queue_summary(), (Q{3, t - 3600}));
}

// Each node has its own spool: its summary is its own, another node's never replaces it.
TEST_P(StoreContract, QueueSummaryIsPerNode) {
  using Q = rg::authdb::QueueSummary;
  const int64_t t = 1'800'000'000;
  auto other = open("node-b");
  db->set_queue_summary({2, t});
  EXPECT_EQ(other->queue_summary(), (Q{0, 0}));
  other->set_queue_summary({7, t - 60});
  EXPECT_EQ(db->queue_summary(), (Q{2, t}));
  EXPECT_EQ(other->queue_summary(), (Q{7, t - 60}));
}

// ---- PostgreSQL only ----

class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_pg()) GTEST_SKIP() << "RG_TEST_PG_URI is not set (run under tests/pgtest.py)";
    pg.emplace();
  }
  std::string error_of(const std::string& uri, std::chrono::milliseconds limit = kLimit) {
    try {
      PgStore s(uri, limit, kNode);
      s.list(now());
    } catch (const rg::authdb::Error& e) {
      return e.what();
    }
    return "<no error>";
  }
  std::optional<PgDatabase> pg;
};

// A database an older relaygate made (schema 1, 2 or 3, as its migrations left it) is migrated
// forward when a Store opens it, its users and grants kept.
class PgStoreMigration : public PgStoreTest, public ::testing::WithParamInterface<int> {};

INSTANTIATE_TEST_SUITE_P(FromOlder, PgStoreMigration, ::testing::Values(1, 2, 3),
                         [](const auto& info) { return "postgresql_v" + std::to_string(info.param); });

TEST_P(PgStoreMigration, MigratesToTheCurrentSchema) {
  const int from = GetParam();
  {
    PgSession owner(pg->name(), "relaygate");
    owner.exec(
        "CREATE TABLE schema_version(version integer NOT NULL); INSERT INTO schema_version VALUES(" +
        std::to_string(from) +
        ");"
        "CREATE TABLE users(id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL,"
        " enabled boolean NOT NULL DEFAULT true, password_hash text NOT NULL, legacy_secret text,"
        " created_at bigint NOT NULL, updated_at bigint NOT NULL);"
        "CREATE UNIQUE INDEX users_name ON users(lower(name));"
        "CREATE TABLE grants(ip text PRIMARY KEY, user_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
        " method text NOT NULL, granted_at bigint NOT NULL, refreshed_at bigint NOT NULL,"
        " expires_at bigint NOT NULL, last_used_at bigint, ttl bigint NOT NULL);"
        "CREATE INDEX grants_user ON grants(user_id); CREATE INDEX grants_expires ON grants(expires_at);"
        "INSERT INTO users(name, password_hash, created_at, updated_at) VALUES('carol', '$y$x', 1, 1);"
        "INSERT INTO grants SELECT '192.0.2.5', id, 'pop3', " RG_PG_NOW_SQL ", " RG_PG_NOW_SQL ", " RG_PG_NOW_SQL
        " + 1800, NULL, 1800 FROM users;");
    if (from >= 2)
      owner.exec(
          "CREATE TABLE auth_failures(net text PRIMARY KEY, failures bigint NOT NULL, last_failure_at bigint NOT "
          "NULL);"
          "INSERT INTO auth_failures VALUES('198.51.100.0/24', 4, " RG_PG_NOW_SQL ");");
    if (from >= 3)
      owner.exec(
          "CREATE TABLE queue_summary(id integer PRIMARY KEY CHECK (id = 1), count bigint NOT NULL,"
          " oldest_enqueued_at bigint NOT NULL);"
          "INSERT INTO queue_summary VALUES(1, 5, 1700000000);");
  }
  PgStore db(pg->uri(), kLimit, kNode);
  EXPECT_EQ(db.schema_version(), Store::kSchemaVersion);
  EXPECT_EQ(PgSession(pg->name()).exec("SELECT version FROM schema_version"), "4");
  auto g = db.live_grant("192.0.2.5", now());
  ASSERT_TRUE(g);
  EXPECT_EQ(g->user, "carol");
  EXPECT_EQ(g->node, "");  // written before schema 4
  EXPECT_TRUE(db.find_user("CAROL"));
  EXPECT_EQ(db.failure_count("198.51.100.0/24", now()), from >= 2 ? 4 : 0);
  db.record_failure("192.0.2.5", now());
  EXPECT_EQ(db.failure_count("192.0.2.5", now()), 1);
  EXPECT_EQ(db.queue_summary(),
            from >= 3 ? (rg::authdb::QueueSummary{5, 1'700'000'000}) : (rg::authdb::QueueSummary{0, 0}));
  ASSERT_TRUE(db.grant("192.0.2.6", "carol", "pop3", TTL, now()));
  EXPECT_EQ(db.live_grant("192.0.2.6", now())->node, kNode);
}

TEST_F(PgStoreTest, NewerSchemaIsRefused) {
  { PgStore db(pg->uri(), kLimit, kNode); }
  PgSession(pg->name()).exec("UPDATE schema_version SET version=99");
  const std::string e = error_of(pg->uri());
  EXPECT_NE(e.find(pg->name()), std::string::npos) << e;
  EXPECT_NE(e.find("schema version 99 is newer"), std::string::npos) << e;
}

// A reconnect that finds a newer schema (another node upgraded it meanwhile) is refused on every
// call after it too: the refused connection is never kept.
TEST_F(PgStoreTest, NewerSchemaFoundOnReconnectIsRefusedEveryTime) {
  PgStore db(pg->uri(), kLimit, kNode);
  PgSession(pg->name()).exec("UPDATE schema_version SET version=99");
  PgSession(pg->name())
      .exec(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
          "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  std::this_thread::sleep_for(100ms);
  for (int i = 0; i < 3; ++i) {
    try {
      db.find_user("alice");
      ADD_FAILURE() << "call " << i << " ran on a database with a newer schema";
    } catch (const rg::authdb::Error& e) {
      EXPECT_NE(std::string(e.what()).find("schema version 99 is newer"), std::string::npos) << e.what();
    }
  }
}

TEST_F(PgStoreTest, ForeignDatabaseIsRefused) {
  PgSession(pg->name(), "relaygate").exec("CREATE TABLE t(x int)");
  const std::string e = error_of(pg->uri());
  EXPECT_NE(e.find(pg->name()), std::string::npos) << e;
  EXPECT_NE(e.find("not a relaygate database"), std::string::npos) << e;
  EXPECT_EQ(PgSession(pg->name()).exec("SELECT to_regclass('users') IS NULL"), "t");  // nothing created
}

TEST_F(PgStoreTest, MalformedUriIsAnErrorNotUnavailable) {
  try {
    PgStore s("postgresql://relaygate@/db?nosuchoption=1", kLimit, kNode);
    FAIL() << "no error";
  } catch (const rg::authdb::Unavailable& e) {
    FAIL() << "a malformed URI is not a server that is down: " << e.what();
  } catch (const rg::authdb::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a valid PostgreSQL connection URI"), std::string::npos) << e.what();
  }
}

TEST_F(PgStoreTest, NodesMigratingAtOnceDoNotRace) {
  constexpr int kNodes = 6;
  std::atomic<int> ok{0};
  std::vector<std::string> errors(kNodes);
  std::vector<std::thread> nodes;
  for (int i = 0; i < kNodes; ++i)
    nodes.emplace_back([&, i] {
      try {
        PgStore s(pg->uri(), 10s, "node-" + std::to_string(i));
        if (s.schema_version() == Store::kSchemaVersion) ++ok;
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(i)] = e.what();
      }
    });
  for (auto& t : nodes) t.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
  EXPECT_EQ(ok.load(), kNodes);
  EXPECT_EQ(PgSession(pg->name()).exec("SELECT count(*) FROM schema_version"), "1");
  EXPECT_EQ(PgSession(pg->name()).exec("SELECT count(*) FROM queue_summaries"), "1");
}

TEST_F(PgStoreTest, NameNeverShowsAPassword) {
  EXPECT_EQ(rg::authdb::redacted_uri("postgresql://u:secret@h/db"), "postgresql://u@h/db");
  EXPECT_EQ(rg::authdb::redacted_uri("postgresql://u@h/db?password=x&sslmode=require"),
            "postgresql://u@h/db?sslmode=require");
  EXPECT_EQ(rg::authdb::redacted_uri("postgresql://u@h/db?sslmode=require&password=x"),
            "postgresql://u@h/db?sslmode=require");
  EXPECT_EQ(rg::authdb::redacted_uri("postgres://h1:5432,h2:5433/db?passfile=/p"),
            "postgres://h1:5432,h2:5433/db?passfile=/p");
  PgStore db(pg->uri(), kLimit, kNode);
  EXPECT_EQ(db.name(), pg->uri());
}

// A second session holds the grants table: the Store gives up at its deadline, frees its thread,
// the write it gave up on does not commit later, and the next call works once the lock is gone.
TEST_F(PgStoreTest, TimeoutOnALockedTableFreesTheThreadAndCancels) {
  constexpr auto kShort = 500ms;
  PgStore db(pg->uri(), kShort, kNode);
  ASSERT_TRUE(db.add_user("alice", "$y$x", std::nullopt, now()));
  PgSession locker(pg->name());
  locker.exec("BEGIN");
  locker.exec("LOCK TABLE grants IN ACCESS EXCLUSIVE MODE");
  const auto t0 = std::chrono::steady_clock::now();
  std::string e;
  try {
    db.grant("192.0.2.1", "alice", "pop3", TTL, now());
  } catch (const rg::authdb::Unavailable& err) {
    e = err.what();
  }
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_NE(e.find("timeout"), std::string::npos) << e;
  EXPECT_NE(e.find(pg->name()), std::string::npos) << e;
  EXPECT_NE(e.find("write grant"), std::string::npos) << e;
  EXPECT_GE(took, kShort - 50ms);
  EXPECT_LT(took, kShort + 400ms);
  // Reads of other tables on a fresh connection are not held up by it.
  EXPECT_TRUE(db.find_user("alice"));
  std::this_thread::sleep_for(300ms);  // the cancel request reaches the server
  locker.exec("COMMIT");
  EXPECT_FALSE(db.live_grant("192.0.2.1", now()));  // the abandoned write never committed
  EXPECT_TRUE(db.grant("192.0.2.1", "alice", "pop3", TTL, now()));
  EXPECT_TRUE(db.live_grant("192.0.2.1", now()));
}

// The same through authdb::Client, as a daemon sees it: the waiter gets its timeout, the write
// thread is free again at the Store's deadline (the next write is run, not skipped behind it),
// reads go on meanwhile, and once the lock is gone the next write commits.
TEST_F(PgStoreTest, ClientTimeoutOnALockedTableThenRecovers) {
  constexpr auto kShort = 500ms;
  { PgStore(pg->uri(), kShort, kNode).add_user("alice", "$y$x", std::nullopt, now()); }
  const std::string uri = pg->uri();
  rg::authdb::Client client([uri, kShort] { return std::make_unique<PgStore>(uri, kShort, kNode); }, uri, kShort, 1, 1);
  asio::io_context io;
  auto ask = [&](rg::authdb::Lane lane, auto job) {
    auto body = [&client, lane, job]() -> asio::awaitable<std::string> {
      try {
        co_return co_await client.run(lane, "job", job);
      } catch (const rg::authdb::Error& e) {
        co_return std::string("error: ") + e.what();
      }
    };
    auto f = asio::co_spawn(io, body(), asio::use_future);
    io.restart();
    io.run();
    return f.get();
  };
  auto write = [](Store& s) -> std::string {
    return s.grant("192.0.2.1", "alice", "pop3", TTL, 0) ? "granted" : "refused";
  };
  auto read = [](Store& s) -> std::string { return s.find_user("alice") ? "found" : "absent"; };
  PgSession locker(pg->name());
  locker.exec("BEGIN");
  locker.exec("LOCK TABLE grants IN ACCESS EXCLUSIVE MODE");
  const auto t0 = std::chrono::steady_clock::now();
  const std::string first = ask(rg::authdb::Lane::Write, write);
  EXPECT_NE(first.find("timeout"), std::string::npos) << first;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, kShort + 400ms);
  EXPECT_EQ(ask(rg::authdb::Lane::Read, read), "found");
  std::this_thread::sleep_for(200ms);  // the write thread is past its deadline
  locker.exec("COMMIT");
  EXPECT_EQ(ask(rg::authdb::Lane::Write, write), "granted");
  EXPECT_EQ(client.skipped(), 0u);
  EXPECT_EQ(ask(rg::authdb::Lane::Read, [](Store& s) -> std::string { return s.live_grant("192.0.2.1", 0)->node; }),
            kNode);
}

// The server accepts the connection in the kernel but never answers (postmaster stopped): the
// connect gives up at the deadline.
TEST_F(PgStoreTest, ConnectTimesOutOnAStalledServer) {
  std::ifstream pidfile(fs::path(env("RG_TEST_PG_DATADIR")) / "postmaster.pid");
  pid_t pid = 0;
  ASSERT_TRUE(pidfile >> pid);
  constexpr auto kShort = 400ms;
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  const auto t0 = std::chrono::steady_clock::now();
  std::string e;
  try {
    PgStore db(pg->uri(), kShort, kNode);
  } catch (const rg::authdb::Unavailable& err) {
    e = err.what();
  }
  const auto took = std::chrono::steady_clock::now() - t0;
  ::kill(pid, SIGCONT);
  EXPECT_NE(e.find("timeout"), std::string::npos) << e;
  EXPECT_NE(e.find("connect"), std::string::npos) << e;
  EXPECT_NE(e.find(pg->name()), std::string::npos) << e;
  EXPECT_LT(took, kShort + 300ms);
  PgStore db(pg->uri(), kLimit, kNode);  // and works once the server runs again
  EXPECT_EQ(db.schema_version(), Store::kSchemaVersion);
}

// libpq's own failover: the first host (a socket folder with no server) is skipped within the
// same deadline; target_session_attrs=read-write accepts the primary.
TEST_F(PgStoreTest, TwoHostsWithTheFirstDown) {
  TempDir nobody_home;
  const std::string port = env("RG_TEST_PG_PORT");
  const std::string uri = "postgresql://relaygate@/" + pg->name() + "?host=" + nobody_home.path().string() + "," +
                          env("RG_TEST_PG_SOCKDIR") + "&port=" + port + "," + port + "&target_session_attrs=read-write";
  PgStore db(uri, kLimit, kNode);
  ASSERT_TRUE(db.add_user("alice", "$y$x", std::nullopt, now()));
  ASSERT_TRUE(db.grant("192.0.2.1", "alice", "pop3", TTL, now()));
  PgStore direct(pg->uri(), kLimit, "node-b");
  auto g = direct.live_grant("192.0.2.1", now());
  ASSERT_TRUE(g);
  EXPECT_EQ(g->node, kNode);
  // Only the first host, down: Unavailable naming it, at once (no server to wait for).
  const std::string e =
      error_of("postgresql://relaygate@/" + pg->name() + "?host=" + nobody_home.path().string() + "&port=" + port);
  EXPECT_NE(e.find(nobody_home.path().string()), std::string::npos) << e;

  // A first host that accepts but never answers: one deadline covers all the hosts, so the
  // connect gives up at the limit rather than waiting on each in turn.
  TempDir stalled;
  const int listener = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = (stalled / (".s.PGSQL." + port)).string();
  ASSERT_LT(path.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 8), 0);
  constexpr auto kShort = 400ms;
  const auto t0 = std::chrono::steady_clock::now();
  const std::string late =
      error_of("postgresql://relaygate@/" + pg->name() + "?host=" + stalled.path().string() + "," +
                   env("RG_TEST_PG_SOCKDIR") + "&port=" + port + "," + port + "&target_session_attrs=read-write",
               kShort);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, kShort + 300ms);
  ::close(listener);
  EXPECT_NE(late.find("timeout"), std::string::npos) << late;
}

// The server stops (-m immediate) and starts again: the Store that saw the fault reconnects at
// its next call; through authdb::Client, a daemon started while the server was down works once
// it is back.
TEST_F(PgStoreTest, ReconnectAfterRestartAndStartWhileDown) {
  PgStore db(pg->uri(), kLimit, kNode);
  ASSERT_TRUE(db.add_user("alice", "$y$x", std::nullopt, now()));
  ASSERT_TRUE(db.grant("192.0.2.1", "alice", "pop3", TTL, now()));
  ASSERT_TRUE(pg_stop());
  EXPECT_THROW(db.live_grant("192.0.2.1", now()), rg::authdb::Unavailable);  // the connection is gone
  EXPECT_THROW(db.live_grant("192.0.2.1", now()), rg::authdb::Unavailable);  // and no server to reconnect to

  // A daemon starting now: the Client comes up, its jobs fail until the server is back.
  asio::io_context io;
  const std::string uri = pg->uri();
  auto factory = [uri] { return std::make_unique<PgStore>(uri, kLimit, kNode); };
  std::unique_ptr<rg::authdb::Client> client;
  ASSERT_NO_THROW(client = std::make_unique<rg::authdb::Client>(factory, uri, 3s, 1, 1));
  auto check = [&client]() -> asio::awaitable<std::string> {
    auto job = [](Store& s) { return s.live_grant("192.0.2.1", 0).has_value(); };
    try {
      co_return co_await client->run(rg::authdb::Lane::Read, "check grant", job) ? "granted" : "denied";
    } catch (const rg::authdb::Error& e) {
      co_return std::string("error: ") + e.what();
    }
  };
  auto run = [&] {
    auto f = asio::co_spawn(io, check(), asio::use_future);
    io.restart();
    io.run();
    return f.get();
  };
  EXPECT_EQ(run().rfind("error: database " + uri, 0), 0u);
  ASSERT_TRUE(pg_start());
  EXPECT_EQ(run(), "granted");
  EXPECT_TRUE(db.live_grant("192.0.2.1", now()));  // the first Store too, committed data kept
}

// A server restarted between two calls (pg_ctl restart, or a failover that closed our idle
// connection): the next call finds the connection closed and reconnects before sending, so no
// request fails although the server is up again.
TEST_F(PgStoreTest, RestartBetweenCallsFailsNoCall) {
  PgStore db(pg->uri(), kLimit, kNode);
  ASSERT_TRUE(db.add_user("alice", "$y$x", std::nullopt, now()));
  for (const char* mode : {"fast", "immediate"}) {
    ASSERT_TRUE(pg_ctl(std::string("-m ") + mode + " stop") == 0) << mode;
    ASSERT_TRUE(pg_start()) << mode;
    std::optional<rg::authdb::UserAuth> u;
    EXPECT_NO_THROW(u = db.find_user("alice")) << mode;
    EXPECT_TRUE(u) << mode;
  }
  // The same for a connection the server ended on its own (an administrator, an idle timeout).
  PgSession(pg->name())
      .exec(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
          "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  std::this_thread::sleep_for(100ms);
  EXPECT_NO_THROW(EXPECT_TRUE(db.grant("192.0.2.1", "alice", "pop3", TTL, now())));
}

// Several connections (nodes) write at once: nothing lost, every failure counted once.
TEST_P(StoreContract, ConnectionsWritingAtOnceLoseNothing) {
  constexpr int kWriters = 3, kEach = 100;
  std::vector<std::string> errors(kWriters);
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w)
    writers.emplace_back([&, w] {
      try {
        auto s = open();
        for (int i = 0; i < kEach; ++i) {
          if (!s->grant("10." + std::to_string(w) + ".0." + std::to_string(i), "alice", "pop3", TTL, now()))
            throw std::runtime_error("grant refused");
          s->record_failure("shared", now());
        }
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(w)] = e.what();
      }
    });
  for (auto& t : writers) t.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
  EXPECT_EQ(db->list(now()).size(), size_t{kWriters * kEach});
  EXPECT_EQ(db->failure_count("shared", now()), kWriters * kEach);
}

// One clock for the cluster: PostgreSQL ignores the callers' `now`, so nodes whose clocks are an
// hour apart (or wildly wrong) agree on the grant and the failed logins.
TEST_F(PgStoreTest, CallersClocksAreIgnored) {
  PgStore ahead(pg->uri(), kLimit, "node-a"), behind(pg->uri(), kLimit, "node-b");
  ASSERT_TRUE(ahead.add_user("alice", "$y$x", std::nullopt, 0));
  ASSERT_TRUE(ahead.grant("192.0.2.1", "alice", "pop3", TTL, now() + 3600));
  auto g = behind.live_grant("192.0.2.1", now() - 3600);
  ASSERT_TRUE(g);
  EXPECT_LE(std::abs(g->granted_at - now()), 2);
  EXPECT_TRUE(ahead.live_grant("192.0.2.1", now() + 86400));
  EXPECT_EQ(behind.purge_expired(now() + 86400), 0);
  ahead.record_failure("192.0.2.0/24", 0);
  behind.record_failure("192.0.2.0/24", now() + 100000);
  EXPECT_EQ(ahead.failure_count("192.0.2.0/24", now() - 100000), 2);
  EXPECT_LE(std::abs(behind.list_users()[0].created_at - now()), 2);  // add_user was given 0
}

// A role that must log in with a password (scram-sha-256): libpq's passfile holds it, named in
// the URI (?passfile=) or by PGPASSFILE; without it the connect fails as Unavailable, and no
// message ever shows the password.
TEST_F(PgStoreTest, PasswordComesFromThePassfile) {
  constexpr const char* kPassword = "pw-Zq81-unused-elsewhere";
  const fs::path hba = fs::path(env("RG_TEST_PG_DATADIR")) / "pg_hba.conf";
  std::string original;
  {
    std::ifstream in(hba);
    original.assign(std::istreambuf_iterator<char>(in), {});
  }
  PgSession admin("postgres");
  admin.exec("DROP ROLE IF EXISTS rgpass");
  admin.exec(std::string("CREATE ROLE rgpass LOGIN PASSWORD '") + kPassword + "'");
  const std::string dbname = pg->name() + "_pw";
  admin.exec("CREATE DATABASE " + dbname + " OWNER rgpass");
  std::ofstream(hba, std::ios::trunc) << "local all rgpass scram-sha-256\n" << original;  // first match wins
  admin.exec("SELECT pg_reload_conf()");
  std::this_thread::sleep_for(300ms);  // the postmaster rereads pg_hba.conf

  TempDir dir;
  const fs::path passfile = dir / "pgpass";
  std::ofstream(passfile) << "*:*:*:rgpass:" << kPassword << "\n";
  fs::permissions(passfile, fs::perms::owner_read | fs::perms::owner_write);  // libpq ignores a readable one
  const std::string base = pg_uri(dbname, "rgpass");
  std::string without;
  try {
    PgStore s(base + "&passfile=" + (dir / "missing").string(), kLimit, kNode);
  } catch (const rg::authdb::Unavailable& e) {
    without = e.what();
  }
  std::string with_uri, with_env;
  try {
    PgStore s(base + "&passfile=" + passfile.string(), kLimit, kNode);
    with_uri = s.add_user("alice", "$y$x", std::nullopt, now()) ? "added" : "not added";
    EXPECT_EQ(s.name().find(kPassword), std::string::npos);
  } catch (const rg::authdb::Error& e) {
    with_uri = e.what();
  }
  ::setenv("PGPASSFILE", passfile.c_str(), 1);
  try {
    PgStore s(base, kLimit, kNode);
    with_env = s.find_user("alice") ? "found" : "not found";
  } catch (const rg::authdb::Error& e) {
    with_env = e.what();
  }
  ::unsetenv("PGPASSFILE");
  std::ofstream(hba, std::ios::trunc) << original;
  admin.exec("SELECT pg_reload_conf()");
  admin.exec("DROP DATABASE " + dbname + " WITH (FORCE)");
  admin.exec("DROP ROLE rgpass");

  EXPECT_NE(without.find("password"), std::string::npos) << without;
  EXPECT_NE(without.find(dbname), std::string::npos) << without;
  EXPECT_EQ(without.find(kPassword), std::string::npos) << without;
  EXPECT_EQ(with_uri, "added");
  EXPECT_EQ(with_env, "found");
}

}  // namespace

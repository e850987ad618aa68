// authdb (SQLite): grant expiry boundaries and clock skew on a fake clock, two writer processes,
// migration, and faulty database files (each error must name the file). The Store contract
// both backends share (users, revocation, canonical IPs, the queue summary) is
// authdb_store_test.cpp's.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "authdb/authdb.h"
#include "authdb/import.h"
#include "authdb/password.h"
#include "authdb/users.h"

namespace fs = std::filesystem;
using rg::authdb::AuthDb;
using rg::authdb::OpenMode;

namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/rg-authdb-XXXXXX";
    path_ = mkdtemp(tmpl);
    fs::permissions(path_, fs::perms::all);  // the unprivileged read-only probe needs access
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path operator/(const std::string& s) const { return path_ / s; }

 private:
  fs::path path_;
};

constexpr int64_t T0 = 1'800'000'000;
constexpr int64_t TTL = 1800;

struct AuthDbTest : ::testing::Test {
  TempDir dir;
  fs::path file = dir / "relaygate.db";
  AuthDb db{file, OpenMode::Create};
  void SetUp() override { ASSERT_TRUE(db.add_user("alice", "$y$unused", std::nullopt, T0)); }
};

std::string error_of(const fs::path& f, OpenMode mode = OpenMode::MustExist) {
  try {
    AuthDb db(f, mode);
    db.list(T0);
  } catch (const rg::authdb::Error& e) {
    return e.what();
  }
  return "<no error>";
}

TEST_F(AuthDbTest, GrantLivesUntilTtlMinusOneSecondOnly) {
  ASSERT_TRUE(db.grant("192.0.2.1", "alice", "pop3", TTL, T0));
  EXPECT_TRUE(db.is_authorized("192.0.2.1", T0));
  EXPECT_TRUE(db.is_authorized("192.0.2.1", T0 + TTL - 1));
  EXPECT_FALSE(db.is_authorized("192.0.2.1", T0 + TTL));  // expired, not yet purged
  EXPECT_FALSE(db.is_authorized("192.0.2.1", T0 + TTL + 1));
  EXPECT_FALSE(db.is_authorized("192.0.2.2", T0));
  EXPECT_TRUE(db.list(T0 + TTL).empty());
}

TEST_F(AuthDbTest, ClockMovedBackwardsBeyondTtlDenies) {
  ASSERT_TRUE(db.grant("192.0.2.1", "alice", "pop3", TTL, T0));
  EXPECT_TRUE(db.is_authorized("192.0.2.1", T0 - 0));
  EXPECT_FALSE(db.is_authorized("192.0.2.1", T0 - 1));  // expires_at - now = ttl + 1 > ttl
  EXPECT_FALSE(db.is_authorized("192.0.2.1", T0 - 86400));
  EXPECT_EQ(db.purge_expired(T0 - 86400), 1);
}

TEST_F(AuthDbTest, RefreshMovesExpiryAndKeepsGrantTime) {
  ASSERT_TRUE(db.grant("192.0.2.1", "alice", "pop3", TTL, T0));
  db.touch("192.0.2.1", T0 + 5);
  ASSERT_TRUE(db.grant("192.0.2.1", "alice", "apop", TTL, T0 + 100));
  auto g = db.live_grant("192.0.2.1", T0 + TTL + 50);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->granted_at, T0);
  EXPECT_EQ(g->refreshed_at, T0 + 100);
  EXPECT_EQ(g->expires_at, T0 + 100 + TTL);
  EXPECT_EQ(g->method, "apop");
  EXPECT_EQ(g->last_used_at, T0 + 5);
  // After expiry a new login starts a new grant.
  ASSERT_TRUE(db.grant("192.0.2.1", "alice", "pop3", TTL, T0 + 5000));
  g = db.live_grant("192.0.2.1", T0 + 5000);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->granted_at, T0 + 5000);
  EXPECT_FALSE(g->last_used_at);
}

TEST_F(AuthDbTest, PurgeDropsOnlyExpired) {
  ASSERT_TRUE(db.grant("192.0.2.1", "alice", "pop3", 10, T0));
  ASSERT_TRUE(db.grant("192.0.2.2", "alice", "pop3", 100, T0));
  EXPECT_EQ(db.purge_expired(T0 + 10), 1);
  EXPECT_EQ(db.list(T0 + 10).size(), 1u);
}

TEST_F(AuthDbTest, FailureCountersEscalateAndExpire) {
  EXPECT_EQ(db.failure_count("192.0.2.1", T0), 0);
  db.record_failure("192.0.2.1", T0);
  db.record_failure("192.0.2.1", T0 + 1);
  EXPECT_EQ(db.failure_count("192.0.2.1", T0 + 1), 2);
  EXPECT_EQ(db.failure_count("192.0.2.1", T0 + 1 + AuthDb::kFailureWindowSeconds), 0);
  db.clear_failures("192.0.2.1");
  EXPECT_EQ(db.failure_count("192.0.2.1", T0 + 2), 0);
}

// db copy's writes: import keeps every stored value and never overwrites; replace overwrites an
// existing user exactly and, when it disables, drops the user's grants like set_enabled.
TEST_F(AuthDbTest, ImportAndReplaceUserKeepStoredValues) {
  using rg::authdb::User;
  using rg::authdb::UserAuth;
  const User bob{"bob", false, true, T0 - 500};
  const UserAuth bob_auth{"bob", false, "$y$bobhash", "bobsecret"};
  ASSERT_TRUE(db.import_user(bob, bob_auth));
  EXPECT_FALSE(db.import_user(bob, {"bob", true, "$y$other", std::nullopt}));  // exists: untouched
  auto got = db.find_user("bob");
  ASSERT_TRUE(got);
  EXPECT_FALSE(got->enabled);
  EXPECT_EQ(got->password_hash, "$y$bobhash");
  EXPECT_EQ(got->legacy_secret, "bobsecret");
  EXPECT_EQ(db.list_users().at(0).created_at, T0);        // alice
  EXPECT_EQ(db.list_users().at(1).created_at, T0 - 500);  // bob

  ASSERT_TRUE(db.grant("192.0.2.1", "alice", "pop3", TTL, T0));
  EXPECT_FALSE(db.replace_user({"carol", true, false, T0}, {"carol", true, "$y$c", std::nullopt}));
  ASSERT_TRUE(db.replace_user({"alice", true, false, T0 - 900}, {"alice", true, "$y$new", std::nullopt}));
  EXPECT_EQ(db.find_user("alice")->password_hash, "$y$new");
  EXPECT_EQ(db.list_users().at(0).created_at, T0 - 900);
  EXPECT_EQ(db.list(T0).size(), 1u);  // enabled: the grant stays
  ASSERT_TRUE(db.replace_user({"alice", false, false, T0 - 900}, {"alice", false, "$y$new", std::nullopt}));
  EXPECT_TRUE(db.list(T0).empty());
  ASSERT_TRUE(db.replace_user({"alice", true, false, T0 - 900}, {"alice", true, "$y$new", std::nullopt}));
  EXPECT_TRUE(db.list(T0).empty());  // dropped, not merely hidden while disabled
}

// Two processes write grants into one file while the parent reads: nothing lost, no error.
TEST(AuthDbConcurrency, TwoProcessesWriteAtOnce) {
  TempDir dir;
  fs::path file = dir / "shared.db";
  {
    AuthDb db(file, OpenMode::Create);
    ASSERT_TRUE(db.add_user("alice", "$y$unused", std::nullopt, T0));
  }
  constexpr int kPerChild = 300;
  pid_t kids[2];
  for (int k = 0; k < 2; ++k) {
    kids[k] = fork();
    ASSERT_GE(kids[k], 0);
    if (kids[k] == 0) {
      int rc = 0;
      try {
        AuthDb db(file, OpenMode::MustExist);
        for (int i = 0; i < kPerChild; ++i) {
          std::string ip = "10." + std::to_string(k) + "." + std::to_string(i / 256) + "." + std::to_string(i % 256);
          if (!db.grant(ip, "alice", "pop3", TTL, T0)) rc = 3;
          if (!db.is_authorized(ip, T0)) rc = 4;
          db.record_failure("shared", T0);
        }
      } catch (...) {
        rc = 2;
      }
      _exit(rc);
    }
  }
  {
    AuthDb reader(file, OpenMode::MustExist);
    for (int i = 0; i < 200; ++i) (void)reader.list(T0);
  }
  for (pid_t kid : kids) {
    int status = 0;
    ASSERT_EQ(waitpid(kid, &status, 0), kid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  AuthDb db(file, OpenMode::MustExist);
  EXPECT_EQ(db.list(T0).size(), 2u * kPerChild);
  EXPECT_EQ(db.failure_count("shared", T0), 2 * kPerChild);
}

TEST(AuthDbFiles, MigratesFromSchemaVersionOne) {
  TempDir dir;
  fs::path file = dir / "v1.db";
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &raw), SQLITE_OK);
  const char* v1 =
      "CREATE TABLE schema_version(version INTEGER NOT NULL); INSERT INTO schema_version VALUES(1);"
      "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE,"
      " enabled INTEGER NOT NULL DEFAULT 1, password_hash TEXT NOT NULL, legacy_secret TEXT,"
      " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
      "CREATE TABLE grants(ip TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
      " method TEXT NOT NULL, granted_at INTEGER NOT NULL, refreshed_at INTEGER NOT NULL,"
      " expires_at INTEGER NOT NULL, last_used_at INTEGER, ttl INTEGER NOT NULL);"
      "INSERT INTO users VALUES(1, 'carol', 1, '$y$x', NULL, 1, 1);"
      "INSERT INTO grants VALUES('192.0.2.5', 1, 'pop3', 1800000000, 1800000000, 1800001800, NULL, 1800);";
  ASSERT_EQ(sqlite3_exec(raw, v1, nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(raw);
  AuthDb db(file, OpenMode::MustExist);
  EXPECT_EQ(db.schema_version(), AuthDb::kSchemaVersion);
  EXPECT_TRUE(db.is_authorized("192.0.2.5", T0));
  EXPECT_TRUE(db.find_user("carol"));
  db.record_failure("192.0.2.5", T0);  // table added by migration 2
  EXPECT_EQ(db.failure_count("192.0.2.5", T0), 1);
  EXPECT_EQ(db.queue_summary(), (rg::authdb::QueueSummary{0, 0}));  // table added by migration 3
  db.set_queue_summary({2, T0});
  EXPECT_EQ(db.queue_summary(), (rg::authdb::QueueSummary{2, T0}));
}

TEST(AuthDbFiles, MissingFileIsNamed) {
  TempDir dir;
  std::string e = error_of(dir / "missing.db");
  EXPECT_NE(e.find("missing.db"), std::string::npos) << e;
  EXPECT_NE(e.find("does not exist"), std::string::npos) << e;
  e = error_of(dir / "no-such-folder/x.db", OpenMode::Create);
  EXPECT_NE(e.find("no-such-folder"), std::string::npos) << e;
}

TEST(AuthDbFiles, CorruptFileIsNamed) {
  TempDir dir;
  fs::path file = dir / "corrupt.db";
  std::ofstream(file) << std::string(4096, 'x');
  std::string e = error_of(file);
  EXPECT_NE(e.find("corrupt.db"), std::string::npos) << e;
  EXPECT_NE(e.find("corrupt or not a relaygate database"), std::string::npos) << e;
}

TEST(AuthDbFiles, ForeignSqliteFileIsRefused) {
  TempDir dir;
  fs::path file = dir / "foreign.db";
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "CREATE TABLE t(x)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(raw);
  std::string e = error_of(file);
  EXPECT_NE(e.find("foreign.db"), std::string::npos) << e;
  EXPECT_NE(e.find("not a relaygate database"), std::string::npos) << e;
}

TEST(AuthDbFiles, NewerSchemaIsRefused) {
  TempDir dir;
  fs::path file = dir / "newer.db";
  { AuthDb db(file, OpenMode::Create); }
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "UPDATE schema_version SET version=99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(raw);
  std::string e = error_of(file);
  EXPECT_NE(e.find("newer.db"), std::string::npos) << e;
  EXPECT_NE(e.find("schema version 99 is newer"), std::string::npos) << e;
}

// Root ignores file modes, so the read-only probe runs as an unprivileged uid then.
// The file holds password hashes and legacy secrets: never world-readable, whoever created it.
TEST(AuthDbFiles, NewFileAndItsWalAreNotWorldReadable) {
  TempDir dir;
  fs::path file = dir / "new.db";
  const mode_t old_umask = umask(022);
  {
    AuthDb db(file, OpenMode::Create);
    ASSERT_TRUE(db.add_user("alice", "$y$x", std::nullopt, T0));
    struct stat st {};
    ASSERT_EQ(stat(file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    for (const char* side : {"new.db-wal", "new.db-shm"})
      if (stat((dir / side).c_str(), &st) == 0) {
        EXPECT_EQ(st.st_mode & 07, 0u) << side;
      }
  }
  umask(old_umask);
}

TEST(AuthDbFiles, WorldBitsAreRemovedFromAnOwnedFile) {
  TempDir dir;
  fs::path file = dir / "old.db";
  { AuthDb db(file, OpenMode::Create); }
  ASSERT_EQ(chmod(file.c_str(), 0664), 0);
  for (OpenMode mode : {OpenMode::Create, OpenMode::MustExist}) {
    ASSERT_EQ(chmod(file.c_str(), 0664), 0);
    AuthDb db(file, mode);
    struct stat st {};
    ASSERT_EQ(stat(file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0660u);  // group bits are the administrator's choice: kept
  }
}

TEST(AuthDbFiles, ReadOnlyFileIsNamed) {
  TempDir dir;
  fs::path file = dir / "ro.db";
  {
    AuthDb db(file, OpenMode::Create);
    ASSERT_TRUE(db.add_user("alice", "$y$x", std::nullopt, T0));
  }
  fs::remove(dir / "ro.db-wal");
  fs::remove(dir / "ro.db-shm");
  ASSERT_EQ(chmod(file.c_str(), 0444), 0);
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  pid_t kid = fork();
  ASSERT_GE(kid, 0);
  if (kid == 0) {
    close(pipefd[0]);
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(5);
    std::string e;
    try {
      AuthDb db(file, OpenMode::MustExist);
      db.grant("192.0.2.1", "alice", "pop3", TTL, T0);
      e = "<no error>";
    } catch (const rg::authdb::Error& err) {
      e = err.what();
    }
    ssize_t n = write(pipefd[1], e.data(), e.size());
    _exit(n < 0 ? 6 : 0);
  }
  close(pipefd[1]);
  std::string e;
  char buf[512];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) e.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(kid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_NE(e.find("ro.db"), std::string::npos) << e;
  EXPECT_NE(e.find("permissions"), std::string::npos) << e;
}

// The forms relaygatectl user import stores, each made by Dovecot 2.3.19's `doveadm pw -p
// 'pässwort 1'` (the crypt and argon2 ones without Dovecot's {SCHEME} prefix, which import
// strips): every one verifies the password and nothing else.
TEST(Password, DovecotSchemesVerify) {
  const std::string pw = "p\xc3\xa4sswort 1";
  const char* hashes[] = {
      "{SSHA512}Bup8uWqsS9IwFyeXHJt2heHof8/VLmNNBWIeVsbjR+KVwDAdb7KnkySeXhJ95w3amivIuzvCjLhAlUNaEMgFT6kzEHc=",
      "{SSHA256}bl5eWuemVX1fvTedkUNASSqbx+sI2Nq3COYWpfNNG/2x87hw",
      "{SSHA}VgEV1EJIYjFN6jWCs9KHDnkz9JQxEUnM",
      "$argon2id$v=19$m=65536,t=3,p=1$s4CofpsHNeBieWlwcuP4QA$nIlNxGFBX0/QrjKRqOVWJjz4LKeWiZXi7Ma+QrU7pBY",  // {ARGON2ID}
      "$argon2i$v=19$m=32768,t=4,p=1$gDmAxvuptE4TmPkp1JVo7w$XUpPVKCmrIKWiDHNbKy+tl1dO+itrNW7hLQ49WqztUg",   // {ARGON2I}
      "$1$wzFoITKx$9IpARJBdePlXWgmu4wVmu.",                               // {MD5-CRYPT}
      "$2y$05$hUIGQfvUhsPgo49fs6sUcO2auB8ZFSb5M3DZKPuD4qTf7HL0QIpGi",     // {BLF-CRYPT}
      "$5$DnAz7WnhheHngZo4$bRgJjRz6zPqcpb.Ejt3I71PaRw6Q6zSx4VzxWTuQrM2",  // {SHA256-CRYPT}
  };
  for (const std::string hash : hashes) {
    EXPECT_TRUE(rg::authdb::is_supported_hash(hash)) << hash;
    EXPECT_TRUE(rg::authdb::verify_password(hash, pw)) << hash;
    EXPECT_FALSE(rg::authdb::verify_password(hash, "p\xc3\xa4sswort 2")) << hash;
    EXPECT_FALSE(rg::authdb::verify_password(hash, "")) << hash;
  }
}

TEST(Password, MalformedImportedFormsAreNotHashes) {
  for (const char* bad : {"{SSHA512}", "{SSHA512}not*base64", "{SSHA256}YWJj", "{SSHA}", "$argon2id$",
                          "$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$", "{SHA512}abc"}) {
    EXPECT_FALSE(rg::authdb::is_supported_hash(bad)) << bad;
    EXPECT_FALSE(rg::authdb::verify_password(bad, "x")) << bad;
  }
}

TEST(Password, HashVerifyAndImportedSchemes) {
  std::string h = rg::authdb::hash_password("correct horse");
  EXPECT_EQ(h.rfind("$y$", 0), 0u);
  EXPECT_TRUE(rg::authdb::verify_password(h, "correct horse"));
  EXPECT_FALSE(rg::authdb::verify_password(h, "correct horsE"));
  EXPECT_FALSE(rg::authdb::verify_password(h, ""));
  // SHA512-CRYPT as Dovecot and /etc/shadow store it: `openssl passwd -6 -salt saltsalt secret`.
  const char* sha512 =
      "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
  EXPECT_TRUE(rg::authdb::is_supported_hash(sha512));
  EXPECT_TRUE(rg::authdb::verify_password(sha512, "secret"));
  EXPECT_FALSE(rg::authdb::verify_password(sha512, "Secret"));
  EXPECT_FALSE(rg::authdb::is_supported_hash("plaintext"));
  EXPECT_FALSE(rg::authdb::is_supported_hash("$6$"));
  EXPECT_FALSE(rg::authdb::verify_password("!locked", "x"));
  EXPECT_FALSE(rg::authdb::verify_dummy("anything"));
  EXPECT_FALSE(rg::authdb::verify_password(h, std::string(1025, 'a')));
}

TEST(UserNames, RejectsUnsafeNames) {
  using rg::authdb::user_name_problem;
  for (const char* ok : {"alice", "a.b", "a-b_c+d", "A1"}) EXPECT_FALSE(user_name_problem(ok)) << ok;
  for (std::string bad : {std::string(""), std::string("a/b"), std::string(".."), std::string(".hidden"),
                          std::string("a\nb"), std::string("a\0b", 3), std::string("a b"), std::string("a@b"),
                          std::string(65, 'a'), std::string("-x"), std::string("a..b"), std::string("\xc3\xa9")})
    EXPECT_TRUE(user_name_problem(bad)) << bad;
  EXPECT_FALSE(user_name_problem(std::string(64, 'a')));
}

TEST(UserNames, LoginMapsLocalAddressesOnly) {
  std::vector<std::string> domains = {"example.test"};
  EXPECT_EQ(rg::authdb::login_to_user("Alice", domains), "alice");
  EXPECT_EQ(rg::authdb::login_to_user("alice@EXAMPLE.test", domains), "alice");
  EXPECT_FALSE(rg::authdb::login_to_user("alice@other.test", domains));
  EXPECT_FALSE(rg::authdb::login_to_user("../etc", domains));
  EXPECT_FALSE(rg::authdb::login_to_user("", domains));
}

}  // namespace

// relaygatectl user import's parsers (authdb/import.h): what each Dovecot scheme becomes.
TEST(Import, DovecotPasswdFileSchemes) {
  const std::string file =
      "# made by doveadm pw -p 'p\xc3\xa4sswort 1'\n"
      "alice:{SHA512-CRYPT}$6$saltsalt$BsxWi4sDrpus9tkRTiMnrLGbqGuUONB9.FQ53wlz9/"
      "RCmo3k6swfD.kCPz8HfJ6dE9fVoM0YSHSnWEF.pd5rz.::::::\n"
      "Bob@Example.TEST:{ssha256.hex}6e5e5e5ae7a6557d5fbd379d914340492a9bc7eb08d8dab708e616a5f34d1bfdb1f3b870\n"
      "carol:{PLAIN.B64}cMOkc3N3b3J0IDE=\r\n"
      "dave:{CRAM-MD5}" +
      std::string(64, 'a') +
      "\n"
      "\n"
      "erin:$2y$05$hUIGQfvUhsPgo49fs6sUcO2auB8ZFSb5M3DZKPuD4qTf7HL0QIpGi\n"
      "frank:\n";
  auto list = rg::authdb::parse_dovecot_passwd(file, "users", {"example.test"});
  ASSERT_EQ(list.users.size(), 5u);
  EXPECT_EQ(list.users[0].name, "alice");
  EXPECT_EQ(list.users[0].scheme, "SHA512-CRYPT");
  EXPECT_TRUE(rg::authdb::verify_password(*list.users[0].hash, "p\xc3\xa4sswort 1"));
  EXPECT_EQ(list.users[1].name, "bob");
  EXPECT_EQ(list.users[1].line, 3);
  ASSERT_TRUE(list.users[1].hash);
  EXPECT_TRUE(rg::authdb::verify_password(*list.users[1].hash, "p\xc3\xa4sswort 1")) << *list.users[1].hash;
  EXPECT_EQ(list.users[2].plaintext, "p\xc3\xa4sswort 1");
  EXPECT_EQ(list.users[3].cram_context, "{CRAM-MD5}" + std::string(64, 'a'));
  EXPECT_FALSE(list.users[3].hash);
  EXPECT_EQ(list.users[4].scheme, "CRYPT");
  EXPECT_TRUE(rg::authdb::verify_password(*list.users[4].hash, "p\xc3\xa4sswort 1"));
  ASSERT_EQ(list.skipped.size(), 1u);
  EXPECT_EQ(list.skipped[0].name, "frank");
}

TEST(Import, DovecotPasswdFileErrorsNameFileLineField) {
  auto error = [](const std::string& text) -> std::string {
    try {
      rg::authdb::parse_dovecot_passwd(text, "users", {"example.test"});
    } catch (const rg::authdb::ImportError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(error("a:{PLAIN}x\nb:{SHA1}abc\n").rfind("users:2: field password of b: scheme {SHA1}", 0), 0u)
      << error("a:{PLAIN}x\nb:{SHA1}abc\n");
  EXPECT_EQ(error("a:{PLAIN}x\nA:{PLAIN}y\n"), "users:2: field user: a appears twice");
  EXPECT_NE(error("a@elsewhere.test:{PLAIN}x\n").find("users:1: field user"), std::string::npos);
  EXPECT_NE(error("a:{CRAM-MD5}abcd\n").find("not a {CRAM-MD5} context"), std::string::npos);
  EXPECT_NE(error("a:{SHA512-CRYPT}$6$broken\n").find("users:1: field password of a"), std::string::npos);
  EXPECT_NE(error("a\n").find("users:1: field password: missing"), std::string::npos);
  EXPECT_EQ(error(""), "");
}

TEST(Import, ShadowSkipsSystemLockedEmptyAndExpired) {
  const char* passwd =
      "root:x:0:0:root:/root:/bin/bash\n"
      "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
      "alice:x:1000:1000::/home/alice:/bin/bash\n"
      "bob:x:1001:1001::/home/bob:/bin/bash\n"
      "carol:x:1002:1002::/home/carol:/bin/bash\n"
      "dave:x:1003:1003::/home/dave:/bin/bash\n"
      "erin:x:1004:1004::/home/erin:/bin/bash\n"
      "frank:x:1005:1005::/home/frank:/bin/bash\n";
  const std::string h =
      "$6$saltsalt$BsxWi4sDrpus9tkRTiMnrLGbqGuUONB9.FQ53wlz9/RCmo3k6swfD.kCPz8HfJ6dE9fVoM0YSHSnWEF.pd5rz.";
  const std::string shadow = "root:" + h + ":19000:0:99999:7:::\n" + "nobody:*:19000:0:99999:7:::\n" + "alice:" + h +
                             ":19000:0:99999:7:::\n" + "bob:!" + h + ":19000:0:99999:7:::\n" + "carol::19000::::::\n" +
                             "dave:" + h + ":19000:0:99999:7::19999:\n" + "erin:" + h + ":0:0:99999:7:::\n" +
                             "frank:" + h + ":19000:0:30:7:5::\n";
  auto uids = rg::authdb::parse_login_defs("# comment\nUID_MIN\t\t 1000\nUID_MAX 60000\n");
  EXPECT_EQ(uids.min, 1000);
  EXPECT_EQ(uids.max, 60000);
  auto list = rg::authdb::parse_shadow(shadow, "shadow", passwd, "passwd", uids, 20000);
  ASSERT_EQ(list.users.size(), 1u);
  EXPECT_EQ(list.users[0].name, "alice");
  EXPECT_EQ(list.users[0].hash, h);
  EXPECT_EQ(list.users[0].scheme, "shadow $6$");
  std::map<std::string, std::string> why;
  for (const auto& s : list.skipped) why[s.name] = s.reason;
  EXPECT_EQ(why["root"], "system account (uid 0)");
  EXPECT_EQ(why["nobody"], "system account (uid 65534)");
  EXPECT_EQ(why["bob"], "locked");
  EXPECT_EQ(why["carol"], "no password");
  EXPECT_EQ(why["dave"], "account expired");
  EXPECT_EQ(why["erin"], "password must be changed first (lastchg 0)");
  EXPECT_EQ(why["frank"], "password expired");
  EXPECT_THROW(rg::authdb::parse_shadow("alice:x:1\n", "shadow", passwd, "passwd", uids, 20000),
               rg::authdb::ImportError);
}

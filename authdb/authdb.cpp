// SQLite implementation of authdb.h. Prepared statements are cached per connection; every
// public call is one short statement or one BEGIN IMMEDIATE transaction, retried as a whole
// while another process holds the write lock (SQLITE_BUSY / SQLITE_LOCKED).
#include "authdb/authdb.h"

#include "shared/fd.h"
#include "shared/fsutil.h"
#include "shared/ip.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace rg::authdb {
namespace {

// Thrown inside with_retry only; never escapes AuthDb.
struct Busy {};

// Forward migrations: kMigrations[i] takes the schema from version i to i + 1.
const char* const kMigrations[] = {
    // 0 -> 1: users and grants.
    "CREATE TABLE users("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE COLLATE NOCASE,"
    "  enabled INTEGER NOT NULL DEFAULT 1,"
    "  password_hash TEXT NOT NULL,"
    "  legacy_secret TEXT,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL);"
    "CREATE TABLE grants("
    "  ip TEXT PRIMARY KEY,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  method TEXT NOT NULL,"
    "  granted_at INTEGER NOT NULL,"
    "  refreshed_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL,"
    "  last_used_at INTEGER,"
    "  ttl INTEGER NOT NULL);"
    "CREATE INDEX grants_user ON grants(user_id);"
    "CREATE INDEX grants_expires ON grants(expires_at);",
    // 1 -> 2: failed-login counters shared by pop3d and smtpd.
    "CREATE TABLE auth_failures("
    "  net TEXT PRIMARY KEY,"
    "  failures INTEGER NOT NULL,"
    "  last_failure_at INTEGER NOT NULL);",
    // 2 -> 3: the queue summary smtpd keeps for the status file (one row; empty until smtpd writes it).
    "CREATE TABLE queue_summary("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  count INTEGER NOT NULL,"
    "  oldest_enqueued_at INTEGER NOT NULL);"
    "INSERT INTO queue_summary VALUES(1, 0, 0);",
    // 3 -> 4 (issue 12): the node that wrote each grant (the status file names it), and one
    // queue summary per node, since each node has its own spool (the single row becomes node
    // '', which a node without a row of its own still reads: an upgraded host keeps its summary).
    "ALTER TABLE grants ADD COLUMN node TEXT NOT NULL DEFAULT '';"
    "CREATE TABLE queue_summaries("
    "  node TEXT PRIMARY KEY,"
    "  count INTEGER NOT NULL,"
    "  oldest_enqueued_at INTEGER NOT NULL);"
    "INSERT INTO queue_summaries SELECT '', count, oldest_enqueued_at FROM queue_summary;"
    "DROP TABLE queue_summary;",
};
static_assert(std::size(kMigrations) == AuthDb::kSchemaVersion);

// The database holds password hashes and, for legacy users, password-equivalent secrets: never
// world-readable. A new file gets this mode before SQLite first opens it, so SQLite gives its
// -wal and -shm files the same mode (and, running as root, the same owner).
constexpr unsigned kDatabaseMode = 0640;

// Clears the "other" permission bits of `p` if it is a regular file this process owns (a file
// created by an older version as 0644). Best effort: a file we cannot fix still opens.
void strip_world_access(const fs::path& p) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid()) return;
  if ((st.st_mode & S_IRWXO) != 0) ::chmod(p.c_str(), st.st_mode & 07777 & ~static_cast<mode_t>(S_IRWXO));
}

// Grant keys are canonical IP text; a caller's non-canonical spelling still finds its row.
std::string grant_key(const std::string& ip) {
  auto c = canonical_ip(ip);
  if (!c) throw std::invalid_argument("not an IP address: " + ip);
  return *c;
}

}  // namespace

void AuthDb::Closer::operator()(sqlite3* db) const { sqlite3_close_v2(db); }
void AuthDb::StmtCloser::operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }

// A cached prepared statement, reset and unbound when the handle goes out of scope.
class AuthDb::Stmt {
 public:
  Stmt(AuthDb& db, const char* sql) : db_(db) {
    auto& slot = db.stmts_[sql];
    if (!slot) {
      sqlite3_stmt* s = nullptr;
      int rc = sqlite3_prepare_v3(db.db_.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
      if (rc != SQLITE_OK) {
        sqlite3_finalize(s);
        db.check(rc, "prepare");
      }
      slot.reset(s);
    }
    s_ = slot.get();
  }
  ~Stmt() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, const std::string& v) {
    db_.check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT), "bind");
    return *this;
  }
  Stmt& bind(int i, const std::optional<std::string>& v) {
    if (!v) return bind_null(i);
    return bind(i, *v);
  }
  Stmt& bind(int i, int64_t v) {
    db_.check(sqlite3_bind_int64(s_, i, v), "bind");
    return *this;
  }
  Stmt& bind_null(int i) {
    db_.check(sqlite3_bind_null(s_, i), "bind");
    return *this;
  }
  // True while a row is available.
  bool step() {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    db_.check(rc, "step");
    return false;
  }
  void run() {
    while (step()) {
    }
  }
  int64_t i64(int col) const { return sqlite3_column_int64(s_, col); }
  bool is_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  std::string text(int col) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, col))) : std::string();
  }
  int changes() const { return sqlite3_changes(db_.db_.get()); }

 private:
  AuthDb& db_;
  sqlite3_stmt* s_;
};

void AuthDb::check(int rc, const char* what) {
  if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return;
  int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) throw Busy{};
  fail(what, rc);
}

void AuthDb::fail(const char* what, int rc) const {
  std::string detail = db_ ? sqlite3_errmsg(db_.get()) : sqlite3_errstr(rc);
  std::string hint;
  int primary = rc & 0xff;
  if (primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT)
    hint = " (the file is corrupt or not a relaygate database)";
  if (primary == SQLITE_READONLY || primary == SQLITE_PERM || primary == SQLITE_CANTOPEN)
    hint = " (check the permissions of the file and its folder)";
  throw Error("database " + file_.string() + ": " + what + " failed: " + detail + hint);
}

template <class F>
auto AuthDb::with_retry(const char* what, F&& f) -> decltype(f()) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + busy_limit_;
  for (int attempt = 0;; ++attempt) {
    try {
      return f();
    } catch (const Busy&) {
      if (sqlite3_get_autocommit(db_.get()) == 0) sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
      if (clock::now() >= deadline)
        throw Error("database " + file_.string() + ": " + what + " failed: still locked by another process after " +
                    std::to_string(busy_limit_.count()) + " ms");
      std::this_thread::sleep_for(std::chrono::milliseconds(2 + (attempt % 8) * 3));
    } catch (...) {
      if (sqlite3_get_autocommit(db_.get()) == 0) sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }
}

void AuthDb::exec(const char* sql, const char* what) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, &err);
  sqlite3_free(err);
  check(rc, what);
}

AuthDb::AuthDb(const fs::path& file, OpenMode mode, std::chrono::milliseconds busy_limit, std::string node)
    : file_(file), busy_limit_(busy_limit), node_(std::move(node)) {
  std::error_code ec;
  if (mode == OpenMode::MustExist && !fs::exists(file_, ec))
    throw Error("database " + file_.string() + ": does not exist (create it with `relaygatectl user add`)");
  if (fs::is_directory(file_, ec)) throw Error("database " + file_.string() + ": is a directory");
  if (mode == OpenMode::Create && !fs::exists(file_, ec) && file_.has_parent_path() &&
      !fs::is_directory(file_.parent_path(), ec))
    throw Error("database " + file_.string() + ": folder " + file_.parent_path().string() + " does not exist");
  if (mode == OpenMode::Create) {
    try {
      fsutil::create_file_owned(file_, std::nullopt, kDatabaseMode);
    } catch (const std::system_error& e) {
      throw Error("database " + file_.string() + ": " + e.what() + " (check the permissions of its folder)");
    }
  }
  for (const char* suffix : {"", "-wal", "-shm"}) strip_world_access(fs::path(file_.string() + suffix));
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (mode == OpenMode::Create ? SQLITE_OPEN_CREATE : 0);
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(file_.c_str(), &raw, flags, nullptr);
  db_.reset(raw);
  if (rc != SQLITE_OK) fail("open", rc);
  sqlite3_extended_result_codes(db_.get(), 1);
  sqlite3_busy_timeout(db_.get(), static_cast<int>(std::min<int64_t>(kBusyTimeoutMs, busy_limit_.count())));
  with_retry("open", [&] {
    // Reading the schema first makes a corrupt or foreign file fail here, with its name.
    exec("PRAGMA foreign_keys=ON", "enable foreign keys");
    Stmt jm(*this, "PRAGMA journal_mode=WAL");
    if (!jm.step() || jm.text(0) != "wal") fail("switch to WAL journal mode", SQLITE_READONLY);
    return 0;
  });
  exec("PRAGMA synchronous=NORMAL", "set synchronous");
  migrate();
  struct stat st {};
  if (::stat(file_.c_str(), &st) == 0) identity_ = {st.st_dev, st.st_ino};
}

// Before each write (issue 11, item 5). SQLite keeps its descriptor and its page cache: a file
// renamed over the database leaves this connection writing to the old, unlinked inode, and one
// overwritten in place (`cp garbage db`) can go unseen while pages come from the cache and the
// WAL, so a grant "commits" where no reader will ever find it and pop3d answers +OK. A stat of
// the path (same device and inode as at open) and the 16-byte header magic read from the path
// cost one syscall pair per write and catch both; the Error makes authdb::Client drop this
// connection, so the next job reopens whatever the path now holds (a good file: recovery).
namespace {
// The process-lifetime descriptor check_file reads the header through, by device and inode.
// Never closed (see check_file); one per database file, so the set stays tiny.
int header_fd(const fs::path& file, const struct stat& st) {
  static std::mutex mutex;
  static std::map<std::pair<dev_t, ino_t>, int> fds;
  std::lock_guard lock(mutex);
  auto it = fds.find({st.st_dev, st.st_ino});
  if (it != fds.end()) return it->second;
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat opened {};
  if (fd < 0) return -1;
  if (::fstat(fd, &opened) != 0) opened = st;
  // Kept whatever file it turned out to be (the path may have changed in between): closing it
  // could drop the locks of a connection this process has on that file.
  fds.emplace(std::make_pair(opened.st_dev, opened.st_ino), fd);
  return opened.st_dev == st.st_dev && opened.st_ino == st.st_ino ? fd : -1;
}
}  // namespace

void AuthDb::check_file(const char* what) const {
  struct stat st {};
  if (::stat(file_.c_str(), &st) != 0)
    throw Error("database " + file_.string() + ": " + what + " failed: the file is gone");
  if (identity_ && (st.st_dev != identity_->first || st.st_ino != identity_->second))
    throw Error("database " + file_.string() + ": " + what + " failed: the file was replaced since it was opened");
  static constexpr char kMagic[16] = "SQLite format 3";  // with its NUL: the SQLite file header
  char head[sizeof kMagic] = {};
  // The header is read through one descriptor per database file that stays open for the life of
  // the process: closing any descriptor of a file drops every POSIX lock the process holds on it
  // (fcntl(2)), SQLite's included, so a check that opened and closed the file would break the
  // other connections' locking ("disk I/O error", or worse, corruption).
  const int fd = header_fd(file_, st);
  if (fd < 0 || ::pread(fd, head, sizeof head, 0) != static_cast<ssize_t>(sizeof head) ||
      std::memcmp(head, kMagic, sizeof head) != 0)
    throw Error("database " + file_.string() + ": " + what +
                " failed: the file is not an SQLite database any more (overwritten?)");
}

AuthDb::~AuthDb() {
  stmts_.clear();  // statements must be finalized before the connection closes
}

int AuthDb::schema_version() {
  return with_retry("read schema version", [&] {
    Stmt t(*this, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_version'");
    t.step();
    if (t.i64(0) == 0) return 0;
    Stmt v(*this, "SELECT version FROM schema_version");
    return v.step() ? static_cast<int>(v.i64(0)) : 0;
  });
}

void AuthDb::migrate() {
  // A current schema needs no write lock: a daemon's database thread opening its connection
  // while another process holds the lock must not wait for it (issue 11).
  if (schema_version() == kSchemaVersion) return;
  with_retry("migrate schema", [&] {
    exec("BEGIN IMMEDIATE", "begin");
    int version = 0;
    {
      Stmt t(*this, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_version'");
      t.step();
      if (t.i64(0) != 0) {
        Stmt v(*this, "SELECT version FROM schema_version");
        version = v.step() ? static_cast<int>(v.i64(0)) : 0;
      } else {
        Stmt n(*this, "SELECT count(*) FROM sqlite_master");
        n.step();
        if (n.i64(0) != 0)
          throw Error("database " + file_.string() +
                      ": is an SQLite file but not a relaygate database (no schema_version table)");
        exec("CREATE TABLE schema_version(version INTEGER NOT NULL); INSERT INTO schema_version VALUES(0)",
             "create schema");
      }
    }
    if (version > kSchemaVersion)
      throw Error("database " + file_.string() + ": schema version " + std::to_string(version) +
                  " is newer than this relaygate supports (" + std::to_string(kSchemaVersion) + "); upgrade relaygate");
    for (int v = version; v < kSchemaVersion; ++v) exec(kMigrations[v], "migrate schema");
    if (version != kSchemaVersion) {
      Stmt u(*this, "UPDATE schema_version SET version=?");
      u.bind(1, static_cast<int64_t>(kSchemaVersion)).run();
    }
    exec("COMMIT", "commit");
    return 0;
  });
}

// ---- users ----

bool AuthDb::add_user(const std::string& name, const std::string& hash, const std::optional<std::string>& legacy,
                      int64_t now) {
  return with_retry("add user", [&] {
    Stmt s(*this,
           "INSERT INTO users(name, enabled, password_hash, legacy_secret, created_at, updated_at) "
           "VALUES(?, 1, ?, ?, ?, ?) ON CONFLICT(name) DO NOTHING");
    s.bind(1, name).bind(2, hash).bind(3, legacy).bind(4, now).bind(5, now).run();
    return s.changes() == 1;
  });
}

bool AuthDb::set_password(const std::string& name, const std::string& hash, const std::optional<std::string>& legacy,
                          int64_t now) {
  return with_retry("set password", [&] {
    Stmt s(*this, "UPDATE users SET password_hash=?, legacy_secret=?, updated_at=? WHERE name=?");
    s.bind(1, hash).bind(2, legacy).bind(3, now).bind(4, name).run();
    return s.changes() == 1;
  });
}

bool AuthDb::delete_user(const std::string& name) {
  return with_retry("delete user", [&] {
    Stmt s(*this, "DELETE FROM users WHERE name=?");  // grants go with it (ON DELETE CASCADE)
    s.bind(1, name).run();
    return s.changes() == 1;
  });
}

bool AuthDb::set_enabled(const std::string& name, bool enabled, int64_t now) {
  return with_retry("enable/disable user", [&] {
    exec("BEGIN IMMEDIATE", "begin");
    Stmt s(*this, "UPDATE users SET enabled=?, updated_at=? WHERE name=?");
    s.bind(1, int64_t{enabled}).bind(2, now).bind(3, name).run();
    bool found = s.changes() == 1;
    if (found && !enabled) {
      Stmt r(*this, "DELETE FROM grants WHERE user_id=(SELECT id FROM users WHERE name=?)");
      r.bind(1, name).run();
    }
    exec("COMMIT", "commit");
    return found;
  });
}

std::optional<UserAuth> AuthDb::find_user(const std::string& name) {
  return with_retry("look up user", [&]() -> std::optional<UserAuth> {
    Stmt s(*this, "SELECT name, enabled, password_hash, legacy_secret FROM users WHERE name=?");
    s.bind(1, name);
    if (!s.step()) return std::nullopt;
    UserAuth u;
    u.name = s.text(0);
    u.enabled = s.i64(1) != 0;
    u.password_hash = s.text(2);
    if (!s.is_null(3)) u.legacy_secret = s.text(3);
    return u;
  });
}

bool AuthDb::import_user(const User& user, const UserAuth& auth) {
  return with_retry("import user", [&] {
    Stmt s(*this,
           "INSERT INTO users(name, enabled, password_hash, legacy_secret, created_at, updated_at) "
           "VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO NOTHING");
    s.bind(1, user.name).bind(2, int64_t{auth.enabled}).bind(3, auth.password_hash).bind(4, auth.legacy_secret);
    s.bind(5, user.created_at).bind(6, user.created_at).run();
    return s.changes() == 1;
  });
}

bool AuthDb::replace_user(const User& user, const UserAuth& auth) {
  return with_retry("replace user", [&] {
    exec("BEGIN IMMEDIATE", "begin");
    Stmt s(*this,
           "UPDATE users SET enabled=?, password_hash=?, legacy_secret=?, created_at=?, updated_at=? WHERE name=?");
    s.bind(1, int64_t{auth.enabled}).bind(2, auth.password_hash).bind(3, auth.legacy_secret);
    s.bind(4, user.created_at).bind(5, user.created_at).bind(6, user.name).run();
    bool found = s.changes() == 1;
    if (found && !auth.enabled) {
      Stmt r(*this, "DELETE FROM grants WHERE user_id=(SELECT id FROM users WHERE name=?)");
      r.bind(1, user.name).run();
    }
    exec("COMMIT", "commit");
    return found;
  });
}

std::optional<std::string> AuthDb::write_users(const std::vector<UserWrite>& writes, int64_t now) {
  return with_retry("import users", [&]() -> std::optional<std::string> {
    exec("BEGIN IMMEDIATE", "begin");
    for (const auto& w : writes) {
      const bool add = w.kind == UserWrite::Kind::Add;
      Stmt s(*this, add ? "INSERT INTO users(name, enabled, password_hash, legacy_secret, created_at, updated_at) "
                          "VALUES(?1, 1, ?2, ?3, ?4, ?4) ON CONFLICT(name) DO NOTHING"
                        : "UPDATE users SET password_hash=?2, legacy_secret=?3, updated_at=?4 WHERE name=?1");
      s.bind(1, w.name).bind(2, w.password_hash).bind(3, w.legacy_secret).bind(4, now).run();
      if (s.changes() != 1) {
        exec("ROLLBACK", "rollback");
        return w.name;
      }
    }
    exec("COMMIT", "commit");
    return std::nullopt;
  });
}

std::vector<User> AuthDb::list_users() {
  return with_retry("list users", [&] {
    std::vector<User> out;
    Stmt s(*this, "SELECT name, enabled, legacy_secret IS NOT NULL, created_at FROM users ORDER BY name");
    while (s.step()) out.push_back(User{s.text(0), s.i64(1) != 0, s.i64(2) != 0, s.i64(3)});
    return out;
  });
}

// ---- grants ----

bool AuthDb::grant(const std::string& raw_ip, const std::string& user, const std::string& method, int64_t ttl,
                   int64_t now) {
  check_file("write grant");
  const std::string ip = grant_key(raw_ip);
  return with_retry("write grant", [&] {
    // One statement: a refresh keeps granted_at and last_used_at, moves expires_at.
    Stmt s(*this,
           "INSERT INTO grants(ip, user_id, method, granted_at, refreshed_at, expires_at, last_used_at, ttl, node) "
           "SELECT ?1, id, ?2, ?3, ?3, ?3 + ?4, NULL, ?4, ?6 FROM users WHERE name=?5 AND enabled=1 "
           "ON CONFLICT(ip) DO UPDATE SET "
           "  granted_at=CASE WHEN grants.user_id=excluded.user_id AND grants.expires_at>?3 THEN grants.granted_at "
           "ELSE ?3 END,"
           "  last_used_at=CASE WHEN grants.user_id=excluded.user_id AND grants.expires_at>?3 THEN grants.last_used_at "
           "END,"
           "  user_id=excluded.user_id, method=excluded.method, refreshed_at=?3, expires_at=?3 + ?4, ttl=?4,"
           "  node=excluded.node");
    s.bind(1, ip).bind(2, method).bind(3, now).bind(4, ttl).bind(5, user).bind(6, node_).run();
    return s.changes() == 1;
  });
}

namespace {
// Live: not yet expired, and not "expired in the future" because the clock went backwards.
constexpr const char* kLiveGrantSql =
    "SELECT g.ip, u.name, g.method, g.granted_at, g.refreshed_at, g.expires_at, g.last_used_at, g.ttl, g.node "
    "FROM grants g JOIN users u ON u.id=g.user_id "
    "WHERE g.ip=?1 AND ?2 < g.expires_at AND g.expires_at - ?2 <= g.ttl AND u.enabled=1";
constexpr const char* kListSql =
    "SELECT g.ip, u.name, g.method, g.granted_at, g.refreshed_at, g.expires_at, g.last_used_at, g.ttl, g.node "
    "FROM grants g JOIN users u ON u.id=g.user_id "
    "WHERE ?1 < g.expires_at AND g.expires_at - ?1 <= g.ttl AND u.enabled=1 ORDER BY g.ip";
}  // namespace

std::optional<Grant> AuthDb::live_grant(const std::string& raw_ip, int64_t now) {
  auto canonical = canonical_ip(raw_ip);
  if (!canonical) return std::nullopt;
  const std::string& ip = *canonical;
  return with_retry("check grant", [&]() -> std::optional<Grant> {
    Stmt s(*this, kLiveGrantSql);
    s.bind(1, ip).bind(2, now);
    if (!s.step()) return std::nullopt;
    Grant g{s.text(0), s.text(1), s.text(2), s.i64(3), s.i64(4), s.i64(5), std::nullopt, s.i64(7), s.text(8)};
    if (!s.is_null(6)) g.last_used_at = s.i64(6);
    return g;
  });
}

bool AuthDb::is_authorized(const std::string& ip, int64_t now) { return live_grant(ip, now).has_value(); }

void AuthDb::touch(const std::string& raw_ip, int64_t now) {
  check_file("touch grant");
  auto ip = canonical_ip(raw_ip).value_or(raw_ip);
  with_retry("touch grant", [&] {
    Stmt s(*this, "UPDATE grants SET last_used_at=?2 WHERE ip=?1 AND ?2 < expires_at");
    s.bind(1, ip).bind(2, now).run();
    return 0;
  });
}

bool AuthDb::revoke(const std::string& raw_ip) {
  auto ip = canonical_ip(raw_ip).value_or(raw_ip);
  return with_retry("revoke grant", [&] {
    Stmt s(*this, "DELETE FROM grants WHERE ip=?");
    s.bind(1, ip).run();
    return s.changes() == 1;
  });
}

int AuthDb::revoke_user(const std::string& user) {
  return with_retry("revoke grants", [&] {
    Stmt s(*this, "DELETE FROM grants WHERE user_id IN (SELECT id FROM users WHERE name=?)");
    s.bind(1, user).run();
    return s.changes();
  });
}

bool AuthDb::import_grant(const Grant& g) {
  const std::string ip = grant_key(g.ip);
  return with_retry("import grant", [&] {
    Stmt s(*this,
           "INSERT OR REPLACE INTO grants(ip, user_id, method, granted_at, refreshed_at, expires_at, last_used_at, "
           "ttl, node) SELECT ?1, id, ?2, ?3, ?4, ?5, ?6, ?7, ?8 FROM users WHERE name=?9");
    s.bind(1, ip).bind(2, g.method).bind(3, g.granted_at).bind(4, g.refreshed_at).bind(5, g.expires_at);
    if (g.last_used_at)
      s.bind(6, *g.last_used_at);
    else
      s.bind_null(6);
    s.bind(7, g.ttl).bind(8, g.node).bind(9, g.user).run();
    return s.changes() >= 1;
  });
}

int AuthDb::purge_expired(int64_t now) {
  check_file("purge grants");
  return with_retry("purge grants", [&] {
    Stmt s(*this, "DELETE FROM grants WHERE expires_at <= ?1 OR expires_at - ?1 > ttl");
    s.bind(1, now).run();
    int n = s.changes();
    Stmt f(*this, "DELETE FROM auth_failures WHERE last_failure_at <= ?");
    f.bind(1, now - kFailureWindowSeconds).run();
    return n;
  });
}

std::vector<Grant> AuthDb::list(int64_t now) {
  return with_retry("list grants", [&] {
    std::vector<Grant> out;
    Stmt s(*this, kListSql);
    s.bind(1, now);
    while (s.step()) {
      Grant g{s.text(0), s.text(1), s.text(2), s.i64(3), s.i64(4), s.i64(5), std::nullopt, s.i64(7), s.text(8)};
      if (!s.is_null(6)) g.last_used_at = s.i64(6);
      out.push_back(std::move(g));
    }
    return out;
  });
}

// ---- the queue summary ----

void AuthDb::set_queue_summary(const QueueSummary& q) {
  check_file("write queue summary");
  with_retry("write queue summary", [&] {
    Stmt s(*this,
           "INSERT INTO queue_summaries(node, count, oldest_enqueued_at) VALUES(?, ?, ?) "
           "ON CONFLICT(node) DO UPDATE SET count=excluded.count, oldest_enqueued_at=excluded.oldest_enqueued_at");
    s.bind(1, node_).bind(2, q.count).bind(3, q.count > 0 ? q.oldest_enqueued_at : int64_t{0}).run();
  });
}

QueueSummary AuthDb::queue_summary() {
  return with_retry("read queue summary", [&] {
    // This node's row, else the one from before schema 4 (node '').
    Stmt s(
        *this,
        "SELECT count, oldest_enqueued_at FROM queue_summaries WHERE node IN (?, '') ORDER BY node = ? DESC LIMIT 1");
    s.bind(1, node_).bind(2, node_);
    QueueSummary q;
    if (s.step()) q = {s.i64(0), s.i64(1)};
    return q;
  });
}

// ---- failed logins ----

int64_t AuthDb::failure_count(const std::string& net, int64_t now) {
  return with_retry("read failed logins", [&]() -> int64_t {
    Stmt s(*this, "SELECT failures FROM auth_failures WHERE net=? AND last_failure_at > ?");
    s.bind(1, net).bind(2, now - kFailureWindowSeconds);
    return s.step() ? s.i64(0) : 0;
  });
}

void AuthDb::record_failure(const std::string& net, int64_t now) {
  check_file("record failed login");
  with_retry("record failed login", [&] {
    Stmt s(*this,
           "INSERT INTO auth_failures(net, failures, last_failure_at) VALUES(?1, 1, ?2) "
           "ON CONFLICT(net) DO UPDATE SET failures=CASE WHEN last_failure_at > ?2 - ?3 THEN failures + 1 ELSE 1 END,"
           " last_failure_at=?2");
    s.bind(1, net).bind(2, now).bind(3, kFailureWindowSeconds).run();
    return 0;
  });
}

void AuthDb::clear_failures(const std::string& net) {
  check_file("clear failed logins");
  with_retry("clear failed logins", [&] {
    Stmt s(*this, "DELETE FROM auth_failures WHERE net=?");
    s.bind(1, net).run();
    return 0;
  });
}

std::function<std::unique_ptr<Store>()> sqlite_store_factory(fs::path file, std::chrono::milliseconds busy_limit,
                                                             std::string node) {
  return [file = std::move(file), busy_limit, node = std::move(node)] {
    return std::make_unique<AuthDb>(file, OpenMode::Create, busy_limit, node);
  };
}

}  // namespace rg::authdb

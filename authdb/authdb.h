// authdb: the only code that touches SQLite — users and their credentials, POP-before-SMTP
// IP grants, and the failed-login counters both daemons share.
// Invariants: WAL + busy timeout + BEGIN IMMEDIATE for writes, SQLITE_BUSY never reaches a
// caller; a grant authorizes only while now < expires_at (and not when the clock went back
// so far that expires_at - now > ttl); every database fault is an authdb::Error naming the file,
// so callers can tell "denied" (false) from "could not check" (Error → 451 4.3.0, never relay).
#pragma once

#include <sys/types.h>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "authdb/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace rg::authdb {

namespace fs = std::filesystem;

enum class OpenMode {
  MustExist,  // a missing file is an Error (read-only tools)
  Create,     // create the file and schema if missing (daemons, writing CLI commands)
};

// The SQLite Store (and, for relaygatectl, the administrative operations daemons never need).
class AuthDb : public Store {
 public:
  static constexpr int kBusyTimeoutMs = 5000;      // per statement, then our own retry
  static constexpr int kBusyRetryLimitMs = 30000;  // total wait before giving up with Error (default)

  // `busy_limit` bounds the whole wait for another process's lock (the daemons pass their
  // database_timeout_ms, so a database thread never sits longer than its waiter waits).
  // `node` is written into the grants this connection makes (Grant::node).
  explicit AuthDb(const fs::path& file, OpenMode mode = OpenMode::Create,
                  std::chrono::milliseconds busy_limit = std::chrono::milliseconds(kBusyRetryLimitMs),
                  std::string node = {});
  ~AuthDb() override;
  AuthDb(const AuthDb&) = delete;
  AuthDb& operator=(const AuthDb&) = delete;

  const fs::path& file() const { return file_; }
  const char* backend() const override { return "sqlite"; }
  std::string name() const override { return file_.string(); }

  // Users. Names must already be validated (see users.h); lookups are case-insensitive.
  bool add_user(const std::string& name, const std::string& password_hash,
                const std::optional<std::string>& legacy_secret, int64_t now) override;
  bool set_password(const std::string& name, const std::string& password_hash,
                    const std::optional<std::string>& legacy_secret, int64_t now) override;
  bool delete_user(const std::string& name) override;
  bool set_enabled(const std::string& name, bool enabled, int64_t now) override;
  std::optional<UserAuth> find_user(const std::string& name) override;
  std::vector<User> list_users() override;
  bool import_user(const User& user, const UserAuth& auth) override;
  bool replace_user(const User& user, const UserAuth& auth) override;
  std::optional<std::string> write_users(const std::vector<UserWrite>& writes, int64_t now) override;

  // Grants (ip in any textual form; stored canonical): create or refresh ip's grant to now + ttl.
  // False if the user does not exist or is disabled; std::invalid_argument if ip is not an address.
  bool grant(const std::string& ip, const std::string& user, const std::string& method, int64_t ttl,
             int64_t now) override;
  bool is_authorized(const std::string& ip, int64_t now);
  std::optional<Grant> live_grant(const std::string& ip, int64_t now) override;
  void touch(const std::string& ip, int64_t now) override;  // record a relay by the grant
  bool revoke(const std::string& ip) override;
  int revoke_user(const std::string& user) override;
  bool import_grant(const Grant& g) override;
  int purge_expired(int64_t now) override;
  std::vector<Grant> list(int64_t now) override;  // live grants only, by ip

  // The queue summary: written by whoever changed the queue (smtpd, relaygatectl queue
  // commands), read by every writer of the status file, so that none of them lists the spool.
  void set_queue_summary(const QueueSummary& q) override;
  QueueSummary queue_summary() override;

  // Failed logins per network key (shared/ip.h failure_net_key), shared by pop3d and smtpd.
  int64_t failure_count(const std::string& net, int64_t now) override;
  void record_failure(const std::string& net, int64_t now) override;
  void clear_failures(const std::string& net) override;

  int schema_version() override;

 private:
  struct Closer {
    void operator()(sqlite3* db) const;
  };
  struct StmtCloser {
    void operator()(sqlite3_stmt* s) const;
  };
  class Stmt;
  template <class F>
  auto with_retry(const char* what, F&& f) -> decltype(f());
  void exec(const char* sql, const char* what);
  void check(int rc, const char* what);  // throws Busy (retried) or Error
  [[noreturn]] void fail(const char* what, int rc) const;
  void migrate();
  void check_file(const char* what) const;  // before a write: still the file we opened, still SQLite

  fs::path file_;
  std::chrono::milliseconds busy_limit_;
  std::string node_;
  std::optional<std::pair<dev_t, ino_t>> identity_;  // the file's device and inode at open
  std::unique_ptr<sqlite3, Closer> db_;
  std::unordered_map<const char*, std::unique_ptr<sqlite3_stmt, StmtCloser>> stmts_;  // by SQL literal
};

// The daemons' Store factory (authdb/client.h): each database thread opens its own connection
// to `file`, its busy wait bounded by `busy_limit` (the daemons' database_timeout_ms).
std::function<std::unique_ptr<Store>()> sqlite_store_factory(fs::path file, std::chrono::milliseconds busy_limit,
                                                             std::string node = {});

}  // namespace rg::authdb

// authdb: the only code that touches SQLite — users and their credentials, POP-before-SMTP
// IP grants, and the failed-login counters both daemons share.
// Invariants: WAL + busy timeout + BEGIN IMMEDIATE for writes, SQLITE_BUSY never reaches a
// caller; a grant authorizes only while now < expires_at (and not when the clock went back
// so far that expires_at - now > ttl); every database fault is an authdb::Error naming the file,
// so callers can tell "denied" (false) from "could not check" (Error → 451 4.3.0, never relay).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace rg::authdb {

namespace fs = std::filesystem;

// The database could not be opened, read or written; the message names the file.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct User {
  std::string name;  // canonical (lower case)
  bool enabled = true;
  bool legacy = false;  // has the plaintext-equivalent secret APOP/CRAM-MD5/DIGEST-MD5 need
  int64_t created_at = 0;
};

struct UserAuth {
  std::string name;
  bool enabled = true;
  std::string password_hash;                 // crypt(3) string
  std::optional<std::string> legacy_secret;  // only for users with legacy mechanisms
};

struct Grant {
  std::string ip;  // canonical text form
  std::string user;
  std::string method;  // pop3, apop, pop3-sasl, admin
  int64_t granted_at = 0;
  int64_t refreshed_at = 0;
  int64_t expires_at = 0;
  std::optional<int64_t> last_used_at;
  int64_t ttl = 0;
};

// What the queue holds, as smtpd last saw it (the status file's "queue"): messages queued and
// when the oldest was enqueued (unix seconds; 0 when the queue is empty).
struct QueueSummary {
  int64_t count = 0;
  int64_t oldest_enqueued_at = 0;
  bool operator==(const QueueSummary&) const = default;
};

enum class OpenMode {
  MustExist,  // a missing file is an Error (read-only tools)
  Create,     // create the file and schema if missing (daemons, writing CLI commands)
};

class AuthDb {
 public:
  static constexpr int kSchemaVersion = 3;
  static constexpr int kBusyTimeoutMs = 5000;            // per statement, then our own retry
  static constexpr int kBusyRetryLimitMs = 30000;        // total wait before giving up with Error
  static constexpr int64_t kFailureWindowSeconds = 900;  // failed logins older than this are forgotten

  explicit AuthDb(const fs::path& file, OpenMode mode = OpenMode::Create);
  ~AuthDb();
  AuthDb(const AuthDb&) = delete;
  AuthDb& operator=(const AuthDb&) = delete;

  const fs::path& file() const { return file_; }

  // Users. Names must already be validated (see users.h); lookups are case-insensitive.
  bool add_user(const std::string& name, const std::string& password_hash,
                const std::optional<std::string>& legacy_secret, int64_t now);  // false: exists
  bool set_password(const std::string& name, const std::string& password_hash,
                    const std::optional<std::string>& legacy_secret, int64_t now);  // false: no such user
  bool delete_user(const std::string& name);                                        // also removes the user's grants
  bool set_enabled(const std::string& name, bool enabled, int64_t now);             // disabling revokes grants
  std::optional<UserAuth> find_user(const std::string& name);
  std::vector<User> list_users();

  // Grants (ip in any textual form; stored canonical): create or refresh ip's grant to now + ttl.
  // False if the user does not exist or is disabled; std::invalid_argument if ip is not an address.
  bool grant(const std::string& ip, const std::string& user, const std::string& method, int64_t ttl, int64_t now);
  bool is_authorized(const std::string& ip, int64_t now);
  std::optional<Grant> live_grant(const std::string& ip, int64_t now);
  void touch(const std::string& ip, int64_t now);  // record a relay by the grant
  bool revoke(const std::string& ip);
  int revoke_user(const std::string& user);
  int purge_expired(int64_t now);
  std::vector<Grant> list(int64_t now);  // live grants only, by ip

  // The queue summary: written by whoever changed the queue (smtpd, relaygatectl queue
  // commands), read by every writer of the status file, so that none of them lists the spool.
  void set_queue_summary(const QueueSummary& q);
  QueueSummary queue_summary();

  // Failed logins per network key (shared/ip.h failure_net_key), shared by pop3d and smtpd.
  int64_t failure_count(const std::string& net, int64_t now);
  void record_failure(const std::string& net, int64_t now);
  void clear_failures(const std::string& net);

  int schema_version();

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

  fs::path file_;
  std::unique_ptr<sqlite3, Closer> db_;
  std::unordered_map<const char*, std::unique_ptr<sqlite3_stmt, StmtCloser>> stmts_;  // by SQL literal
};

}  // namespace rg::authdb

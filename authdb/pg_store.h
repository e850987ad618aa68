// authdb::PgStore: the PostgreSQL Store (issue 12), shared by several gateway nodes. The same
// schema versions 1..4 and the same semantics as the SQLite AuthDb (store.h), with one clock for
// the whole cluster: every time (expiry, failure windows, granted_at) is the database server's
// now(), never the caller's `now`.
// Why libpq's C API and not libpqxx: Debian bookworm ships libpqxx 6.x, the pre-C++17 API that
// upstream has replaced, whose calls block with no deadline we could put on them. Why
// non-blocking libpq with poll(2): a blocking PQexec waits for as long as the network or a lock
// holds it, and a database thread stuck there is one that no session can use; here connect and
// every query run against one deadline (database_timeout_ms), after which the query is
// cancelled, the connection dropped and an Unavailable thrown. Reconnecting is lazy: the next
// call connects again (and one that finds its idle connection closed by the server, after a
// restart or failover, reconnects before sending, so it does not fail).
// Invariants: every statement is a constant with $n parameters (PQsendQueryParams), never SQL
// built from values; a write that must be atomic is one statement or one transaction; the schema
// is migrated in one transaction under pg_advisory_xact_lock, so nodes starting at once do not
// race; a password is never in a message (libpq's passfile holds it).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "authdb/store.h"

struct pg_conn;
struct pg_result;

namespace rg::authdb {

// `uri` with any password removed: how messages and logs name the database.
std::string redacted_uri(const std::string& uri);

class PgStore : public Store {
 public:
  // Connects to `uri` (a libpq connection URI, multi-host and target_session_attrs included)
  // within `limit`, which also bounds every later query (and is the server's statement_timeout),
  // and migrates the schema. Error for a malformed URI or an incompatible database,
  // Unavailable when the server cannot be reached in time. `node` goes into the grants it writes.
  PgStore(const std::string& uri, std::chrono::milliseconds limit, std::string node = {});
  ~PgStore() override;
  PgStore(const PgStore&) = delete;
  PgStore& operator=(const PgStore&) = delete;

  const char* backend() const override { return "postgresql"; }
  std::string name() const override { return name_; }
  int schema_version() override;

  std::optional<UserAuth> find_user(const std::string& name) override;
  bool add_user(const std::string& name, const std::string& password_hash,
                const std::optional<std::string>& legacy_secret, int64_t now) override;
  bool set_password(const std::string& name, const std::string& password_hash,
                    const std::optional<std::string>& legacy_secret, int64_t now) override;
  bool delete_user(const std::string& name) override;
  bool set_enabled(const std::string& name, bool enabled, int64_t now) override;
  std::vector<User> list_users() override;
  bool import_user(const User& user, const UserAuth& auth) override;
  bool replace_user(const User& user, const UserAuth& auth) override;
  std::optional<std::string> write_users(const std::vector<UserWrite>& writes, int64_t now) override;

  bool grant(const std::string& ip, const std::string& user, const std::string& method, int64_t ttl,
             int64_t now) override;
  std::optional<Grant> live_grant(const std::string& ip, int64_t now) override;
  void touch(const std::string& ip, int64_t now) override;
  int purge_expired(int64_t now) override;
  std::vector<Grant> list(int64_t now) override;
  bool revoke(const std::string& ip) override;
  int revoke_user(const std::string& user) override;
  bool import_grant(const Grant& g) override;

  void set_queue_summary(const QueueSummary& q) override;
  QueueSummary queue_summary() override;

  int64_t failure_count(const std::string& net, int64_t now) override;
  void record_failure(const std::string& net, int64_t now) override;
  void clear_failures(const std::string& net) override;

 private:
  struct ConnCloser {
    void operator()(pg_conn* c) const;
  };
  struct ResultCloser {
    void operator()(pg_result* r) const;
  };
  using Result = std::unique_ptr<pg_result, ResultCloser>;
  using Clock = std::chrono::steady_clock;
  using Params = std::vector<std::optional<std::string>>;  // text format; nullopt is NULL

  // Connects and migrates within `deadline` (which every statement of it shares).
  void connect(Clock::time_point deadline);
  // Sends one statement and waits for its result within the limit. `sql` with no parameters may
  // hold several statements (migrations only).
  Result query(const char* what, const char* sql, const Params& params = {});
  Result finish(const char* what, Clock::time_point deadline);
  bool closed_by_server();  // the idle connection was closed by the server since the last call
  static void count_notice(void* counter, const pg_result* notice);
  void wait(const char* what, short events, Clock::time_point deadline);
  Result script(const char* what, const char* sql);
  void rollback();
  void migrate();
  int read_version(bool* foreign);  // -1: no schema_version table (*foreign: other tables there)
  [[noreturn]] void drop(const char* what, const std::string& why);  // connection lost or late
  [[noreturn]] void timed_out(const char* what, const char* phase);

  std::string uri_;
  std::string name_;
  std::chrono::milliseconds limit_;
  std::string node_;
  std::unique_ptr<pg_conn, ConnCloser> conn_;          // null after a fault: the next call reconnects
  std::optional<Clock::time_point> connecting_until_;  // while connect() runs its statements
  uint64_t notices_ = 0;                               // notices and warnings the server sent
};

}  // namespace rg::authdb

// authdb::Store: the user/grant database, whatever holds it: the operations the daemons need and
// the administrative ones relaygatectl adds. Two implementations: SQLite (AuthDb, authdb.h, one
// file per host, the embedded default) and PostgreSQL (PgStore, pg_store.h, shared by several
// nodes; issue 12), chosen by the config's "database" (backend.h). Nothing above authdb/ knows
// which. Nothing here names a file, a lock or a busy timeout: those are the backend's
// (its constructor's) business.
// Clock: every `now` is the caller's clock in unix seconds. SQLite uses it (one host, one
// clock); PostgreSQL ignores it and uses the database server's now(), so that nodes with skewed
// clocks agree on expiry and failure windows (issue 12). Tests that need a fake clock use SQLite.
// Contract: calls are synchronous and may block (a lock, the network); they run only on the
// database threads of authdb::Client (authdb/client.h), never on a daemon's I/O thread. One
// Store is used by one thread at a time. Every fault is an authdb::Error whose message names
// the database; "denied"/"absent" is a normal return value, never an exception.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace rg::authdb {

// The database could not be opened, read or written (or did not answer in time); the message
// names the database.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A database server that could not be reached or did not answer in time: a network backend's
// fault that passes when the server is back (PostgreSQL; never SQLite, whose missing or
// unreadable file is the administrator's to fix). authdb::Client tolerates it when a daemon
// starts (client.h), and sessions answer a temporary failure until the server is back.
class Unavailable : public Error {
 public:
  using Error::Error;
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
  std::optional<std::string> legacy_secret;  // only for users with legacy mechanisms: the plaintext, or an
                                             // imported CRAM-MD5 context (shared/sasl/codec.h)
};

// One change of relaygatectl user import (Store::write_users): a new user (enabled), or new
// credentials for an existing one (as set_password).
struct UserWrite {
  enum class Kind { Add, SetPassword } kind = Kind::Add;
  std::string name;
  std::string password_hash;
  std::optional<std::string> legacy_secret;
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
  std::string node;  // the node (config "hostname") whose daemon or relaygatectl wrote it; "" before schema 4
};

// What the queue holds, as smtpd last saw it (the status file's "queue"): messages queued and
// when the oldest was enqueued (unix seconds; 0 when the queue is empty).
struct QueueSummary {
  int64_t count = 0;
  int64_t oldest_enqueued_at = 0;
  bool operator==(const QueueSummary&) const = default;
};

class Store {
 public:
  virtual ~Store() = default;

  static constexpr int64_t kFailureWindowSeconds = 900;  // failed logins older than this are forgotten
  static constexpr int kSchemaVersion = 4;               // both backends: the same versions, forward migrations only

  // "sqlite" or "postgresql"; the database as messages name it (a path, or the URI without any
  // password); the schema version the database holds (migrated to kSchemaVersion when opened).
  virtual const char* backend() const = 0;
  virtual std::string name() const = 0;
  virtual int schema_version() = 0;

  // Users (names already validated, see users.h; lookups case-insensitive).
  virtual std::optional<UserAuth> find_user(const std::string& name) = 0;
  virtual bool add_user(const std::string& name, const std::string& password_hash,
                        const std::optional<std::string>& legacy_secret, int64_t now) = 0;  // false: exists
  virtual bool set_password(const std::string& name, const std::string& password_hash,
                            const std::optional<std::string>& legacy_secret, int64_t now) = 0;  // false: no such user
  virtual bool delete_user(const std::string& name) = 0;                             // also removes the user's grants
  virtual bool set_enabled(const std::string& name, bool enabled, int64_t now) = 0;  // disabling revokes grants
  virtual std::vector<User> list_users() = 0;                                        // by name
  // relaygatectl db copy: a user exactly as stored elsewhere (hash, secret, created_at kept);
  // false when the name exists.
  virtual bool import_user(const User& user, const UserAuth& auth) = 0;
  // relaygatectl db copy --force: an existing user made exactly what import_user would have
  // made of these values (hash, secret, enabled, created_at); disabling drops the user's grants
  // as set_enabled does. False when no such user exists.
  virtual bool replace_user(const User& user, const UserAuth& auth) = 0;
  // relaygatectl user import: all of `writes` in one transaction, all or nothing. An Add whose
  // name exists or a SetPassword whose name does not (another administrator got there first)
  // writes nothing and returns that name; a fault throws and writes nothing. nullopt: all written.
  virtual std::optional<std::string> write_users(const std::vector<UserWrite>& writes, int64_t now) = 0;

  // Grants: create or refresh ip's grant to now + ttl, recording this Store's node (false: no
  // such enabled user; std::invalid_argument if ip is not an address); the live grant of ip;
  // record a relay by it; drop expired grants (and old failure counters).
  virtual bool grant(const std::string& ip, const std::string& user, const std::string& method, int64_t ttl,
                     int64_t now) = 0;
  virtual std::optional<Grant> live_grant(const std::string& ip, int64_t now) = 0;
  virtual void touch(const std::string& ip, int64_t now) = 0;
  virtual int purge_expired(int64_t now) = 0;
  virtual std::vector<Grant> list(int64_t now) = 0;  // live grants only, by ip
  virtual bool revoke(const std::string& ip) = 0;    // false: ip had no grant
  virtual int revoke_user(const std::string& user) = 0;
  // relaygatectl db copy: a live grant exactly as listed elsewhere (its times and node kept),
  // replacing any grant of the same ip; false when its user does not exist here.
  virtual bool import_grant(const Grant& g) = 0;

  // The queue summary smtpd keeps for the status file: this Store's node's (each node has its
  // own spool); a node that never wrote one reads the summary from before schema 4, if any.
  virtual void set_queue_summary(const QueueSummary& q) = 0;
  virtual QueueSummary queue_summary() = 0;

  // Failed logins per network key (shared/ip.h failure_net_key), shared by pop3d and smtpd.
  virtual int64_t failure_count(const std::string& net, int64_t now) = 0;
  virtual void record_failure(const std::string& net, int64_t now) = 0;
  virtual void clear_failures(const std::string& net) = 0;
};

}  // namespace rg::authdb

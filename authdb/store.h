// authdb::Store: the operations the daemons need from the user/grant database, whatever holds
// it. SQLite (AuthDb, one file per host) implements it today; the PostgreSQL backend of the
// scale-out issue (several nodes sharing users and grants) implements the same interface, so
// nothing above authdb/ changes. Nothing here names a file, a lock or a busy timeout: those are
// the backend's (its constructor's) business.
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

class Store {
 public:
  virtual ~Store() = default;

  static constexpr int64_t kFailureWindowSeconds = 900;  // failed logins older than this are forgotten

  // Users (names already validated, see users.h; lookups case-insensitive).
  virtual std::optional<UserAuth> find_user(const std::string& name) = 0;

  // Grants: create or refresh ip's grant to now + ttl (false: no such enabled user); the live
  // grant of ip; record a relay by it; drop expired grants (and old failure counters).
  virtual bool grant(const std::string& ip, const std::string& user, const std::string& method, int64_t ttl,
                     int64_t now) = 0;
  virtual std::optional<Grant> live_grant(const std::string& ip, int64_t now) = 0;
  virtual void touch(const std::string& ip, int64_t now) = 0;
  virtual int purge_expired(int64_t now) = 0;
  virtual std::vector<Grant> list(int64_t now) = 0;  // live grants only, by ip

  // The queue summary smtpd keeps for the status file.
  virtual void set_queue_summary(const QueueSummary& q) = 0;
  virtual QueueSummary queue_summary() = 0;

  // Failed logins per network key (shared/ip.h failure_net_key), shared by pop3d and smtpd.
  virtual int64_t failure_count(const std::string& net, int64_t now) = 0;
  virtual void record_failure(const std::string& net, int64_t now) = 0;
  virtual void clear_failures(const std::string& net) = 0;
};

}  // namespace rg::authdb

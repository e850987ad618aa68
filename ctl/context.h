// relaygatectl (ctl/): what the command files share — exit codes, the two error kinds, the
// options every command binds, the Context a command works on, and each command's entry point.
// Exit codes: 0 ok, 1 operational error (named on stderr), 2 usage error.
#pragma once

#include <cstdint>
#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "authdb/authdb.h"
#include "shared/config.h"
#include "shared/fsutil.h"
#include "shared/spool.h"

namespace rg::ctl {

namespace fs = std::filesystem;

constexpr int kExitOk = 0;
constexpr int kExitFail = 1;
constexpr int kExitUsage = 2;

// The config used when no --config is given and this file exists (the package installs it).
constexpr const char* kDefaultConfigFile = "/etc/relaygate/relaygate.json";
// Replaces kDefaultConfigFile (tests use it to cover both branches without touching /etc).
constexpr const char* kDefaultConfigEnv = "RELAYGATE_CONFIG";
// A database folder relaygatectl creates (it holds the database and its -wal/-shm files).
constexpr unsigned kDatabaseDirMode = 0750;
// A SQLite database file relaygatectl creates before SQLite opens it (config "database", or the
// target of db copy): SQLite gives its -wal and -shm files the same mode and owner.
constexpr unsigned kDatabaseFileMode = 0640;

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Every option and argument of every command; each subcommand binds the ones it takes.
struct Opts {
  std::string name;        // NAME (user commands, sasl-plain)
  std::string ip;          // IP (grant add, grant revoke)
  std::string id;          // ID (queue commands)
  std::string user;        // --user NAME (grant add, grant revoke)
  std::string ttl;         // --ttl SECONDS, checked by grant add
  bool json = false;       // --json
  bool legacy = false;     // --legacy-mechs
  bool no_legacy = false;  // --no-legacy-mechs
  bool password_stdin = false;
  bool hash_stdin = false;
  bool write = false;  // status --write
  std::string to;      // --to URI|PATH (db copy)
  bool force = false;  // --force (db copy)
};

inline int64_t now() { return static_cast<int64_t>(std::time(nullptr)); }

// User-supplied text echoed in messages, with control bytes escaped and length capped.
std::string log_safe(const std::string& s);
// A valid user name in canonical form, or Failure naming the problem.
std::string checked_user(const std::string& raw);

// What a command works on: the config, where it came from, and (run as root) who should own
// what it creates.
struct Context {
  config::Config cfg;
  // Set when no --config was given and the default file was missing: appended to errors about
  // a missing database or spool, which then most likely means "you forgot --config".
  std::string defaults_note;
  std::optional<fsutil::Owner> owner;  // run_as.user/group when running as root and it exists
  std::unique_ptr<authdb::Store> db_;

  // The config's database, SQLite or PostgreSQL (authdb/backend.h); `mode` matters for SQLite.
  authdb::Store& db(authdb::OpenMode mode = authdb::OpenMode::MustExist);
  // A new database file is made here, owned by the service user, before SQLite opens it: SQLite
  // then gives its -wal and -shm files the same owner and mode. Its folder is made only when the
  // path comes from a config file; a missing folder under the embedded defaults stays an error.
  void prepare_database();
  spool::Spool spool() const;
  // The status file from authdb alone (grants and the queue summary smtpd keeps there).
  void write_status();
  // After a change already committed to authdb (a grant added, revoked, purged; the queue's
  // summary): the status file, or, when it cannot be rewritten, a warning on stderr naming it
  // and why. The change stands (exit 0, no rollback): authdb is the truth, the status file a
  // view of it that the daemons' next rewrite (smtpd every minute) or `status --write` repairs.
  void status_after_change(std::string_view what);
  // After a queue command changed the queue: its summary into authdb, then the status file.
  void queue_changed(const spool::Spool& sp);
};

// Loads --config FILE; without it the default file when it exists, else the embedded defaults
// relative to the current folder (and every "missing database or spool" error says so).
void load_config(Context& ctx, const std::string& config_file);

// prompt.cpp: passwords from the terminal (no echo) or standard input.
std::string read_line_stdin();
std::string read_tty_secret(const char* prompt);
std::string read_new_password(const Opts& o);  // asks twice on a terminal; checks the rules

// The commands (user_cmds.cpp, grant_cmds.cpp, db_cmds.cpp, queue_cmds.cpp, main.cpp).
int user_add(Context& c, const Opts& o);
int user_passwd(Context& c, const Opts& o);
int user_del(Context& c, const Opts& o);
int user_list(Context& c, const Opts& o);
int user_enable(Context& c, const Opts& o, bool enable);
int grant_list(Context& c, const Opts& o);
int grant_add(Context& c, const Opts& o);
int grant_revoke(Context& c, const Opts& o);
int grant_purge(Context& c, const Opts& o);
int status(Context& c, const Opts& o);
int sasl_plain(Context& c, const Opts& o);
int db_status(Context& c, const Opts& o);
int db_copy(Context& c, const Opts& o);
int queue_list(Context& c, const Opts& o);
int queue_show(Context& c, const Opts& o);
int queue_flush(Context& c, const Opts& o);
int queue_delete(Context& c, const Opts& o);
int queue_hold(Context& c, const Opts& o, bool hold);

}  // namespace rg::ctl

// relaygatectl: the administrator's CLI over authdb — users, grants, status file, config check —
// and over the outbound queue (list, show, flush, delete, hold, release).
// Exit codes: 0 ok, 1 operational error (named on stderr), 2 usage error. Every command that
// changes grants rewrites the status file. Passwords come from the TTY (no echo) or stdin.
// Run as root, whatever it creates (database, folders, status file) belongs to run_as.user.
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

// CLI11 instead of a hand-written parser: the help text is generated from the same definitions
// that parse the command line, so help and parser cannot drift apart, and every option, missing
// argument and subcommand list is reported the same way.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "authdb/authdb.h"
#include "authdb/password.h"
#include "authdb/status.h"
#include "authdb/users.h"
#include "shared/config.h"
#include "shared/net/preflight.h"
#include "shared/fsutil.h"
#include "shared/ip.h"
#include "shared/sasl/codec.h"
#include "shared/spool.h"
#include "shared/version.h"

namespace {

using namespace rg;
using authdb::AuthDb;
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

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Every option and argument of every command; each subcommand binds the ones it takes.
struct Opts {
  std::string name;          // NAME (user commands, sasl-plain)
  std::string ip;            // IP (grant add, grant revoke)
  std::string id;            // ID (queue commands)
  std::string user;          // --user NAME (grant add, grant revoke)
  std::string ttl;           // --ttl SECONDS, checked by grant add
  bool json = false;         // --json
  bool legacy = false;       // --legacy-mechs
  bool no_legacy = false;    // --no-legacy-mechs
  bool password_stdin = false;
  bool hash_stdin = false;
  bool write = false;        // status --write
};

int64_t now() { return static_cast<int64_t>(std::time(nullptr)); }

// User-supplied text echoed in messages, with control bytes escaped and length capped.
std::string log_safe(const std::string& s) {
  std::string out;
  for (unsigned char ch : s) {
    if (out.size() > 80) return out + "...";
    if (ch < 0x20 || ch == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", ch);
      out += buf;
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out;
}

std::string read_line_stdin() {
  std::string line;
  if (!std::getline(std::cin, line)) throw Failure("no password on standard input");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

// Reads a secret from the controlling terminal with echo off.
std::string read_tty_secret(const char* prompt) {
  FILE* tty = std::fopen("/dev/tty", "r+");
  if (tty == nullptr) throw UsageError("no terminal to read the password from; use --password-stdin");
  int fd = fileno(tty);
  termios old{};
  bool restore = tcgetattr(fd, &old) == 0;
  if (restore) {
    termios quiet = old;
    quiet.c_lflag &= static_cast<tcflag_t>(~ECHO);
    tcsetattr(fd, TCSAFLUSH, &quiet);
  }
  std::fputs(prompt, tty);
  std::fflush(tty);
  std::string line;
  int ch;
  while ((ch = std::fgetc(tty)) != EOF && ch != '\n') line.push_back(static_cast<char>(ch));
  if (restore) tcsetattr(fd, TCSAFLUSH, &old);
  std::fputs("\n", tty);
  std::fclose(tty);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

std::string read_new_password(const Opts& o) {
  std::string pw;
  if (o.password_stdin) {
    pw = read_line_stdin();
  } else {
    pw = read_tty_secret("New password: ");
    if (read_tty_secret("Retype new password: ") != pw) throw Failure("the passwords do not match");
  }
  if (auto p = authdb::password_problem(pw)) throw Failure(*p);
  return pw;
}

std::string checked_user(const std::string& raw) {
  if (auto p = authdb::user_name_problem(raw)) throw Failure("invalid user name \"" + log_safe(raw) + "\": " + *p);
  return authdb::canonical_user_name(raw);
}

// What a command works on: the config, where it came from, and (run as root) who should own
// what it creates.
struct Context {
  config::Config cfg;
  // Set when no --config was given and the default file was missing: appended to errors about
  // a missing database or spool, which then most likely means "you forgot --config".
  std::string defaults_note;
  std::optional<fsutil::Owner> owner;  // run_as.user/group when running as root and it exists
  std::unique_ptr<AuthDb> db_;

  AuthDb& db(authdb::OpenMode mode = authdb::OpenMode::MustExist) {
    if (db_) return *db_;
    try {
      if (mode == authdb::OpenMode::Create) prepare_database();
      db_ = std::make_unique<AuthDb>(cfg.database, mode);
    } catch (const authdb::Error& e) {
      throw Failure(e.what() + defaults_note);
    } catch (const std::system_error& e) {
      throw Failure("database " + cfg.database.string() + ": " + e.what() + defaults_note);
    }
    return *db_;
  }
  // A new database file is made here, owned by the service user, before SQLite opens it: SQLite
  // then gives its -wal and -shm files the same owner and mode. Its folder is made only when the
  // path comes from a config file; a missing folder under the embedded defaults stays an error.
  void prepare_database() {
    std::error_code ec;
    if (fs::exists(cfg.database, ec)) return;
    if (defaults_note.empty() && cfg.database.has_parent_path())
      fsutil::create_directories_owned(cfg.database.parent_path(), owner, kDatabaseDirMode);
    if (owner && fs::is_directory(cfg.database.parent_path(), ec))
      fsutil::create_file_owned(cfg.database, owner, 0640);
  }
  spool::Spool spool() const {
    std::error_code ec;
    if (!fs::is_directory(cfg.spool_dir, ec))
      throw Failure("spool folder " + cfg.spool_dir.string() + " does not exist" + defaults_note);
    return spool::Spool(cfg.spool_dir);
  }
  void write_status() {
    auto t = now();
    const spool::Summary queue = spool::Spool(cfg.spool_dir).summary();
    authdb::write_status_file(cfg.status_file, db().list(t), t, &queue, owner);
  }
};

void warn_legacy(const std::string& user, const Context& c) {
  std::cerr << "warning: legacy mechanisms (APOP, CRAM-MD5, DIGEST-MD5) need a password-equivalent secret;\n"
               "         it is stored for user "
            << user << " in " << c.cfg.database.string()
            << ": anyone who can read that file can log in as this user.\n";
}

int user_add(Context& c, const Opts& o) {
  std::string name = checked_user(o.name);
  std::string pw = read_new_password(o);
  std::optional<std::string> secret;
  if (o.legacy) secret = pw;
  if (!c.db(authdb::OpenMode::Create).add_user(name, authdb::hash_password(pw), secret, now()))
    throw Failure("user " + name + " already exists");
  if (o.legacy) warn_legacy(name, c);
  std::cout << "user " << name << " added" << (o.legacy ? " (legacy mechanisms enabled)" : "") << "\n";
  return kExitOk;
}

int user_passwd(Context& c, const Opts& o) {
  std::string name = checked_user(o.name);
  if (o.legacy && o.no_legacy) throw UsageError("--legacy-mechs and --no-legacy-mechs exclude each other");
  if (o.hash_stdin && o.legacy) throw UsageError("--hash-stdin cannot enable legacy mechanisms: they need the password itself");
  if (o.hash_stdin && o.password_stdin) throw UsageError("--hash-stdin and --password-stdin exclude each other");
  auto& db = c.db();
  auto user = db.find_user(name);
  if (!user) throw Failure("no such user: " + name);
  std::string hash;
  std::optional<std::string> secret;
  bool had_legacy = user->legacy_secret.has_value();
  if (o.hash_stdin) {
    hash = read_line_stdin();
    if (!authdb::is_supported_hash(hash))
      throw Failure("the hash on standard input is not a crypt(3) hash this system can verify ($y$, $gy$, $6$, $5$, $2b$)");
    if (had_legacy && !o.no_legacy)
      std::cerr << "warning: legacy mechanisms disabled for " << name << ": a hash cannot serve APOP/CRAM-MD5/DIGEST-MD5\n";
  } else {
    std::string pw = read_new_password(o);
    hash = authdb::hash_password(pw);
    if (o.legacy || (had_legacy && !o.no_legacy)) secret = pw;
  }
  if (!db.set_password(name, hash, secret, now())) throw Failure("no such user: " + name);
  if (secret) warn_legacy(name, c);
  std::cout << "password of " << name << " changed\n";
  return kExitOk;
}

int user_del(Context& c, const Opts& o) {
  std::string name = checked_user(o.name);
  int revoked = c.db().revoke_user(name);
  if (!c.db().delete_user(name)) throw Failure("no such user: " + name);
  c.write_status();
  std::cout << "user " << name << " deleted, " << revoked << " grant(s) revoked\n";
  return kExitOk;
}

int user_list(Context& c, const Opts& o) {
  auto users = c.db().list_users();
  if (o.json) {
    auto arr = nlohmann::ordered_json::array();
    for (auto& u : users)
      arr.push_back({{"name", u.name}, {"enabled", u.enabled}, {"legacy_mechs", u.legacy}, {"created_at", authdb::iso8601(u.created_at)}});
    std::cout << arr.dump(2) << "\n";
    return kExitOk;
  }
  std::printf("%-32s %-8s %-7s %s\n", "USER", "ENABLED", "LEGACY", "CREATED");
  for (auto& u : users)
    std::printf("%-32s %-8s %-7s %s\n", u.name.c_str(), u.enabled ? "yes" : "no", u.legacy ? "yes" : "no", authdb::iso8601(u.created_at).c_str());
  return kExitOk;
}

int user_enable(Context& c, const Opts& o, bool enable) {
  std::string name = checked_user(o.name);
  if (!c.db().set_enabled(name, enable, now())) throw Failure("no such user: " + name);
  if (!enable) c.write_status();
  std::cout << "user " << name << (enable ? " enabled\n" : " disabled, its grants revoked\n");
  return kExitOk;
}

nlohmann::ordered_json grants_json(const std::vector<authdb::Grant>& grants) {
  auto arr = nlohmann::ordered_json::array();
  for (auto& g : grants)
    arr.push_back({{"ip", g.ip}, {"user", g.user}, {"method", g.method}, {"granted_at", authdb::iso8601(g.granted_at)},
                   {"expires_at", authdb::iso8601(g.expires_at)},
                   {"last_used_at", g.last_used_at ? nlohmann::ordered_json(authdb::iso8601(*g.last_used_at)) : nlohmann::ordered_json(nullptr)}});
  return arr;
}

void print_grant_table(const std::vector<authdb::Grant>& grants, int64_t t) {
  std::printf("%-39s %-20s %-9s %-20s %-20s %-9s %s\n", "IP", "USER", "METHOD", "GRANTED", "EXPIRES", "LEFT", "LAST USED");
  for (auto& g : grants)
    std::printf("%-39s %-20s %-9s %-20s %-20s %-9s %s\n", g.ip.c_str(), g.user.c_str(), g.method.c_str(),
                authdb::iso8601(g.granted_at).c_str(), authdb::iso8601(g.expires_at).c_str(),
                (std::to_string(g.expires_at - t) + "s").c_str(),
                g.last_used_at ? authdb::iso8601(*g.last_used_at).c_str() : "-");
  if (grants.empty()) std::printf("(no live grants)\n");
}

int grant_list(Context& c, const Opts& o) {
  auto t = now();
  auto grants = c.db().list(t);
  if (o.json)
    std::cout << grants_json(grants).dump(2) << "\n";
  else
    print_grant_table(grants, t);
  return kExitOk;
}

std::string checked_ip(const std::string& raw) {
  auto ip = canonical_ip(raw);
  if (!ip) throw Failure("invalid IP address \"" + log_safe(raw) + "\"");
  return *ip;
}

constexpr int64_t kMaxGrantTtl = 30LL * 24 * 3600;  // the same bound as grants.ttl_seconds

int grant_add(Context& c, const Opts& o) {
  int64_t ttl = c.cfg.grants.ttl_seconds;
  if (!o.ttl.empty()) {
    char* end = nullptr;
    long long v = std::strtoll(o.ttl.c_str(), &end, 10);
    if (*end != '\0' || v < 1 || v > kMaxGrantTtl)
      throw UsageError("--ttl: expected seconds 1-" + std::to_string(kMaxGrantTtl) + ", got \"" + log_safe(o.ttl) + "\"");
    ttl = v;
  }
  std::string ip = checked_ip(o.ip);
  std::string name = checked_user(o.user);
  auto u = c.db().find_user(name);
  if (!u) throw Failure("no such user: " + name);
  if (!u->enabled) throw Failure("user " + name + " is disabled");
  if (!c.db().grant(ip, name, "admin", ttl, now())) throw Failure("no such enabled user: " + name);
  c.write_status();
  std::cout << "granted " << ip << " to " << name << " for " << ttl << " s\n";
  return kExitOk;
}

int grant_revoke(Context& c, const Opts& o) {
  if (!o.user.empty() && !o.ip.empty()) throw UsageError("grant revoke takes an IP or --user NAME, not both");
  if (!o.user.empty()) {
    std::string name = checked_user(o.user);
    if (!c.db().find_user(name)) throw Failure("no such user: " + name);
    int n = c.db().revoke_user(name);
    c.write_status();
    std::cout << n << " grant(s) of " << name << " revoked\n";
    return kExitOk;
  }
  if (o.ip.empty()) throw UsageError("grant revoke needs an IP or --user NAME");
  std::string ip = checked_ip(o.ip);
  if (!c.db().revoke(ip)) throw Failure("no grant for " + ip);
  c.write_status();
  std::cout << "grant for " << ip << " revoked\n";
  return kExitOk;
}

int grant_purge(Context& c, const Opts&) {
  int n = c.db().purge_expired(now());
  c.write_status();
  std::cout << n << " expired grant(s) purged\n";
  return kExitOk;
}

int status(Context& c, const Opts& o) {
  auto t = now();
  auto grants = c.db().list(t);
  if (o.write) {
    const spool::Summary queue = spool::Spool(c.cfg.spool_dir).summary();
    authdb::write_status_file(c.cfg.status_file, grants, t, &queue, c.owner);
    std::cout << "status written to " << c.cfg.status_file.string() << "\n";
    return kExitOk;
  }
  std::printf("generated_at %s, %zu live grant(s), database %s\n", authdb::iso8601(t).c_str(), grants.size(), c.cfg.database.c_str());
  print_grant_table(grants, t);
  return kExitOk;
}

int sasl_plain(Context&, const Opts& o) {
  std::string pw = o.password_stdin ? read_line_stdin() : read_tty_secret("Password: ");
  if (auto p = authdb::password_problem(pw)) throw Failure(*p);
  std::string raw = std::string(1, '\0') + o.name + std::string(1, '\0') + pw;
  std::cout << sasl::base64_encode(raw) << "\n";
  return kExitOk;
}

// The queue (shared/spool.h). Changes take the message's lock, the one the runner holds while
// delivering, and replace the envelope atomically; the running smtpd watches queue/ (inotify)
// and acts on a flush, hold, release or delete at once — no signal or pid file is needed.
constexpr auto kQueueLockWait = std::chrono::seconds(15);

std::string queue_id(const std::string& raw) {
  if (!spool::valid_id(raw)) throw Failure("invalid queue id \"" + log_safe(raw) + "\"");
  return raw;
}

std::string message_last_error(const spool::Envelope& e) {
  for (const auto& r : e.recipients)
    if (r.state != "delivered" && !r.last_error.empty()) return r.last_error;
  return "";
}

nlohmann::ordered_json envelope_json(const spool::Envelope& e, int64_t t) {
  auto rcpts = nlohmann::ordered_json::array();
  for (const auto& r : e.recipients)
    rcpts.push_back({{"address", r.address}, {"state", r.state}, {"status", r.status}, {"last_error", r.last_error},
                     {"last_attempt_at", r.last_attempt_at ? nlohmann::ordered_json(authdb::iso8601(r.last_attempt_at)) : nlohmann::ordered_json(nullptr)}});
  return {{"id", e.id}, {"sender", e.sender}, {"recipients", rcpts}, {"size", e.size},
          {"age_seconds", t - e.created_at}, {"created_at", authdb::iso8601(e.created_at)},
          {"next_attempt_at", authdb::iso8601(e.next_attempt_at)}, {"attempts", e.attempts}, {"held", e.held},
          {"last_error", message_last_error(e)}, {"client_ip", e.client_ip}, {"auth", e.auth}};
}

int queue_list(Context& c, const Opts& o) {
  std::vector<std::string> problems;
  auto queued = c.spool().list(&problems);
  for (const auto& p : problems) std::cerr << "relaygatectl: " << p << "\n";
  const int64_t t = now();
  if (o.json) {
    auto arr = nlohmann::ordered_json::array();
    for (const auto& e : queued) arr.push_back(envelope_json(e, t));
    std::cout << arr.dump(2) << "\n";
    return problems.empty() ? kExitOk : kExitFail;
  }
  std::printf("%-16s %-30s %-8s %-8s %-8s %s\n", "ID", "SENDER", "SIZE", "AGE", "NEXT", "RECIPIENTS");
  for (const auto& e : queued) {
    std::string rcpts;
    for (const auto& r : e.recipients) rcpts += (rcpts.empty() ? "" : ", ") + r.address + " (" + r.state + ")";
    std::string next = e.held ? "held" : e.next_attempt_at <= t ? "now" : std::to_string(e.next_attempt_at - t) + "s";
    std::printf("%-16s %-30s %-8llu %-8s %-8s %s\n", e.id.c_str(), e.sender.empty() ? "<>" : log_safe(e.sender).c_str(),
                static_cast<unsigned long long>(e.size), (std::to_string(t - e.created_at) + "s").c_str(), next.c_str(),
                log_safe(rcpts).c_str());
    if (auto err = message_last_error(e); !err.empty()) std::printf("%16s last error: %s\n", "", log_safe(err).c_str());
  }
  if (queued.empty()) std::printf("(queue is empty)\n");
  return problems.empty() ? kExitOk : kExitFail;
}

int queue_show(Context& c, const Opts& o) {
  const std::string id = queue_id(o.id);
  spool::Spool sp = c.spool();
  auto env = sp.read(id);
  if (!env) throw Failure("no queued message " + id);
  std::cout << envelope_json(*env, now()).dump(2) << "\n";
  std::string message;
  try {
    message = sp.read_message(id);
  } catch (const std::system_error& e) {
    throw Failure(std::string("cannot read the message: ") + e.what());
  }
  std::cout << "--- message (" << message.size() << " octets) ---\n";
  std::cout.write(message.data(), static_cast<std::streamsize>(message.size()));
  if (!message.empty() && message.back() != '\n') std::cout << "\n";
  return kExitOk;
}

// Runs `change` on message id under its lock; false when it left the queue meanwhile.
bool queue_change(const spool::Spool& sp, const std::string& id, const std::function<bool(spool::Envelope&)>& change) {
  spool::Lock lock;
  switch (sp.lock_wait(id, lock, kQueueLockWait)) {
    case spool::LockStatus::Gone: return false;
    case spool::LockStatus::Busy: throw Failure("message " + id + " is being delivered right now; try again");
    case spool::LockStatus::Locked: break;
  }
  auto env = sp.read(id);
  if (!env) return false;
  if (change(*env)) sp.update(*env);
  return true;
}

int queue_flush(Context& c, const Opts& o) {
  spool::Spool sp = c.spool();
  const int64_t t = now();
  // Rewritten even when already due: the new envelope is what wakes the runner (inotify).
  auto schedule = [t](spool::Envelope& e) {
    if (e.held) return false;
    e.next_attempt_at = std::min(e.next_attempt_at, t);
    return true;
  };
  if (!o.id.empty()) {
    const std::string id = queue_id(o.id);
    bool held = false;
    if (!queue_change(sp, id, [&](spool::Envelope& e) { held = e.held; return schedule(e); }))
      throw Failure("no queued message " + id);
    if (held) throw Failure("message " + id + " is on hold; release it first");
    std::cout << "message " << id << " scheduled for delivery now\n";
    return kExitOk;
  }
  size_t n = 0, busy = 0;
  for (const auto& e : sp.list()) {
    spool::Lock lock;
    // A message in delivery right now is skipped (it is being tried) unless it is done within a second.
    if (sp.lock_wait(e.id, lock, std::chrono::seconds(1)) != spool::LockStatus::Locked) {
      ++busy;
      continue;
    }
    auto env = sp.read(e.id);
    if (env && !env->held) {
      if (schedule(*env)) sp.update(*env);
      ++n;
    }
  }
  std::cout << n << " message(s) scheduled for delivery now" << (busy ? ", " + std::to_string(busy) + " in delivery" : "") << "\n";
  return kExitOk;
}

int queue_delete(Context& c, const Opts& o) {
  const std::string id = queue_id(o.id);
  spool::Spool sp = c.spool();
  spool::Lock lock;
  switch (sp.lock_wait(id, lock, kQueueLockWait)) {
    case spool::LockStatus::Gone: throw Failure("no queued message " + id);
    case spool::LockStatus::Busy: throw Failure("message " + id + " is being delivered right now; try again");
    case spool::LockStatus::Locked: break;
  }
  sp.remove(id);
  std::cout << "message " << id << " deleted\n";
  return kExitOk;
}

int queue_hold(Context& c, const Opts& o, bool hold) {
  const std::string id = queue_id(o.id);
  const int64_t t = now();
  bool changed = false;
  if (!queue_change(c.spool(), id, [&](spool::Envelope& e) {
        changed = e.held != hold;
        e.held = hold;
        if (!hold) e.next_attempt_at = std::min(e.next_attempt_at, t);
        return changed;
      }))
    throw Failure("no queued message " + id);
  std::cout << "message " << id << (hold ? " on hold" : " released") << (changed ? "" : " (it already was)") << "\n";
  return kExitOk;
}

// Validates the config (loading it already did) and says which one. Kept as its own step so a
// preflight (files, folders, ownership, ports) can be added here later.
// Like `postfix check`: syntax (done by loading), then the preflight both daemons run at start
// (TLS files, folders, smarthost password file), as the service user.
int config_check(Context& c, const Opts&) {
  if (!preflight::report(preflight::check_as_service_user(c.cfg, true, true))) return kExitFail;
  std::cout << (c.cfg.file.empty() ? std::string("embedded defaults (relative to ") + fs::current_path().string() + ")"
                                   : c.cfg.file.string())
            << ": ok\n";
  return kExitOk;
}

using Handler = std::function<int(Context&, const Opts&)>;

// One leaf command of the table below.
struct Command {
  const char* group;        // "user", "grant", ...; nullptr for a top-level command
  const char* name;
  const char* description;
  Handler run;
  std::function<void(CLI::App&, Opts&)> bind;  // its arguments and options
  bool needs_config = true;
};

void bind_name(CLI::App& a, Opts& o) { a.add_option("NAME", o.name, "user name")->required(); }
void bind_id(CLI::App& a, Opts& o) { a.add_option("ID", o.id, "queue id")->required(); }
void bind_json(CLI::App& a, Opts& o) { a.add_flag("--json", o.json, "print JSON"); }
void bind_password_stdin(CLI::App& a, Opts& o) {
  a.add_flag("--password-stdin", o.password_stdin, "read the password as one line from standard input");
}

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"user", "add", "add a user (password from the terminal, or --password-stdin)", user_add,
       [](CLI::App& a, Opts& o) {
         bind_name(a, o);
         a.add_flag("--legacy-mechs", o.legacy, "also store the password-equivalent secret APOP, CRAM-MD5 and DIGEST-MD5 need");
         bind_password_stdin(a, o);
       }},
      {"user", "passwd", "change a user's password, or import a crypt(3) hash", user_passwd,
       [](CLI::App& a, Opts& o) {
         bind_name(a, o);
         bind_password_stdin(a, o);
         a.add_flag("--hash-stdin", o.hash_stdin, "read an existing crypt(3) hash ($y$, $6$, $2b$, ...) from standard input");
         a.add_flag("--legacy-mechs", o.legacy, "enable the legacy mechanisms for this user");
         a.add_flag("--no-legacy-mechs", o.no_legacy, "disable them (drops the stored secret)");
       }},
      {"user", "del", "delete a user and revoke its grants", user_del, bind_name},
      {"user", "list", "list the users", user_list, bind_json},
      {"user", "enable", "enable a user", [](Context& c, const Opts& o) { return user_enable(c, o, true); }, bind_name},
      {"user", "disable", "disable a user and revoke its grants",
       [](Context& c, const Opts& o) { return user_enable(c, o, false); }, bind_name},
      {"grant", "list", "list the live grants", grant_list, bind_json},
      {"grant", "add", "grant an IP address relay rights by hand (method admin)", grant_add,
       [](CLI::App& a, Opts& o) {
         a.add_option("IP", o.ip, "IPv4 or IPv6 address")->required();
         a.add_option("--user", o.user, "the user the grant is for")->required()->type_name("NAME");
         a.add_option("--ttl", o.ttl, "seconds (default: grants.ttl_seconds)")->type_name("SECONDS");
       }},
      {"grant", "revoke", "revoke the grant of IP, or all grants of --user NAME", grant_revoke,
       [](CLI::App& a, Opts& o) {
         a.add_option("IP", o.ip, "IPv4 or IPv6 address");
         a.add_option("--user", o.user, "revoke every grant of this user")->type_name("NAME");
       }},
      {"grant", "purge", "drop expired grant rows", grant_purge, [](CLI::App&, Opts&) {}},
      {nullptr, "status", "print the live grants, or (re)write the status file", status,
       [](CLI::App& a, Opts& o) { a.add_flag("--write", o.write, "write the status file instead"); }},
      {nullptr, "sasl-plain", "print the base64 AUTH PLAIN argument for NAME", sasl_plain,
       [](CLI::App& a, Opts& o) {
         bind_name(a, o);
         bind_password_stdin(a, o);
       },
       false},
      {"queue", "list", "list queued messages", queue_list, bind_json},
      {"queue", "show", "print a message's envelope and content", queue_show, bind_id},
      {"queue", "flush", "try one message (ID) or all that are not on hold now", queue_flush,
       [](CLI::App& a, Opts& o) { a.add_option("ID", o.id, "queue id (default: all)"); }},
      {"queue", "delete", "drop a message without a bounce", queue_delete, bind_id},
      {"queue", "hold", "stop trying a message", [](Context& c, const Opts& o) { return queue_hold(c, o, true); }, bind_id},
      {"queue", "release", "release a held message and try it now",
       [](Context& c, const Opts& o) { return queue_hold(c, o, false); }, bind_id},
      {"config", "check", "validate the config file", config_check, [](CLI::App&, Opts&) {}},
  };
  return table;
}

// Descriptions of the command groups, in the order the help lists them.
const std::vector<std::pair<const char*, const char*>> kGroups = {
    {"user", "manage users and their passwords"},
    {"grant", "POP-before-SMTP relay grants"},
    {"queue", "the outbound queue (mail waiting for the smarthost)"},
    {"config", "the config file"},
};

// Loads --config FILE; without it the default file when it exists, else the embedded defaults
// relative to the current folder (and every "missing database or spool" error says so).
void load_config(Context& ctx, const std::string& config_file) {
  if (!config_file.empty()) {
    ctx.cfg = config::load(config_file);
  } else {
    const char* env = std::getenv(kDefaultConfigEnv);
    const fs::path fallback = env != nullptr && *env != '\0' ? fs::path(env) : fs::path(kDefaultConfigFile);
    std::error_code ec;
    if (fs::exists(fallback, ec)) {
      ctx.cfg = config::load(fallback);
    } else {
      ctx.cfg = config::defaults(fs::current_path());
      ctx.defaults_note = " (no --config given and " + fallback.string() +
                          " does not exist: using the embedded defaults relative to " + fs::current_path().string() + ")";
    }
  }
  ctx.owner = fsutil::owner_when_root(ctx.cfg.run_as.user, ctx.cfg.run_as.group);
}

// The deepest subcommand the parser entered (the app itself when none).
const CLI::App* selected(const CLI::App& app) {
  const CLI::App* cur = &app;
  while (!cur->get_subcommands().empty()) cur = cur->get_subcommands().front();
  return cur;
}

std::string subcommand_names(const CLI::App& app) {
  std::string out;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    out += (out.empty() ? "" : ", ") + sub->get_name();
  return out;
}

std::string command_path(const CLI::App* app) {
  std::string path;
  for (; app != nullptr && app->get_parent() != nullptr; app = app->get_parent())
    path = app->get_name() + (path.empty() ? "" : " " + path);
  return path;
}

// One message for a command line the parser refused, in the words of the old parser where it had
// them (the tests and scripts grep for them): unknown command, unknown option, unexpected argument.
std::string usage_message(const CLI::App& app, const CLI::ParseError& e) {
  const CLI::App* at = selected(app);
  const std::string path = command_path(at);
  const std::vector<std::string> extras = app.remaining(true);
  const bool group = at->get_subcommands().empty() && !at->get_subcommands([](const CLI::App*) { return true; }).empty();
  for (const auto& x : extras)
    if (x.size() > 1 && x[0] == '-') return "unknown option " + log_safe(x);
  if (group) {
    const std::string names = subcommand_names(*at);
    if (!extras.empty())
      return "unknown command \"" + log_safe(path.empty() ? extras[0] : path + " " + extras[0]) + "\"; expected one of: " + names;
    if (path.empty()) return "no command given; expected one of: " + names;
    return path + ": a subcommand is required: " + names;
  }
  if (!extras.empty()) return (path.empty() ? "" : path + ": ") + "unexpected argument \"" + log_safe(extras[0]) + "\"";
  return (path.empty() ? "" : path + ": ") + e.what();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"relaygatectl: manage relaygate users, POP-before-SMTP grants, the status file and the queue",
               "relaygatectl"};
  app.set_version_flag("--version", std::string("relaygatectl ") + rg::kVersion);
  app.footer(std::string("Without --config: ") + kDefaultConfigFile +
             " when it exists, else the embedded defaults relative to the current folder.\n"
             "Exit status: 0 done, 1 operational error, 2 usage error.");
  app.require_subcommand(1);
  app.fallthrough();  // --config and --help are accepted after the command words too
  std::string config_file;
  app.add_option("--config", config_file, "the config file")->type_name("FILE");

  Opts opts;
  std::map<std::string, CLI::App*> groups;
  for (const auto& [name, description] : kGroups) {
    CLI::App* g = app.add_subcommand(name, description);
    g->require_subcommand(1);
    groups[name] = g;
  }
  std::map<const CLI::App*, const Command*> leaves;
  for (const auto& cmd : commands()) {
    CLI::App* parent = cmd.group ? groups.at(cmd.group) : &app;
    CLI::App* sub = parent->add_subcommand(cmd.name, cmd.description);
    cmd.bind(*sub, opts);
    leaves[sub] = &cmd;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version: to stdout, exit 0
  } catch (const CLI::ParseError& e) {
    const std::string path = command_path(selected(app));
    std::cerr << "relaygatectl: " << usage_message(app, e) << "\n"
              << "Run `relaygatectl " << (path.empty() ? "" : path + " ") << "--help` for the usage.\n";
    return kExitUsage;
  }

  try {
    auto leaf = leaves.find(selected(app));
    if (leaf == leaves.end()) throw UsageError("no command given");  // require_subcommand rules this out
    if (config_file.empty() && app.get_option("--config")->count() > 0) throw UsageError("--config needs a FILE");
    Context ctx;
    if (leaf->second->needs_config) load_config(ctx, config_file);
    return leaf->second->run(ctx, opts);
  } catch (const UsageError& e) {
    std::cerr << "relaygatectl: " << e.what() << "\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "relaygatectl: " << e.what() << "\n";
    return kExitFail;
  }
}

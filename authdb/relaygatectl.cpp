// relaygatectl: the administrator's CLI over authdb — users, grants, status file, config check —
// and over the outbound queue (list, show, flush, delete, hold, release).
// Exit codes: 0 ok, 1 operational error (named on stderr), 2 usage error. Every command that
// changes grants rewrites the status file. Passwords come from the TTY (no echo) or stdin.
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "authdb/authdb.h"
#include "authdb/password.h"
#include "authdb/status.h"
#include "authdb/users.h"
#include "shared/config.h"
#include "shared/ip.h"
#include "shared/sasl/codec.h"
#include "shared/spool.h"

namespace {

using namespace rg;
using authdb::AuthDb;

constexpr int kExitOk = 0;
constexpr int kExitFail = 1;
constexpr int kExitUsage = 2;

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const char* const kUsage =
    "usage: relaygatectl [--config FILE] COMMAND\n"
    "  user add NAME [--legacy-mechs] [--password-stdin]\n"
    "  user passwd NAME [--password-stdin | --hash-stdin] [--legacy-mechs | --no-legacy-mechs]\n"
    "  user del NAME\n"
    "  user list [--json]\n"
    "  user enable NAME | user disable NAME\n"
    "  grant list [--json]\n"
    "  grant add IP --user NAME [--ttl SECONDS]\n"
    "  grant revoke IP | grant revoke --user NAME\n"
    "  grant purge\n"
    "  status [--write]\n"
    "  sasl-plain NAME [--password-stdin]\n"
    "  queue list [--json]\n"
    "  queue show ID\n"
    "  queue flush [ID]\n"
    "  queue delete ID | queue hold ID | queue release ID\n"
    "  config check\n"
    "Without --config the embedded defaults apply, relative to the current folder.\n";

// The command line after the global --config option: positional words and --flags.
struct Args {
  std::vector<std::string> words;
  std::vector<std::pair<std::string, std::optional<std::string>>> flags;

  bool flag(const std::string& name) {
    for (auto it = flags.begin(); it != flags.end(); ++it)
      if (it->first == name) {
        if (it->second) throw UsageError("option " + name + " takes no value");
        flags.erase(it);
        return true;
      }
    return false;
  }
  std::optional<std::string> value(const std::string& name) {
    for (auto it = flags.begin(); it != flags.end(); ++it)
      if (it->first == name) {
        if (!it->second) throw UsageError("option " + name + " needs a value");
        auto v = it->second;
        flags.erase(it);
        return v;
      }
    return std::nullopt;
  }
  // Called once a command took what it knows: anything left is a usage error.
  void done(size_t expected_words) const {
    if (!flags.empty()) throw UsageError("unknown option " + flags.front().first);
    if (words.size() > expected_words) throw UsageError("unexpected argument \"" + words[expected_words] + "\"");
    if (words.size() < expected_words) throw UsageError("missing argument");
  }
};

const std::vector<std::string> kValueFlags = {"--user", "--ttl", "--config"};

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

std::string read_new_password(Args& a) {
  std::string pw;
  if (a.flag("--password-stdin")) {
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

struct Context {
  config::Config cfg;
  std::unique_ptr<AuthDb> db_;
  AuthDb& db(authdb::OpenMode mode = authdb::OpenMode::MustExist) {
    if (!db_) db_ = std::make_unique<AuthDb>(cfg.database, mode);
    return *db_;
  }
  void write_status() {
    auto t = now();
    const spool::Summary queue = spool::Spool(cfg.spool_dir).summary();
    authdb::write_status_file(cfg.status_file, db().list(t), t, &queue);
  }
};

void warn_legacy(const std::string& user, const Context& c) {
  std::cerr << "warning: legacy mechanisms (APOP, CRAM-MD5, DIGEST-MD5) need a password-equivalent secret;\n"
               "         it is stored for user "
            << user << " in " << c.cfg.database.string()
            << ": anyone who can read that file can log in as this user.\n";
}

int user_add(Context& c, Args& a) {
  bool legacy = a.flag("--legacy-mechs");
  std::string pw_source = a.flag("--password-stdin") ? "--password-stdin" : "";
  if (!pw_source.empty()) a.flags.emplace_back(pw_source, std::nullopt);
  if (a.words.size() < 1) throw UsageError("user add needs a NAME");
  std::string name = checked_user(a.words[0]);
  std::string pw = read_new_password(a);
  a.done(1);
  std::optional<std::string> secret;
  if (legacy) secret = pw;
  if (!c.db(authdb::OpenMode::Create).add_user(name, authdb::hash_password(pw), secret, now()))
    throw Failure("user " + name + " already exists");
  if (legacy) warn_legacy(name, c);
  std::cout << "user " << name << " added" << (legacy ? " (legacy mechanisms enabled)" : "") << "\n";
  return kExitOk;
}

int user_passwd(Context& c, Args& a) {
  if (a.words.size() < 1) throw UsageError("user passwd needs a NAME");
  std::string name = checked_user(a.words[0]);
  bool hash_stdin = a.flag("--hash-stdin");
  bool legacy_on = a.flag("--legacy-mechs");
  bool legacy_off = a.flag("--no-legacy-mechs");
  if (legacy_on && legacy_off) throw UsageError("--legacy-mechs and --no-legacy-mechs exclude each other");
  if (hash_stdin && legacy_on) throw UsageError("--hash-stdin cannot enable legacy mechanisms: they need the password itself");
  auto& db = c.db();
  auto user = db.find_user(name);
  if (!user) throw Failure("no such user: " + name);
  std::string hash;
  std::optional<std::string> secret;
  bool had_legacy = user->legacy_secret.has_value();
  if (hash_stdin) {
    if (a.flag("--password-stdin")) throw UsageError("--hash-stdin and --password-stdin exclude each other");
    hash = read_line_stdin();
    if (!authdb::is_supported_hash(hash))
      throw Failure("the hash on standard input is not a crypt(3) hash this system can verify ($y$, $gy$, $6$, $5$, $2b$)");
    if (had_legacy && !legacy_off)
      std::cerr << "warning: legacy mechanisms disabled for " << name << ": a hash cannot serve APOP/CRAM-MD5/DIGEST-MD5\n";
  } else {
    std::string pw = read_new_password(a);
    hash = authdb::hash_password(pw);
    if (legacy_on || (had_legacy && !legacy_off)) secret = pw;
  }
  a.done(1);
  if (!db.set_password(name, hash, secret, now())) throw Failure("no such user: " + name);
  if (secret) warn_legacy(name, c);
  std::cout << "password of " << name << " changed\n";
  return kExitOk;
}

int user_del(Context& c, Args& a) {
  a.done(1);
  std::string name = checked_user(a.words[0]);
  int revoked = c.db().revoke_user(name);
  if (!c.db().delete_user(name)) throw Failure("no such user: " + name);
  c.write_status();
  std::cout << "user " << name << " deleted, " << revoked << " grant(s) revoked\n";
  return kExitOk;
}

int user_list(Context& c, Args& a) {
  bool json = a.flag("--json");
  a.done(0);
  auto users = c.db().list_users();
  if (json) {
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

int user_enable(Context& c, Args& a, bool enable) {
  a.done(1);
  std::string name = checked_user(a.words[0]);
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

int grant_list(Context& c, Args& a) {
  bool json = a.flag("--json");
  a.done(0);
  auto t = now();
  auto grants = c.db().list(t);
  if (json)
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

int grant_add(Context& c, Args& a) {
  auto user = a.value("--user");
  if (!user) throw UsageError("grant add needs --user NAME");
  int64_t ttl = c.cfg.grants.ttl_seconds;
  if (auto t = a.value("--ttl")) {
    char* end = nullptr;
    long long v = std::strtoll(t->c_str(), &end, 10);
    if (t->empty() || *end != '\0' || v < 1 || v > 30LL * 24 * 3600)
      throw UsageError("--ttl: expected seconds 1-2592000, got \"" + log_safe(*t) + "\"");
    ttl = v;
  }
  a.done(1);
  std::string ip = checked_ip(a.words[0]);
  std::string name = checked_user(*user);
  auto u = c.db().find_user(name);
  if (!u) throw Failure("no such user: " + name);
  if (!u->enabled) throw Failure("user " + name + " is disabled");
  if (!c.db().grant(ip, name, "admin", ttl, now())) throw Failure("no such enabled user: " + name);
  c.write_status();
  std::cout << "granted " << ip << " to " << name << " for " << ttl << " s\n";
  return kExitOk;
}

int grant_revoke(Context& c, Args& a) {
  if (auto user = a.value("--user")) {
    a.done(0);
    std::string name = checked_user(*user);
    if (!c.db().find_user(name)) throw Failure("no such user: " + name);
    int n = c.db().revoke_user(name);
    c.write_status();
    std::cout << n << " grant(s) of " << name << " revoked\n";
    return kExitOk;
  }
  a.done(1);
  std::string ip = checked_ip(a.words[0]);
  if (!c.db().revoke(ip)) throw Failure("no grant for " + ip);
  c.write_status();
  std::cout << "grant for " << ip << " revoked\n";
  return kExitOk;
}

int grant_purge(Context& c, Args& a) {
  a.done(0);
  int n = c.db().purge_expired(now());
  c.write_status();
  std::cout << n << " expired grant(s) purged\n";
  return kExitOk;
}

int status(Context& c, Args& a) {
  bool write = a.flag("--write");
  a.done(0);
  auto t = now();
  auto grants = c.db().list(t);
  if (write) {
    const spool::Summary queue = spool::Spool(c.cfg.spool_dir).summary();
    authdb::write_status_file(c.cfg.status_file, grants, t, &queue);
    std::cout << "status written to " << c.cfg.status_file.string() << "\n";
    return kExitOk;
  }
  std::printf("generated_at %s, %zu live grant(s), database %s\n", authdb::iso8601(t).c_str(), grants.size(), c.cfg.database.c_str());
  print_grant_table(grants, t);
  return kExitOk;
}

int sasl_plain(Context&, Args& a) {
  if (a.words.size() < 1) throw UsageError("sasl-plain needs a NAME");
  std::string name = a.words[0];
  std::string pw = a.flag("--password-stdin") ? read_line_stdin() : read_tty_secret("Password: ");
  a.done(1);
  if (auto p = authdb::password_problem(pw)) throw Failure(*p);
  std::string raw = std::string(1, '\0') + name + std::string(1, '\0') + pw;
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

int queue_list(Context& c, Args& a) {
  bool json = a.flag("--json");
  a.done(0);
  std::vector<std::string> problems;
  auto queued = spool::Spool(c.cfg.spool_dir).list(&problems);
  for (const auto& p : problems) std::cerr << "relaygatectl: " << p << "\n";
  const int64_t t = now();
  if (json) {
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

int queue_show(Context& c, Args& a) {
  a.done(1);
  const std::string id = queue_id(a.words[0]);
  spool::Spool sp(c.cfg.spool_dir);
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

int queue_flush(Context& c, Args& a) {
  if (a.words.size() > 1) a.done(1);
  a.done(a.words.size());
  spool::Spool sp(c.cfg.spool_dir);
  const int64_t t = now();
  // Rewritten even when already due: the new envelope is what wakes the runner (inotify).
  auto schedule = [t](spool::Envelope& e) {
    if (e.held) return false;
    e.next_attempt_at = std::min(e.next_attempt_at, t);
    return true;
  };
  if (a.words.size() == 1) {
    const std::string id = queue_id(a.words[0]);
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

int queue_delete(Context& c, Args& a) {
  a.done(1);
  const std::string id = queue_id(a.words[0]);
  spool::Spool sp(c.cfg.spool_dir);
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

int queue_hold(Context& c, Args& a, bool hold) {
  a.done(1);
  const std::string id = queue_id(a.words[0]);
  const int64_t t = now();
  bool changed = false;
  if (!queue_change(spool::Spool(c.cfg.spool_dir), id, [&](spool::Envelope& e) {
        changed = e.held != hold;
        e.held = hold;
        if (!hold) e.next_attempt_at = std::min(e.next_attempt_at, t);
        return changed;
      }))
    throw Failure("no queued message " + id);
  std::cout << "message " << id << (hold ? " on hold" : " released") << (changed ? "" : " (it already was)") << "\n";
  return kExitOk;
}

int config_check(Context& c, Args& a) {
  a.done(0);
  std::cout << (c.cfg.file.empty() ? std::string("embedded defaults") : c.cfg.file.string()) << ": ok\n";
  return kExitOk;
}

struct Command {
  std::vector<std::string> path;
  std::function<int(Context&, Args&)> run;
  bool needs_config = true;
};

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {{"user", "add"}, user_add},
      {{"user", "passwd"}, user_passwd},
      {{"user", "del"}, user_del},
      {{"user", "list"}, user_list},
      {{"user", "enable"}, [](Context& c, Args& a) { return user_enable(c, a, true); }},
      {{"user", "disable"}, [](Context& c, Args& a) { return user_enable(c, a, false); }},
      {{"grant", "list"}, grant_list},
      {{"grant", "add"}, grant_add},
      {{"grant", "revoke"}, grant_revoke},
      {{"grant", "purge"}, grant_purge},
      {{"status"}, status},
      {{"sasl-plain"}, sasl_plain, false},
      {{"queue", "list"}, queue_list},
      {{"queue", "show"}, queue_show},
      {{"queue", "flush"}, queue_flush},
      {{"queue", "delete"}, queue_delete},
      {{"queue", "hold"}, [](Context& c, Args& a) { return queue_hold(c, a, true); }},
      {{"queue", "release"}, [](Context& c, Args& a) { return queue_hold(c, a, false); }},
      {{"config", "check"}, config_check},
  };
  return table;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> argv_words(argv + 1, argv + argc);
  Args args;
  std::string config_file;
  try {
    for (size_t i = 0; i < argv_words.size(); ++i) {
      const std::string& w = argv_words[i];
      if (w == "-h" || w == "--help") {
        std::cout << kUsage;
        return kExitOk;
      }
      if (w.rfind("--", 0) == 0) {
        auto eq = w.find('=');
        std::string name = w.substr(0, eq);
        std::optional<std::string> value;
        if (eq != std::string::npos) {
          value = w.substr(eq + 1);
        } else if (std::find(kValueFlags.begin(), kValueFlags.end(), name) != kValueFlags.end()) {
          if (i + 1 >= argv_words.size()) throw UsageError("option " + name + " needs a value");
          value = argv_words[++i];
        }
        if (name == "--config") {
          if (!value || value->empty()) throw UsageError("--config needs a FILE");
          config_file = *value;
        } else {
          args.flags.emplace_back(name, value);
        }
      } else {
        args.words.push_back(w);
      }
    }
    const Command* cmd = nullptr;
    for (const auto& c : commands()) {
      if (args.words.size() < c.path.size()) continue;
      if (std::equal(c.path.begin(), c.path.end(), args.words.begin())) {
        cmd = &c;
        break;
      }
    }
    if (cmd == nullptr) {
      if (args.words.empty()) throw UsageError("no command given");
      throw UsageError("unknown command \"" + log_safe(args.words[0]) + (args.words.size() > 1 ? " " + log_safe(args.words[1]) : "") + "\"");
    }
    args.words.erase(args.words.begin(), args.words.begin() + static_cast<long>(cmd->path.size()));
    Context ctx;
    if (cmd->needs_config) ctx.cfg = config::load_or_defaults(config_file);
    return cmd->run(ctx, args);
  } catch (const UsageError& e) {
    std::cerr << "relaygatectl: " << e.what() << "\n" << kUsage;
    return kExitUsage;
  } catch (const config::ConfigError& e) {
    std::cerr << "relaygatectl: " << e.what() << "\n";
    return kExitFail;
  } catch (const std::exception& e) {
    std::cerr << "relaygatectl: " << e.what() << "\n";
    return kExitFail;
  }
}

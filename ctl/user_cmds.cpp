// relaygatectl user ...: add, passwd (or import a crypt(3) hash), del, list, enable, disable.
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "authdb/password.h"
#include "authdb/status.h"
#include "authdb/users.h"
#include "ctl/context.h"

namespace rg::ctl {
namespace {

void warn_legacy(const std::string& user, const Context& c) {
  std::cerr << "warning: legacy mechanisms (APOP, CRAM-MD5, DIGEST-MD5) need a password-equivalent secret;\n"
               "         it is stored for user "
            << user << " in " << c.cfg.database_name() << ": anyone who can read that file can log in as this user.\n";
}

}  // namespace

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
  if (o.hash_stdin && o.legacy)
    throw UsageError("--hash-stdin cannot enable legacy mechanisms: they need the password itself");
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
      throw Failure(
          "the hash on standard input is not a crypt(3) hash this system can verify ($y$, $gy$, $6$, $5$, $2b$)");
    if (had_legacy && !o.no_legacy)
      std::cerr << "warning: legacy mechanisms disabled for " << name
                << ": a hash cannot serve APOP/CRAM-MD5/DIGEST-MD5\n";
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
  c.status_after_change("deletion");
  std::cout << "user " << name << " deleted, " << revoked << " grant(s) revoked\n";
  return kExitOk;
}

int user_list(Context& c, const Opts& o) {
  auto users = c.db().list_users();
  if (o.json) {
    auto arr = nlohmann::ordered_json::array();
    for (auto& u : users)
      arr.push_back({{"name", u.name},
                     {"enabled", u.enabled},
                     {"legacy_mechs", u.legacy},
                     {"created_at", authdb::iso8601(u.created_at)}});
    std::cout << arr.dump(2) << "\n";
    return kExitOk;
  }
  std::printf("%-32s %-8s %-7s %s\n", "USER", "ENABLED", "LEGACY", "CREATED");
  for (auto& u : users)
    std::printf("%-32s %-8s %-7s %s\n", u.name.c_str(), u.enabled ? "yes" : "no", u.legacy ? "yes" : "no",
                authdb::iso8601(u.created_at).c_str());
  return kExitOk;
}

int user_enable(Context& c, const Opts& o, bool enable) {
  std::string name = checked_user(o.name);
  if (!c.db().set_enabled(name, enable, now())) throw Failure("no such user: " + name);
  if (!enable) c.status_after_change("disabling");
  std::cout << "user " << name << (enable ? " enabled\n" : " disabled, its grants revoked\n");
  return kExitOk;
}

}  // namespace rg::ctl

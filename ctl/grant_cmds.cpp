// relaygatectl grant ... (list, add, revoke, purge), status, and sasl-plain. Every command that
// changes grants rewrites the status file.
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "authdb/status.h"
#include "authdb/users.h"
#include "ctl/context.h"
#include "ctl/render.h"
#include "shared/ip.h"
#include "shared/sasl/codec.h"

namespace rg::ctl {
namespace {

std::string checked_ip(const std::string& raw) {
  auto ip = canonical_ip(raw);
  if (!ip) throw Failure("invalid IP address \"" + log_safe(raw) + "\"");
  return *ip;
}

constexpr int64_t kMaxGrantTtl = 30LL * 24 * 3600;  // the same bound as grants.ttl_seconds

}  // namespace

int grant_list(Context& c, const Opts& o) {
  auto t = now();
  auto grants = c.db().list(t);
  if (o.json)
    std::cout << grants_json(grants).dump(2) << "\n";
  else
    print_grant_table(grants, t);
  return kExitOk;
}

int grant_add(Context& c, const Opts& o) {
  int64_t ttl = c.cfg.grants.ttl_seconds;
  if (!o.ttl.empty()) {
    char* end = nullptr;
    long long v = std::strtoll(o.ttl.c_str(), &end, 10);
    if (*end != '\0' || v < 1 || v > kMaxGrantTtl)
      throw UsageError("--ttl: expected seconds 1-" + std::to_string(kMaxGrantTtl) + ", got \"" + log_safe(o.ttl) +
                       "\"");
    ttl = v;
  }
  std::string ip = checked_ip(o.ip);
  std::string name = checked_user(o.user);
  auto u = c.db().find_user(name);
  if (!u) throw Failure("no such user: " + name);
  if (!u->enabled) throw Failure("user " + name + " is disabled");
  if (!c.db().grant(ip, name, "admin", ttl, now())) throw Failure("no such enabled user: " + name);
  c.status_after_change("grant");
  std::cout << "granted " << ip << " to " << name << " for " << ttl << " s\n";
  return kExitOk;
}

int grant_revoke(Context& c, const Opts& o) {
  if (!o.user.empty() && !o.ip.empty()) throw UsageError("grant revoke takes an IP or --user NAME, not both");
  if (!o.user.empty()) {
    std::string name = checked_user(o.user);
    if (!c.db().find_user(name)) throw Failure("no such user: " + name);
    int n = c.db().revoke_user(name);
    c.status_after_change("revocation");
    std::cout << n << " grant(s) of " << name << " revoked\n";
    return kExitOk;
  }
  if (o.ip.empty()) throw UsageError("grant revoke needs an IP or --user NAME");
  std::string ip = checked_ip(o.ip);
  if (!c.db().revoke(ip)) throw Failure("no grant for " + ip);
  c.status_after_change("revocation");
  std::cout << "grant for " << ip << " revoked\n";
  return kExitOk;
}

int grant_purge(Context& c, const Opts&) {
  int n = c.db().purge_expired(now());
  c.status_after_change("purge");
  std::cout << n << " expired grant(s) purged\n";
  return kExitOk;
}

int status(Context& c, const Opts& o) {
  auto t = now();
  auto grants = c.db().list(t);
  if (o.write) {
    c.write_status();
    std::cout << "status written to " << c.cfg.status_file.string() << "\n";
    return kExitOk;
  }
  std::printf("generated_at %s, %zu live grant(s), database %s\n", authdb::iso8601(t).c_str(), grants.size(),
              c.cfg.database_name().c_str());
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

}  // namespace rg::ctl

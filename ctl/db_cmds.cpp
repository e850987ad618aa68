// relaygatectl db ...: status (backend, schema, reachability, latency, counts) and copy (the
// users and live grants of the configured database into another one, SQLite or PostgreSQL: the
// migration path of issue 12). Both work through authdb::Store only, so either backend can be
// the source or the target.
// copy's invariants: every row it writes is read back and must equal the source's; a second run
// writes nothing; a target that holds anything the source does not hold identically is refused
// unless --force, which makes the source win and keeps rows only the target has.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "authdb/backend.h"
#include "ctl/context.h"

namespace rg::ctl {
namespace {

using authdb::Grant;
using authdb::Store;
using authdb::User;
using authdb::UserAuth;

// db status: cheap reads (the schema version) timed one after another; the median of an odd
// count is one of them.
constexpr int kLatencyRoundTrips = 9;
// db copy: how many names a refusal lists before "...".
constexpr size_t kMaxNamesShown = 5;

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::string ms_text(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", ms);
  return buf;
}

// A user as db copy compares it: everything import_user writes.
struct FullUser {
  User user;
  UserAuth auth;
};

bool same_user(const FullUser& a, const FullUser& b) {
  return a.user.name == b.user.name && a.user.created_at == b.user.created_at && a.auth.enabled == b.auth.enabled &&
         a.auth.password_hash == b.auth.password_hash && a.auth.legacy_secret == b.auth.legacy_secret;
}

bool same_grant(const Grant& a, const Grant& b) {
  return a.ip == b.ip && a.user == b.user && a.method == b.method && a.granted_at == b.granted_at &&
         a.refreshed_at == b.refreshed_at && a.expires_at == b.expires_at && a.last_used_at == b.last_used_at &&
         a.ttl == b.ttl && a.node == b.node;
}

// Every user with its credentials, by name. A user deleted between the two reads is left out.
std::map<std::string, FullUser> read_users(Store& db) {
  std::map<std::string, FullUser> out;
  for (auto& u : db.list_users())
    if (auto auth = db.find_user(u.name)) out.emplace(u.name, FullUser{u, *auth});
  return out;
}

std::map<std::string, Grant> read_grants(Store& db, int64_t t) {
  std::map<std::string, Grant> out;
  for (auto& g : db.list(t)) out.emplace(g.ip, g);
  return out;
}

// What the target holds of each source row.
enum class Found { Absent, Identical, Different };

template <class Row, class Same>
Found find_in(const std::map<std::string, Row>& target, const std::string& key, const Row& row, Same same) {
  auto it = target.find(key);
  if (it == target.end()) return Found::Absent;
  return same(it->second, row) ? Found::Identical : Found::Different;
}

std::string names_text(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < kMaxNamesShown; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > kMaxNamesShown) out += ", ...";
  return out;
}

// --to: a path (relative to the current folder) or a postgresql:// URI, which, as in the config,
// must not carry a password (it would show in `ps` and the shell's history; libpq's passfile
// holds it).
std::string checked_target(const std::string& raw) {
  if (raw.empty()) throw UsageError("db copy: --to needs a PATH or a postgresql:// URI");
  if (!config::is_postgres_uri(raw)) return fs::absolute(raw).lexically_normal().string();
  const auto at = raw.find('@');
  const std::string authority = raw.substr(0, at == std::string::npos ? 0 : at);
  if (authority.find(':', authority.find("://") + 3) != std::string::npos || raw.find("password=") != std::string::npos)
    throw UsageError(
        "db copy: --to: a password must not be on the command line; put it in libpq's passfile "
        "(~/.pgpass or ?passfile=FILE)");
  return raw;
}

bool same_database(const Context& c, const std::string& target) {
  if (config::is_postgres_uri(target)) return target == c.cfg.database_uri;
  if (!c.cfg.database_uri.empty()) return false;
  std::error_code ec;
  return fs::equivalent(c.cfg.database, target, ec) ||
         fs::absolute(c.cfg.database).lexically_normal() == fs::path(target);
}

struct Counts {
  int copied = 0, replaced = 0, identical = 0;
};

}  // namespace

int db_status(Context& c, const Opts& o) {
  nlohmann::ordered_json j;
  j["backend"] = c.cfg.database_uri.empty() ? "sqlite" : "postgresql";
  j["database"] = c.cfg.database_name();
  std::string error;
  try {
    const auto t_open = std::chrono::steady_clock::now();
    Store& db = c.db();
    const double open_ms = ms_since(t_open);
    j["backend"] = db.backend();
    j["database"] = db.name();
    std::vector<double> trips;
    int version = 0;
    for (int i = 0; i < kLatencyRoundTrips; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      version = db.schema_version();
      trips.push_back(ms_since(t0));
    }
    std::sort(trips.begin(), trips.end());
    const auto users = db.list_users().size();
    const auto grants = db.list(now()).size();
    j["reachable"] = true;
    j["schema_version"] = version;
    j["schema_version_supported"] = Store::kSchemaVersion;
    j["open_ms"] = open_ms;
    j["latency_ms"] = {
        {"round_trips", kLatencyRoundTrips}, {"min", trips.front()}, {"median", trips[trips.size() / 2]}};
    j["users"] = users;
    j["live_grants"] = grants;
  } catch (const std::exception& e) {  // Failure from opening, authdb::Error from a query
    j["reachable"] = false;
    j["error"] = e.what();
    error = e.what();
  }
  if (o.json) {
    std::cout << j.dump(2) << "\n";
  } else {
    std::printf("backend      %s\n", j["backend"].get<std::string>().c_str());
    std::printf("database     %s\n", j["database"].get<std::string>().c_str());
    std::printf("reachable    %s\n", error.empty() ? "yes" : "no");
    if (error.empty()) {
      const int version = j["schema_version"];
      std::printf("schema       %d (this relaygate supports %d)\n", version, Store::kSchemaVersion);
      std::printf("open         %s ms\n", ms_text(j["open_ms"]).c_str());
      std::printf("latency      min %s ms, median %s ms (%d round trips)\n", ms_text(j["latency_ms"]["min"]).c_str(),
                  ms_text(j["latency_ms"]["median"]).c_str(), kLatencyRoundTrips);
      std::printf("users        %zu\n", j["users"].get<size_t>());
      std::printf("live grants  %zu\n", j["live_grants"].get<size_t>());
    }
  }
  if (!error.empty()) {
    std::cout.flush();
    std::cerr << "relaygatectl: " << error << "\n";
    return kExitFail;
  }
  return kExitOk;
}

int db_copy(Context& c, const Opts& o) {
  const std::string target = checked_target(o.to);
  if (same_database(c, target))
    throw Failure("db copy: the target " + target + " is the configured database " + c.cfg.database_name());
  Store& src = c.db();
  const int64_t t = now();
  const auto src_users = read_users(src);
  const auto src_grants = read_grants(src, t);

  std::unique_ptr<Store> dst_store;
  try {
    // A new SQLite file belongs to the service user, as the configured database does, so the
    // daemons can open it once "database" names it.
    std::error_code ec;
    if (!config::is_postgres_uri(target) && !fs::exists(target, ec) &&
        fs::is_directory(fs::path(target).parent_path(), ec))
      fsutil::create_file_owned(target, c.owner, kDatabaseFileMode);
    dst_store = authdb::open_store(target, c.cfg.hostname, authdb::OpenMode::Create);
  } catch (const authdb::Error& e) {
    throw Failure(e.what());
  } catch (const std::system_error& e) {
    throw Failure("database " + target + ": " + e.what());
  }
  Store& dst = *dst_store;
  const auto dst_users = read_users(dst);
  const auto dst_grants = read_grants(dst, t);

  // "Non-empty": the target holds a user or a live grant that the source does not hold exactly
  // so (differing, or only in the target). Identical rows are not in the way: a re-run succeeds.
  std::vector<std::string> differ, only_target;
  for (const auto& [name, u] : src_users)
    if (find_in(dst_users, name, u, same_user) == Found::Different) differ.push_back("user " + name);
  for (const auto& [ip, g] : src_grants)
    if (find_in(dst_grants, ip, g, same_grant) == Found::Different) differ.push_back("grant " + ip);
  for (const auto& [name, u] : dst_users)
    if (!src_users.count(name)) only_target.push_back("user " + name);
  for (const auto& [ip, g] : dst_grants)
    if (!src_grants.count(ip)) only_target.push_back("grant " + ip);
  if ((!differ.empty() || !only_target.empty()) && !o.force) {
    std::string what;
    if (!differ.empty())
      what += std::to_string(differ.size()) + " row(s) differ from the source (" + names_text(differ) + ")";
    if (!only_target.empty())
      what += std::string(what.empty() ? "" : "; ") + std::to_string(only_target.size()) +
              " row(s) are not in the source (" + names_text(only_target) + ")";
    throw Failure("db copy: the target " + dst.name() + " is not empty: " + what +
                  "; nothing copied. With --force the source's rows replace differing ones and rows only in the "
                  "target are kept");
  }

  Counts users, grants;
  for (const auto& [name, u] : src_users) {
    switch (find_in(dst_users, name, u, same_user)) {
      case Found::Identical: ++users.identical; break;
      case Found::Absent:
        if (!dst.import_user(u.user, u.auth))
          throw Failure("db copy: user " + name + " appeared in the target meanwhile");
        ++users.copied;
        break;
      case Found::Different:
        if (!dst.replace_user(u.user, u.auth))
          throw Failure("db copy: user " + name + " vanished from the target meanwhile");
        ++users.replaced;
        break;
    }
  }
  for (const auto& [ip, g] : src_grants) {
    const Found f = find_in(dst_grants, ip, g, same_grant);
    if (f == Found::Identical) {
      ++grants.identical;
      continue;
    }
    if (!dst.import_grant(g)) throw Failure("db copy: grant " + ip + ": its user " + g.user + " is not in the target");
    ++(f == Found::Absent ? grants.copied : grants.replaced);
  }

  // Read back: every source row must now be in the target exactly as in the source.
  const auto got_users = read_users(dst);
  const auto got_grants = read_grants(dst, t);
  for (const auto& [name, u] : src_users)
    if (find_in(got_users, name, u, same_user) != Found::Identical)
      throw Failure("db copy: user " + name + " reads back differently from " + dst.name());
  for (const auto& [ip, g] : src_grants)
    if (find_in(got_grants, ip, g, same_grant) != Found::Identical)
      throw Failure("db copy: grant " + ip + " reads back differently from " + dst.name());
  const size_t kept_users = got_users.size() - src_users.size();
  const size_t kept_grants = got_grants.size() - src_grants.size();

  std::cout << "copied " << src.name() << " to " << dst.name() << "\n"
            << "users:  " << users.copied << " copied, " << users.replaced << " replaced, " << users.identical
            << " already identical\n"
            << "grants: " << grants.copied << " copied, " << grants.replaced << " replaced, " << grants.identical
            << " already identical\n";
  if (kept_users + kept_grants > 0)
    std::cout << "kept in the target (not in the source): " << kept_users << " user(s), " << kept_grants
              << " grant(s)\n";
  return kExitOk;
}

}  // namespace rg::ctl

// See context.h: the Context's database, spool and status file, and loading the config.
#include "ctl/context.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <system_error>

#include "authdb/backend.h"
#include "authdb/status.h"
#include "authdb/users.h"

namespace rg::ctl {

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

std::string checked_user(const std::string& raw) {
  if (auto p = authdb::user_name_problem(raw)) throw Failure("invalid user name \"" + log_safe(raw) + "\": " + *p);
  return authdb::canonical_user_name(raw);
}

authdb::Store& Context::db(authdb::OpenMode mode) {
  if (db_) return *db_;
  try {
    if (mode == authdb::OpenMode::Create) prepare_database();
    db_ = authdb::open_store(cfg, mode);
  } catch (const authdb::Error& e) {
    throw Failure(e.what() + defaults_note);
  } catch (const std::system_error& e) {
    throw Failure("database " + cfg.database_name() + ": " + e.what() + defaults_note);
  }
  return *db_;
}

void Context::prepare_database() {
  if (!cfg.database_uri.empty()) return;  // a PostgreSQL database is made by its administrator
  std::error_code ec;
  if (fs::exists(cfg.database, ec)) return;
  if (defaults_note.empty() && cfg.database.has_parent_path())
    fsutil::create_directories_owned(cfg.database.parent_path(), owner, kDatabaseDirMode);
  if (owner && fs::is_directory(cfg.database.parent_path(), ec))
    fsutil::create_file_owned(cfg.database, owner, kDatabaseFileMode);
}

spool::Spool Context::spool() const {
  std::error_code ec;
  if (!fs::is_directory(cfg.spool_dir, ec))
    throw Failure("spool folder " + cfg.spool_dir.string() + " does not exist" + defaults_note);
  return spool::Spool(cfg.spool_dir);
}

void Context::write_status() { authdb::write_status_file(cfg.status_file, authdb::read_status(db(), now()), owner); }

void Context::status_after_change(std::string_view what) {
  try {
    write_status();
  } catch (const std::exception& e) {
    std::cerr << "relaygatectl: warning: " << what << " stored, but the status file " << cfg.status_file.string()
              << " could not be rewritten: " << e.what() << " (run `relaygatectl status --write` once it can be)\n";
  }
}

void Context::queue_changed(const spool::Spool& sp) {
  const spool::Summary q = sp.summary();
  db().set_queue_summary({static_cast<int64_t>(q.count), q.oldest_created_at});
  status_after_change("queue change");
}

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
                          " does not exist: using the embedded defaults relative to " + fs::current_path().string() +
                          ")";
    }
  }
  ctx.owner = fsutil::owner_when_root(ctx.cfg.run_as.user, ctx.cfg.run_as.group);
}

}  // namespace rg::ctl

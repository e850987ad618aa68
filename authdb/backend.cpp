// See backend.h.
#include "authdb/backend.h"

namespace rg::authdb {
namespace {

[[noreturn]] void no_postgres(const std::string& uri) {
  throw Error("database " + uri + ": the PostgreSQL backend is not built into this relaygate yet");
}

}  // namespace

StoreFactory store_factory(const config::Config& cfg) {
  const std::chrono::milliseconds limit(cfg.database_timeout_ms);
  if (!cfg.database_uri.empty()) no_postgres(cfg.database_uri);
  return sqlite_store_factory(cfg.database, limit, cfg.hostname);
}

std::unique_ptr<Store> open_store(const config::Config& cfg, OpenMode mode) {
  return open_store(cfg.database_uri.empty() ? cfg.database.string() : cfg.database_uri, cfg.hostname, mode);
}

std::unique_ptr<Store> open_store(const std::string& database, const std::string& node, OpenMode mode) {
  if (config::is_postgres_uri(database)) no_postgres(database);
  return std::make_unique<AuthDb>(database, mode, std::chrono::milliseconds(AuthDb::kBusyRetryLimitMs), node);
}

size_t write_threads(const config::Config& cfg) { return cfg.database_uri.empty() ? Client::kWriteThreads : 2; }

}  // namespace rg::authdb

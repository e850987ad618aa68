// See backend.h.
#include "authdb/backend.h"

#include "authdb/pg_store.h"

namespace rg::authdb {

StoreFactory store_factory(const config::Config& cfg) {
  const std::chrono::milliseconds limit(cfg.database_timeout_ms);
  if (!cfg.database_uri.empty())
    return [uri = cfg.database_uri, limit, node = cfg.hostname] { return std::make_unique<PgStore>(uri, limit, node); };
  return sqlite_store_factory(cfg.database, limit, cfg.hostname);
}

std::unique_ptr<Store> open_store(const config::Config& cfg, OpenMode mode) {
  if (!cfg.database_uri.empty())
    return std::make_unique<PgStore>(cfg.database_uri, std::chrono::milliseconds(cfg.database_timeout_ms),
                                     cfg.hostname);
  return open_store(cfg.database.string(), cfg.hostname, mode);
}

std::unique_ptr<Store> open_store(const std::string& database, const std::string& node, OpenMode mode) {
  if (config::is_postgres_uri(database))
    return std::make_unique<PgStore>(database, std::chrono::milliseconds(config::kDefaultDatabaseTimeoutMs), node);
  return std::make_unique<AuthDb>(database, mode, std::chrono::milliseconds(AuthDb::kBusyRetryLimitMs), node);
}

size_t write_threads(const config::Config& cfg) { return cfg.database_uri.empty() ? Client::kWriteThreads : 2; }

}  // namespace rg::authdb

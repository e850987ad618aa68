// The one place that turns the config's "database" into a Store (issue 12): a file path opens
// SQLite (AuthDb), a postgresql:// URI PostgreSQL (PgStore). Daemons get a factory (each
// database thread of authdb::Client opens its own connection); relaygatectl opens one Store.
#pragma once

#include <chrono>
#include <memory>

#include "authdb/authdb.h"
#include "authdb/client.h"
#include "shared/config.h"

namespace rg::authdb {

// The daemons' factory: connections wait at most database_timeout_ms (a lock, a slow server)
// and write the config's hostname as the node of their grants.
StoreFactory store_factory(const config::Config& cfg);

// relaygatectl's connection: `mode` applies to SQLite (MustExist for read-only commands);
// PostgreSQL always needs its database to exist (the schema is created or migrated).
std::unique_ptr<Store> open_store(const config::Config& cfg, OpenMode mode);

// The same for a database named outside the config (relaygatectl db copy --to URI|PATH).
std::unique_ptr<Store> open_store(const std::string& database, const std::string& node, OpenMode mode);

// Write threads the Client should run for this backend (SQLite has one writer; a server can
// take several at once).
size_t write_threads(const config::Config& cfg);

}  // namespace rg::authdb

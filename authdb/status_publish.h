// The status-file rewrite every grant writer runs through daemon::StatusPublisher (pop3d after a
// login, relaygate-policyd after a Dovecot grant): the snapshot on authdb's read lane, the write
// and its fsync on a worker pool (any type with WorkerPool's run()), never the I/O thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <ctime>
#include <filesystem>

#include "authdb/client.h"
#include "authdb/status.h"
#include "shared/log.h"

namespace rg::authdb {

template <class Pool>
boost::asio::awaitable<void> rewrite_status(Client& db, Pool& pool, std::filesystem::path file) {
  // Named jobs, not temporaries: g++ 12 double-destroys prvalue arguments to a coroutine inside
  // co_await (the GCC PR 100611 family).
  auto read = [now = static_cast<int64_t>(std::time(nullptr))](Store& s) { return read_status(s, now); };
  StatusSnapshot snapshot = co_await db.run(Lane::Read, "read status", read);
  auto job = [file = std::move(file), snap = std::move(snapshot)] { write_status_file(file, snap); };
  co_await pool.run(job);
}

// The periodic purge of expired grants every grant writer's housekeeping runs (pop3d, and
// relaygate-policyd, since with Postfix and Dovecot pop3d may not run; a purge twice is
// harmless): on the write lane, logged; a database fault is logged and the next round retries.
inline boost::asio::awaitable<void> purge_expired_grants(Client& db) {
  try {
    auto purge = [now = static_cast<int64_t>(std::time(nullptr))](Store& s) { return s.purge_expired(now); };
    const int purged = co_await db.run(Lane::Write, "purge grants", purge);
    if (purged > 0) log::info().kv("event", "purge").kv("expired_grants", purged);
  } catch (const std::exception& e) {
    log::error().kv("event", "purge-failed").kv("error", e.what());
  }
}

}  // namespace rg::authdb

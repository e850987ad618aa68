// The status-file rewrite every grant writer runs through daemon::StatusPublisher (pop3d after a
// login, relaygate-policyd after a Dovecot grant): the snapshot on authdb's read lane, the write
// and its fsync on a worker pool (any type with WorkerPool's run()), never the I/O thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <ctime>
#include <filesystem>

#include "authdb/client.h"
#include "authdb/status.h"

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

}  // namespace rg::authdb

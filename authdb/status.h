// The JSON status file (DESIGN.md): {"generated_at", "grants": [{ip, user, method,
// granted_at, expires_at, last_used_at, node}]}, ISO-8601 UTC. Written atomically; lists only
// live grants (callers pass AuthDb::list(now), which never returns expired rows).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "authdb/authdb.h"
#include "shared/fsutil.h"

namespace rg::authdb {

std::string iso8601(int64_t unix_seconds);  // "2026-11-26T03:34:34Z"
// One grant as the status file and `relaygatectl grant list --json` show it: {ip, user, method,
// granted_at, expires_at, last_used_at (null when never used), node (who wrote it; issue 12)}.
nlohmann::ordered_json grant_json(const Grant& g);
// With `queue`, adds {"queue": {"count": N, "oldest_age_seconds": S or null}} (issue 5).
std::string render_status(const std::vector<Grant>& grants, int64_t now, const QueueSummary* queue = nullptr);
// Renders and atomically replaces `path` (temp file, fsync, rename, fsync of the folder).
// With `owner` (root writing for the service user), the file and any folder made for it are
// owned by it, so the daemons can replace the file later.
void write_status_file(const std::filesystem::path& path, const std::vector<Grant>& grants, int64_t now,
                       const QueueSummary* queue = nullptr, const std::optional<fsutil::Owner>& owner = std::nullopt);

// What the status file shows, read from authdb alone: the live grants and the queue summary
// smtpd keeps there. Read on the thread that owns `db` (a daemon's database thread); written anywhere.
struct StatusSnapshot {
  std::vector<Grant> grants;
  QueueSummary queue;
  int64_t now = 0;
};
StatusSnapshot read_status(Store& db, int64_t now);
// Writers: pop3d (grants), smtpd (the queue), relaygatectl (grant, user and queue commands), each
// from its own snapshot. No lock between them: every version is whole (the durable rename), and
// each is a full view of authdb at its snapshot, so the only race is an older snapshot renamed
// just after a newer one (a window of one fsync); the next write heals it, and both daemons
// rewrite at least once a minute (grants.status_interval_seconds, smtpd's status timer), the
// staleness DESIGN.md allows the file anyway. A lock would have to span the SQLite read on the
// daemons' I/O thread to close that window, stalling sessions behind another process's fsync.
void write_status_file(const std::filesystem::path& path, const StatusSnapshot& status,
                       const std::optional<fsutil::Owner>& owner = std::nullopt);

}  // namespace rg::authdb

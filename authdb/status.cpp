// See status.h.
#include "authdb/status.h"

#include <ctime>

#include <nlohmann/json.hpp>

#include "shared/fsutil.h"
#include "shared/timefmt.h"

namespace rg::authdb {

std::string iso8601(int64_t t) { return timefmt::iso8601(t); }

nlohmann::ordered_json grant_json(const Grant& g) {
  nlohmann::ordered_json e;
  e["ip"] = g.ip;
  e["user"] = g.user;
  e["method"] = g.method;
  e["granted_at"] = iso8601(g.granted_at);
  e["expires_at"] = iso8601(g.expires_at);
  e["last_used_at"] =
      g.last_used_at ? nlohmann::ordered_json(iso8601(*g.last_used_at)) : nlohmann::ordered_json(nullptr);
  e["node"] = g.node;
  return e;
}

std::string render_status(const std::vector<Grant>& grants, int64_t now, const QueueSummary* queue) {
  nlohmann::ordered_json root;
  root["generated_at"] = iso8601(now);
  auto& list = root["grants"] = nlohmann::ordered_json::array();
  for (const auto& g : grants) {
    if (!(now < g.expires_at)) continue;
    list.push_back(grant_json(g));
  }
  if (queue)
    root["queue"] = {{"count", queue->count},
                     {"oldest_age_seconds", queue->count ? nlohmann::ordered_json(now - queue->oldest_enqueued_at)
                                                         : nlohmann::ordered_json(nullptr)}};
  return root.dump(2) + "\n";
}

void write_status_file(const std::filesystem::path& path, const std::vector<Grant>& grants, int64_t now,
                       const QueueSummary* queue, const std::optional<fsutil::Owner>& owner) {
  if (path.has_parent_path()) fsutil::create_directories_owned(path.parent_path(), owner);
  fsutil::atomic_write(path, render_status(grants, now, queue), 0644, owner);
}

StatusSnapshot read_status(Store& db, int64_t now) { return {db.list(now), db.queue_summary(), now}; }

void write_status_file(const std::filesystem::path& path, const StatusSnapshot& status,
                       const std::optional<fsutil::Owner>& owner) {
  write_status_file(path, status.grants, status.now, &status.queue, owner);
}

}  // namespace rg::authdb

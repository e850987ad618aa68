// See render.h.
#include "ctl/render.h"

#include <cstdio>

#include "authdb/status.h"

namespace rg::ctl {

nlohmann::ordered_json grants_json(const std::vector<authdb::Grant>& grants) {
  auto arr = nlohmann::ordered_json::array();
  for (const auto& g : grants) arr.push_back(authdb::grant_json(g));  // the status file's form
  return arr;
}

void print_grant_table(const std::vector<authdb::Grant>& grants, int64_t t) {
  std::printf("%-39s %-20s %-9s %-20s %-20s %-9s %-20s %s\n", "IP", "USER", "METHOD", "GRANTED", "EXPIRES", "LEFT",
              "LAST USED", "NODE");
  for (auto& g : grants)
    std::printf("%-39s %-20s %-9s %-20s %-20s %-9s %-20s %s\n", g.ip.c_str(), g.user.c_str(), g.method.c_str(),
                authdb::iso8601(g.granted_at).c_str(), authdb::iso8601(g.expires_at).c_str(),
                (std::to_string(g.expires_at - t) + "s").c_str(),
                g.last_used_at ? authdb::iso8601(*g.last_used_at).c_str() : "-", g.node.empty() ? "-" : g.node.c_str());
  if (grants.empty()) std::printf("(no live grants)\n");
}

std::string message_last_error(const spool::Envelope& e) {
  for (const auto& r : e.recipients)
    if (r.state != "delivered" && !r.last_error.empty()) return r.last_error;
  return "";
}

nlohmann::ordered_json envelope_json(const spool::Envelope& e, int64_t t) {
  auto rcpts = nlohmann::ordered_json::array();
  for (const auto& r : e.recipients)
    rcpts.push_back({{"address", r.address},
                     {"state", r.state},
                     {"status", r.status},
                     {"last_error", r.last_error},
                     {"last_attempt_at", r.last_attempt_at ? nlohmann::ordered_json(authdb::iso8601(r.last_attempt_at))
                                                           : nlohmann::ordered_json(nullptr)}});
  return {{"id", e.id},
          {"sender", e.sender},
          {"recipients", rcpts},
          {"size", e.size},
          {"age_seconds", t - e.created_at},
          {"created_at", authdb::iso8601(e.created_at)},
          {"next_attempt_at", authdb::iso8601(e.next_attempt_at)},
          {"attempts", e.attempts},
          {"held", e.held},
          {"last_error", message_last_error(e)},
          {"client_ip", e.client_ip},
          {"auth", e.auth}};
}

}  // namespace rg::ctl

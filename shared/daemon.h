// Process-level duties both daemons share: the systemd notify protocol (sd_notify(3) without
// libsystemd: one datagram to $NOTIFY_SOCKET), and dropping root after the ports are bound.
#pragma once

#include <string>
#include <string_view>

#include "shared/fd.h"

namespace rg::daemon {

// Sends `state` ("READY=1", "STOPPING=1", "RELOADING=1", "STATUS=...") to the service
// manager when started with Type=notify; does nothing otherwise. Never throws.
void notify(std::string_view state);

// When running as uid 0 and not explicitly allowed to stay root: switch to `user` (and its
// primary group, or `group` if not empty), clearing supplementary groups, and verify root
// cannot be regained. Throws std::runtime_error naming the problem (missing user, user root).
// Returns a description for the log ("relaygate (uid 105, gid 110)" or "not root").
// An exclusive flock(2) on `file`, held for the process's life: one daemon instance per state
// folder. Creates the file (and its folder) owned by `user` when running as root, writes this
// pid into it. A second instance gets std::runtime_error naming the config, the lock file and the
// pid holding it. Taken before binding and before anything in the spool or database is touched.
class InstanceLock {
 public:
  InstanceLock(const std::string& file, const std::string& config_name, const std::string& user,
               const std::string& group);
  ~InstanceLock();
  InstanceLock(const InstanceLock&) = delete;
  InstanceLock& operator=(const InstanceLock&) = delete;

 private:
  FlockGuard lock_;
};

std::string drop_privileges(const std::string& user, const std::string& group, bool allow_root);

}  // namespace rg::daemon

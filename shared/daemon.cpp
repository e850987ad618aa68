// See daemon.h.
#include "shared/daemon.h"

#include "shared/fsutil.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace rg::daemon {

void notify(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || (path[0] != '/' && path[0] != '@') || std::strlen(path) >= sizeof(sockaddr_un::sun_path))
    return;
  const Fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  size_t len = std::strlen(path);
  std::memcpy(addr.sun_path, path, len);
  if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace socket
  socklen_t alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  (void)::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), alen);
}

namespace {

// The pid the running instance wrote into its lock file, or "unknown".
std::string holder_of(const std::string& file) {
  constexpr size_t kPidText = 31;  // a pid and its newline, with room to spare
  std::string holder;
  try {
    holder = fsutil::read_file(file).substr(0, kPidText);
  } catch (const std::system_error&) {
  }
  if (holder.empty()) return "unknown";
  while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
  return holder;
}

}  // namespace

InstanceLock::InstanceLock(const std::string& file, const std::string& config_name, const std::string& user,
                           const std::string& group) {
  const auto owner = fsutil::owner_when_root(user, group);
  const std::filesystem::path path(file);
  if (path.has_parent_path()) fsutil::create_directories_owned(path.parent_path(), owner, 0750);
  fsutil::create_file_owned(path, owner, 0644);
  Fd fd(::open(file.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) throw std::runtime_error("cannot open lock file " + file + ": " + std::strerror(errno));
  bool busy = false;
  lock_ = FlockGuard::try_lock(std::move(fd), &busy);
  if (!lock_) {
    const int err = errno;
    if (!busy) throw std::runtime_error("cannot lock " + file + ": " + std::strerror(err));
    throw std::runtime_error("another instance is running with config " + config_name + ": lock file " + file +
                             " is held by pid " + holder_of(file));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_.fd(), 0) != 0 ||
      ::pwrite(lock_.fd(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
    throw std::runtime_error("cannot write lock file " + file + ": " + std::strerror(errno));
}

// The lock goes with the descriptor; the file stays (no race on unlink).
InstanceLock::~InstanceLock() = default;

std::string drop_privileges(const std::string& user, const std::string& group, bool allow_root) {
  if (::geteuid() != 0) return "not root";
  if (allow_root) return "root (explicitly allowed)";
  if (user.empty())
    throw std::runtime_error("running as root: set run_as.user to an unprivileged user (or allow root explicitly)");
  passwd* pw = ::getpwnam(user.c_str());
  if (pw == nullptr)
    throw std::runtime_error("running as root and run_as.user \"" + user +
                             "\" does not exist: create it (the Debian package does) or allow root explicitly");
  uid_t uid = pw->pw_uid;
  gid_t gid = pw->pw_gid;
  if (!group.empty()) {
    struct group* gr = ::getgrnam(group.c_str());
    if (gr == nullptr) throw std::runtime_error("run_as.group: no such group \"" + group + "\"");
    gid = gr->gr_gid;
  }
  if (uid == 0) throw std::runtime_error("run_as.user \"" + user + "\" is root; refusing to keep running as uid 0");
  if (::setgroups(0, nullptr) != 0) throw std::runtime_error(std::string("setgroups: ") + std::strerror(errno));
  if (::setgid(gid) != 0) throw std::runtime_error(std::string("setgid: ") + std::strerror(errno));
  if (::setuid(uid) != 0) throw std::runtime_error(std::string("setuid: ") + std::strerror(errno));
  if (::setuid(0) == 0 || ::geteuid() == 0)
    throw std::runtime_error("could regain root after dropping privileges; refusing to run");
  return user + " (uid " + std::to_string(uid) + ", gid " + std::to_string(gid) + ")";
}

}  // namespace rg::daemon

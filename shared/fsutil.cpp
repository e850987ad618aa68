// See fsutil.h. The temp file name carries pid and a counter so concurrent writers in
// several processes never share one.
#include "shared/fsutil.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <system_error>
#include <vector>

namespace rg::fsutil {
namespace {

[[noreturn]] void fail(const std::string& what, const fs::path& p) {
  throw std::system_error(errno, std::generic_category(), what + " " + p.string());
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_;
};

// getpwnam_r/getgrnam_r need a caller buffer; sysconf's hint may be -1 (no limit known).
constexpr size_t kPwBufferSize = 16384;

}  // namespace

std::optional<Owner> lookup_owner(const std::string& user, const std::string& group) {
  if (user.empty()) return std::nullopt;
  std::vector<char> buf(kPwBufferSize);
  passwd pw{};
  passwd* pwr = nullptr;
  if (getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &pwr) != 0 || pwr == nullptr) return std::nullopt;
  Owner o{pw.pw_uid, pw.pw_gid};
  if (!group.empty()) {
    struct ::group gr {};
    struct ::group* grr = nullptr;
    if (getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &grr) != 0 || grr == nullptr) return std::nullopt;
    o.gid = gr.gr_gid;
  }
  return o;
}

std::optional<Owner> owner_when_root(const std::string& user, const std::string& group) {
  if (::geteuid() != 0) return std::nullopt;
  return lookup_owner(user, group);
}

void fsync_dir(const fs::path& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) fail("cannot open directory", dir);
  if (::fsync(fd.get()) != 0) fail("cannot fsync directory", dir);
}

void make_dirs(const fs::path& dir, unsigned mode) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return;
  if (dir.has_parent_path() && dir.parent_path() != dir) make_dirs(dir.parent_path(), mode);
  if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) fail("cannot create directory", dir);
}

void create_directories_owned(const fs::path& dir, const std::optional<Owner>& owner, unsigned mode) {
  std::error_code ec;
  if (dir.empty() || fs::is_directory(dir, ec)) return;
  if (dir.has_parent_path() && dir.parent_path() != dir) create_directories_owned(dir.parent_path(), owner, mode);
  if (::mkdir(dir.c_str(), mode) != 0) {
    if (errno == EEXIST) return;  // made by someone else meanwhile: not ours to chown
    fail("cannot create directory", dir);
  }
  if (owner && ::chown(dir.c_str(), owner->uid, owner->gid) != 0) fail("cannot change the owner of", dir);
}

bool create_file_owned(const fs::path& path, const std::optional<Owner>& owner, unsigned mode) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
  if (fd.get() < 0) {
    if (errno == EEXIST) return false;
    fail("cannot create", path);
  }
  if (owner && ::fchown(fd.get(), owner->uid, owner->gid) != 0) {
    int saved = errno;
    ::unlink(path.c_str());
    errno = saved;
    fail("cannot change the owner of", path);
  }
  return true;
}

void atomic_write(const fs::path& path, std::string_view content, unsigned mode, const std::optional<Owner>& owner) {
  static std::atomic<unsigned> counter{0};
  fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  fs::path tmp =
      dir / ("." + path.filename().string() + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++));
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (fd.get() < 0) fail("cannot create", tmp);
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int saved = errno;
      ::unlink(tmp.c_str());
      errno = saved;
      fail("cannot write", tmp);
    }
    off += static_cast<size_t>(n);
  }
  if (owner && ::fchown(fd.get(), owner->uid, owner->gid) != 0) {
    int saved = errno;
    ::unlink(tmp.c_str());
    errno = saved;
    fail("cannot change the owner of", tmp);
  }
  if (::fsync(fd.get()) != 0 || ::close(fd.release()) != 0) {
    int saved = errno;
    ::unlink(tmp.c_str());
    errno = saved;
    fail("cannot fsync", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int saved = errno;
    ::unlink(tmp.c_str());
    errno = saved;
    fail("cannot rename into", path);
  }
  fsync_dir(dir);
}

}  // namespace rg::fsutil

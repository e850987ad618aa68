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
#include <set>
#include <system_error>
#include <vector>

#include "shared/fd.h"

namespace rg::fsutil {
namespace {

[[noreturn]] void fail(const std::string& what, const fs::path& p) {
  throw std::system_error(errno, std::generic_category(), what + " " + p.string());
}

constexpr size_t kReadChunk = 64 * 1024;

// unlink(2) in cleanup paths, keeping the errno of the failure being reported.
void unlink_quietly(const fs::path& p) {
  const int saved = errno;
  ::unlink(p.c_str());
  errno = saved;
}

// Create (O_EXCL), write, fsync, close one temp file; unlinks it again on any failure.
void write_synced(const DurableFile& f, const DurableOptions& o) {
  Fd fd(::open(f.tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, o.mode));
  if (!fd) fail("cannot create", f.tmp);
  const char* step = nullptr;
  if (o.exact_mode && ::fchmod(fd.get(), o.mode) != 0)
    step = "cannot change the mode of";
  else if (o.owner && ::fchown(fd.get(), o.owner->uid, o.owner->gid) != 0)
    step = "cannot change the owner of";
  else if (!write_all(fd.get(), f.pieces))
    step = "cannot write";
  else if (::fsync(fd.get()) != 0)
    step = "cannot fsync";
  else if (fd.close() != 0)
    step = "cannot close";
  if (step) {
    unlink_quietly(f.tmp);
    fail(step, f.tmp);
  }
}

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

ssize_t read_some(int fd, char* buf, size_t size) {
  ssize_t n;
  while ((n = ::read(fd, buf, size)) < 0 && errno == EINTR) {
  }
  return n;
}

bool read_all(int fd, std::string& out) {
  char buf[kReadChunk];
  for (;;) {
    const ssize_t n = read_some(fd, buf, sizeof buf);
    if (n < 0) return false;
    if (n == 0) return true;
    out.append(buf, static_cast<size_t>(n));
  }
}

std::string read_file(const fs::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) fail("cannot open", path);
  std::string out;
  struct stat st {};
  if (::fstat(fd.get(), &st) == 0 && st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
  if (!read_all(fd.get(), out)) fail("cannot read", path);
  return out;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool write_all(int fd, std::span<const std::string_view> pieces) {
  for (auto piece : pieces)
    if (!write_all(fd, piece)) return false;
  return true;
}

void write_durably(std::span<const DurableFile> files, const DurableOptions& options) {
  size_t written = 0, renamed = 0;
  try {
    for (; written < files.size(); ++written) write_synced(files[written], options);
    for (; renamed < files.size(); ++renamed)
      if (::rename(files[renamed].tmp.c_str(), files[renamed].dst.c_str()) != 0)
        fail("cannot rename into", files[renamed].dst);
    std::set<fs::path> dirs;
    for (const auto& f : files) dirs.insert(f.dst.has_parent_path() ? f.dst.parent_path() : fs::path("."));
    for (const auto& dir : dirs) fsync_dir(dir);
  } catch (...) {
    for (size_t i = renamed; i < written; ++i) unlink_quietly(files[i].tmp);
    if (options.undo_on_failure)
      for (size_t i = 0; i < renamed; ++i) unlink_quietly(files[i].dst);
    throw;
  }
}

void write_durably(const fs::path& tmp, const fs::path& dst, std::vector<std::string_view> pieces,
                   const DurableOptions& options) {
  const DurableFile file{tmp, dst, std::move(pieces)};
  write_durably(std::span<const DurableFile>(&file, 1), options);
}

void fsync_dir(const fs::path& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) fail("cannot open directory", dir);
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
  if (!fd) {
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
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  const fs::path tmp =
      dir / ("." + path.filename().string() + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++));
  DurableOptions options;
  options.mode = mode;
  options.owner = owner;
  write_durably(tmp, path, {content}, options);
}

}  // namespace rg::fsutil

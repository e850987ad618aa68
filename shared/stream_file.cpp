// See stream_file.h.
#include "shared/stream_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <utility>

#include "shared/fsutil.h"

namespace rg::fsutil {
namespace {

[[noreturn]] void fail(int err, const std::string& what, const std::filesystem::path& p) {
  throw std::system_error(err, std::generic_category(), what + " " + p.string());
}

}  // namespace

StreamFile::StreamFile(std::filesystem::path tmp, unsigned mode) : tmp_(std::move(tmp)) {
  fd_ = Fd(::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd_) fail(errno, "cannot create", tmp_);
  pending_ = true;
}

StreamFile::StreamFile(StreamFile&& o) noexcept
    : tmp_(std::move(o.tmp_)), fd_(std::move(o.fd_)), pending_(std::exchange(o.pending_, false)) {}

StreamFile& StreamFile::operator=(StreamFile&& o) noexcept {
  if (this != &o) {
    discard();
    tmp_ = std::move(o.tmp_);
    fd_ = std::move(o.fd_);
    pending_ = std::exchange(o.pending_, false);
  }
  return *this;
}

StreamFile::~StreamFile() { discard(); }

void StreamFile::write(std::string_view data) {
  if (!fd_) fail(EBADF, "cannot write", tmp_);
  if (!write_all(fd_.get(), data)) fail(errno, "cannot write", tmp_);
}

void StreamFile::sync() {
  if (!fd_) fail(EBADF, "cannot fsync", tmp_);
  if (::fsync(fd_.get()) != 0) fail(errno, "cannot fsync", tmp_);
  if (fd_.close() != 0) fail(errno, "cannot close", tmp_);
}

void StreamFile::publish(const std::filesystem::path& dst) {
  if (fd_ || !pending_) fail(EBADF, "cannot rename into", dst);  // sync() first, once
  if (::rename(tmp_.c_str(), dst.c_str()) != 0) fail(errno, "cannot rename into", dst);
  pending_ = false;
}

void StreamFile::discard() noexcept {
  fd_ = Fd();
  if (pending_) {
    const int saved = errno;
    ::unlink(tmp_.c_str());
    errno = saved;
    pending_ = false;
  }
}

}  // namespace rg::fsutil

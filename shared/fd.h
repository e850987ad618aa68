// Owning file descriptors. Every descriptor the project opens lives in an Fd, so none is
// leaked on an early return or an exception, or closed twice across a co_await.
#pragma once

#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace rg {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  // close(2) whose result matters (after writing a file that must be durable): -1 and errno
  // on failure. The descriptor is gone either way (POSIX leaves it unspecified; Linux closes it).
  int close() { return fd_ >= 0 ? ::close(std::exchange(fd_, -1)) : 0; }

 private:
  int fd_ = -1;
};

// An exclusive flock(2) held as long as this object lives: the lock is the open file
// description, so closing the descriptor releases it, also when the process dies.
class FlockGuard {
 public:
  FlockGuard() = default;
  // Takes ownership of `fd` only if the non-blocking exclusive lock is granted; `would_block`
  // tells a held lock (EWOULDBLOCK) from an error (errno set).
  static FlockGuard try_lock(Fd fd, bool* would_block = nullptr) {
    if (would_block) *would_block = false;
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (would_block) *would_block = errno == EWOULDBLOCK;
      return {};
    }
    FlockGuard g;
    g.fd_ = std::move(fd);
    return g;
  }
  // Waits for the exclusive lock (serializing a one-time job between processes); an empty
  // guard, errno set, if flock(2) fails.
  static FlockGuard lock(Fd fd) {
    int rc;
    while ((rc = ::flock(fd.get(), LOCK_EX)) != 0 && errno == EINTR) {
    }
    if (rc != 0) return {};
    FlockGuard g;
    g.fd_ = std::move(fd);
    return g;
  }
  explicit operator bool() const { return static_cast<bool>(fd_); }
  int fd() const { return fd_.get(); }

 private:
  Fd fd_;
};

}  // namespace rg

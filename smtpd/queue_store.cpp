// See queue_store.h.
#include "smtpd/queue_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <system_error>

#include "shared/fsutil.h"
#include "shared/maildir.h"
#include "smtpd/queue_policy.h"

namespace rg::smtp::queue {
namespace {

[[noreturn]] void fail(int err, const std::string& what, const fs::path& p) {
  throw std::system_error(err, std::generic_category(), what + " " + p.string());
}

std::string host_part() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  std::string h;
  for (char* p = buf; *p; ++p) h += (*p == '/' || *p == ':' || *p == ',') ? '_' : *p;
  return h.empty() ? "localhost" : h;
}

bool has_token(const fs::path& dir, const std::string& needle) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename().string().find(needle) != std::string::npos) return true;
  if (ec && ec != std::errc::no_such_file_or_directory) fail(ec.value(), "cannot list", dir);
  return false;
}

}  // namespace

namespace {

Loaded load_locked(const spool::Spool& spool, const std::string& id, int64_t now);

}  // namespace

Loaded load(const spool::Spool& spool, const std::string& id, int64_t now) {
  Loaded out = load_locked(spool, id, now);
  if (out.status != Loaded::Ready) out.lock = spool::Lock();  // only Ready keeps the message locked
  return out;
}

namespace {

Loaded load_locked(const spool::Spool& spool, const std::string& id, int64_t now) {
  Loaded out;
  try {
    switch (spool.try_lock(id, out.lock)) {
      case spool::LockStatus::Gone: out.status = Loaded::Gone; return out;
      case spool::LockStatus::Busy: out.status = Loaded::Busy; return out;
      case spool::LockStatus::Locked: break;
    }
    auto env = spool.read(id);
    if (!env) {
      out.status = Loaded::Gone;
      return out;
    }
    out.env = std::move(*env);
    out.next = out.env.next_attempt_at;
    if (out.env.held) {
      out.status = Loaded::Held;
      return out;
    }
    const bool attempt_due = !pending(out.env).empty() && out.env.next_attempt_at <= now;
    const bool other_work = pending(out.env).empty() || !unnotified_failures(out.env).empty();
    if (!attempt_due && !other_work) {
      out.status = Loaded::NotDue;
      return out;
    }
    if (!out.env.dsn_of.empty() && !pending(out.env).empty()) {
      // Invariant: a DSN leaves only once its parent's envelope records it (dsn_count), so a
      // parent redone after a crash finds it and never makes a second one.
      auto parent = spool.read(out.env.dsn_of);
      if (parent && parent->dsn_count < out.env.dsn_seq) {
        out.status = Loaded::WaitParent;
        return out;
      }
    }
    out.message = std::make_shared<const std::string>(spool.read_message(id));
    out.attempt = attempt_due;
    out.status = Loaded::Ready;
  } catch (const std::exception& e) {
    out.status = Loaded::Error;
    out.error = e.what();
  }
  return out;
}

}  // namespace

bool deliver_local_once(const fs::path& maildir_root, const std::string& user, const std::string& token,
                        std::string_view message) {
  maildir::Maildir md(maildir_root, user);
  md.ensure();
  const fs::path dir = md.path();
  const std::string needle = "." + token + ".";
  if (has_token(dir / "new", needle) || has_token(dir / "cur", needle)) return false;
  uint64_t wire = 0;
  char last = '\n';
  for (char c : message) {
    wire += (c == '\n' && last != '\r') ? 2 : 1;
    last = c;
  }
  if (!message.empty() && last != '\n') wire += 2;
  const std::string name = std::to_string(std::time(nullptr)) + "." + token + "." + host_part() +
                           ",S=" + std::to_string(message.size()) + ",W=" + std::to_string(wire);
  const fs::path tmp = dir / "tmp" / name;
  const fs::path dst = dir / "new" / name;
  ::unlink(tmp.c_str());  // a leftover of an earlier try with the same second
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) fail(errno, "cannot create", tmp);
  try {
    std::string_view rest = message;
    while (!rest.empty()) {
      ssize_t n = ::write(fd, rest.data(), rest.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail(errno, "cannot write", tmp);
      rest.remove_prefix(static_cast<size_t>(n));
    }
    if (::fsync(fd) != 0) fail(errno, "cannot fsync", tmp);
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) fail(errno, "cannot close", tmp);
    if (::rename(tmp.c_str(), dst.c_str()) != 0) fail(errno, "cannot rename into", dst);
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  try {
    fsutil::fsync_dir(dir / "new");
  } catch (...) {
    ::unlink(dst.c_str());
    throw;
  }
  return true;
}

Persisted persist(const spool::Spool& spool, const fs::path& maildir_root, const Plan& plan) {
  Persisted out;
  try {
    if (plan.write_recorded) spool.update(plan.recorded);
    for (const auto& d : plan.dsns) {
      bool made = d.local_user.empty() ? spool.enqueue_once(d.env, {d.message})
                                       : deliver_local_once(maildir_root, d.local_user, d.id, d.message);
      if (!made) out.dsn_existing.push_back(d.id);
    }
    if (plan.remove) spool.remove(plan.id);
    else spool.update(plan.final);
  } catch (const std::system_error& e) {
    out.ok = false;
    out.err = e.code().value();
    out.error = e.what();
  } catch (const std::exception& e) {
    out.ok = false;
    out.err = EIO;
    out.error = e.what();
  }
  return out;
}

}  // namespace rg::smtp::queue

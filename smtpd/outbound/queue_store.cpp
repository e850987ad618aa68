// See queue_store.h.
#include "smtpd/outbound/queue_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <system_error>

#include "shared/fsutil.h"
#include "shared/maildir.h"
#include "smtpd/outbound/queue_policy.h"

namespace rg::smtp::queue {
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
  return md.deliver_once(token, {message}).has_value();
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
    if (plan.remove)
      spool.remove(plan.id);
    else
      spool.update(plan.final);
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

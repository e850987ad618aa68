// relaygatectl queue ...: list, show, flush, delete, hold, release.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "ctl/context.h"
#include "ctl/render.h"

namespace rg::ctl {
namespace {

// The queue (shared/spool.h). Changes take the message's lock, the one the runner holds while
// delivering, and replace the envelope atomically; the running smtpd watches queue/ (inotify)
// and acts on a flush, hold, release or delete at once — no signal or pid file is needed.
constexpr auto kQueueLockWait = std::chrono::seconds(15);

std::string queue_id(const std::string& raw) {
  if (!spool::valid_id(raw)) throw Failure("invalid queue id \"" + log_safe(raw) + "\"");
  return raw;
}

// Runs `change` on message id under its lock; false when it left the queue meanwhile.
bool queue_change(const spool::Spool& sp, const std::string& id, const std::function<bool(spool::Envelope&)>& change) {
  spool::Lock lock;
  switch (sp.lock_wait(id, lock, kQueueLockWait)) {
    case spool::LockStatus::Gone: return false;
    case spool::LockStatus::Busy: throw Failure("message " + id + " is being delivered right now; try again");
    case spool::LockStatus::Locked: break;
  }
  auto env = sp.read(id);
  if (!env) return false;
  if (change(*env)) sp.update(*env);
  return true;
}

}  // namespace

int queue_list(Context& c, const Opts& o) {
  std::vector<std::string> problems;
  auto queued = c.spool().list(&problems);
  for (const auto& p : problems) std::cerr << "relaygatectl: " << p << "\n";
  const int64_t t = now();
  if (o.json) {
    auto arr = nlohmann::ordered_json::array();
    for (const auto& e : queued) arr.push_back(envelope_json(e, t));
    std::cout << arr.dump(2) << "\n";
    return problems.empty() ? kExitOk : kExitFail;
  }
  std::printf("%-16s %-30s %-8s %-8s %-8s %s\n", "ID", "SENDER", "SIZE", "AGE", "NEXT", "RECIPIENTS");
  for (const auto& e : queued) {
    std::string rcpts;
    for (const auto& r : e.recipients) rcpts += (rcpts.empty() ? "" : ", ") + r.address + " (" + r.state + ")";
    std::string next = e.held ? "held" : e.next_attempt_at <= t ? "now" : std::to_string(e.next_attempt_at - t) + "s";
    std::printf("%-16s %-30s %-8llu %-8s %-8s %s\n", e.id.c_str(), e.sender.empty() ? "<>" : log_safe(e.sender).c_str(),
                static_cast<unsigned long long>(e.size), (std::to_string(t - e.created_at) + "s").c_str(), next.c_str(),
                log_safe(rcpts).c_str());
    if (auto err = message_last_error(e); !err.empty()) std::printf("%16s last error: %s\n", "", log_safe(err).c_str());
  }
  if (queued.empty()) std::printf("(queue is empty)\n");
  return problems.empty() ? kExitOk : kExitFail;
}

int queue_show(Context& c, const Opts& o) {
  const std::string id = queue_id(o.id);
  spool::Spool sp = c.spool();
  auto env = sp.read(id);
  if (!env) throw Failure("no queued message " + id);
  std::cout << envelope_json(*env, now()).dump(2) << "\n";
  std::string message;
  try {
    message = sp.read_message(id);
  } catch (const std::system_error& e) {
    throw Failure(std::string("cannot read the message: ") + e.what());
  }
  std::cout << "--- message (" << message.size() << " octets) ---\n";
  std::cout.write(message.data(), static_cast<std::streamsize>(message.size()));
  if (!message.empty() && message.back() != '\n') std::cout << "\n";
  return kExitOk;
}

int queue_flush(Context& c, const Opts& o) {
  spool::Spool sp = c.spool();
  const int64_t t = now();
  // Rewritten even when already due: the new envelope is what wakes the runner (inotify).
  auto schedule = [t](spool::Envelope& e) {
    if (e.held) return false;
    e.next_attempt_at = std::min(e.next_attempt_at, t);
    return true;
  };
  if (!o.id.empty()) {
    const std::string id = queue_id(o.id);
    bool held = false;
    if (!queue_change(sp, id, [&](spool::Envelope& e) {
          held = e.held;
          return schedule(e);
        }))
      throw Failure("no queued message " + id);
    if (held) throw Failure("message " + id + " is on hold; release it first");
    std::cout << "message " << id << " scheduled for delivery now\n";
    return kExitOk;
  }
  size_t n = 0, busy = 0;
  for (const auto& e : sp.list()) {
    spool::Lock lock;
    // A message in delivery right now is skipped (it is being tried) unless it is done within a second.
    if (sp.lock_wait(e.id, lock, std::chrono::seconds(1)) != spool::LockStatus::Locked) {
      ++busy;
      continue;
    }
    auto env = sp.read(e.id);
    if (env && !env->held) {
      if (schedule(*env)) sp.update(*env);
      ++n;
    }
  }
  std::cout << n << " message(s) scheduled for delivery now"
            << (busy ? ", " + std::to_string(busy) + " in delivery" : "") << "\n";
  return kExitOk;
}

int queue_delete(Context& c, const Opts& o) {
  const std::string id = queue_id(o.id);
  spool::Spool sp = c.spool();
  spool::Lock lock;
  switch (sp.lock_wait(id, lock, kQueueLockWait)) {
    case spool::LockStatus::Gone: throw Failure("no queued message " + id);
    case spool::LockStatus::Busy: throw Failure("message " + id + " is being delivered right now; try again");
    case spool::LockStatus::Locked: break;
  }
  sp.remove(id);
  c.queue_changed(sp);
  std::cout << "message " << id << " deleted\n";
  return kExitOk;
}

int queue_hold(Context& c, const Opts& o, bool hold) {
  const std::string id = queue_id(o.id);
  const int64_t t = now();
  bool changed = false;
  if (!queue_change(c.spool(), id, [&](spool::Envelope& e) {
        changed = e.held != hold;
        e.held = hold;
        if (!hold) e.next_attempt_at = std::min(e.next_attempt_at, t);
        return changed;
      }))
    throw Failure("no queued message " + id);
  std::cout << "message " << id << (hold ? " on hold" : " released") << (changed ? "" : " (it already was)") << "\n";
  return kExitOk;
}

}  // namespace rg::ctl

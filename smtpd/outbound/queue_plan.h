// The queue runner's planning, pure (no I/O, no clock, no database): which queued messages a
// dispatcher pass hands to connections and how many connections it opens, and what becomes of
// one message after an attempt (its DSNs, its final envelope, its removal). The runner
// (queue_runner.cpp) gathers the inputs — the spool scan, the sender's mailbox lookup — and
// carries the plan out through queue_store's persist().
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "shared/spool.h"
#include "smtpd/outbound/queue_policy.h"
#include "smtpd/outbound/queue_store.h"

namespace rg::smtp::queue {

// One queued message as the dispatcher tracks it.
struct Slot {
  int64_t next = 0;  // next look (0: now)
  bool held = false;
  bool busy = false;  // being delivered by a connection
};

// When the dispatcher should next look at a message read from the spool: now when it has work
// other than an attempt (every recipient done: remove it; a failure without its DSN: make it),
// otherwise at its scheduled attempt.
int64_t next_look(const spool::Envelope& env);

struct DispatchInput {
  int64_t now = 0;
  int64_t next_scan = 0;       // when the spool is scanned again
  size_t waiting = 0;          // ids already handed out and not yet taken by a connection
  size_t connections = 0;      // open connections, idle ones included
  size_t idle = 0;             // connections lingering for more mail
  size_t max_connections = 1;  // queue.max_connections
};
struct Dispatch {
  std::vector<std::string> due;  // free, not held, next <= now: hand these out (in id order)
  size_t open = 0;               // new connections to open
  int64_t wake_at = 0;           // the earliest next look, or the next scan
};
// Opens connections until the busy (non-idle) ones and the new ones number the handed-out
// messages (a busy connection takes the next one when done), keeping every connection, idle
// ones too, within max_connections. Idle connections are woken to take work as well.
Dispatch plan_dispatch(const std::map<std::string, Slot>& slots, const DispatchInput& in);

// Where a DSN to the sender goes (RFC 3464), as the runner resolved it: the sender's local
// mailbox, the queue (a remote sender), nowhere (a local domain without that user), or not yet
// (the lookup failed: decide on a later pass).
enum class DsnTarget { Local, Remote, Drop, Retry };

struct AttemptInput {
  DsnTarget target = DsnTarget::Remote;
  std::string local_user;     // with Local: the mailbox
  std::string reporting_mta;  // our host name (RFC 3464 §2.2.2)
  std::string remote_mta;     // the smarthost (§2.3.5)
  Policy policy;
  int64_t now = 0;
};
struct AttemptPlan {
  Plan plan;
  bool dropped = false;  // failures that no one can be told of (log dsn-undeliverable)
};
// What to persist for `env` after an attempt at `in.now` (see queue_store.h for the order):
// a "failed" DSN for failures not yet notified and a "delayed" one when due (queue_policy.h);
// the message is removed when nothing is left to do.
AttemptPlan plan_after_attempt(const spool::Envelope& env, const std::string& message, const AttemptInput& in);

}  // namespace rg::smtp::queue

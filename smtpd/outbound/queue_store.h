// The queue runner's blocking steps, run on the worker pool: take a message (lock, read its
// envelope and bytes) and persist the result of an attempt (envelope update, DSNs, removal).
// Crash safety (issue 5): persist() makes each step durable before the next and every step
// can be redone: a failure is recorded (notified=false) before its DSN exists; DSNs carry
// derived ids (<id>R<n>) so a redo finds the one already queued or delivered to the Maildir;
// only then is the envelope marked notified or the message removed (.env, .msg, fsync queue/).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "shared/spool.h"

namespace rg::smtp::queue {

namespace fs = std::filesystem;

struct Loaded {
  enum Status {
    Ready,       // locked and loaded: attempt, notify or remove
    Gone,        // no longer queued
    Busy,        // locked by someone else (relaygatectl)
    NotDue,      // next_attempt_at is later (see next)
    Held,        // on hold (relaygatectl queue hold)
    WaitParent,  // a DSN whose parent has not recorded it yet
    Error,       // unreadable (see error)
  } status = Gone;
  spool::Lock lock;
  spool::Envelope env;
  std::shared_ptr<const std::string> message;
  bool attempt = false;  // Ready with pending recipients that are due now
  int64_t next = 0;
  std::string error;
};

// Locks message `id` and loads it if there is something to do at `now`.
Loaded load(const spool::Spool& spool, const std::string& id, int64_t now);

// One DSN to make: into a local user's Maildir, or queued for the smarthost.
struct DsnOut {
  std::string id;
  std::string local_user;  // non-empty: Maildir delivery
  spool::Envelope env;     // otherwise: queued with this envelope
  std::string message;
};

struct Plan {
  std::string id;
  bool write_recorded = false;  // write `recorded` first (failures recorded before their DSNs)
  spool::Envelope recorded;
  std::vector<DsnOut> dsns;
  bool remove = false;  // then remove the message, else write `final`
  spool::Envelope final;
};

struct Persisted {
  bool ok = true;
  int err = 0;  // errno of the failure (ENOSPC, EDQUOT, ...)
  std::string error;
  std::vector<std::string> dsn_existing;  // DSN ids found already made (a redo after a crash)
};

// Carries out a plan (see the file comment). Never throws.
Persisted persist(const spool::Spool& spool, const fs::path& maildir_root, const Plan& plan);

// Delivers `message` into <root>/<user>/new/ under a name containing `token`, unless a message
// with that token is already in new/ or cur/ (then false). tmp → fsync → rename → fsync new/.
// Throws std::system_error.
bool deliver_local_once(const fs::path& maildir_root, const std::string& user, const std::string& token,
                        std::string_view message);

}  // namespace rg::smtp::queue

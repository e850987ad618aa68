// The durable outbound queue under spool_dir, written by smtpd (relay mail of authorized
// senders, and DSNs for remote senders), read by the queue runner and `relaygatectl queue`.
// Layout:
//   tmp/<id>.msg, tmp/<id>.env   being enqueued; tmp/.<id>.env.<pid>.<n>  an envelope update
//   queue/<id>.msg               the message as received (CRLF lines, headers included)
//   queue/<id>.env               the envelope (JSON); a message is queued once this exists
// Invariants: .msg is fsync'd and renamed before .env, then queue/ is fsync'd, all before 250;
// .msg never changes once queued; .env is only ever replaced whole (temp + fsync + rename +
// fsync queue/) by the holder of the message's lock (flock on queue/<id>.msg), which the
// runner holds for a whole delivery attempt and relaygatectl for an edit; removal unlinks .env
// first, so an .msg without .env is garbage that start-up recovery deletes.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/fd.h"
#include "shared/stream_file.h"

namespace rg::spool {

namespace fs = std::filesystem;

struct Recipient {
  Recipient() = default;
  Recipient(std::string addr, std::string st = "pending", std::string error = {})
      : address(std::move(addr)), state(std::move(st)), last_error(std::move(error)) {}

  std::string address;
  std::string state = "pending";  // pending | delivered | failed
  std::string last_error;         // last reply (or local error) that did not deliver
  std::string status;             // RFC 3463 code of the last outcome, e.g. "4.4.1"
  std::string diagnostic;         // the smarthost's own reply, for the DSN ("" if the error was ours)
  int64_t last_attempt_at = 0;
  bool notified = false;  // failed: its DSN exists (or none is due: null sender)
};

struct Envelope {
  std::string id;
  std::string sender;  // "" for the null reverse-path
  std::vector<Recipient> recipients;
  int64_t created_at = 0;
  uint64_t size = 0;
  int64_t attempts = 0;
  int64_t next_attempt_at = 0;
  bool held = false;
  std::string client_ip;
  std::string auth;  // who authorized the relay: "sasl:alice", "grant:alice", "trusted", "dsn"
  int64_t last_attempt_at = 0;
  int64_t dsn_count = 0;  // DSNs made for this message; the n-th has id <id>R<n>
  bool warned = false;    // the delay-warning DSN was made
  std::string dsn_of;     // for a DSN: the message it reports on, and its number there
  int64_t dsn_seq = 0;
};

// A queue id: 12 upper-case hex digits from time, pid and a counter (Postfix style). Also
// used as the "queued as" id of local deliveries.
std::string new_queue_id();
// The id of the n-th DSN about message `id` ("R" is not a hex digit: never a new_queue_id()).
std::string dsn_id(const std::string& id, int64_t n);
// Ids are 1-40 characters [0-9A-Z]: safe as file names and on command lines.
bool valid_id(std::string_view id);

std::string to_json(const Envelope& e);
// Throws std::runtime_error naming `source` when the JSON is not an envelope.
Envelope from_json(std::string_view text, const std::string& source);

// An exclusive flock on queue/<id>.msg, released on destruction (or when the process dies).
using Lock = rg::FlockGuard;

enum class LockStatus { Locked, Busy, Gone };

// Queue size for the status file: messages queued and the creation time of the oldest.
struct Summary {
  size_t count = 0;
  int64_t oldest_created_at = 0;  // 0 when empty
};

// What start-up recovery cleaned.
struct Recovery {
  size_t removed_partial = 0;         // unfinished enqueues and envelope updates (never acknowledged)
  size_t removed_orphans = 0;         // .msg without .env: removals or enqueues cut short
  std::vector<std::string> problems;  // .env without .msg and other things left alone
};

class Spool;

// One message enqueued as it arrives (smtpd's DATA), with the invariants of Spool::enqueue():
// tmp/<id>.msg grows chunk by chunk; sync() fsyncs it and writes tmp/<id>.env (fsync'd);
// publish() renames .msg then .env into queue/ and fsyncs queue/. Until publish() nothing is in
// queue/; an Incoming destroyed unpublished unlinks its temp files (and start-up recovery
// removes what a crash left in tmp/). Blocking: call it on the disk pool.
class Incoming {
 public:
  Incoming(const Spool& spool, const std::string& id);
  void write(std::string_view data) { msg_.write(data); }
  void sync(const Envelope& env);
  // On any error nothing is left in queue/ (renamed files are unlinked again).
  void publish();
  // Removes a published message again (.env first: a later destination failed).
  void unpublish() noexcept;

 private:
  fs::path dir_;
  std::string id_;
  fsutil::StreamFile msg_, env_;
  bool published_ = false;
};

class Spool {
 public:
  explicit Spool(fs::path dir) : dir_(std::move(dir)) {}
  const fs::path& dir() const { return dir_; }
  fs::path queue_dir() const { return dir_ / "queue"; }
  void ensure() const;  // creates tmp/ and queue/ (0700)
  // Writes the message and its envelope durably (see the file comment). Throws
  // std::system_error; on error nothing is left in queue/.
  void enqueue(const Envelope& env, const std::vector<std::string_view>& message) const;
  // enqueue() unless queue/<id>.env exists already (then false): for DSNs, whose ids are
  // derived, so that redoing a step after a crash never queues one twice.
  bool enqueue_once(const Envelope& env, const std::vector<std::string_view>& message) const;
  // Every queued envelope, oldest first. Unreadable envelopes are reported in `problems`.
  std::vector<Envelope> list(std::vector<std::string>* problems = nullptr) const;
  // One envelope; nullopt when it is not queued. Throws std::runtime_error if unreadable.
  std::optional<Envelope> read(const std::string& id) const;
  // The message bytes. Throws std::system_error.
  std::string read_message(const std::string& id) const;
  // Replaces queue/<id>.env durably (temp in tmp/, fsync, rename, fsync queue/). Throws
  // std::system_error (the old envelope is then still in place). Caller holds the lock.
  void update(const Envelope& env) const;
  // Unlinks .env then .msg and fsyncs queue/. Caller holds the lock. Throws std::system_error.
  void remove(const std::string& id) const;
  // Non-blocking lock of one message.
  LockStatus try_lock(const std::string& id, Lock& out) const;
  // Polls try_lock until Locked or Gone, or `wait` has passed (then Busy).
  LockStatus lock_wait(const std::string& id, Lock& out, std::chrono::milliseconds wait) const;
  // Start-up only (no enqueue may run meanwhile): deletes partial files and orphans.
  Recovery recover() const;
  Summary summary() const;

 private:
  fs::path dir_;
};

}  // namespace rg::spool

// The durable outbound queue under spool_dir, written by smtpd (relay mail of authorized
// senders) and read by the queue runner and `relaygatectl queue`. Layout:
//   tmp/<id>.msg, tmp/<id>.env   being written
//   queue/<id>.msg               the message as received (CRLF lines, headers included)
//   queue/<id>.env               the envelope (JSON); a message is queued once this exists
// Invariants: .msg is fsync'd and renamed before .env, then queue/ is fsync'd, all before 250.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rg::spool {

namespace fs = std::filesystem;

struct Recipient {
  std::string address;
  std::string state = "pending";  // pending | delivered | failed
  std::string last_error;
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
  std::string auth;  // who authorized the relay: "sasl:alice", "grant:alice", "trusted"
};

// A queue id: 12 upper-case hex digits from time, pid and a counter (Postfix style). Also
// used as the "queued as" id of local deliveries.
std::string new_queue_id();

std::string to_json(const Envelope& e);
// Throws std::runtime_error naming `source` when the JSON is not an envelope.
Envelope from_json(std::string_view text, const std::string& source);

class Spool {
 public:
  explicit Spool(fs::path dir) : dir_(std::move(dir)) {}
  const fs::path& dir() const { return dir_; }
  void ensure() const;  // creates tmp/ and queue/ (0700)
  // Writes the message and its envelope durably (see the file comment). Throws
  // std::system_error; on error nothing is left in queue/.
  void enqueue(const Envelope& env, const std::vector<std::string_view>& message) const;
  // Every queued envelope, oldest first. Unreadable envelopes are reported in `problems`.
  std::vector<Envelope> list(std::vector<std::string>* problems = nullptr) const;

 private:
  fs::path dir_;
};

}  // namespace rg::spool

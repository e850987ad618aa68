// A user's maildrop for one POP3 session (RFC 1939 §3, §5, §6), without the network: opening
// takes the exclusive lock and scans the Maildir; deletions are only marks until commit(), the
// UPDATE state, removes them. Tested on a temporary Maildir (tests/unit/pop3_maildrop_test.cpp).
// Invariants: while a Maildrop lives, no other session (in any process) holds the maildrop;
// nothing is removed unless commit() runs; numbering is fixed for the session (1-based, in scan
// order, deleted messages keep their number).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "shared/maildir.h"

namespace rg::pop3 {

struct Message {
  maildir::Entry entry;
  bool deleted = false;
};

class Maildrop {
 public:
  // Creates the Maildir's folders if needed, locks and scans it; nullopt when another session
  // holds the lock ([IN-USE]). Throws std::exception on I/O errors.
  static std::optional<Maildrop> open(const std::filesystem::path& root, const std::string& user);

  // Message `number` (1-based) unless it is out of range or marked deleted (RFC 1939 §5).
  Message* find(uint64_t number);
  uint64_t number_of(const Message& m) const { return static_cast<uint64_t>(&m - messages_.data()) + 1; }
  const std::vector<Message>& messages() const { return messages_; }

  struct Totals {
    uint64_t count = 0, octets = 0;
  };
  Totals live() const;  // STAT: the messages not marked deleted
  Totals all() const;   // the greeting after login: every message

  void mark_deleted(Message& m) { m.deleted = true; }
  void reset();                 // RSET: unmark every message
  void mark_seen(Message& m);   // after RETR: the Maildir S flag; throws std::exception

  struct Commit {
    unsigned removed = 0, failed = 0;
  };
  // UPDATE (RFC 1939 §6): unlinks every marked message (one already gone counts as removed)
  // and releases the lock, so the client may reconnect as soon as it reads the reply.
  Commit commit();
  void release() { lock_.reset(); }

 private:
  Maildrop(maildir::Maildir md, maildir::Lock lock) : maildir_(std::move(md)), lock_(std::move(lock)) {}
  maildir::Maildir maildir_;
  std::optional<maildir::Lock> lock_;
  std::vector<Message> messages_;
};

}  // namespace rg::pop3

// Maildir access shared by smtpd (delivery) and pop3d (maildrop): <root>/<user>/{tmp,new,cur}.
// Invariants: delivery is tmp (O_EXCL) → write → fsync → rename into new/ → fsync new/, so a
// crash never leaves a partial message in new/ or cur/ nor delivers one twice; the POP3 UID is
// the file's base name (before ':' and ','), stable across the new/→cur/ move and restarts.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/fd.h"
#include "shared/stream_file.h"

namespace rg::maildir {

namespace fs = std::filesystem;

struct Entry {
  fs::path file;      // current path (new/ or cur/)
  std::string uid;    // RFC 1939 §7 unique-id: 1-70 chars in 0x21-0x7E
  uint64_t size = 0;  // octets as sent over POP3: every line ending counted as CRLF
  bool seen = false;  // has the S flag (cur/ with :2,...S...)
};

// Exclusive maildrop lock (flock on <maildir>/.relaygate.lock): holds across processes and
// across sessions in one process. Released on destruction.
using Lock = rg::FlockGuard;

class Maildir {
 public:
  // `user` must be a validated user name (authdb/users.h): it becomes one path component.
  Maildir(const fs::path& root, const std::string& user);
  const fs::path& path() const { return dir_; }

  // Creates the Maildir's folders (0700) if missing. Throws std::system_error naming the path.
  void ensure() const;
  // Non-blocking exclusive lock; nullopt when another session holds it. Throws on I/O errors.
  std::optional<Lock> try_lock() const;
  // Messages in new/ and cur/, oldest first (by name, which starts with the delivery time).
  std::vector<Entry> scan() const;
  // Writes one message made of `pieces` durably (see the file comment) and returns its path.
  // Throws std::system_error; on any error no file is left in tmp/ or new/.
  fs::path deliver(const std::vector<std::string_view>& pieces) const;
  // Idempotent delivery for work that may be redone after a crash (bounces): the file name
  // carries `token` ("<time>.<token>.<host>,S=..,W=.."); returns nullopt without writing when
  // a message with that token is already in new/ or cur/.
  std::optional<fs::path> deliver_once(const std::string& token, const std::vector<std::string_view>& pieces) const;
  // Adds the Seen flag: new/X → cur/X:2,S, cur/X:2,F → cur/X:2,FS. Returns the new path.
  fs::path mark_seen(const Entry& e) const;

 private:
  fs::path dir_;
};

// One message written as it arrives (smtpd's DATA), with the invariant of deliver(): it grows
// in tmp/<unique base>; sync() fsyncs it, publish() renames it into new/<base>,S=<bytes>,W=<crlf
// bytes> and fsyncs new/. Until publish() nothing is in new/; an Incoming destroyed unpublished
// unlinks its temp file. Blocking: call it on the disk pool. Errors are std::system_error.
class Incoming {
 public:
  // Creates the temp file in `md` (whose folders exist: Maildir::ensure()).
  explicit Incoming(const Maildir& md);
  const fs::path& tmp() const { return file_.tmp(); }
  void write(std::string_view data);
  void sync() { file_.sync(); }
  // Renames into new/ and fsyncs new/; when that fsync fails the file is unlinked again (not
  // durable: not acknowledged, so it must not be delivered later). Returns the new path.
  fs::path publish();
  // Unlinks a published message again (a later destination of the same message failed).
  void unpublish() noexcept;

 private:
  fs::path dir_;
  std::string base_;
  fsutil::StreamFile file_;
  uint64_t bytes_ = 0, wire_ = 0;  // S= and W= of the name (crlf_size over all writes)
  char last_ = '\n';
  fs::path published_;
};

// Octets of `data` with every line ending as CRLF (bare LF counts 2, CRLF 2), plus a final
// CRLF if the data does not end with a line ending: the RFC 1939 message size.
uint64_t crlf_size(std::string_view data);

// Converts a stored message to the POP3 wire form incrementally: CRLF line endings,
// RFC 1939 §3 byte-stuffing of lines starting with '.', and for TOP only the headers plus
// `body_lines` body lines. Pure: no I/O.
class WireEncoder {
 public:
  explicit WireEncoder(std::optional<uint64_t> body_lines = std::nullopt) : body_limit_(body_lines) {}
  // Appends the wire form of `chunk` to `out`; returns false once the TOP limit is reached.
  bool feed(std::string_view chunk, std::string& out);
  // Terminates the last line if needed and appends the ".\r\n" terminator.
  void finish(std::string& out);

 private:
  std::optional<uint64_t> body_limit_;
  uint64_t body_lines_ = 0;
  bool at_line_start_ = true;
  bool pending_cr_ = false;
  bool in_body_ = false;
  bool line_empty_ = true;
  bool done_ = false;
};

}  // namespace rg::maildir

// The DATA decoder (RFC 5321 §4.1.1.4, §4.5.2): turns the lines a client sends after "354" into
// the message, without I/O, so the SMTP-smuggling surface is tested line by line
// (tests/unit/smtp_data_test.cpp). The session reads, times out and rate-limits; this decides.
// It keeps no message: the decoded bytes wait in a chunk the session takes (take_chunk()) and
// writes to disk once it holds limits::kDataChunk octets, so memory stays bounded whatever the
// message size.
// Invariants: only CRLF "." CRLF ends the data — not LF "." CRLF, not "." LF, not a dot after a
// line whose ending was lost (CVE-2023-51764 class); a leading dot is removed (transparency);
// every stored line ends in CRLF; past the size cap nothing more is emitted (the session then
// discards what it wrote).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace rg::smtp {

// RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including CRLF.
inline constexpr size_t kMaxTextLine = 1000;

class DataReader {
 public:
  enum class Step { More, End };

  // `max_size`: the message size cap (smtpd.max_message_size). `normalize_bare_cr`: relay
  // listeners turn a bare CR into a line break; submission refuses bare CR/LF instead (the
  // session looks at bare_line_ending()).
  DataReader(uint64_t max_size, bool normalize_bare_cr);

  // One line as the stream's read_line returns it, its line ending included.
  Step feed(std::string_view line);
  // The stream dropped a line longer than its read bound (`dropped` octets): how it ended is
  // unknown, so the next line can never end the data.
  void feed_overlong(size_t dropped);

  bool too_big() const { return too_big_; }
  bool too_long() const { return too_long_; }        // a line over kMaxTextLine
  bool bare_line_ending() const { return bare_; }    // a bare LF, or a CR not before LF
  uint64_t received() const { return received_; }    // octets read, terminator included
  uint64_t body_size() const { return body_size_; }  // decoded octets emitted so far
  // The decoded bytes not taken yet; after too_big() always empty.
  size_t pending() const { return chunk_.size(); }
  std::string take_chunk() { return std::exchange(chunk_, std::string()); }

 private:
  uint64_t max_size_;
  bool normalize_;
  std::string chunk_;
  uint64_t body_size_ = 0;
  bool too_big_ = false, too_long_ = false, bare_ = false;
  bool prev_crlf_ = true;  // the DATA command line itself ended with CRLF
  uint64_t received_ = 0;
};

}  // namespace rg::smtp
